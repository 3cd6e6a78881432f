"""The dashboard of a real ``tickloop run`` (a subprocess on a free port, a short config) in
headless Chromium (Debian's, through Playwright; never a downloaded browser): prices and fills
update, the bots table and the equity curve fill from the platform, and pause / resume clicked
in the page change the bot's status as the API reports it.

Under ``CI=true`` a missing chromium fails; elsewhere the test is skipped. With
``TICKLOOP_SCREENSHOT=path.png`` the page is saved there (docs/img/dashboard.png is made so).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from .helpers import Running

TOKEN = "browser-token"
_PRICE = re.compile(r"^\d+\.\d+$")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Quick bots, so that a short run trades: crosses of 2/4-sample averages, reversion on a short
# window, a maker on the other market; equity snapshots twice a second for the curve.
CONFIG = f"""
symbols = ["BTC-USD", "ETH-USD"]
[venue]
seed = 11
rate = 40.0
[server]
token = "{TOKEN}"
[engine]
equity_every = 0.5
stagger = 0.0
[[bots]]
id = "sma"
class = "SmaCross"
symbols = ["BTC-USD"]
every = 0.2
params = {{ fast = 2, slow = 4, size = "0.01" }}
[[bots]]
id = "maker"
class = "MarketMaker"
symbols = ["ETH-USD"]
every = 0.5
params = {{ spread = "0.0004", size = "0.1", max_inventory = "0.5" }}
[[bots]]
id = "meanrev"
class = "MeanReversion"
symbols = ["BTC-USD"]
every = 0.2
params = {{ window = 6, entry = "0.8", exit = "0.2", size = "0.01" }}
"""


def _chromium() -> str:
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (bash scripts/test installs Debian's package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[object]:
    executable = _chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=executable, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        try:
            tab = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            seen: list[str] = []  # what the page said and which requests failed, for a failure
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on("console", lambda msg: seen.append(f"console.{msg.type}: {msg.text}"))
            tab.on("requestfailed", lambda req: seen.append(
                f"request failed: {req.method} {req.url}: {req.failure}"))
            tab.errors = errors  # type: ignore[attr-defined]
            tab.seen = seen  # type: ignore[attr-defined]
            yield tab
        finally:
            await context.close()


@pytest.mark.timeout(180)
async def test_the_dashboard_of_tickloop_run(page: object, tmp_path: Path) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    expect.set_options(timeout=30_000)
    config = tmp_path / "browser.toml"
    config.write_text(CONFIG)
    run = Running(tmp_path, str(config), "--port", "0")
    try:
        await _drive(page, run)
    except Exception as exc:  # a failure says what the page and the server saw
        seen = "\n".join(page.seen[-40:])  # type: ignore[attr-defined]
        raise AssertionError(f"{exc}\n--- page errors: {page.errors}"  # type: ignore[attr-defined]
                             f"\n--- page:\n{seen}\n--- run stderr:\n{run.stderr()[-4000:]}"
                             ) from exc
    finally:
        run.kill()
    code, _, err = run.finish(timeout=10)
    assert code == 0 and "Traceback" not in err, err


async def _drive(page: object, run: Running) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    url = run.wait_for("dashboard: ").split()[-1]
    async with httpx.AsyncClient(base_url=url, timeout=10) as api:
        await page.goto(url)
        await expect(page.locator("#h-stream")).to_have_text("connected")
        btc = page.locator('.chart[data-symbol="BTC-USD"]')
        await expect(btc.locator(".price")).to_have_text(_PRICE)
        await expect(page.locator("#h-feeds")).to_have_text("sim 1/1")

        # prices update: the BTC-USD trade count goes up from the stream
        meta = '.chart[data-symbol="BTC-USD"] .meta'
        before = int((await page.locator(meta).inner_text()).split()[0])
        await page.wait_for_function(
            f"n => parseInt(document.querySelector('{meta}').textContent) > n", arg=before)

        # the bots table, from /api/bots
        for bot in ("sma", "maker", "meanrev"):
            row = page.locator(f'#bots tr[data-bot="{bot}"]')
            await expect(row.locator("td.status")).to_have_text("running")
        # fills from the bots' paper orders, and more of them as the run goes on
        await expect(page.locator("#fills tr.empty")).to_have_count(0)
        count = page.locator("#fills-count")
        first = int((await count.inner_text()).split()[0])
        await page.wait_for_function(
            "n => parseInt(document.querySelector('#fills-count').textContent) > n",
            arg=first)
        # the equity curve: one line per bot, from the equity events
        for bot in ("sma", "maker", "meanrev"):
            await expect(page.locator(f'#equity-legend span[data-bot="{bot}"]')
                         ).to_have_count(1)

        # pause and resume from the page, seen through the API
        pause = page.locator('#bots tr[data-bot="sma"] button')
        await expect(pause).to_be_disabled()  # locked until the token is given
        await page.fill("#token", TOKEN)
        await page.click("#control button")
        await expect(page.locator("#control-state")).to_have_text("unlocked")
        await expect(pause).to_be_enabled()
        await expect(pause).to_have_text("pause")
        await pause.click()
        await expect(page.locator('#bots tr[data-bot="sma"] td.status')
                     ).to_have_text("paused")
        assert (await api.get("/api/bots/sma")).json()["status"] == "paused"
        await expect(pause).to_have_text("resume")

        shot = os.environ.get("TICKLOOP_SCREENSHOT")
        if shot:  # a few candles first, so the picture shows a chart
            await page.wait_for_function(
                "window.tickloop.markets.get('BTC-USD').candles.length >= 6",
                timeout=60_000)
            await page.screenshot(path=shot)

        await pause.click()
        await expect(page.locator('#bots tr[data-bot="sma"] td.status')
                     ).to_have_text("running")
        assert (await api.get("/api/bots/sma")).json()["status"] == "running"
    assert page.errors == []  # type: ignore[attr-defined]
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(timeout=10)
