"""The backtest driver: unchanged bots on candles in simulated time, the fill model on candles,
determinism, parity with an independent computation, and the report's bookkeeping."""

from __future__ import annotations

import asyncio
from collections import deque
from decimal import Decimal
from typing import Any, ClassVar

import msgspec
import pytest

from tickloop.backtest import Backtest, run_backtest
from tickloop.examples import MeanReversion, SmaCross
from tickloop.exceptions import ConfigError
from tickloop.models import Candle, Liquidity, OrderStatus, Side
from tickloop.runtime import Bot

from .helpers import SECOND, T0, candle, walk


def test_two_runs_are_identical_bit_for_bit() -> None:
    candles = walk(3000, seed=5)
    a = run_backtest(SmaCross("b1", fast=5, slow=20), candles)
    b = run_backtest(SmaCross("b1", fast=5, slow=20), candles)
    assert a.report().fills  # the strategy traded
    assert a.digest() == b.digest()
    assert a.report().orders == b.report().orders
    assert a.report().metrics == b.report().metrics
    c = run_backtest(SmaCross("b1", fast=6, slow=20), candles)
    assert c.digest() != a.digest()
    two = [MeanReversion("m1", window=20), SmaCross("s1")]
    assert run_backtest(two, candles).digest() == run_backtest(
        [MeanReversion("m1", window=20), SmaCross("s1")], candles).digest()


def _reference_sma_fills(candles: list[Candle], fast: int, slow: int) -> list[tuple[int, Side,
                                                                                       Decimal]]:
    """The SMA crossover computed directly on the closes: a signal at a close, filled at the
    next candle's open."""
    closes: deque[Decimal] = deque(maxlen=slow)
    above = None
    long = False
    out = []
    for i, c in enumerate(candles[:-1]):
        closes.append(c.close)
        if len(closes) < slow:
            continue
        f = sum(list(closes)[-fast:]) / fast
        s = sum(closes) / slow
        if f == s:
            continue
        now = f > s
        crossed = above is not None and now != above
        above = now
        nxt = candles[i + 1]
        if crossed and now and not long:
            out.append((nxt.open_time, Side.BUY, nxt.open))
            long = True
        elif crossed and not now and long:
            out.append((nxt.open_time, Side.SELL, nxt.open))
            long = False
    return out


def test_sma_cross_parity_with_a_direct_computation() -> None:
    candles = walk(2000, seed=9)
    report = run_backtest(SmaCross("b1", fast=4, slow=12), candles, fee=0).report()
    got = [(f.ts, f.side, f.price) for f in report.fills]
    assert got == _reference_sma_fills(candles, 4, 12)
    assert len(got) > 20
    assert all(f.fee == 0 for f in report.fills)


class BuyOnce(Bot):
    symbols = ("BTC-USD",)
    channels: ClassVar[tuple[str, ...]] = ("candles",)
    candle_interval = "1s"

    def __init__(self, id: str, **params: Any) -> None:
        super().__init__(id, **params)
        self.seen: list[Candle] = []
        self.placed: list[Any] = []

    async def on_candle(self, c: Candle) -> None:
        self.seen.append(c)
        if len(self.seen) == 1:
            self.placed.append(await self.buy("BTC-USD", "2"))
        elif len(self.seen) == 3:
            self.placed.append(await self.sell("BTC-USD", "2"))


CANDLES = [candle(0, "100", "101", "99", "100.5"), candle(1, "100.6", "102", "100", "101"),
           candle(2, "101", "101.5", "100.2", "101.2"), candle(3, "101.4", "103", "101", "102"),
           candle(4, "102", "102", "101", "101.5")]


def test_market_orders_fill_at_the_next_open_plus_slippage() -> None:
    bot = BuyOnce("b1")
    result = run_backtest(bot, CANDLES, slippage="0.001", fee="0.002", cash=1000)
    report = result.report()
    assert [c.open_time for c in bot.seen] == [c.open_time for c in CANDLES]
    buy, sell = report.fills
    assert (buy.side, buy.ts, buy.price) == (Side.BUY, CANDLES[1].open_time,
                                             Decimal("100.6") * Decimal("1.001"))
    assert (sell.side, sell.ts, sell.price) == (Side.SELL, CANDLES[3].open_time,
                                                Decimal("101.4") * Decimal("0.999"))
    assert buy.liquidity is Liquidity.TAKER and buy.fee == buy.price * 2 * Decimal("0.002")
    assert bot.placed[0].status is OrderStatus.FILLED  # place returned once the open priced it
    pnl = (sell.price - buy.price) * 2 - buy.fee - sell.fee
    assert report.equity[-1] == Decimal(1000) + pnl
    assert report.metrics["pnl"] == float(pnl)
    assert report.equity_ts == [T0] + [c.close_time for c in CANDLES]
    assert report.exposed == [False, False, True, True, False, False]
    assert report.metrics["exposure"] == pytest.approx(2 / 5)
    assert [(t.entry_ts, t.exit_ts, t.pnl) for t in report.trades] == [
        (CANDLES[1].open_time, CANDLES[3].open_time, pnl)]
    assert pnl > 0 and report.metrics["win_rate"] == 1.0


def test_a_market_order_takes_at_most_the_next_candles_volume() -> None:
    thin = [CANDLES[0], candle(1, "100.6", "102", "100", "101", v="0.5"), *CANDLES[2:]]
    bot = BuyOnce("b1")
    report = run_backtest(bot, thin).report()
    assert report.fills[0].size == Decimal("0.5")
    assert bot.placed[0].status is OrderStatus.EXPIRED


class LimitParams(msgspec.Struct, frozen=True):
    limit: Decimal = Decimal("100")


