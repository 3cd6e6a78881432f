"""``tickloop soak``: a long run of a StreamClient on the embedded exchange, watched for growth.

Trades and books of a few symbols stream at a steady pace (with a disconnect now and then, so
reconnect paths run too) from an exchange in a process of its own (``tickloop sim``: its trade
log grows by design, and must not be mistaken for the client's), while this process samples its
RSS, asyncio tasks and file descriptors every ``interval`` seconds. tracemalloc is on from the
start; the first sample after ``warmup`` seconds is the baseline. When RSS at the end is more
than ``drift_limit_mib`` above the baseline, the report carries tracemalloc's top growth (file
and line, bytes) between the baseline snapshot and the end, which is where a leak would show.
Tasks and descriptors must come back to their baseline once everything is closed.

30 minutes by default, 2 in quick mode (``--quick``). The suite runs the same code path for a
few seconds (tests/test_soak.py); the figures of the last full run are in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .chaos import _fds, _rss_mib
from .client.stream import StreamClient
from .exceptions import ConfigError
from .models import Disconnected, Trade

__all__ = ["SoakReport", "SoakSample", "print_soak", "run_soak"]


@dataclass(frozen=True, slots=True)
class SoakSample:
    at: float  # seconds since the start
    rss_mib: float
    tasks: int
    fds: int
    trades: int  # delivered so far


@dataclass
class SoakReport:
    duration: float
    samples: list[SoakSample] = field(default_factory=list)
    baseline_rss_mib: float = 0.0
    drift_mib: float = 0.0
    drift_limit_mib: float = 0.0
    task_drift: int = 0  # tasks at the end of the run minus at the baseline
    fd_drift: int = 0
    leaked_tasks: int = 0  # after everything is closed
    leaked_fds: int = 0
    trades: int = 0
    disconnects: int = 0
    top_growth: list[str] = field(default_factory=list)  # tracemalloc, when RSS drifted

    @property
    def drifted(self) -> bool:
        return self.drift_mib > self.drift_limit_mib

    @property
    def ok(self) -> bool:
        return not self.drifted and self.leaked_tasks == 0 and self.leaked_fds == 0


async def run_soak(
    duration: float = 1800.0,
    *,
    interval: float = 5.0,
    warmup: float | None = None,
    drift_limit_mib: float = 20.0,
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD", "SOL-USD"),
    rate: float = 50.0,
    disconnect_every: float = 60.0,  # the exchange drops the connection this often (0: never)
    seed: int = 1,
    progress: Callable[[SoakSample], None] | None = None,
) -> SoakReport:
    """One soak run (module docstring)."""
    if duration <= 0 or interval <= 0:
        raise ConfigError("duration and interval must be > 0", field="duration")
    warmup = warmup if warmup is not None else min(60.0, duration / 5)
    report = SoakReport(duration=duration, drift_limit_mib=drift_limit_mib)
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start(1)  # one frame: file and line are what a leak report needs
    gc.collect()
    fds_before, _ = _fds()
    tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
    loop = asyncio.get_running_loop()
    start = loop.time()  # set again once the streams are up
    baseline: tracemalloc.Snapshot | None = None
    baseline_tasks = baseline_fds = 0
    try:
        async with _exchange(seed, symbols, rate, disconnect_every) as url:
            feed = StreamClient("sim", url=url, base_wait=0.01, max_wait=0.2)
            async with feed:
                trades: list[int] = [0]

                def count(trade: Trade) -> None:
                    trades[0] += 1

                def status(event: object) -> None:
                    if isinstance(event, Disconnected):
                        report.disconnects += 1

                await feed.subscribe_status(status)
                await feed.subscribe_trades(list(symbols), count)

                async def read_books() -> None:
                    async for _ in feed.books(list(symbols), conflate=50):
                        pass

                reader = asyncio.create_task(read_books(), name="tickloop-soak-books")
                start = loop.time()
                try:
                    while (now := loop.time()) - start < duration:
                        await asyncio.sleep(min(interval, max(0.0, start + duration - now)))
                        now = loop.time()
                        gc.collect()
                        sample = SoakSample(
                            at=now - start,
                            rss_mib=_rss_mib(),
                            tasks=len(asyncio.all_tasks()),
                            fds=_fds()[0],
                            trades=trades[0],
                        )
                        report.samples.append(sample)
                        if progress is not None:
                            progress(sample)
                        if baseline is None and sample.at >= warmup:
                            baseline = tracemalloc.take_snapshot()
                            report.baseline_rss_mib = sample.rss_mib
                            baseline_tasks, baseline_fds = sample.tasks, sample.fds
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
                report.trades = trades[0]
                if report.samples:
                    last = report.samples[-1]
                    if baseline is None:  # a run shorter than its warm-up: the first sample
                        first = report.samples[0]
                        report.baseline_rss_mib = first.rss_mib
                        baseline_tasks, baseline_fds = first.tasks, first.fds
                    report.drift_mib = last.rss_mib - report.baseline_rss_mib
                    report.task_drift = last.tasks - baseline_tasks
                    report.fd_drift = last.fds - baseline_fds
                if report.drifted and baseline is not None:
                    end = tracemalloc.take_snapshot()
                    for stat in end.compare_to(baseline, "lineno")[:10]:
                        report.top_growth.append(str(stat))
    finally:
        if started_tracing:
            tracemalloc.stop()
    for _ in range(5):
        await asyncio.sleep(0.01)
    gc.collect()
    leftover = {t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()}
    report.leaked_tasks = len(leftover - tasks_before)
    report.leaked_fds = max(0, _fds()[0] - fds_before)
    return report


@contextlib.asynccontextmanager
async def _exchange(
    seed: int, symbols: tuple[str, ...], rate: float, disconnect_every: float
) -> AsyncIterator[str]:
    """``tickloop sim`` in a child process (its WebSocket address), stopped on exit."""
    args = ["--port", "0", "--seed", str(seed), "--rate", f"{rate:g}", "--symbols"]
    args.append(",".join(symbols))
    if disconnect_every > 0:
        args += ["--fault", f"drop_every={disconnect_every:g}"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickloop",
        "sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        url = None
        async with asyncio.timeout(30):
            while url is None:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise ConfigError("tickloop sim did not start", field="sim")
                if line.strip().startswith("WebSocket"):
                    url = line.split()[-1]
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.communicate()


def print_soak(report: SoakReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"tickloop soak ({report.duration:g} s)")
    for column in ("t (s)", "RSS (MiB)", "tasks", "fds", "trades"):
        table.add_column(column, justify="right")
    step = max(1, len(report.samples) // 20)
    for sample in report.samples[::step]:
        table.add_row(
            f"{sample.at:.0f}",
            f"{sample.rss_mib:.1f}",
            str(sample.tasks),
            str(sample.fds),
            str(sample.trades),
        )
    console.print(table)
    console.print(
        f"RSS drift after warm-up: {report.drift_mib:+.1f} MiB (limit {report.drift_limit_mib:g}); "
        f"tasks {report.task_drift:+d}, fds {report.fd_drift:+d}; after close: "
        f"{report.leaked_tasks} tasks, {report.leaked_fds} fds left; "
        f"{report.trades} trades, {report.disconnects} disconnects"
    )
    if report.top_growth:
        console.print("tracemalloc, top growth since the warm-up:")
        for line in report.top_growth:
            console.print(f"  {line}")
    console.print("[green]OK[/green]" if report.ok else "[red]DRIFT[/red]")
