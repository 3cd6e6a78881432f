"""The backtest driver: unchanged :class:`~tickloop.runtime.Bot` s on candles, in simulated time.

.. code-block:: python

    result = run_backtest(SmaCross("b1", fast=5, slow=20), load_candles("BTC-USD.csv"))
    result.report().metrics["sharpe"]

One :class:`~tickloop.runtime.Engine` hosts the bots, as live, with three things swapped: its
market data is a :class:`~tickloop.backtest.feed.CandleFeed`, its executor the
:class:`~tickloop.backtest.feed.CandleExecutor` (the paper matcher on candle prices), and its
clock a :class:`~tickloop.runtime.SimClock`. The driver walks the candles' instants in time
order; at each instant ``t`` it

1. fires the clock's timers due before ``t`` (ticks on ``every``/cron, venue-call timeouts, the
   loop-lag monitor), one deadline at a time, letting the tasks they woke run in between;
2. moves the clock to ``t`` and closes the candles ending at ``t`` (their prints, then
   ``on_candle``), then fires the timers due at ``t`` (a tick at a bar's close sees that bar);
3. opens the candles starting at ``t``: the orders waiting for a price are filled on the open,
   then the open prints.

"Letting tasks run" is running the event loop until nothing is ready to run, so nothing really
sleeps and no instant is skipped: a day of one-second candles takes as long as its handlers.
The equity of each bot is recorded at every bar close (marked to the close). Client order ids
are ``<bot>-<n>``, so two runs on the same candles give the same orders, fills and metrics, bit
for bit (:meth:`BacktestResult.digest`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from ..exceptions import ConfigError
from ..models import Candle, Fill, Order, Position
from ..runtime.bot import Bot
from ..runtime.clock import SimClock
from ..runtime.engine import Engine
from ..runtime.risk import RiskLimits
from . import metrics as m
from .feed import CandleExecutor, CandleFeed

__all__ = ["Backtest", "BacktestResult", "BotReport", "run_backtest"]

_NS = 1_000_000_000
_BY_OPEN = operator.attrgetter("open_time", "symbol")
_BY_CLOSE = operator.attrgetter("close_time")
_encoder = msgspec.json.Encoder(order="deterministic")


@dataclass(slots=True)
class BotReport:
    """One bot's results: every order (its final state, in the order placed), every fill,
    its final positions, its equity at each bar close (``equity[0]`` is the starting cash at
    the first open) with whether a position was open, its round trips, and the metrics."""

    bot: str
    cls: str
    params: dict[str, Any]
    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    equity_ts: list[int] = field(default_factory=list)
    equity: list[Decimal] = field(default_factory=list)
    exposed: list[bool] = field(default_factory=list)
    trades: list[m.RoundTrip] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BacktestResult:
    """Every bot's :class:`BotReport`, and what was run."""

    bots: dict[str, BotReport]
    bar_seconds: int
    candles: int
    start_ts: int
    end_ts: int
    symbols: list[str]
    #: Frames replayed, for a backtest on a recording (0 on candles).
    frames: int = 0

    def report(self, bot: str | None = None) -> BotReport:
        """The report of ``bot`` (or of the only bot)."""
        if bot is None:
            if len(self.bots) != 1:
                raise ConfigError(f"{len(self.bots)} bots: name one", field="bot")
            return next(iter(self.bots.values()))
        try:
            return self.bots[bot]
        except KeyError:
            raise ConfigError(f"no bot {bot!r} in this backtest", field="bot") from None

    def digest(self) -> str:
        """SHA-256 of every bot's orders, fills, positions, equity curve and metrics: equal
        for two runs exactly when their results are."""
        h = hashlib.sha256()
        for bot_id in sorted(self.bots):
            r = self.bots[bot_id]
            h.update(_encoder.encode([bot_id, r.orders, r.fills, r.positions, r.equity_ts,
                                      [str(e) for e in r.equity], r.exposed, r.metrics]))
        return h.hexdigest()


