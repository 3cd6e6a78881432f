"""The engine's market-data fan-out alone: bus -> engine -> 500 bots, no sim, no socket.

``bench_runtime.py`` measures the whole platform against the sim in a child process; on a
2-core machine the sim, the WebSocket receive, the decode and the books share the CPU with the
fan-out, and the machine's load moves every absolute figure. This benchmark isolates what the
bus and the runtime add per market event: an Engine hosts the same bot mix as
``bench_runtime.py`` (60% coroutine handlers, 30% plain, 10% also on books; each on 1-2 of
``--symbols`` symbols) on a market source that publishes nothing by itself; the benchmark then
publishes trades (and, for every ``--book-every``-th event, a 10-level BookSnapshot) on the
engine's bus round-robin over the symbols, ``--batch`` events per loop turn (what one socket
read delivers), and reads the process's **CPU time per market event** (``time.process_time``,
which the machine's load moves far less than wall time) and the bot handler calls per event.

The baseline, in the same run: the same handlers of the same bots called from a bare loop (a
dict of handler lists per topic; a coroutine handler driven as the engine drives it), with no
bus, no accounting, no isolation and no mailbox: what the fan-out costs above the bots' own
code is the ratio of the two.

``1e6 / (µs per event)`` is the event rate one free core could carry through this part.

Run: ``.venv/bin/python bench/bench_fanout.py [--bots 500] [--symbols 20] [--events 100000]
[--batch 20] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_runtime import make_bots
from tickloop.book.engine import OrderBook
from tickloop.bus import Bus
from tickloop.models import BookSnapshot, Side, Trade
from tickloop.runtime import Engine
from tickloop.runtime.source import MarketWants


class QuietSource:
    """A MarketSource that publishes nothing by itself (the benchmark publishes)."""

    async def start(self) -> None:
        return None

    async def wire(self, bus: Bus, wants: MarketWants) -> None:
        return None

    def book(self, symbol: str) -> OrderBook | None:
        return None

    async def close(self) -> None:
        return None


def market(symbols: list[str], n: int, book_every: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    levels = tuple((Decimal(60000 - i), Decimal("0.5")) for i in range(10))
    asks = tuple((Decimal(60001 + i), Decimal("0.5")) for i in range(10))
    for i in range(n):
        sym = symbols[i % len(symbols)]
        if book_every and i % book_every == book_every - 1:
            out.append((f"book.sim.{sym}", BookSnapshot(venue="sim", symbol=sym, bids=levels,
                                                        asks=asks, sequence=i, ts=i)))
        else:
            out.append((f"trade.sim.{sym}", Trade(
                venue="sim", symbol=sym, id=i, price=Decimal("60000.5"), size=Decimal("0.01"),
                side=Side.BUY if i % 2 else Side.SELL, ts=i, recv_ts=time.time_ns())))
    return out


async def one_round(bots: int, symbols: list[str], events: list[tuple[str, Any]],
                    batch: int) -> dict[str, float]:
    from bench import bench_runtime

    bench_runtime.RECORDING[0] = True  # the handlers record every delivery here

    engine = Engine(make_bots(bots, symbols, bad=False), source=QuietSource(), stagger=0.0,
                    equity_every=0, breaker_errors=10**9)
    async with engine:
        await asyncio.sleep(0.05)
        bus = engine.bus
        publish = bus.publish
        calls0 = _handler_calls(engine)
        bench_runtime.LATENCIES.clear()
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        k = 0
        for topic, payload in events:
            publish(topic, payload)
            k += 1
            if k == batch:
                k = 0
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        calls = _handler_calls(engine) - calls0
        bench_runtime.LATENCIES.clear()
    return {"cpu_us": cpu / len(events) * 1e6, "wall_us": wall / len(events) * 1e6,
            "calls_per_event": calls / len(events),
            "cpu_us_per_call": cpu / max(calls, 1) * 1e6}


async def bare_round(bots: int, symbols: list[str], events: list[tuple[str, Any]],
                     batch: int) -> dict[str, float]:
    """The same bots' handlers called from a plain loop (see the module docstring)."""
    from bench import bench_runtime

    bench_runtime.RECORDING[0] = True  # the handlers record every delivery here

    table: dict[str, list[tuple[Any, bool]]] = {}
    for bot in make_bots(bots, symbols, bad=False):
        for sym in bot.symbols:
            for channel, prefix, name in (("trades", "trade", "on_trade"),
                                          ("books", "book", "on_book")):
                fn = getattr(bot, name, None)
                if channel in bot.channels and fn is not None:
                    table.setdefault(f"{prefix}.sim.{sym}", []).append(
                        (fn, asyncio.iscoroutinefunction(fn)))
    bench_runtime.LATENCIES.clear()
    gc.collect()
    calls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    k = 0
    for topic, payload in events:
        for fn, is_async in table.get(topic, ()):
            calls += 1
            if is_async:
                for _ in fn(payload).__await__():
                    break
            else:
                fn(payload)
        k += 1
        if k == batch:
            k = 0
            await asyncio.sleep(0)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    bench_runtime.LATENCIES.clear()
    return {"cpu_us": cpu / len(events) * 1e6, "wall_us": wall / len(events) * 1e6,
            "calls_per_event": calls / len(events),
            "cpu_us_per_call": cpu / max(calls, 1) * 1e6}


def _handler_calls(engine: Engine) -> int:
    total = 0
    for bot in engine.bots:
        for name, stats in engine.stats(bot.id)["handlers"].items():
            if name.startswith("on_"):
                total += int(stats["count"])
    return total


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bots", type=int, default=500)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--book-every", type=int, default=4,
                    help="every Nth event is a book snapshot (0: trades only)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    names = ["BTC-USD", "ETH-USD", "SOL-USD"] + [f"C{i:02d}-USD" for i in range(args.symbols)]
    symbols = names[: max(args.symbols, 1)]
    events = market(symbols, args.events, args.book_every)
    gc.freeze()
    runs, bare = [], []
    for _ in range(args.rounds):  # alternated, so both see the same load
        runs.append(await one_round(args.bots, symbols, events, args.batch))
        bare.append(await bare_round(args.bots, symbols, events, args.batch))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    bmed = {k: statistics.median(r[k] for r in bare) for k in bare[0]}
    ratio = statistics.median(r["cpu_us"] / b["cpu_us"] for r, b in zip(runs, bare, strict=True))
    print(f"{args.bots} bots, {len(symbols)} symbols, {args.events:,} events "
          f"(1 in {args.book_every} a book), {args.batch} per loop turn, median of "
          f"{args.rounds}: CPU {med['cpu_us']:.2f} µs/event (wall {med['wall_us']:.2f}), "
          f"{med['calls_per_event']:.1f} handler calls/event, "
          f"{med['cpu_us_per_call']:.3f} µs CPU per handler call; "
          f"one core: {1e6 / med['cpu_us']:,.0f} events/s")
    print(f"bare loop calling the same handlers: CPU {bmed['cpu_us']:.2f} µs/event, "
          f"{bmed['calls_per_event']:.1f} calls/event, {bmed['cpu_us_per_call']:.3f} µs per "
          f"call; engine / bare loop: {ratio:.2f}x the CPU per event")


if __name__ == "__main__":
    asyncio.run(main())
