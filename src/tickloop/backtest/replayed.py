"""Backtests on a recording: unchanged bots on the replayed live path, in simulated time.

.. code-block:: python

    result = ReplayBacktest(SmaCross("sma"), "rec").run_sync()
    result.report().metrics["pnl"]

The recording (a ``tickloop record`` directory, or cryptofeed's files) is played by
:class:`~tickloop.replay.Replay` into a :class:`~tickloop.StreamClient`, as fast as the CPU
allows, and one :class:`~tickloop.runtime.Engine` hosts the bots on that client as it would
live: the same session, codecs, books, bus, engine dispatch and
:class:`~tickloop.runtime.PaperExecutor` (the paper matcher on the replayed books, with the
fees, latency and fill rule given). What differs from live is the clock: a
:class:`~tickloop.runtime.SimClock` whose time is the recording's. Before each recorded record
is handed to the client, the clock moves to that record's receive time, firing every timer due
by then (the bots' ``tick`` on ``every``/cron, venue-call timeouts, the paper latency, the
loop-lag monitor, the equity snapshots): nothing sleeps, and a tick sees exactly the frames
received before its time. When timers fired, the clock stays at the last one's time for that
record: the tasks those timers woke run at the replay's next turn of the event loop (after the
record), and so read the time they were woken at, not the gap to the next frame later (the
loop-lag monitor, on this clock, then measures no lag a quiet market would cause).

Equity is the engine's own snapshot (``bot.equity.<id>``) every ``equity_every`` simulated
seconds, marked to the replayed books' mids, plus the starting cash at the first record and a
last point at the end; the metrics are the candle backtests' (:mod:`tickloop.backtest.metrics`)
with that interval as the bar. Client order ids are ``<bot>-<n>``; the replay is deterministic
(:mod:`tickloop.replay.transport`), so the same recording and parameters give the same orders,
fills, equity and metrics on every run (:meth:`BacktestResult.digest`).

What the bots see first: the engine routes market data to a bot once it has started, as live,
and the replay runs ahead while the engine starts (a few frames between its subscription
answers and its bots' start, ``batch`` at a time), so a bot may miss the first few frames it
would have seen live. A recording of another client (cryptofeed's) does not wait for the
engine's subscriptions as tickloop's own does: there the first data frame waits for the
engine's start (or for it to ask for a recorded REST answer, which comes in the data's
order), so the bots see it from the first frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..bus import Bus
from ..exceptions import ConfigError
from ..models import Equity
from ..record.format import Record, RecordKind
from ..record.reader import Recording, open_recording
from ..replay.transport import Replay
from ..runtime.bot import Bot
from ..runtime.clock import SimClock
from ..runtime.engine import Engine
from ..runtime.executor import PaperExecutor
from ..runtime.risk import RiskLimits
from ..venues import stream_codec
from ..venues.base import Channel, Subscribed
from . import metrics as m
from .runner import BacktestResult, RunLedger, _decimal, _metrics

__all__ = ["ReplayBacktest", "is_recording"]

_NS = 1_000_000_000


def is_recording(paths: list[str]) -> bool:
    """Whether ``paths`` name a recording (a tickloop recording directory, or cryptofeed
    ``.ws`` / ``.http`` files) rather than candle CSVs."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        p = Path(paths[0])
        return (p / "index.json").exists() or any(p.glob("seg-*.tlr.zst"))
    return bool(paths) and all(".ws." in Path(p).name or ".http." in Path(p).name
                               for p in paths)


def recorded_book_depth(recording: Recording) -> int | None:
    """The book depth the recording's subscription answers name (the deepest), None when
    none does (a tickloop recording's client chose its own; Binance and Coinbase name none)."""
    if recording.source == "tickloop":
        return None
    codec = stream_codec(recording.venue)()
    depth: int | None = None
    for record in recording.records():
        if record.kind is not RecordKind.RECEIVED or b"subscri" not in record.data:
            continue
        try:
            decoded = codec.decode(record.data, 0)
        except Exception:  # a malformed frame names no depth
            continue
        for msg in decoded:
            if isinstance(msg, Subscribed):
                for sub in msg.subscriptions:
                    if sub.channel is Channel.BOOK and sub.depth:
                        depth = max(depth or 0, sub.depth)
    return depth