def _decimal(value: Decimal | str | int, name: str) -> Decimal:
    if isinstance(value, float | bool):
        raise ConfigError(f"{name} must be a Decimal, str or int, got {value!r}", field=name)
    try:
        out = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{name} {value!r} is not a number", field=name) from None
    if not out.is_finite() or out < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}", field=name)
    return out


class RunLedger:
    """What a backtest keeps of its bots' run, from the bus: a report per bot with its fills,
    the latest state of each of its orders, and the run's client order ids (``bot-1``,
    ``bot-2``, ...: the same every run)."""

    def __init__(self, bots: Sequence[Bot]) -> None:
        self.reports = {b.id: BotReport(b.id, f"{type(b).__module__}:{type(b).__qualname__}",
                                        msgspec.to_builtins(b.params)) for b in bots}
        self.orders: dict[str, dict[str, Order]] = {b.id: {} for b in bots}
        self._counters: dict[str, Iterator[int]] = {}

    def client_id(self, bot: str) -> str:
        counter = self._counters.get(bot)
        if counter is None:
            counter = self._counters[bot] = itertools.count(1)
        return f"{bot}-{next(counter)}"

    def on_order(self, event: Any) -> None:
        order = event.payload.order
        book = self.orders.get(event.topic.rpartition(".")[2])
        if book is not None:
            book[order.id] = order

    def on_fill(self, event: Any) -> None:
        report = self.reports.get(event.topic.rpartition(".")[2])
        if report is not None:
            report.fills.append(event.payload)

    def follow(self, bus: Any) -> None:
        """Subscribe to the bots' orders and fills on ``bus``."""
        bus.subscribe("bot.order.*", handler=self.on_order, name="tickloop-backtest-orders")
        bus.subscribe("bot.fill.*", handler=self.on_fill, name="tickloop-backtest-fills")

    def close(self) -> None:
        """Each report takes its bot's orders, in the order they were first seen."""
        for bot, report in self.reports.items():
            report.orders = list(self.orders[bot].values())


