"""``tickloop chaos``: one run of a StreamClient against the embedded exchange under every fault
the exchange can inject, and the figures that say whether tickloop kept its promise.

The run injects its faults one at a time, in a seeded order, while the flow runs: forced
disconnects, stalls longer than the watchdog allows, skipped sequence numbers, truncated frames,
hostile frames (numbers no venue sends, JSON nested too deep), 429 storms during the trade
backfill that follows a disconnect, latency spikes below the watchdog's threshold, and a slow
consumer. After each fault it waits until the client has settled (books valid again, trades
caught up) and checks the fault's *signature* status event appeared exactly once (a Disconnected
for a disconnect, a Stale for a stall, a BookInvalid "gap" for a skip, a Malformed for a bad
frame, a ConsumerDetached for the slow consumer) and that a latency spike raised no false
alarm. At the end the flow is paused and the figures are taken: trades lost and duplicated
against the exchange's own log, book mismatches against its own books, faults not seen exactly
once, then, after everything is closed, tasks, sockets and file descriptors left behind, and
RSS drift. Where they must be zero the command exits 1 if they are not.

Last, three bots run in one :class:`~tickloop.runtime.Engine` on the same exchange: one raises
in a tick, one blocks the loop with ``time.sleep``; each must be one status event naming its bot
(``BotError``, ``LoopBlocked``) and the third bot must run on undisturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .client.stream import StreamClient
from .exceptions import ConfigError
from .models import (
    BookInvalid,
    ConsumerDetached,
    Disconnected,
    Malformed,
    Reconnected,
    Stale,
    Trade,
)
from .sim.exchange import SimExchange

__all__ = ["ChaosConfig", "ChaosReport", "print_report", "run_chaos"]

FAULT_KINDS = (
    "disconnect",
    "stall",
    "skip",
    "malformed",
    "hostile",
    "storm",
    "latency",
)


class ChaosConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How many faults of each kind one run injects (docs/reliability.md)."""

    disconnects: int = 20
    stalls: int = 3
    skips: int = 10
    malformed: int = 10
    hostile: int = 10
    storms: int = 3
    latency_spikes: int = 3
    slow_consumer: bool = True
    bots: bool = True  # a bot that raises and one that blocks the loop, next to a steady one
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    seed: int = 1
    rate: float = 100.0  # flow steps per second per symbol
    settle_timeout: float = 30.0  # a fault whose effects do not settle in this is a failure

    def __post_init__(self) -> None:
        for name in ("disconnects", "stalls", "skips", "malformed", "hostile", "storms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0", field=name)
        if self.latency_spikes < 0:
            raise ConfigError("latency_spikes must be >= 0", field="latency_spikes")
        if not self.symbols:
            raise ConfigError("at least one symbol", field="symbols")


@dataclass
class ChaosReport:
    """The figures of one run (``must_be_zero`` lists those that fail the run when not 0)."""

    config: ChaosConfig
    faults: dict[str, int] = field(default_factory=dict)  # injected, by kind
    trades_checked: int = 0
    trades_lost: int = 0
    trades_duplicated: int = 0
    book_checks: int = 0
    book_mismatches: int = 0
    faults_not_seen_once: int = 0
    false_alarms: int = 0  # status events a latency spike below the watchdog must not cause
    unsettled: int = 0  # faults after which the client did not settle in time
    bots_disturbed: int = 0  # a steady bot that stopped or saw nothing next to the faulty ones
    status_events: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0  # 429s the exchange answered during the storms
    backfilled: int = 0
    leaked_tasks: int = 0
    leaked_fds: int = 0
    leaked_sockets: int = 0
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    MUST_BE_ZERO = (
        "trades_lost",
        "trades_duplicated",
        "book_mismatches",
        "faults_not_seen_once",
        "false_alarms",
        "unsettled",
        "bots_disturbed",
        "leaked_tasks",
        "leaked_fds",
        "leaked_sockets",
    )

    @property
    def rss_drift_mib(self) -> float:
        return self.rss_end_mib - self.rss_start_mib

    @property
    def ok(self) -> bool:
        return all(getattr(self, name) == 0 for name in self.MUST_BE_ZERO)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.MUST_BE_ZERO}
        out.update(
            faults=dict(self.faults),
            trades_checked=self.trades_checked,
            book_checks=self.book_checks,
            rate_limited=self.rate_limited,
            backfilled=self.backfilled,
            status_events=dict(self.status_events),
            rss_start_mib=round(self.rss_start_mib, 1),
            rss_end_mib=round(self.rss_end_mib, 1),
            rss_drift_mib=round(self.rss_drift_mib, 1),
            duration_s=round(self.duration_s, 1),
            notes=list(self.notes),
        )
        return out


