"""``feed.books`` end to end: sim book updates -> StreamClient -> synchroniser -> consumer.

The embedded exchange runs in a child process (``python -m tickloop sim``) at a high flow rate
(default: as fast as it goes, its ceiling); this process runs one StreamClient per row, consumes
``feed.books(symbols, ...)`` for ``--seconds`` after a warm-up, and reports:

* book updates/s **applied** (deltas that went through the synchroniser: sequence check,
  checksum, apply, crossed check) - bounded by what the exchange sends;
* books/s **delivered** to user code (each a ``BookView`` copied at delivery);
* client CPU per applied update (``getrusage`` of this process, user + system): the client's
  own cost, the figure to compare, since the exchange usually sets the pace;
* the age of each delivered book (now minus the exchange timestamp of its last update), p50 and
  p99: what conflation costs in freshness (little: a conflated book is the latest one), and
  what a per-update callback costs when it cannot keep up;
* BookInvalid events (0 expected: no fault is injected here; the tests inject them).

Rows: iterator with ``conflate=None`` (full depth and ``depth=10``), iterator with
``conflate=100``, and a sync callback (``subscribe_books``) with ``conflate=None``.

Two exchange rates by default: its ceiling (throughput and client CPU per update; there the
exchange process is saturated and queues, so the ages include its own backlog) and a paced
2,000 steps/s (freshness at a realistic rate: real venues peak around 8k msgs/s a connection).

Run: ``.venv/bin/python bench/bench_books_e2e.py [--quick] [--seconds S] [--rates R1,R2]``. The
shared machine varies by 30-50% between runs: compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tickloop.client.books import BookView
from tickloop.client.stream import StreamClient

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    name: str
    applied: int
    delivered: int
    seconds: float
    cpu: float
    ages_ms: list[float]
    invalid: int

    @property
    def applied_per_s(self) -> float:
        return self.applied / self.seconds

    @property
    def delivered_per_s(self) -> float:
        return self.delivered / self.seconds

    @property
    def cpu_us_per_update(self) -> float:
        return self.cpu / max(self.applied, 1) * 1e6

    def age(self, q: float) -> float:
        if not self.ages_ms:
            return float("nan")
        ordered = sorted(self.ages_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_sim(rate: float, symbols: list[str]) -> tuple[asyncio.subprocess.Process, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickloop",
        "sim",
        "--port",
        "0",
        "--seed",
        "7",
        "--symbols",
        ",".join(symbols),
        "--rate",
        str(rate),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        if not line:
            raise RuntimeError("tickloop sim exited before printing its address")
        if "WebSocket" in line:
            return proc, line.split()[-1]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    url: str,
    symbols: list[str],
    name: str,
    *,
    conflate: float | None,
    depth: int | None,
    callback: bool,
    seconds: float,
    warmup: float,
) -> Row:
    loop = asyncio.get_running_loop()
    delivered = 0
    ages: list[float] = []
    measuring = False

    def on_view(view: BookView) -> None:
        nonlocal delivered
        if measuring:
            delivered += 1
            ages.append((time.time_ns() - view.ts) / 1e6)

    async with StreamClient("sim", url=url) as feed:
        task: asyncio.Task[None] | None = None
        if callback:
            await feed.subscribe_books(symbols, handler=on_view, depth=depth, conflate=conflate)
        else:

            async def consume() -> None:
                async for view in feed.books(symbols, depth=depth, conflate=conflate):
                    on_view(view)

            task = loop.create_task(consume())
        await asyncio.sleep(warmup)

        def applied() -> int:
            books = feed.stats()["books"]
            return sum(books[s]["applied"] for s in symbols if s in books)

        applied0, cpu0, t0 = applied(), _cpu(), loop.time()
        invalid0 = feed.stats()["book_invalid"]
        measuring = True
        await asyncio.sleep(seconds)
        measuring = False
        applied1, cpu1, t1 = applied(), _cpu(), loop.time()
        invalid = feed.stats()["book_invalid"] - invalid0
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return Row(name, applied1 - applied0, delivered, t1 - t0, cpu1 - cpu0, ages, invalid)


CONTENDERS: list[tuple[str, float | None, int | None, bool]] = [
    ("books()", None, None, False),
    ("books(depth=10)", None, 10, False),
    ("books(conflate=100)", 100.0, None, False),
    ("subscribe_books(sync, depth=10)", None, 10, True),
]


async def run_rate(
    rate: float, symbols: list[str], rounds: int, seconds: float
) -> dict[str, list[Row]]:
    proc, url = await start_sim(rate, symbols)
    results: dict[str, list[Row]] = {name: [] for name, *_ in CONTENDERS}
    try:
        for _ in range(rounds):
            for name, conflate, depth, callback in CONTENDERS:
                row = await measure(
                    url,
                    symbols,
                    name,
                    conflate=conflate,
                    depth=depth,
                    callback=callback,
                    seconds=seconds,
                    warmup=1.0,
                )
                results[name].append(row)
    finally:
        proc.terminate()
        await proc.wait()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per row, one round")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="alternated rounds (median)")
    parser.add_argument(
        "--rates",
        default="100000,2000",
        help="flow steps/s asked, one exchange per rate (100000: its ceiling)",
    )
    parser.add_argument("--symbols", default="BTC-USD")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 3)
    symbols = args.symbols.split(",")
    rates = [float(r) for r in args.rates.split(",")]
    by_rate = {rate: await run_rate(rate, symbols, rounds, seconds) for rate in rates}

    table = Table(
        title=f"feed.books end to end: sim ({','.join(symbols)}) in a child process -> "
        f"StreamClient; {seconds:g} s per row, median of {rounds}"
    )
    for column in (
        "steps/s asked",
        "consumer",
        "updates applied/s",
        "books delivered/s",
        "client CPU us/update",
        "client CPU share",
        "age p50 ms",
        "age p99 ms",
        "BookInvalid",
    ):
        if column == "consumer":
            table.add_column(column, justify="left", no_wrap=True)
        else:
            table.add_column(column, justify="right")

    def med(values: list[float]) -> float:
        return statistics.median(values)

    for rate, results in by_rate.items():
        for name, rows in results.items():
            table.add_row(
                f"{rate:,.0f}",
                name,
                f"{med([r.applied_per_s for r in rows]):,.0f}",
                f"{med([r.delivered_per_s for r in rows]):,.0f}",
                f"{med([r.cpu_us_per_update for r in rows]):.1f}",
                f"{med([r.cpu / r.seconds for r in rows]):.0%}",
                f"{med([r.age(0.5) for r in rows]):.2f}",
                f"{med([r.age(0.99) for r in rows]):.2f}",
                str(sum(r.invalid for r in rows)),
            )
        table.add_section()
    console = Console(width=160)
    console.print(table)
    console.print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}"
    )


if __name__ == "__main__":
    asyncio.run(main())