class Backtest:
    """Runs ``bots`` on ``candles`` (see the module docstring).

    ``cash`` each bot starts with; ``fee`` (a fraction of the notional) on every fill, or
    ``maker_fee`` / ``taker_fee`` apart; ``slippage``, the fraction a market order pays above
    (buy) or below (sell) the open; ``risk``, the engine-wide limits; ``monitor_interval``
    (simulated seconds) how often the loop-lag monitor wakes; ``call_timeout`` (simulated
    seconds) how long an order may wait for the next open (longer than any gap in the data).
    """

    def __init__(
        self,
        bots: Bot | Iterable[Bot],
        candles: Sequence[Candle],
        *,
        cash: Decimal | str | int = 10_000,
        fee: Decimal | str | int = Decimal("0.001"),
        maker_fee: Decimal | str | int | None = None,
        taker_fee: Decimal | str | int | None = None,
        slippage: Decimal | str | int = 0,
        risk: RiskLimits | None = None,
        venue: str = "backtest",
        monitor_interval: float = 60.0,
        call_timeout: float = 7 * 86_400.0,
        fill_at_touch: bool = False,
    ) -> None:
        self.bots = [bots] if isinstance(bots, Bot) else list(bots)
        if not self.bots:
            raise ConfigError("no bot to backtest", field="bots")
        if not candles:
            raise ConfigError("no candles to backtest on", field="candles")
        self.candles = list(candles)
        self.cash = _decimal(cash, "cash")
        base_fee = _decimal(fee, "fee")
        self.maker_fee = base_fee if maker_fee is None else _decimal(maker_fee, "maker_fee")
        self.taker_fee = base_fee if taker_fee is None else _decimal(taker_fee, "taker_fee")
        self.slippage = _decimal(slippage, "slippage")
        self.risk = risk
        self.venue = venue
        self.monitor_interval = monitor_interval
        self.call_timeout = call_timeout
        self.fill_at_touch = fill_at_touch
        self.engine: Engine | None = None
        steps = {c.close_time - c.open_time for c in self.candles}
        self.bar_seconds = min(steps) // _NS
        if self.bar_seconds < 1:
            raise ConfigError("candles must last at least one second", field="candles")

    def run_sync(self) -> BacktestResult:
        """:meth:`run` on a fresh event loop (what :func:`run_backtest` does)."""
        out: list[BacktestResult] = []

        async def main() -> None:
            # the result is not the task's: asyncio.run formats its main task's repr (result
            # included) when it puts its SIGINT handler back, and a result holds every fill
            out.append(await self.run())

        asyncio.run(main())
        return out[0]

    async def run(self) -> BacktestResult:
        """Run the whole backtest on the running loop (a default asyncio loop)."""
        # (C-level keys: a backtest sorts a million candles twice)
        candles = sorted(self.candles, key=_BY_OPEN)
        t0 = candles[0].open_time
        clock = SimClock(0.0, epoch=t0 / _NS)
        feed = CandleFeed(candles, venue=self.venue, slippage=self.slippage)
        executor = CandleExecutor(feed, maker_fee=self.maker_fee, taker_fee=self.taker_fee,
                                  fill_at_touch=self.fill_at_touch)
        ledger = RunLedger(self.bots)
        engine = Engine(self.bots, venue=self.venue, source=feed, clock=clock,
                        executor=executor, cash=self.cash, risk=self.risk, stagger=0.0,
                        equity_every=0.0, monitor_interval=self.monitor_interval,
                        call_timeout=self.call_timeout, client_ids=ledger.client_id)
        reports = ledger.reports

        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)

        async def settle() -> None:
            """Run the loop until no task is ready (or a few rounds, on a loop that does not
            show its ready queue)."""
            if ready is None:
                for _ in range(8):
                    await asyncio.sleep(0)
                return
            while ready:  # noqa: ASYNC110  (no event to wait for: the loop's own queue)
                await asyncio.sleep(0)

        heap = clock._heap  # peeked (never changed) here: is a timer due before the next step?

        async def fire_until(when: float, inclusive: bool) -> None:
            while True:
                deadline = clock.next_deadline()
                if deadline is None or deadline > when or (not inclusive and deadline == when):
                    return
                clock.advance_to(deadline)
                if ready is None or ready:
                    await settle()

        #: The engine of the last run (its stats, monitor and clock stay readable).
        self.engine = engine
        portfolios = []
        # started as a task: an on_start that places an order waits for the first open,
        # which only the walk below delivers
        starting = asyncio.ensure_future(engine.start())
        await settle()
        if starting.done():
            starting.result()
        try:
            bus = engine.bus
            ledger.follow(bus)
            portfolios = [(reports[b.id], engine.portfolio(b.id)) for b in self.bots]
            curves = [(r.equity_ts.append, r.equity.append, r.exposed.append, p.mark_equity)
                      for r, p in portfolios]
            for report, portfolio in portfolios:
                report.equity_ts.append(t0)
                report.equity.append(portfolio.equity_value)
                report.exposed.append(False)
            prices = feed.prices
            close_bar, open_bar, print_open = feed.close_bar, feed.open_bar, feed.print_open
            # the instants: every open and close time, in order; at each, closes before opens
            n = len(candles)
            opens = [c.open_time for c in candles]
            by_close = sorted(candles, key=_BY_CLOSE)  # stable: ties by open
            closes = [c.close_time for c in by_close]
            end = closes[-1]
            i = j = 0
            while j < n:
                t = closes[j] if i == n or closes[j] <= opens[i] else opens[i]
                now = (t - t0) / _NS
                # 1. the timers due before t, one deadline at a time
                if heap and heap[0][0] < now:
                    await fire_until(now, False)
                    clock.advance_to(now, inclusive=False)
                elif now > clock._now:
                    # nothing due before t (most bars): advance_to would only move the time
                    clock._now = now
                # 2. the candles closing at t
                closed = False
                while j < n and closes[j] == t:
                    close_bar(by_close[j])
                    j += 1
                    closed = True
                    if ready is None or ready:
                        await settle()
                # 3. the timers due at t (a tick at a bar's close sees that bar), the equity
                # fire_until(now, True), inline (every bar): one deadline at a time, read off
                # the heap's head; a cancelled head is dropped by next_deadline, as there
                while heap and heap[0][0] <= now:
                    if heap[0][2].cancelled:
                        clock.next_deadline()
                        continue
                    clock.advance_to(heap[0][0])
                    if ready is None or ready:
                        await settle()
                if closed:
                    for add_ts, add_equity, add_exposed, mark in curves:
                        equity, exposed = mark(prices)
                        add_ts(t)
                        add_equity(equity)
                        add_exposed(exposed)
                # 4. the candles opening at t
                while i < n and opens[i] == t:
                    candle = candles[i]
                    i += 1
                    # the open prints in open_bar, unless it released waiting orders: those
                    # run first
                    if open_bar(candle):
                        await settle()
                        print_open(candle)
                    if ready is None or ready:
                        await settle()
        finally:
            if not starting.done():
                starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await engine.close()
        if not starting.cancelled() and starting.exception() is not None:
            raise starting.exception()  # type: ignore[misc]
        ledger.close()
        for bot in self.bots:
            report = reports[bot.id]
            report.positions = engine.portfolio(bot.id).positions()
            report.trades = m.round_trips(report.fills)
            report.metrics = _metrics(report, self.cash, self.bar_seconds)
        return BacktestResult(bots=reports, bar_seconds=self.bar_seconds, candles=len(candles),
                              start_ts=t0, end_ts=end, symbols=sorted(feed.intervals))


