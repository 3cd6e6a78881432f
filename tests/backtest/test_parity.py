"""Parity: a bot run live against the embedded exchange while the session is recorded, then
backtested on that recording with the same executor settings, places the same orders in the
same order, gets the same fills and ends with the same PnL.

Live, the engine runs on the loop's clock over a real WebSocket and REST session (the sim in
this process); the backtest replays the recorded frames through the same StreamClient code
into an engine on a SimClock. The bot decides on trades (which trades it acts on depends on
the trade ids only, from the first id past a boundary), so its decisions do not depend on how
fast either run goes; the paper executor matches each order at once on the book of that
moment (an eager executor, :meth:`tickloop.runtime.Engine._timed`)."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from tickloop import StreamClient
from tickloop.backtest import ReplayBacktest
from tickloop.client.rest import AsyncClient
from tickloop.models import Fill, Order, Trade
from tickloop.record import Recorder
from tickloop.runtime import Bot, Engine, PaperExecutor
from tickloop.sim import SimExchange

FEES = {"maker_fee": Decimal("0.0002"), "taker_fee": Decimal("0.0005")}


class EveryNParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    n: int = 3
    size: Decimal = Decimal("0.01")


class EveryN(Bot):
    """From the first trade id that is a multiple of 20, on every trade whose id is a
    multiple of ``n``: buys ``size`` when flat, sells what it holds when long."""

    symbols = ("BTC-USD",)
    Params: ClassVar[type[msgspec.Struct]] = EveryNParams

    def on_start(self) -> None:
        self.armed = False
        self.placed: list[tuple[Any, ...]] = []
        self.fills: list[tuple[Any, ...]] = []

    async def on_trade(self, trade: Trade) -> None:
        tid = int(trade.id)
        self.armed = self.armed or tid % 20 == 0
        if not self.armed or tid % self.params.n:
            return
        symbol = self.symbols[0]
        held = self.position(symbol).size
        order: Order = await (self.sell(symbol, held) if held > 0
                              else self.buy(symbol, self.params.size))
        self.placed.append((tid, str(order.side), order.size, str(order.status),
                            order.avg_price))

    def on_fill(self, fill: Fill) -> None:
        self.fills.append((str(fill.side), fill.price, fill.size, fill.fee))


@pytest.mark.timeout(120)
async def test_live_then_backtest_on_its_recording_same_orders_and_pnl(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    async with SimExchange(seed=7, symbols=["BTC-USD"], rate=60) as ex:
        meta = {"venue": "sim", "url": ex.ws_url, "rest_url": ex.rest_url}
        with Recorder(rec, meta=meta) as recorder:
            async with AsyncClient("sim", url=ex.rest_url) as rest:
                recorder.attach_http(rest.http)
                async with StreamClient("sim", url=ex.ws_url, rest=rest,
                                        transport=recorder.transport()) as feed:
                    await feed.subscribe_status(recorder.on_status)
                    counter = itertools.count(1)
                    engine = Engine([EveryN("bot")], venue="sim", feed=feed,
                                    executor=PaperExecutor(**FEES), cash=1000, stagger=0.0,
                                    client_ids=lambda bot: f"{bot}-{next(counter)}")
                    async with engine:
                        await engine.run(seconds=5)
                        live = engine.bots[0]
                        assert isinstance(live, EveryN)
                        placed, fills = list(live.placed), list(live.fills)
                        portfolio = engine.portfolio("bot")
                        live_pnl = (portfolio.cash, portfolio.realized_pnl,
                                    portfolio.size("BTC-USD"))
    assert len(placed) >= 6, "too few orders live to compare"

    backtest = ReplayBacktest(EveryN("bot"), rec, cash=1000, **FEES)
    result = await backtest.run()
    replayed = backtest.engine.bots[0]  # type: ignore[union-attr]
    assert isinstance(replayed, EveryN)
    # the same orders in the same order (the trade that made each, side, size, status and
    # average fill price), the same fills, the same cash, realised PnL and position
    assert replayed.placed == placed
    assert replayed.fills == fills
    final = backtest.engine.portfolio("bot")  # type: ignore[union-attr]
    assert (final.cash, final.realized_pnl, final.size("BTC-USD")) == live_pnl
    report = result.report()
    assert [(str(f.side), f.price, f.size, f.fee) for f in report.fills] == fills
    assert report.metrics["orders"] == len(placed)
