"""The terminal summary: markets fed from bus events, bots read from a running engine, as a
rich table and as one plain line."""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal

from rich.console import Console

from tickloop.bus import Bus
from tickloop.examples import SmaCross
from tickloop.models import Side, Trade
from tickloop.run.summary import PlatformView
from tickloop.runtime import Engine
from tickloop.sim import SimExchange


async def test_the_summary_shows_markets_and_bots() -> None:
    async with SimExchange(seed=2, symbols=["BTC-USD"], rate=0) as ex, Bus(name="sum") as bus:
        engine = Engine([SmaCross("sma")], url=ex.ws_url, bus=bus)
        async with engine:
            view = PlatformView(["BTC-USD"], venue="sim", url=ex.ws_url, engine=engine,
                                feed=engine.feed, dashboard="http://127.0.0.1:8000")
            sub = bus.subscribe("trade.*", handler=view.on_trade_event, name="summary")
            bus.publish("trade.sim.BTC-USD", Trade(
                venue="sim", symbol="BTC-USD", id=1, price=Decimal("60001.50"),
                size=Decimal("0.25"), side=Side.BUY, ts=1))
            engine.pause("sma")
            await asyncio.sleep(0)
            out = io.StringIO()
            Console(file=out, width=200).print(view.render())
            text = out.getvalue()
            line = view.line()
            sub.close()
    assert "dashboard http://127.0.0.1:8000" in text
    assert "60001.50x0.25" in text
    assert "sma" in text and "SmaCross" in text and "paused" in text and "flat" in text
    assert "BTC-USD 60001.50" in line and "sma paused pnl 0.00" in line
