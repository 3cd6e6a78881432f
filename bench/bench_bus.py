"""The in-process bus against the design it replaces (a per-event asyncio.Queue fan-out).

Run: ``.venv/bin/python bench/bench_bus.py [--quick] [--events N] [--rounds R] [--no-write]``

Every case publishes the same Trade payloads, and every figure is the median of ``--rounds``
rounds with the contenders alternated round by round (this machine's absolute numbers drift by
30-50% between runs; the ratios within one run are what to read):

* **fan-out**: deliveries/s to 1 and 10 subscribers that read with ``async for``. Baseline: the
  platform's design, one ``asyncio.Queue(1000)`` per subscriber, ``put_nowait`` to each per event,
  one consumer task per queue (PERF.md's "asyncio fan-out" rows), each put in a plain
  ``try``/``except QueueFull`` (the cheapest way to drop silently). The producer yields to the
  loop after every event ("per event"), or after every 100 ("bursts of 100"); the bus case
  calls ``bus.publish`` once per event in both; "batches of 100" uses ``bus.publish_many``.
* **the pure-Python floor** (a reference, not a contender): the least a pure-Python bus can do
  per event (``_Floor``), one subscriber, bursts of 100, against the same queue baseline.
* **sync handlers**: 10 subscriptions with a sync handler vs calling the same 10 functions in a
  plain loop, per event and in batches.
* **publish latency**: each ``publish`` call timed (``perf_counter_ns``) with 10 reading
  subscribers, and with 9 reading plus one that never reads (it fills up, then drops every
  event): p50 / p99, and the readers' deliveries/s.

Writes ``bench/results/bus.json`` and the table into ``docs/bus.md`` (between the
``bench:bus`` markers) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import platform
import statistics
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tickloop.bus import Bus
from tickloop.bus.events import Event
from tickloop.models import Side, Trade

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "trade.sim.BTC-USD"
BEGIN, END = "<!-- bench:bus -->", "<!-- /bench:bus -->"


def payloads(n: int) -> list[Trade]:
    return [
        Trade(venue="sim", symbol="BTC-USD", id=i, price=Decimal("60000.5"), size=Decimal("0.01"),
              side=Side.BUY, ts=i)
        for i in range(n)
    ]


# ------------------------------------------------------------------------------ contenders


async def queue_fanout(items: list[Trade], subs: int, burst: int) -> float:
    """The platform's design: put_nowait to every queue, a consumer task per queue."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(1000) for _ in range(subs)]
    counts = [0] * subs
    stop = object()

    async def consume(i: int, q: asyncio.Queue[Any]) -> None:
        n = 0
        while True:
            item = await q.get()
            if item is stop:
                counts[i] = n
                return
            n += 1

    tasks = [asyncio.ensure_future(consume(i, q)) for i, q in enumerate(queues)]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    k = 0
    for item in items:
        for q in queues:
            # That platform drops silently. A plain try/except (free when nothing is raised),
            # not contextlib.suppress, whose context manager costs more than the put itself
            # and would flatter the bus (hence the noqa: ruff's SIM105 prefers suppress).
            try:  # noqa: SIM105
                q.put_nowait(item)
            except asyncio.QueueFull:
                pass
        k += 1
        if k == burst:
            k = 0
            await asyncio.sleep(0)
    for q in queues:
        await q.put(stop)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    assert sum(counts) == subs * len(items), counts
    return subs * len(items) / elapsed


