"""What every contender process shares: arguments, CPU pinning, and the meter user code calls.

A contender is a script that connects one client library to the loopback server, subscribes to
one stream (trades or depth diffs) and calls :meth:`Meter.hit` with the id of every message that
reaches *user code* (a callback, an ``async for`` body, the list ``watch_trades`` returns). The
meter ignores the warm-up frames, starts the clock and the CPU counter at the first measured id,
stops at the last one, and the process prints one ``RESULT {json}`` line and exits.

Identical per-message overhead for every contender: one method call, two comparisons, and in
latency runs two array appends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

from ..workload import SYMBOL, SYMBOL_LOWER, Ids

__all__ = ["SYMBOL", "SYMBOL_LOWER", "Meter", "execute", "parse_args", "pin", "report"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss_bytes() -> int:
    """This process's RSS high-water mark. ``VmHWM`` belongs to the address space created at
    exec; ``ru_maxrss`` would also carry the forking parent's peak across the exec (Linux keeps
    it in the signal struct), which inflates a small child's figure to the orchestrator's."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=("trades", "depth"), default="trades")
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--latency-out", default=None, help="write (id, recv ns) samples here")
    parser.add_argument("--rss-every", type=float, default=0.0, help="sample RSS every s")
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=300.0)
    return parser.parse_args()


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


class Meter:
    """Counts what reaches user code between the first and last measured ids."""

    __slots__ = (
        "_on_done",
        "cpu0",
        "cpu1",
        "delivered",
        "done",
        "first",
        "id0",
        "ids",
        "last",
        "last_seen",
        "n",
        "n0",
        "record",
        "recv",
        "rss",
        "t0",
        "t1",
    )

    def __init__(self, ids: Ids, record: bool) -> None:
        self.first = ids.first_measured
        self.last = ids.last_measured
        self.record = record
        self.n = 0  # every message that reached user code, warm-up included
        self.n0 = 0
        self.delivered = 0
        self.t0 = 0
        self.t1 = 0
        self.cpu0 = 0.0
        self.cpu1 = 0.0
        self.done = False
        self.last_seen = 0
        self.id0 = 0  # the id that started the clock (the first measured one user code saw)
        self.ids = array("q")
        self.recv = array("q")
        self.rss: list[tuple[float, int]] = []
        self._on_done: Callable[[], None] | None = None

    def on_done(self, callback: Callable[[], None]) -> None:
        self._on_done = callback

    def hit(self, ident: int) -> None:
        self.n += 1
        if self.done:
            return
        if not self.t0:
            if ident < self.first:
                return
            self.t0 = time.perf_counter_ns()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.cpu0 = usage.ru_utime + usage.ru_stime
            self.n0 = self.n
            self.id0 = ident
        if self.record:
            self.ids.append(ident)
            self.recv.append(time.monotonic_ns())
        self.last_seen = ident
        if ident >= self.last:
            self.t1 = time.perf_counter_ns()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.cpu1 = usage.ru_utime + usage.ru_stime
            self.delivered = self.n - self.n0 + 1
            self.done = True
            if self._on_done is not None:
                self._on_done()

    def sample_rss(self, loop: asyncio.AbstractEventLoop, every: float) -> asyncio.TimerHandle:
        """Record (seconds since start, RSS bytes) every ``every`` s until the meter is done."""
        start = time.monotonic()
        handle: list[asyncio.TimerHandle] = []

        def tick() -> None:
            self.rss.append((round(time.monotonic() - start, 3), rss_bytes()))
            if not self.done:
                handle[0] = loop.call_later(every, tick)

        handle.append(loop.call_later(0.0, tick))
        return handle[0]


def report(
    name: str,
    args: argparse.Namespace,
    meter: Meter,
    versions: dict[str, str],
    extra: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Print the one ``RESULT`` line the orchestrator reads, and write latency samples."""
    if args.latency_out and meter.record and len(meter.ids):
        with open(args.latency_out, "wb") as f:
            array("q", [len(meter.ids)]).tofile(f)
            meter.ids.tofile(f)
            meter.recv.tofile(f)
    elapsed = (meter.t1 - meter.t0) / 1e9 if meter.done else 0.0
    id_step = 2 if args.kind == "depth" else 1
    # frames the client processed in the window: from the id that started the clock to the last
    # one seen (more than were delivered when a client coalesces, as ccxt.pro does)
    frames = (meter.last_seen - meter.id0) // id_step + 1 if meter.t0 else 0
    result: dict[str, Any] = {
        "contender": name,
        "kind": args.kind,
        "ok": meter.done and error is None,
        "error": error,
        "count": args.count,
        "delivered": meter.delivered,
        "frames": frames,
        "elapsed": elapsed,
        "cpu": meter.cpu1 - meter.cpu0 if meter.done else 0.0,
        "peak_rss": peak_rss_bytes(),
        "rss_end": rss_bytes(),
        "rss": meter.rss,
        "versions": versions,
        "python": sys.version.split()[0],
    }
    if extra:
        result.update(extra)
    print("RESULT " + json.dumps(result), flush=True)


def execute(
    name: str,
    args: argparse.Namespace,
    body: Callable[[Meter], Awaitable[None]],
    versions: dict[str, str],
    extra: dict[str, Any] | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Pin, run ``body(meter)`` until the meter is done (or fails, or times out), print the
    result, and leave at once: closing handshakes are not part of any figure, and a library's
    slow shutdown must not stretch the run."""
    pin(args.cpu)
    ids = (Ids.trades if args.kind == "trades" else Ids.depth)(args.warmup, args.count)
    meter = Meter(ids, record=args.latency_out is not None)
    error: str | None = None

    async def main() -> None:
        nonlocal error
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        meter.on_done(finish)
        if args.rss_every:
            meter.sample_rss(loop, args.rss_every)
        task = asyncio.ensure_future(body(meter))
        finished, _ = await asyncio.wait(
            {task, done}, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not finished:
            error = f"timed out after {args.timeout:.0f} s ({meter.n} messages reached user code)"
        elif done not in finished:
            exc = task.exception()
            error = (f"{type(exc).__name__}: {exc}" if exc else "stream ended early") + (
                f" ({meter.n} messages reached user code)"
            )
        report(name, args, meter, versions, extra, error)
        os._exit(0)  # no teardown: a library's close handshake can take seconds

    try:
        if loop_factory is None:
            asyncio.run(main())
        else:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(main())
    except BaseException as exc:  # reported, not raised: the orchestrator shows it
        error = error or f"{type(exc).__name__}: {exc}"
    report(name, args, meter, versions, extra, error)
    sys.stderr.flush()
    os._exit(0)
