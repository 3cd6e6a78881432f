"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven through Playwright's
DevTools connection; no browser is ever downloaded): a server in this loop with the embedded
exchange behind a StreamClient and a bus; the page's prices, book, event log and health strip
update from the event stream (fills from orders placed on the exchange with an API key), and
after a server restart the page reconnects by itself.

Under ``CI=true`` a missing chromium fails; elsewhere the test is skipped. With
``TICKLOOP_SCREENSHOT=path.png`` the page is also saved there (docs/img/dashboard.png is made so).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tickloop import AsyncClient, Credentials, StreamClient, models
from tickloop.bus import Bus
from tickloop.server import Platform, create_app, serve
from tickloop.sim import SimExchange

SYMBOLS = ["BTC-USD", "ETH-USD"]
_PRICE = re.compile(r"^\d+\.\d+$")  # the venue's digits, as the stream carries them
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _chromium() -> str:
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
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 860},
        )
        try:
            tab = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.errors = errors  # type: ignore[attr-defined]
            yield tab
        finally:
            await context.close()


async def _text(page: object, selector: str) -> str:
    text: str = await page.locator(selector).inner_text()  # type: ignore[attr-defined]
    return text


@pytest.mark.timeout(120)
async def test_the_dashboard_updates_live_and_survives_a_restart(page: object) -> None:
    expect_options()
    async with SimExchange(seed=21, symbols=SYMBOLS, rate=25) as ex:
        key = ex.create_api_key()
        credentials = Credentials(key.key_id, key.secret)
        async with (
            Bus(name="browser") as bus,
            StreamClient("sim", url=ex.ws_url, credentials=credentials) as feed,
            AsyncClient("sim", url=ex.rest_url, credentials=credentials) as rest,
        ):
            await _run(page, bus, feed, rest)


def expect_options() -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=15_000)


async def _run(page: object, bus: Bus, feed: StreamClient, rest: AsyncClient) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    app = create_app(Platform(bus, feeds=[feed]), token="browser-token")
    async with serve(app, "127.0.0.1", 0) as served:
        port = served.port
        # status first: bus.attach wires the status events after the streams, so the
        # first connection's Connected would go unpublished
        await bus.attach(feed)
        await bus.attach(feed, trades=SYMBOLS, books=SYMBOLS, book_interval=100,
                         orders=True, fills=True, status=False)
        await page.goto(served.url)  # the page starts from what the server retained
        await expect(page.locator("#h-stream")).to_have_text("connected")
        await expect(page.locator("#log li", has_text="status.connected")).to_have_count(1)
        btc = page.locator('.chart[data-symbol="BTC-USD"]')
        await expect(btc.locator(".price")).to_have_text(_PRICE)
        await expect(page.locator("#h-feeds")).to_have_text("sim 1/1")
        await expect(page.locator("#depth-rows tr")).to_have_count(10)
        await expect(page.locator("#depth-rows tr").first.locator("td.bid")).to_have_text(
            _PRICE)

        # prices keep moving: the trade count of a market goes up from the stream
        before = int((await _text(page, '.chart[data-symbol="BTC-USD"] .meta')).split()[0])
        await page.wait_for_function(
            "n => parseInt(document.querySelector("
            "'.chart[data-symbol=\"BTC-USD\"] .meta').textContent) > n", arg=before)

        # fills: a market order on the exchange -> the private stream -> bus -> page
        await expect(page.locator("#fills tr.empty")).to_have_count(1)
        for n in range(2):
            order = await rest.place_order("BTC-USD", side="buy" if n else "sell",
                                           type="market", size="0.0100")
            # a market order may fill across book levels: one row per fill, the order's
            # sizes adding up to what it asked
            await expect(page.locator(f'#fills tr[data-order="{order.id}"]').first
                         ).to_be_visible()
            await page.wait_for_function(
                "([id, want]) => [...document.querySelectorAll("
                "`#fills tr[data-order=\"${id}\"] td:nth-child(5)`)]"
                ".reduce((a, td) => a + parseFloat(td.textContent), 0).toFixed(4) === want",
                arg=[order.id, "0.0100"])
        shown = await page.locator("#fills tr").count()
        assert shown >= 2
        await expect(page.locator("#fills-count")).to_have_text(f"{shown} in all")
        await expect(page.locator("#log li[data-kind=order]").first).to_contain_text(
            "filled")

        # a platform event shows in the event log
        bus.publish("signal.probe", models.Signal(bot="probe", name="hello-browser",
                                                  ts=time.time_ns()))
        await expect(page.locator("#log li", has_text="hello-browser")).to_have_count(1)

        # the log is bounded: 300 more events leave the newest 200 lines
        for n in range(300):
            bus.publish("signal.probe", models.Signal(bot="probe", name=f"burst-{n}",
                                                      ts=time.time_ns()))
        await expect(page.locator("#log li").first).to_contain_text("burst-299")
        await expect(page.locator("#log li")).to_have_count(200)
        await expect(page.locator("#log li").last).to_contain_text("burst-100")

        # the control token field checks a token through the protected route
        await page.fill("#token", "wrong")
        await page.click("#control button")
        await expect(page.locator("#control-state")).to_have_text("refused (401)")
        await page.fill("#token", "browser-token")
        await page.click("#control button")
        await expect(page.locator("#control-state")).to_have_text("unlocked")

        shot = os.environ.get("TICKLOOP_SCREENSHOT")
        if shot:  # a few candles first, so the picture shows a chart
            await page.wait_for_function(
                "window.tickloop.markets.get('BTC-USD').candles.length >= 8",
                timeout=60_000)
            await page.screenshot(path=shot)
        received = await page.evaluate("window.tickloop.received()")
        assert received > 0

    # the server is gone: the page says so, then resumes by itself on a new server
    await expect(page.locator("#h-stream")).to_have_text("reconnecting")
    again = create_app(Platform(bus, feeds=[feed]), token="browser-token")
    async with serve(again, "127.0.0.1", port):
        await expect(page.locator("#h-stream")).to_have_text("connected")
        await expect(page.locator("#log li", has_text="restarted after")).to_have_count(1)
        await page.wait_for_function(f"window.tickloop.received() > {received}")
        last = await page.evaluate("window.tickloop.lastEventId()")
        assert last.startswith(again.hub.epoch + "-")
    assert page.errors == []  # type: ignore[attr-defined]



def test_a_missing_chromium_fails_under_ci_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        _chromium()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        _chromium()