async def bus_fanout(
    items: list[Trade], subs: int, burst: int, batch: bool = False, reads: str = "event"
) -> float:
    async with Bus() as bus:
        subscriptions = [bus.subscribe("trade.*", maxsize=1000) for _ in range(subs)]
        counts = [0] * subs
        n_items = len(items)

        async def consume(i: int) -> None:
            n = 0
            if reads == "batch":
                async for events in subscriptions[i].batches():
                    n += len(events)
                    if n == n_items:
                        break
            else:
                async for _ in subscriptions[i]:
                    n += 1
                    if n == n_items:
                        break
            counts[i] = n

        tasks = [asyncio.ensure_future(consume(i)) for i in range(subs)]
        await asyncio.sleep(0)
        publish = bus.publish
        t0 = time.perf_counter()
        if batch:
            publish_many = bus.publish_many
            for start in range(0, n_items, burst):
                publish_many(TOPIC, items[start:start + burst])
                await asyncio.sleep(0)
        else:
            k = 0
            for item in items:
                publish(TOPIC, item)
                k += 1
                if k == burst:
                    k = 0
                    await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        dropped = sum(s.dropped for s in subscriptions)
    assert dropped == 0 and sum(counts) == subs * n_items, (counts, dropped)
    return subs * n_items / elapsed


class _Floor:
    """The least a bus can do per event in pure Python: the envelope (the bus's own ``Event``
    struct: a counter, one clock read), one bounded deque with a waiter future, and an
    ``async def __anext__`` that pops it. No policies, counters, patterns, notices or
    backpressure: a reference for how far the real bus is from the cheapest possible design,
    not a contender."""

    def __init__(self, maxsize: int) -> None:
        self.buffer: deque[Event] = deque()
        self.maxsize = maxsize
        self.waiter: asyncio.Future[None] | None = None
        self.ids = itertools.count(1)

    def publish(self, topic: str, payload: Any) -> Event:
        mono = time.monotonic_ns()
        event = Event("trade", topic, next(self.ids), "floor", mono, mono, payload)
        buffer = self.buffer
        if len(buffer) < self.maxsize:
            buffer.append(event)
            waiter = self.waiter
            if waiter is not None:
                self.waiter = None
                waiter.set_result(None)
        return event

    def __aiter__(self) -> _Floor:
        return self

    async def __anext__(self) -> Event:
        while True:
            buffer = self.buffer
            if buffer:
                return buffer.popleft()
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            await waiter


async def floor_fanout(items: list[Trade], burst: int) -> float:
    """One :class:`_Floor` subscriber read with ``async for``, published as ``bus_fanout``."""
    floor = _Floor(1000)
    n_items = len(items)
    count = 0

    async def consume() -> None:
        nonlocal count
        async for _ in floor:
            count += 1
            if count == n_items:
                break

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    publish = floor.publish
    t0 = time.perf_counter()
    k = 0
    for item in items:
        publish(TOPIC, item)
        k += 1
        if k == burst:
            k = 0
            await asyncio.sleep(0)
    await task
    elapsed = time.perf_counter() - t0
    assert count == n_items
    return n_items / elapsed


def _handlers(n: int) -> tuple[list[Callable[[Any], None]], list[int]]:
    counts = [0] * n

    def make(i: int) -> Callable[[Any], None]:
        def handler(event: Any) -> None:
            counts[i] += 1

        return handler

    return [make(i) for i in range(n)], counts


async def plain_calls(items: list[Trade], subs: int) -> float:
    handlers, counts = _handlers(subs)
    t0 = time.perf_counter()
    for item in items:
        for h in handlers:
            h(item)
    elapsed = time.perf_counter() - t0
    assert sum(counts) == subs * len(items)
    return subs * len(items) / elapsed


async def bus_handlers(items: list[Trade], subs: int, batch: int = 0) -> float:
    handlers, counts = _handlers(subs)
    async with Bus() as bus:
        for h in handlers:
            bus.subscribe("trade.*", handler=h)
        t0 = time.perf_counter()
        if batch:
            for start in range(0, len(items), batch):
                bus.publish_many(TOPIC, items[start:start + batch])
        else:
            publish = bus.publish
            for item in items:
                publish(TOPIC, item)
        elapsed = time.perf_counter() - t0
    assert sum(counts) == subs * len(items)
    return subs * len(items) / elapsed