class RestingBuy(Bot):
    symbols = ("BTC-USD",)
    channels: ClassVar[tuple[str, ...]] = ("candles",)
    candle_interval = "1s"
    Params: ClassVar[type[msgspec.Struct]] = LimitParams

    async def on_candle(self, c: Candle) -> None:
        if c.open_time == T0:
            await self.buy("BTC-USD", "1", self.params.limit)


def _resting(limit: str, candles: list[Candle], **options: Any) -> Any:
    return run_backtest(RestingBuy("r1", limit=limit), candles, **options).report()


def test_limit_orders_fill_only_when_the_range_trades_through_at_the_limit() -> None:
    # candle 1 opens 100.6 (above 100.3), its low 100 passes through: filled at 100.3, maker
    report = _resting("100.3", CANDLES, fee="0.001")
    (fill,) = report.fills
    assert (fill.price, fill.liquidity, fill.ts) == (Decimal("100.3"), Liquidity.MAKER,
                                                     CANDLES[1].close_time)
    # a low that only touches the limit does not fill it (no queue position is assumed)...
    assert _resting("100", CANDLES).fills == []
    # ...unless fill_at_touch
    (touch,) = _resting("100", CANDLES, fill_at_touch=True).fills
    assert touch.price == Decimal("100")
    # a limit above the next open crosses: it takes the open (never worse than the limit)
    (cross,) = _resting("105", CANDLES).fills
    assert (cross.price, cross.liquidity, cross.ts) == (Decimal("100.6"), Liquidity.TAKER,
                                                        CANDLES[1].open_time)
    # and an order resting at the end is cancelled at shutdown
    report = _resting("50", CANDLES)
    assert report.fills == [] and report.orders[-1].status is OrderStatus.CANCELED


class Clocked(Bot):
    symbols = ("BTC-USD",)
    every = 10.0

    def __init__(self, id: str, **kw: Any) -> None:
        super().__init__(id, **kw)
        self.ticks: list[float] = []
        self.last: Decimal | None = None
        self.seen_at_tick: list[Decimal | None] = []
        self.slept: list[tuple[float, float]] = []

    def on_trade(self, trade: Any) -> None:
        self.last = trade.price

    async def tick(self) -> None:
        clock = self.engine.clock
        self.ticks.append(clock.now())
        self.seen_at_tick.append(self.last)
        if len(self.ticks) == 2:
            before = clock.monotonic()
            await clock.sleep(3.5)  # simulated: nothing really sleeps
            self.slept.append((before, clock.monotonic()))


def test_ticks_sleeps_and_the_monitor_run_in_simulated_time() -> None:
    candles = walk(100)
    bot = Clocked("c1")
    backtest = Backtest(bot, candles, monitor_interval=5.0)
    asyncio.run(backtest.run())
    t0 = T0 / SECOND
    assert bot.ticks == [t0 + 10 * i for i in range(11)]
    # a tick at a bar's close sees that bar's close (the last print before it)
    assert bot.seen_at_tick[1] == candles[9].close
    assert bot.seen_at_tick[0] is None  # before any candle closed
    assert bot.slept == [(10.0, 13.5)]
    engine = backtest.engine
    assert engine is not None and engine.monitor is not None
    assert len(engine.monitor.lags) == 20  # one wake-up per 5 simulated seconds
    assert engine.monitor.max_lag == 0.0
    assert engine.stats("c1")["handlers"]["tick"]["count"] == 11


class Cronned(Clocked):
    every = None
    cron = "* * * * * */15"  # every 15 s (croniter's sixth field: seconds)


def test_cron_schedules_run_on_the_simulated_wall_clock() -> None:
    bot = Cronned("c1")
    run_backtest(bot, walk(60))
    t0 = T0 / SECOND
    assert bot.ticks == [t0 + 15, t0 + 30, t0 + 45, t0 + 60]


def test_several_symbols_and_bad_setups() -> None:
    candles = walk(50, symbol="BTC-USD") + walk(50, symbol="ETH-USD", seed=2)
    result = run_backtest(SmaCross("b1", symbols=["ETH-USD"], fast=2, slow=5), candles)
    assert {f.symbol for f in result.report().fills} == {"ETH-USD"}
    assert result.symbols == ["BTC-USD", "ETH-USD"]
    with pytest.raises(ConfigError, match="no candles of SOL-USD"):
        run_backtest(SmaCross("b1", symbols=["SOL-USD"]), candles)

    class Minutes(BuyOnce):
        candle_interval = "1m"

    with pytest.raises(ConfigError, match="wants 1m candles of BTC-USD, the data are 1s"):
        run_backtest(Minutes("b1"), CANDLES)

    class Tickers(Bot):
        symbols = ("BTC-USD",)
        channels: ClassVar[tuple[str, ...]] = ("tickers",)

        def on_ticker(self, t: Any) -> None:
            pass

    with pytest.raises(ConfigError, match="no tickers"):
        run_backtest(Tickers("t"), CANDLES)
    with pytest.raises(ConfigError, match="no candles to backtest"):
        run_backtest(SmaCross("b1"), [])
    with pytest.raises(ConfigError, match="cash"):
        run_backtest(SmaCross("b1"), CANDLES, cash="lots")


class BuysAtStart(Bot):
    symbols = ("BTC-USD",)

    async def on_start(self) -> None:
        self.state["order"] = await self.buy("BTC-USD", "1")


def test_an_order_placed_in_on_start_fills_at_the_first_open() -> None:
    bot = BuysAtStart("s1")
    (fill,) = run_backtest(bot, CANDLES).report().fills
    assert (fill.ts, fill.price) == (CANDLES[0].open_time, CANDLES[0].open)
    assert bot.state["order"].status is OrderStatus.FILLED
