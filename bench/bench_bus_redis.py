"""The Redis Streams bus: throughput one publisher -> one consumer group, and the end-to-end
latency publish -> handler in another process at a paced rate.

A redis-server of its own (``--save '' --appendonly no``) runs on a free loopback port; the
consumer is a child process (``bench_bus_redis.py consume``) with one group subscription and a
sync handler. Each phase has its own stream prefix (a fresh stream). Two publishers, in the
same run, against the same consumer code:

* ``RedisBus`` (``bus.publish``, a plain call: the writer sends batches of XADDs);
* plain redis-py, one ``await r.xadd(...)`` per event (same stream, same msgpack envelope).

Each throughput row times from the first publish until the consumer handled the last event
(events/s end to end) and, apart, how long the publisher took until Redis confirmed everything.
The latency rows publish ``--rate`` events/s for ``--seconds`` and report the handler's
``time.time_ns() - event.ts`` percentiles (one host, one wall clock), and the consumer's
longest garbage collection pause (``gc.callbacks``). They run twice: with the interpreter's
default GC, and with ``gc.freeze()`` called in both processes once they are set up (what a
latency-sensitive process does after start-up: the objects made by the imports then stay out
of every later collection). The tail of the default run is the full (generation 2)
collections, which walk the hundreds of thousands of objects the imports made and stall the
consumer for tens of milliseconds; frozen, a full collection only walks what was made since.

Run: ``.venv/bin/python bench/bench_bus_redis.py [--events N] [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import redis.asyncio as aioredis

from tickloop.bus import Bus, Event
from tickloop.bus.redis import RedisBus
from tickloop.models import Side, Trade

HERE = Path(__file__).resolve()


def trade(i: int) -> Trade:
    return Trade(venue="sim", symbol="BTC-USD", id=i, price=Decimal("64123.45"),
                 size=Decimal("0.0125"), side=Side.BUY, ts=i)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server not found (apt-get install -y redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ---------------------------------------------------------------------------- the consumer


def gc_pauses() -> list[float]:
    """Durations (s) of every garbage collection from now on, appended as they end."""
    pauses: list[float] = []
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    return pauses


async def consume(url: str, group: str, expect: int, latency: bool, freeze: bool) -> None:
    done = asyncio.Event()
    lat: list[int] = []
    count = 0

    def handler(ev: Event) -> None:
        nonlocal count
        count += 1
        if latency:
            lat.append(time.time_ns() - ev.ts)
        if count >= expect:
            done.set()

    async with Bus(url, name=f"bench-{group}", prefix=group, read_count=1000) as bus:
        bus.subscribe("trade.*", group=group, handler=handler, maxsize=5000)
        assert isinstance(bus, RedisBus)
        await bus.ready()
        if freeze:
            gc.freeze()
        pauses = gc_pauses()
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), 300)
        end = time.perf_counter_ns()
    if latency:
        lat.sort()
        n = len(lat)
        longest = int(max(pauses, default=0.0) * 1e9)
        print(f"lat {lat[n // 2]} {lat[int(n * 0.99)]} {lat[-1]} {n} {longest}", flush=True)
    else:
        print(f"done {end}", flush=True)


class Child:
    def __init__(self, url: str, group: str, expect: int, latency: bool,
                 freeze: bool = False) -> None:
        args = [sys.executable, str(HERE), "consume", url, group, str(expect)]
        if latency:
            args.append("latency")
        if freeze:
            args.append("freeze")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)

    def line(self) -> str:
        assert self.p.stdout is not None
        return self.p.stdout.readline().strip()


# ------------------------------------------------------------------------------ publishers


async def run_bus(url: str, n: int) -> tuple[float, float]:
    child = Child(url, "bus", n, latency=False)
    assert await asyncio.to_thread(child.line) == "ready"
    payloads = [trade(i) for i in range(n)]
    # The stream keeps every event of the run: a consumer more than `maxlen` behind would lose
    # the trimmed ones (counted, docs/bus-redis.md) and never see the last event.
    async with Bus(url, name="bench-pub", prefix="bus", maxlen=max(100_000, n)) as bus:
        assert isinstance(bus, RedisBus)
        start = time.perf_counter_ns()
        for i, p in enumerate(payloads):
            bus.publish("trade.sim.BTC-USD", p)
            if i % 1000 == 999:
                await bus.wait_writable()  # a publisher that can wait never overflows
        await bus.flush(within=300)
        confirmed = time.perf_counter_ns()
    end = int((await asyncio.to_thread(child.line)).split()[1])
    child.p.wait(30)
    return n / ((confirmed - start) / 1e9), n / ((end - start) / 1e9)


async def run_naive(url: str, n: int) -> tuple[float, float]:
    child = Child(url, "naive", n, latency=False)
    assert await asyncio.to_thread(child.line) == "ready"
    bus = RedisBus(url, name="naive", prefix="naive")  # only for the same envelope encoding
    events = [bus.event("trade.sim.BTC-USD", trade(i)) for i in range(n)]
    client = aioredis.Redis.from_url(url)
    start = time.perf_counter_ns()
    for ev in events:
        await client.xadd("naive:trade", {"e": bus.codec.encode(ev)}, maxlen=max(100_000, n),
                          approximate=True)
    confirmed = time.perf_counter_ns()
    await client.aclose()
    end = int((await asyncio.to_thread(child.line)).split()[1])
    child.p.wait(30)
    return n / ((confirmed - start) / 1e9), n / ((end - start) / 1e9)


async def run_latency(url: str, rate: int, seconds: float,
                      freeze: bool) -> tuple[float, float, float, int, float]:
    n = int(rate * seconds)
    group = "latf" if freeze else "lat"
    child = Child(url, group, n, latency=True, freeze=freeze)
    assert await asyncio.to_thread(child.line) == "ready"
    loop = asyncio.get_running_loop()
    async with Bus(url, name=f"bench-{group}", prefix=group) as bus:
        assert isinstance(bus, RedisBus)
        if freeze:
            gc.freeze()
        tick = 0.001
        per_tick = rate * tick
        start = loop.time()
        sent = 0
        while sent < n:
            due = min(n, int((loop.time() - start) / tick * per_tick) + 1)
            while sent < due:
                bus.publish("trade.sim.BTC-USD", trade(sent))
                sent += 1
            await asyncio.sleep(tick)
        await bus.flush(within=60)
    if freeze:
        gc.unfreeze()
    parts = (await asyncio.to_thread(child.line)).split()
    child.p.wait(30)
    p50, p99, worst, count = int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])
    return p50 / 1e6, p99 / 1e6, worst / 1e6, count, int(parts[5]) / 1e6


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(tmp)
        try:
            url = server.url
            print(f"python {sys.version.split()[0]}, redis-server at {url}, "
                  f"{os.cpu_count()} cores")
            naive = await run_naive(url, args.naive_events)
            batched = await run_bus(url, args.events)
            print(f"{'publisher':<34} {'confirmed ev/s':>15} {'end to end ev/s':>16}")
            print(f"{'redis-py, awaited XADD per event':<34} {naive[0]:>15,.0f} {naive[1]:>16,.0f}")
            print(f"{'RedisBus (batched writes)':<34} {batched[0]:>15,.0f} "
                  f"{batched[1]:>16,.0f}")
            print(f"ratio: confirmed {batched[0] / naive[0]:.1f}x, "
                  f"end to end {batched[1] / naive[1]:.1f}x")
            for freeze in (False, True):
                p50, p99, worst, count, gc_max = await run_latency(url, args.rate, args.seconds,
                                                                   freeze)
                label = "gc.freeze() after start" if freeze else "default GC"
                print(f"latency publish -> remote handler at {args.rate:,}/s for "
                      f"{args.seconds}s ({count} events, {label}): p50 {p50:.2f} ms, "
                      f"p99 {p99:.2f} ms, max {worst:.2f} ms; consumer's longest GC pause "
                      f"{gc_max:.2f} ms")
        finally:
            server.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "consume":
        url, group, expect = sys.argv[2], sys.argv[3], int(sys.argv[4])
        asyncio.run(consume(url, group, expect, latency="latency" in sys.argv[5:],
                            freeze="freeze" in sys.argv[5:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events for RedisBus")
    parser.add_argument("--naive-events", type=int, default=20_000,
                        help="events for the awaited-XADD baseline")
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
