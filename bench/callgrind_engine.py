"""Instructions per market event in the engine process, for callgrind: bench_runtime's 500 bots
fed from a recording of the sim, no socket.

``bench_runtime.py`` measures CPU time per market event against the sim in a child process,
which the machine's load moves. This script runs the same engine-side path with no socket and
no clock in the way: a recording of the sim (20 symbols, trades and books, made once with
``--record``) is replayed (:class:`tickloop.replay.Replay`: WsSession -> sim codec -> trade
continuity / book synchroniser -> StreamClient -> bus -> Engine fan-out) into an Engine hosting
``bench_runtime.make_bots(500, ...)``: 60% coroutine handlers, 30% plain, 10% also on books.
What is left out is what does not grow with the event rate: the bots' ticks (their ``every``
is cleared, so no paper orders are placed), the loop monitor's wake-ups (its interval is an
hour) and the socket read itself.

Only the first ``frames`` data frames of the recording are played, so two runs (N and 3N
frames) share imports, the recording's set-up and the engine's start; the difference of their
instruction counts over the difference of their market events is the engine's instructions per
market event::

    .venv/bin/python bench/callgrind_engine.py --record /tmp/engine-rec      # once
    for n in 2000 6000; do
        valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n .venv/bin/python \\
            bench/callgrind_engine.py /tmp/engine-rec $n 2>&1 | grep -E 'Collected|events'
    done
    # (Collected at 6000 - Collected at 2000) / (events at 6000 - events at 2000) = Ir per event

``--profile`` runs the same replay under cProfile instead and prints the top functions by own
time (where the instructions go, by Python function). The script prints the market events
published, the bot handler calls made and a digest of what every bot's handlers received (in
order, with ``--digest``): two trees that deliver the same events to the same bots in the
same order print the same digest.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import logging
import pstats
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_runtime
from bench.bench_runtime import make_bots
from tickloop.record import RecordKind, open_recording, record
from tickloop.record.format import Record
from tickloop.record.reader import Recording
from tickloop.replay import Replay
from tickloop.runtime import Engine
from tickloop.sim import SimExchange

bench_runtime.RECORDING[0] = True  # the handlers record every delivery here

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"] + [f"C{i:02d}-USD" for i in range(17)]


class Prefix(Recording):
    """The records of ``inner`` up to its ``frames``-th received data frame; with ``only``
    (``"trades"`` or ``"books"``), the sim's trade frames, or its book frames, are skipped
    (and not counted), to see what each kind costs."""

    def __init__(self, inner: Recording, frames: int, only: str | None = None) -> None:
        super().__init__(inner.meta, inner.source)
        self.inner = inner
        self.frames = frames
        self.only = only

    def records(self) -> Iterator[Record]:
        left = self.frames
        skip = {"trades": b'"type":"book_', "books": b'"type":"trade"'}.get(self.only or "")
        for rec in self.inner.records():
            if rec.kind is RecordKind.RECEIVED:
                if skip is not None and skip in rec.data:
                    continue
                if left == 0:
                    return
                left -= 1
            yield rec


async def make_recording(out: Path, seconds: float, rate: float) -> int:
    async with SimExchange(seed=7, symbols=SYMBOLS, rate=rate) as ex:
        stats = await record(
            out,
            seconds=seconds,
            venue="sim",
            url=ex.ws_url,
            rest_url=ex.rest_url,
            symbols=SYMBOLS,
            channels=["trades", "book"],
        )
    return stats.frames


async def replay(
    path: Path, frames: int, deliveries: bool, only: str | None = None
) -> tuple[int, int, str]:
    """Play ``frames`` data frames into the 500-bot engine: (market events published, bot
    handler calls, digest of every bot's deliveries)."""
    logging.getLogger("tickloop.replay").setLevel(logging.ERROR)
    bots = make_bots(500, SYMBOLS, bad=False)
    for bot in bots:
        bot.every = None  # no ticks: only the per-event path is measured
    rec = Prefix(open_recording(path), frames, only)
    async with Replay(rec) as rp:
        feed = rp.client()
        async with (
            feed,
            Engine(bots, feed=feed, stagger=0.0, equity_every=0, monitor_interval=3600.0) as engine,
        ):
            gc.collect()
            gc.freeze()
            bench_runtime.LATENCIES.clear()
            await rp.wait()
            await asyncio.sleep(0)
            links = getattr(engine.source, "_links", [])
            events = sum(link.published for link in links)
            calls = 0
            digest = hashlib.sha256()
            for bot in bots:
                st = engine.stats(bot.id)["handlers"]
                for name in sorted(st):
                    if name.startswith("on_"):
                        calls += int(st[name]["count"])
                        digest.update(f"{bot.id}:{name}:{st[name]['count']};".encode())
            if deliveries:
                for item in bench_runtime.LATENCIES:
                    digest.update(repr(item).encode())
            if rp.stats.send_timeouts:
                print(f"warning: {rp.stats.send_timeouts} sends waited for in vain")
    return events, calls, digest.hexdigest()[:16]


def record_deliveries() -> None:
    """Make the bench's handlers record (bot, what, which) instead of latencies: what each bot
    received, in order, for the digest (costs differ: never with callgrind)."""
    log: Any = bench_runtime.LATENCIES

    async def async_trade(self: Any, trade: Any) -> None:
        log.append((self.id, "t", trade.symbol, trade.id, trade.recv_ts))

    def sync_trade(self: Any, trade: Any) -> None:
        log.append((self.id, "t", trade.symbol, trade.id, trade.recv_ts))

    def sync_book(self: Any, book: Any) -> None:
        log.append((self.id, "b", book.symbol, book.sequence, book.bids[:3], book.asks[:3]))

    bench_runtime.AsyncBot.on_trade = async_trade  # type: ignore[method-assign]
    bench_runtime.SyncBot.on_trade = sync_trade  # type: ignore[method-assign]
    bench_runtime.BookBot.on_book = sync_book  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("frames", type=int, nargs="?", default=2000)
    ap.add_argument(
        "--record",
        action="store_true",
        help="record the sim into PATH (20 symbols, trades and books) and exit",
    )
    ap.add_argument("--seconds", type=float, default=6.0, help="with --record")
    ap.add_argument(
        "--rate", type=float, default=100.0, help="with --record: flow steps/s per symbol"
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the replay")
    ap.add_argument(
        "--only",
        choices=("trades", "books"),
        help="play only the trade frames, or only the book frames",
    )
    ap.add_argument(
        "--digest",
        action="store_true",
        help="digest what every bot received, in order (not for callgrind)",
    )
    args = ap.parse_args()
    if args.digest:
        record_deliveries()
    if args.record:
        n = asyncio.run(make_recording(args.path, args.seconds, args.rate))
        print(f"recorded {n:,} frames into {args.path}")
        return
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        events, calls, digest = asyncio.run(replay(args.path, args.frames, args.digest, args.only))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(45)
    else:
        events, calls, digest = asyncio.run(replay(args.path, args.frames, args.digest, args.only))
    print(f"frames {args.frames} events {events} handler_calls {calls} digest {digest}")


if __name__ == "__main__":
    main()
