"""The live view of ``tickloop run``: rendering from events, and a short real run."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from rich.console import Console

from tickloop.cli import main
from tickloop.live import LiveView, run_live
from tickloop.models import Connected, Gap, Reconnected, Side, Ticker, Trade


def test_view_renders_trades_book_and_status() -> None:
    view = LiveView(["BTC-USD"], venue="sim", url="ws://x/ws")
    view.on_status(Connected(venue="sim", url="ws://x/ws", connection=0, ts=0))
    view.on_trade(
        Trade(
            venue="sim",
            symbol="BTC-USD",
            id=1,
            price=Decimal("100.50"),
            size=Decimal("0.2500"),
            side=Side.BUY,
            ts=0,
        )
    )
    view.on_ticker(
        Ticker(
            venue="sim",
            symbol="BTC-USD",
            bid=Decimal("100.40"),
            bid_size=Decimal("1.0000"),
            ask=Decimal("100.60"),
            ask_size=Decimal("2.0000"),
            ts=0,
        )
    )
    view.on_status(
        Reconnected(venue="sim", url="ws://x/ws", connection=0, downtime=0.25, attempts=1, ts=0)
    )
    view.on_status(
        Gap(
            venue="sim",
            symbol="BTC-USD",
            channel="trades",
            first_missing=2,
            last_missing=4,
            recovered=True,
            ts=0,
        )
    )
    view.sample_rate(0, 10.0)
    view.sample_rate(500, 11.0)
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(view.render(now=view.started + 5))
    text = console.export_text()
    for expected in (
        "100.40 x 1.0000",
        "100.60 x 2.0000",
        "0.20",
        "100.50x0.2500",
        "reconnects 1",
        "gaps 1 (1 recovered)",
        "500 msgs/s",
        "reconnected after 250 ms",
    ):
        assert expected in text, expected


async def test_run_live_streams_the_embedded_exchange() -> None:
    console = Console(file=io.StringIO(), width=200)
    view = await run_live(symbols=["BTC-USD"], rate=100, duration=1.5, seed=1, console=console)
    market = view.markets["BTC-USD"]
    assert view.connected
    assert market.trade_count > 0 and market.ticker is not None


def test_cli_run_rejects_empty_symbols(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--symbols", ","])
    assert info.value.code == 2
    assert "symbol" in capsys.readouterr().err