async def latency(items: list[Trade], stalled: bool) -> dict[str, float]:
    """Each publish timed, 10 subscribers (one of them never reading when ``stalled``)."""
    async with Bus() as bus:
        readers = [bus.subscribe("trade.*", maxsize=1000) for _ in range(9 if stalled else 10)]
        stuck = bus.subscribe("trade.*", maxsize=1000) if stalled else None
        n_items = len(items)
        counts = [0] * len(readers)

        async def consume(i: int) -> None:
            n = 0
            async for _ in readers[i]:
                n += 1
                if n == n_items:
                    break
            counts[i] = n

        tasks = [asyncio.ensure_future(consume(i)) for i in range(len(readers))]
        await asyncio.sleep(0)
        samples = [0] * n_items
        clock = time.perf_counter_ns
        publish = bus.publish
        t0 = time.perf_counter()
        for j, item in enumerate(items):
            a = clock()
            publish(TOPIC, item)
            samples[j] = clock() - a
            if j % 100 == 99:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        if stuck is not None:
            assert stuck.dropped == n_items - 1000
    assert all(c == n_items for c in counts)
    samples.sort()
    return {
        "p50_ns": samples[len(samples) // 2],
        "p99_ns": samples[int(len(samples) * 0.99)],
        "reader_deliveries_per_s": len(readers) * n_items / elapsed,
    }


# ------------------------------------------------------------------------------------ runner


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


async def run(events: int, rounds: int) -> dict[str, Any]:
    items = payloads(events)
    cases: dict[str, Callable[[], Awaitable[float]]] = {}
    for subs in (1, 10):
        for burst, label in ((1, "per event"), (100, "bursts of 100")):
            cases[f"queue {subs} {label}"] = (
                lambda s=subs, b=burst: queue_fanout(items, s, b))
            cases[f"bus {subs} {label}"] = (
                lambda s=subs, b=burst: bus_fanout(items, s, b))
        cases[f"bus {subs} batches of 100"] = (
            lambda s=subs: bus_fanout(items, s, 100, batch=True))
        cases[f"bus {subs} bursts of 100, batch reads"] = (
            lambda s=subs: bus_fanout(items, s, 100, reads="batch"))
        cases[f"bus {subs} batches of 100, batch reads"] = (
            lambda s=subs: bus_fanout(items, s, 100, batch=True, reads="batch"))
    cases["floor 1 bursts of 100"] = lambda: floor_fanout(items, 100)
    cases["plain calls 10"] = lambda: plain_calls(items, 10)
    cases["bus handlers 10"] = lambda: bus_handlers(items, 10)
    cases["bus handlers 10 batches of 100"] = lambda: bus_handlers(items, 10, batch=100)
    results: dict[str, list[float]] = {name: [] for name in cases}
    lat: dict[str, list[dict[str, float]]] = {"readers only": [], "one stalled": []}
    for r in range(rounds):
        names = list(cases) if r % 2 == 0 else list(reversed(cases))
        for name in names:
            gc.collect()
            results[name].append(await cases[name]())
        for stalled in ((False, True) if r % 2 == 0 else (True, False)):
            gc.collect()
            lat["one stalled" if stalled else "readers only"].append(
                await latency(items, stalled))
    medians = {name: median_of(v) for name, v in results.items()}
    latency_medians = {
        k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in lat.items()
    }
    return {
        "events": events,
        "rounds": rounds,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "deliveries_per_s": medians,
        "runs": results,
        "latency": latency_medians,
    }


def table_rows(res: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    m = res["deliveries_per_s"]
    runs = res["runs"]

    def ratio(bus_case: str, base_case: str) -> str:
        # the median of the rounds' ratios: each round measures both on the same load
        pairs = zip(runs[base_case], runs[bus_case], strict=True)
        return f"{statistics.median(b / a for a, b in pairs):.2f}x"

    rows = []
    for subs in (1, 10):
        for label in ("per event", "bursts of 100"):
            base = m[f"queue {subs} {label}"]
            bus = m[f"bus {subs} {label}"]
            # (both rows publish each event with its own call; they differ in how often the
            # producer gives the loop a turn)
            shown = "a loop turn after every event" if label == "per event" else label
            rows.append([f"{subs} sub, {shown}", f"{base / 1e6:.2f}M", f"{bus / 1e6:.2f}M",
                         ratio(f"bus {subs} {label}", f"queue {subs} {label}")])
        base = m[f"queue {subs} bursts of 100"]
        for key, label in (
            ("bursts of 100, batch reads", "bursts of 100, reader takes batches"),
            ("batches of 100", "publish_many of 100"),
            ("batches of 100, batch reads", "publish_many of 100, reader takes batches"),
        ):
            bus = m[f"bus {subs} {key}"]
            rows.append([f"{subs} sub, {label}", f"{base / 1e6:.2f}M", f"{bus / 1e6:.2f}M",
                         ratio(f"bus {subs} {key}", f"queue {subs} bursts of 100")])
        if subs == 1:
            rows.append([
                "1 sub, bursts of 100: the pure-Python floor (reference, not a bus)",
                f"{base / 1e6:.2f}M", f"{m['floor 1 bursts of 100'] / 1e6:.2f}M",
                ratio("floor 1 bursts of 100", "queue 1 bursts of 100"),
            ])
    plain = m["plain calls 10"]
    for name in ("bus handlers 10", "bus handlers 10 batches of 100"):
        label = "10 sync handlers" + (", publish_many of 100" if "batches" in name else "")
        rows.append([f"{label} (vs plain calls)", f"{plain / 1e6:.2f}M",
                     f"{m[name] / 1e6:.2f}M", ratio(name, "plain calls 10")])
    lat = res["latency"]
    lrows = []
    for k in ("readers only", "one stalled"):
        v = lat[k]
        lrows.append([k, f"{v['p50_ns'] / 1000:.2f}", f"{v['p99_ns'] / 1000:.2f}",
                      f"{v['reader_deliveries_per_s'] / 1e6:.2f}M"])
    return rows, lrows


def markdown(res: dict[str, Any]) -> str:
    rows, lrows = table_rows(res)
    out = [
        BEGIN,
        f"Measured {res['date']}, CPython {res['python']}, {res['events']:,} events, median of "
        f"{res['rounds']} alternated rounds (`.venv/bin/python bench/bench_bus.py`); a ratio is "
        "the median of the rounds' ratios.",
        "",
        "| deliveries/s | baseline | bus | ratio |",
        "|---|---|---|---|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += [
        "",
        "| publish, 10 subscribers | p50 µs | p99 µs | readers' deliveries/s |",
        "|---|---|---|---|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in lrows]
    out.append(END)
    return "\n".join(out)


def write_docs(res: dict[str, Any]) -> None:
    page = ROOT / "docs" / "bus.md"
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page}: the {BEGIN} ... {END} markers are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(head + markdown(res) + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k events, 1 round")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    events, rounds = (20_000, 1) if args.quick else (args.events, args.rounds)
    res = asyncio.run(run(events, rounds))
    rows, lrows = table_rows(res)
    console = Console()
    table = Table(title=f"bus vs asyncio.Queue fan-out ({events:,} events, {rounds} rounds)")
    for col in ("deliveries/s", "baseline", "bus", "ratio"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    lt = Table(title="publish latency, 10 subscribers")
    for col in ("case", "p50 µs", "p99 µs", "readers' deliveries/s"):
        lt.add_column(col)
    for r in lrows:
        lt.add_row(*r)
    console.print(lt)
    if not args.no_write:
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "bus.json").write_text(json.dumps(res, indent=2))
        write_docs(res)


if __name__ == "__main__":
    main()