class _ClockedReplay(Replay):
    """The replay whose pump moves the backtest's clock to each record's receive time (in
    recorded monotonic seconds from the first record) before handing the record over."""

    def __init__(self, recording: Recording, clock: SimClock, origin_ns: int,
                 **options: Any) -> None:
        super().__init__(recording, **options)
        self._sim = clock
        self._origin_ns = origin_ns
        self.last_ns = origin_ns

    def _records(self) -> Iterator[Record]:
        clock = self._sim
        origin = self._origin_ns
        for record in super()._records():
            mono = record.mono_ns
            if mono > self.last_ns:
                self.last_ns = mono
                when = (mono - origin) / _NS
                deadline = clock.next_deadline()
                if deadline is None or deadline > when:
                    clock.advance_to(when)
                else:
                    # the timers due by then fire first, in order; the clock stays at the
                    # last one's time, so the tasks they woke (which run at the replay's next
                    # turn of the loop, after this record) are not late by the gap to it
                    while deadline is not None and deadline <= when:
                        clock.advance_to(deadline)
                        deadline = clock.next_deadline()
            yield record


class ReplayBacktest:
    """Runs ``bots`` on ``recording`` (see the module docstring).

    ``cash`` each bot starts with; ``fee`` (a fraction of the notional) on every fill, or
    ``maker_fee`` / ``taker_fee`` apart; ``latency`` (simulated seconds) before each paper
    placement or cancel; ``fill_at_touch`` the paper fill rule; ``risk`` the engine-wide limits;
    ``equity_every`` (whole simulated
    seconds) the equity interval, the metrics' bar; ``stagger``, ``monitor_interval`` and
    ``call_timeout`` go to the engine (simulated seconds); ``batch`` is how many records the
    replay hands over between two turns of the event loop (1: the bots' tasks run after every
    frame); ``book_depth`` the depth of the engine's book subscriptions, by default the depth
    the recording's subscription answers name (a checksummed book verifies only at the depth
    it was recorded at: cryptofeed's Kraken recording is at 1000), else the engine's 10.
    """

    def __init__(
        self,
        bots: Bot | Iterable[Bot],
        recording: Recording | str | Path | list[str | Path],
        *,
        cash: Decimal | str | int = 10_000,
        fee: Decimal | str | int = Decimal("0.001"),
        maker_fee: Decimal | str | int | None = None,
        taker_fee: Decimal | str | int | None = None,
        latency: float = 0.0,
        fill_at_touch: bool = False,
        risk: RiskLimits | None = None,
        equity_every: int = 1,
        stagger: float = 0.0,
        monitor_interval: float = 1.0,
        call_timeout: float = 30.0,
        batch: int = 1,
        book_depth: int | None = None,
    ) -> None:
        self.bots = [bots] if isinstance(bots, Bot) else list(bots)
        if not self.bots:
            raise ConfigError("no bot to backtest", field="bots")
        if isinstance(equity_every, bool) or not isinstance(equity_every, int) \
                or equity_every < 1:
            raise ConfigError(f"equity_every must be a whole number of seconds >= 1, got "
                              f"{equity_every!r}", field="equity_every")
        self.recording = recording if isinstance(recording, Recording) else \
            open_recording(recording)
        self.cash = _decimal(cash, "cash")
        base_fee = _decimal(fee, "fee")
        self.maker_fee = base_fee if maker_fee is None else _decimal(maker_fee, "maker_fee")
        self.taker_fee = base_fee if taker_fee is None else _decimal(taker_fee, "taker_fee")
        self.latency = latency
        self.fill_at_touch = fill_at_touch
        self.risk = risk
        self.equity_every = equity_every
        self.stagger = stagger
        self.monitor_interval = monitor_interval
        self.call_timeout = call_timeout
        self.batch = batch
        self.book_depth = book_depth
        self.engine: Engine | None = None
        self.replay: Replay | None = None

    def run_sync(self) -> BacktestResult:
        """:meth:`run` on a fresh event loop."""
        out: list[BacktestResult] = []

        async def main() -> None:
            out.append(await self.run())  # not the task's result (see Backtest.run_sync)

        asyncio.run(main())
        return out[0]

    async def run(self) -> BacktestResult:
        """Replay the whole recording through the bots, on the running loop."""
        recording = self.recording
        first = next(iter(recording.records()), None)
        if first is None:
            raise ConfigError("the recording holds no record", field="recording")
        origin = first.mono_ns
        t0 = first.wall_ns
        clock = SimClock(0.0, epoch=t0 / _NS)
        replay = _ClockedReplay(recording, clock, origin, batch=self.batch)
        started = False
        if recording.source != "tickloop":
            # A recording of another client: the recorded data does not wait for the engine's
            # subscriptions as its own recording's does, so the first data frame waits for the
            # engine to have started (or to wait for a recorded REST answer, which comes in
            # the data's order): the bots then see the recording from its first frame.
            replay._gate = lambda: started or replay.rest_pending()
        self.replay = replay
        feed = replay.client()
        executor = PaperExecutor(maker_fee=self.maker_fee, taker_fee=self.taker_fee,
                                 latency=self.latency, fill_at_touch=self.fill_at_touch)
        ledger = RunLedger(self.bots)

        bus = Bus(wall_clock=clock.now_ns)
        engine = Engine(self.bots, venue=recording.venue, feed=feed, bus=bus, clock=clock,
                        executor=executor, cash=self.cash, risk=self.risk,
                        stagger=self.stagger, equity_every=float(self.equity_every),
                        monitor_interval=self.monitor_interval,
                        call_timeout=self.call_timeout, client_ids=ledger.client_id,
                        book_depth=self.book_depth or recorded_book_depth(recording) or 10)
        self.engine = engine
        reports = ledger.reports
        symbols = sorted({s for b in self.bots for s in b.symbols})

        def exposed(bot: str) -> bool:
            return any(engine.position(bot, s).size for s in symbols)

        def on_equity(event: Any) -> None:
            snap: Equity = event.payload
            report = reports.get(snap.bot or "")
            if report is not None:
                report.equity_ts.append(snap.ts)
                report.equity.append(snap.equity)
                report.exposed.append(exposed(report.bot))

        for report in reports.values():
            report.equity_ts.append(t0)
            report.equity.append(self.cash)
            report.exposed.append(False)
        try:
            async with bus, feed:
                # subscribed before the engine starts its bots: every order, fill and equity
                # snapshot of the run is seen
                ledger.follow(bus)
                bus.subscribe("bot.equity.*", handler=on_equity,
                              name="tickloop-backtest-equity")
                await engine.start()
                started = True
                replay._wake()
                await replay.wait()
                for _ in range(8):  # the tasks the last records woke
                    await asyncio.sleep(0)
                end = replay.last_ns
                clock.advance_to((end - origin) / _NS)
                end_wall = clock.now_ns()
                for bot in self.bots:
                    report = reports[bot.id]
                    if report.equity_ts[-1] < end_wall:
                        report.equity_ts.append(end_wall)
                        report.equity.append(engine.portfolio(bot.id).equity_value)
                        report.exposed.append(exposed(bot.id))
                    report.positions = engine.portfolio(bot.id).positions()
                await engine.close()
        finally:
            await engine.close()
            await feed.aclose()  # the engine does not own a feed it was given
            await replay.aclose()
        ledger.close()
        for bot in self.bots:
            report = reports[bot.id]
            report.trades = m.round_trips(report.fills)
            report.metrics = _metrics(report, self.cash, self.equity_every)
        return BacktestResult(bots=reports, bar_seconds=self.equity_every, candles=0,
                              start_ts=t0, end_ts=reports[self.bots[0].id].equity_ts[-1],
                              symbols=symbols, frames=replay.stats.frames)
