"""The embedded exchange's CPU per market frame, without sockets: can one core feed 20k/s?

``bench_runtime.py`` asks the sim (in its own process) for ~20k market events/s over 20
symbols; on the shared 2-core machine the sim never got there, and its wall-clock rate says
more about the machine's load than about the sim. This benchmark runs the sim's own send path
in this process with nothing else: the synthetic flow steps round-robin over ``--symbols``
symbols (what the flow task does), each step's engine events published to one subscribed
connection on the ``trades`` and ``book`` channels of every symbol (what the engine's feed
subscribes to): the matching engine, the book mirror and its checksum, the candles, the JSON
encoding and the queueing of every frame. The frames are counted and dropped instead of
written: the socket write (one ``send`` per frame in aiohttp) comes on top. It reports the
process CPU time (``time.process_time``) per frame and per flow step; ``1e6 / (µs per
frame)`` is the frame rate one free core could send, before the socket writes.

Run: ``.venv/bin/python bench/bench_sim_cpu.py [--symbols 20] [--steps 3000] [--rounds 3]``.
To compare two trees, point ``PYTHONPATH`` at the other one's ``src``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import time
from collections import deque
from typing import Any

import tickloop
from tickloop.sim import SimExchange


class Sink:
    """What :meth:`Hub.send` needs of a connection; the frames are counted, then dropped."""

    def __init__(self) -> None:
        self.closed = False
        self.buf: deque[tuple[float, Any, bytes]] = deque()
        self.wake = asyncio.Event()
        self.subs: set[tuple[str, str, str | None]] = set()
        self.last_activity = 0.0
        self.frames = 0

    def drain(self) -> None:
        self.frames += len(self.buf)
        self.buf.clear()


def one_round(symbols: list[str], steps: int, seed: int) -> tuple[float, int, int]:
    """(CPU seconds, frames, flow steps) of ``steps`` flow steps on each symbol."""
    ex = SimExchange(seed=seed, symbols=symbols, rate=0)
    hub = ex._hub
    sink = Sink()
    for channel in ("trades", "book"):
        for symbol in symbols:
            hub.subscribe(sink, (channel, symbol, None))  # type: ignore[arg-type]
    gc.collect()
    cpu0 = time.process_time()
    for _ in range(steps):
        ts = time.time_ns()
        for symbol in symbols:
            hub.step(symbol, ts)
        sink.drain()
    cpu = time.process_time() - cpu0
    return cpu, sink.frames, steps * len(symbols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--steps", type=int, default=3000, help="flow steps per symbol per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    names = ["BTC-USD", "ETH-USD", "SOL-USD"] + [f"C{i:02d}-USD" for i in range(args.symbols)]
    symbols = names[: max(args.symbols, 1)]
    rows = [one_round(symbols, args.steps, seed=7 + r) for r in range(args.rounds)]
    per_frame = [cpu / frames * 1e6 for cpu, frames, _ in rows]
    per_step = [cpu / steps * 1e6 for cpu, _, steps in rows]
    frames_per_step = sum(f for _, f, _ in rows) / sum(s for _, _, s in rows)
    med = statistics.median(per_frame)
    print(f"tickloop from {tickloop.__file__}")
    print(f"{len(symbols)} symbols, {args.steps} flow steps each, {args.rounds} rounds "
          f"(CPython {platform.python_version()}): {frames_per_step:.2f} frames per step")
    print("CPU µs per frame: " + ", ".join(f"{x:.1f}" for x in per_frame)
          + f" (median {med:.1f}: {1e6 / med:,.0f} frames/s on one free core, before writes)")
    print("CPU µs per flow step: " + ", ".join(f"{x:.1f}" for x in per_step))


if __name__ == "__main__":
    main()