def _restored(session: Any) -> bool:
    """Whether a session carries every stream it should, each confirmed by the venue."""
    return bool(session.connected and session.subscriptions <= session.confirmed)


def _fds() -> tuple[int, int]:
    """(file descriptors, of which sockets) this process holds."""
    fds = sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        fds += 1
        sockets += target.startswith("socket:")
    return fds, sockets


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):  # not Linux: the peak instead
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Run:
    def __init__(self, config: ChaosConfig, report: ChaosReport) -> None:
        self.config = config
        self.report = report
        self.status: list[Any] = []
        self.trades: dict[str, list[Trade]] = {s: [] for s in config.symbols}
        self.rng = random.Random(config.seed)

    def count(self, kind: type, predicate: Callable[[Any], bool] | None = None) -> int:
        return sum(
            1 for e in self.status if type(e) is kind and (predicate is None or predicate(e))
        )

    async def until(self, condition: Callable[[], bool], limit: float | None = None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (limit if limit is not None else self.config.settle_timeout)
        while not condition():
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def books_valid(self, feed: StreamClient) -> bool:
        for symbol in self.config.symbols:
            book = feed.book(symbol)
            if book is None or not book.valid:
                return False
        return True

    async def settle(self, feed: StreamClient, ex: SimExchange) -> bool:
        """Books valid and every trade of the exchange's log delivered, with the flow paused
        (a moving target never settles on a loaded machine) after one more trade per symbol;
        the flow resumes afterwards."""
        ex.pause_flow()
        try:
            # One more trade per symbol: a trade lost in transit is found by the id of the next
            # one (ids are contiguous), so a loss at the very end of a burst needs a next trade,
            # as a live market always brings.
            for symbol in self.config.symbols:
                before = len(ex.trades(symbol))
                for _ in range(1000):
                    ex.step(symbol)
                    if len(ex.trades(symbol)) > before:
                        break
            return await self.until(
                lambda: (
                    self.books_valid(feed)
                    and all(self._caught_up(ex, s) for s in self.config.symbols)
                    and all(_restored(session) for session in feed.sessions)
                )
            )
        finally:
            ex.resume_flow()

    def describe(self, feed: StreamClient, ex: SimExchange) -> str:
        """What is not settled yet (for the progress lines)."""
        parts = []
        for symbol in self.config.symbols:
            book = feed.book(symbol)
            state = feed.stats()["books"].get(symbol, {}).get("state")
            if book is None or not book.valid:
                parts.append(f"book {symbol} {state}")
            log = ex.trades(symbol)
            got = self.trades[symbol]
            if log and (not got or got[-1].id != log[-1].id):
                last = got[-1].id if got else None
                parts.append(f"trades {symbol} at {last} of {log[-1].id}")
        for session in feed.sessions:
            if not _restored(session):
                pending = session.subscriptions - session.confirmed
                parts.append(f"{session.name} unconfirmed: {sorted(map(str, pending))[:3]}")
        return ", ".join(parts) or "settled late"

    def _caught_up(self, ex: SimExchange, symbol: str) -> bool:
        log = ex.trades(symbol)
        got = self.trades[symbol]
        return not log or (bool(got) and got[-1].id == log[-1].id)


async def run_chaos(
    config: ChaosConfig | None = None, *, progress: Callable[[str], None] | None = None
) -> ChaosReport:
    """One chaos run (module docstring); the report's ``ok`` says whether every figure that must
    be zero is."""
    config = config if config is not None else ChaosConfig()
    report = ChaosReport(config=config)
    say = progress or (lambda _: None)
    started = time.monotonic()
    gc.collect()
    fds_before, sockets_before = _fds()
    tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
    run = _Run(config, report)
    async with SimExchange(seed=config.seed, symbols=list(config.symbols), rate=config.rate) as ex:
        feed = StreamClient(
            "sim",
            url=ex.ws_url,
            base_wait=0.01,
            max_wait=0.1,
            heartbeat_timeout=1.5,
            ping_interval=0.3,
        )
        async with feed:
            await _chaos(run, feed, ex, say)
            if config.bots:
                say("bots: one raises, one blocks the loop, one trades on")
                await _bot_faults(run, ex)
            report.rss_end_mib = _rss_mib()
    for _ in range(5):  # let closed transports and cancelled tasks finish their callbacks
        await asyncio.sleep(0.01)
    gc.collect()
    fds_after, sockets_after = _fds()
    leftover = {t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()}
    report.leaked_tasks = len(leftover - tasks_before)
    report.leaked_fds = max(0, fds_after - fds_before)
    report.leaked_sockets = max(0, sockets_after - sockets_before)
    report.duration_s = time.monotonic() - started
    return report


async def _chaos(
    run: _Run, feed: StreamClient, ex: SimExchange, say: Callable[[str], None]
) -> None:
    config, report = run.config, run.report
    await feed.subscribe_status(run.status.append, buffer=100_000)
    for symbol in config.symbols:
        await feed.subscribe_trades(symbol, run.trades[symbol].append)

    async def read_books() -> None:
        async for _ in feed.books(list(config.symbols)):
            pass

    reader = asyncio.create_task(read_books(), name="tickloop-chaos-books")
    try:
        if not await run.until(lambda: run.books_valid(feed)):
            report.unsettled += 1
        await run.settle(feed, ex)
        report.rss_start_mib = _rss_mib()
        schedule = (
            ["disconnect"] * config.disconnects
            + ["stall"] * config.stalls
            + ["skip"] * config.skips
            + ["malformed"] * config.malformed
            + ["hostile"] * config.hostile
            + ["storm"] * config.storms
            + ["latency"] * config.latency_spikes
        )
        run.rng.shuffle(schedule)
        for i, kind in enumerate(schedule):
            report.faults[kind] = report.faults.get(kind, 0) + 1
            say(f"[{i + 1}/{len(schedule)}] {kind}")
            check = await _inject(run, feed, ex, kind)
            if not await run.settle(feed, ex):
                report.unsettled += 1
                say(f"  {kind}: did not settle: {run.describe(feed, ex)}")
            # Checked once the client has settled, so an echo of the fault (a second Stale, a
            # second BookInvalid) that comes late is counted too.
            if not check():
                report.faults_not_seen_once += 1
                say(f"  {kind}: its status event was not seen exactly once")
        if config.slow_consumer:
            report.faults["slow_consumer"] = 1
            say("slow consumer")
            detached_before = run.count(ConsumerDetached)

            async def crawl(trade: Trade) -> None:
                await asyncio.sleep(0.05)

            await feed.subscribe_trades(config.symbols[0], crawl, buffer=5)
            seen = await run.until(lambda: run.count(ConsumerDetached) > detached_before)
            await asyncio.sleep(0.2)  # a second detach of the same consumer would show now
            if not seen or run.count(ConsumerDetached) != detached_before + 1:
                report.faults_not_seen_once += 1
            if not await run.settle(feed, ex):
                report.unsettled += 1
        _figures(run, feed, ex)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _inject(run: _Run, feed: StreamClient, ex: SimExchange, kind: str) -> Callable[[], bool]:
    """Inject one fault; returns the check, made once the client settled, that its signature
    status event appeared exactly once."""
    faults = ex.faults
    symbol = run.rng.choice(run.config.symbols)
    if kind in ("disconnect", "storm"):
        before = run.count(Disconnected)
        reconnected = run.count(Reconnected)
        if kind == "storm":
            faults.rate_limit(10, retry_after=0.05)  # the backfill and snapshot calls meet 429s
        await faults.disconnect_all()
        ok = await run.until(lambda: run.count(Reconnected) > reconnected)
        return lambda: (
            ok
            and run.count(Disconnected) == before + 1
            and run.count(Reconnected) == reconnected + 1
        )
    if kind == "stall":
        before = run.count(Stale)
        reconnected = run.count(Reconnected)
        faults.stall(2.0)  # past the watchdog's 1.5 s
        ok = await run.until(lambda: run.count(Stale) > before)
        await run.until(lambda: not faults.stalled(asyncio.get_running_loop().time()))
        return lambda: (
            ok and run.count(Stale) == before + 1 and run.count(Reconnected) == reconnected + 1
        )
    if kind == "skip":

        def gaps() -> int:
            return run.count(BookInvalid, lambda e: e.reason == "gap" and e.symbol == symbol)

        before = gaps()
        faults.skip_sequence(symbol)
        ok = await run.until(lambda: gaps() > before)
        return lambda: ok and gaps() == before + 1
    if kind in ("malformed", "hostile"):
        before = run.count(Malformed)
        sent = ex.stats.malformed_sent + ex.stats.hostile_sent
        if kind == "malformed":
            faults.malformed(1)
        else:
            faults.hostile(1)
        delivered = await run.until(lambda: ex.stats.malformed_sent + ex.stats.hostile_sent > sent)
        ok = delivered and await run.until(lambda: run.count(Malformed) > before)
        return lambda: ok and run.count(Malformed) == before + 1
    # latency: a spike below the watchdog's threshold must raise no alarm at all
    alarms = run.count(Stale) + run.count(Disconnected) + run.count(BookInvalid)
    faults.latency(0.3)
    await asyncio.sleep(0.8)
    faults.latency(0)
    await asyncio.sleep(0.3)
    false = run.count(Stale) + run.count(Disconnected) + run.count(BookInvalid) - alarms
    run.report.false_alarms += false
    return lambda: True


async def _bot_faults(run: _Run, ex: SimExchange) -> None:
    """Three bots in one Engine on the same exchange: one raises in a tick (once), one blocks
    the loop with ``time.sleep`` in a tick (once), one just counts trades. The raise must be one
    BotError naming its bot, the block one LoopBlocked naming its bot, and the third bot must
    not notice either."""
    from .runtime import Bot, Engine

    symbol = run.config.symbols[0]

    class Raises(Bot):
        symbols = (symbol,)
        every = 0.2
        raised = 0

        def tick(self) -> None:
            if not self.raised:
                self.raised += 1
                raise RuntimeError("chaos: a bot that raises")

    class Blocks(Bot):
        symbols = (symbol,)
        every = 0.2
        blocked = 0

        def tick(self) -> None:
            if not self.blocked:
                self.blocked += 1
                time.sleep(0.3)  # what a careless bot does: the whole loop stops

    class Steady(Bot):
        symbols = (symbol,)
        trades = 0

        def on_trade(self, trade: Trade) -> None:
            self.trades += 1

    report = run.report
    ex.resume_flow()  # the figures were taken with the flow paused
    report.faults["bot_raises"] = 1
    report.faults["bot_blocks"] = 1
    events: list[Any] = []
    steady = Steady("steady")
    bots = [Raises("raises"), Blocks("blocks"), steady]
    async with Engine(bots, venue="sim", url=ex.ws_url, stagger=0.1) as engine:
        engine.bus.subscribe(
            ["bot.error.*", "loop.blocked"], handler=events.append, name="chaos-bot-faults"
        )
        await engine.run(seconds=2.0)
        payloads = [e.payload for e in events]
        errors = [p for p in payloads if type(p).__name__ == "BotError"]
        blocked = [p for p in payloads if type(p).__name__ == "LoopBlocked"]
        if [e.bot for e in errors] != ["raises"]:
            report.faults_not_seen_once += 1
        if [b.bot for b in blocked] != ["blocks"]:
            report.faults_not_seen_once += 1
        if engine.status("steady") != "running" or steady.trades == 0:
            report.bots_disturbed += 1
        for name in ("BotError", "LoopBlocked"):
            count = sum(1 for p in payloads if type(p).__name__ == name)
            report.status_events[name] = report.status_events.get(name, 0) + count


def _figures(run: _Run, feed: StreamClient, ex: SimExchange) -> None:
    report = run.report
    ex.pause_flow()
    for symbol in run.config.symbols:
        got = run.trades[symbol]
        ids = [t.id for t in got]
        first = ids[0] if ids else None
        expected = [t for t in ex.trades(symbol) if first is not None and (t.id or 0) >= first]
        want = {t.id: t for t in expected}
        seen: set[int | None] = set()
        for trade in got:
            if trade.id in seen:
                report.trades_duplicated += 1
            seen.add(trade.id)
            truth = want.get(trade.id)
            if truth is None or (truth.price, truth.size, truth.side) != (
                trade.price,
                trade.size,
                trade.side,
            ):
                report.trades_lost += 1  # a trade the log does not have is as bad as a lost one
        report.trades_lost += sum(1 for tid in want if tid not in seen)
        report.trades_checked += len(got)
        book = feed.book(symbol)
        truth_book = ex.book(symbol)
        report.book_checks += 1
        if (
            book is None
            or not book.valid
            or book.sequence != truth_book.sequence
            or book.bids() != list(truth_book.bids)
            or book.asks() != list(truth_book.asks)
        ):
            report.book_mismatches += 1
    report.rate_limited = ex.stats.rate_limited
    report.backfilled = feed.counters.get("backfilled", 0)
    for event in run.status:
        name = type(event).__name__
        report.status_events[name] = report.status_events.get(name, 0) + 1


def print_report(report: ChaosReport) -> None:
    """The figures as a table (rich), the ones that must be zero first."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tickloop chaos", show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("must be", justify="right")
    for name in report.MUST_BE_ZERO:
        value = getattr(report, name)
        shown = f"[red]{value}[/red]" if value else str(value)
        table.add_row(name.replace("_", " "), shown, "0")
    figures = report.figures()
    for name in ("trades_checked", "book_checks", "rate_limited", "backfilled"):
        table.add_row(name.replace("_", " "), str(figures[name]), "")
    table.add_row("faults injected", ", ".join(f"{k} {v}" for k, v in report.faults.items()), "")
    table.add_row(
        "status events", ", ".join(f"{k} {v}" for k, v in sorted(report.status_events.items())), ""
    )
    table.add_row(
        "RSS",
        f"{report.rss_start_mib:.1f} -> {report.rss_end_mib:.1f} MiB ({report.rss_drift_mib:+.1f})",
        "",
    )
    table.add_row("duration", f"{report.duration_s:.1f} s", "")
    console = Console()
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")
    console.print("[green]OK[/green]" if report.ok else "[red]FAILED[/red]")
