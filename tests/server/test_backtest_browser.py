"""The dashboard's backtest view in a real headless Chromium (Debian's, through Playwright, as
tests/server/test_dashboard_browser.py): a server over a store holding a real backtest run;
the page lists the run and draws its equity over its drawdown from /api/backtests.

Under ``CI=true`` a missing chromium fails; elsewhere the test is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickloop.backtest import Backtest
from tickloop.backtest.report import save
from tickloop.bus import Bus
from tickloop.examples import SmaCross
from tickloop.runtime.store import Store
from tickloop.server import Platform, create_app, serve

from .test_backtests_api import walk
from .test_dashboard_browser import expect_options, page  # noqa: F401  (the page fixture)


@pytest.mark.timeout(120)
async def test_the_dashboard_draws_a_stored_backtest(page: object,  # noqa: F811
                                                     tmp_path: Path) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    expect_options()
    result = await Backtest(SmaCross("sma", fast=3, slow=10), walk(3000), cash=500,
                            fee="0.0005").run()
    report = result.report()
    async with Bus(name="bt-browser") as bus, Store(tmp_path / "runs.db") as store:
        (run_id,) = await save(result, store)
        app = create_app(Platform(bus, store=store), token="browser-token")
        async with serve(app, "127.0.0.1", 0) as served:
            await page.goto(served.url)
            rows = page.locator("#backtests tr")
            await expect(rows).to_have_count(1)
            await expect(rows.first.locator("td").nth(1)).to_have_text("sma")
            await expect(rows.first.locator("td").nth(3)).to_have_text(
                "fast=3 slow=10 size=0.01")
            # the latest run is drawn at once, its 3,001 points bounded to 2,000 evenly
            # spaced and the deepest drawdown
            await page.wait_for_function(
                f"window.tickloop.backtest().shown === {run_id}")
            shown = await page.evaluate("window.tickloop.backtest()")
            assert len(report.equity) == 3001 and shown["points"] in (2000, 2001)
            assert shown["maxDrawdown"] == pytest.approx(report.metrics["max_drawdown"],
                                                         rel=1e-9)
            await expect(page.locator("#backtest-legend")).to_contain_text(
                f"run {run_id}: sma (tickloop.examples:SmaCross), 3001 points")
            await expect(rows.first).to_have_class("selected")
            await expect(page.locator("#backtest-plot canvas").first).to_be_visible()
            assert not page.errors  # type: ignore[attr-defined]