def _floats(values: Sequence[Decimal]) -> list[float]:
    """``float()`` of each value; a value repeated as the same object (the equity of a run of
    flat bars: :meth:`~tickloop.runtime.Portfolio.mark_equity`) is converted once."""
    out: list[float] = []
    last: Decimal | None = None
    value = 0.0
    for v in values:
        if v is not last:
            value = float(v)
            last = v
        out.append(value)
    return out


def _metrics(report: BotReport, cash: Decimal, bar_seconds: int) -> dict[str, Any]:
    curve = _floats(report.equity)
    periods = m.periods_per_year(bar_seconds)
    rets = m.returns(curve)
    annual = m.annualized_return(curve, periods)
    mdd, mdd_bars = m.max_drawdown(curve)
    pnls = [float(t.pnl) for t in report.trades]
    notional = sum((f.price * f.size for f in report.fills), Decimal(0))
    fees = sum((f.fee for f in report.fills), Decimal(0))
    mean_equity = sum(curve) / len(curve) if curve else 0.0
    final = report.equity[-1] if report.equity else cash
    return {
        "orders": len(report.orders),
        "fills": len(report.fills),
        "trades": len(report.trades),
        "bars": len(curve) - 1,
        "start_cash": str(cash),
        "final_equity": str(final),
        "pnl": float(final - cash),
        "total_return": m.total_return(curve),
        "annualized_return": annual,
        "sharpe": m.sharpe(rets, periods),
        "sortino": m.sortino(rets, periods),
        "calmar": m.calmar(annual, mdd),
        "max_drawdown": mdd,
        "max_drawdown_bars": mdd_bars,
        "max_drawdown_seconds": mdd_bars * bar_seconds,
        "win_rate": m.win_rate(pnls),
        "profit_factor": m.profit_factor(pnls),
        "expectancy": m.expectancy(pnls),
        "exposure": (sum(report.exposed[1:]) / (len(report.exposed) - 1)
                     if len(report.exposed) > 1 else 0.0),
        "turnover": float(notional) / mean_equity if mean_equity > 0 else 0.0,
        "fees": float(fees),
    }


def run_backtest(bots: Bot | Iterable[Bot], candles: Sequence[Candle],
                 **options: Any) -> BacktestResult:
    """:class:`Backtest` ``(bots, candles, **options).run()`` on a fresh event loop."""
    return Backtest(bots, candles, **options).run_sync()
