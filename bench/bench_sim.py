"""How many book-update frames a second the embedded exchange sends to one loopback client.

The exchange runs in a child process (``python -m tickloop sim``, one symbol); this process
connects one aiohttp WebSocket client (the fastest receiver in PERF.md, so the client is not the
bottleneck), subscribes to the book and counts ``book_update`` frames for ``--seconds`` after a
warm-up second, at several requested flow rates. It also checks that the sequence numbers
stayed contiguous (a gap would mean the server dropped or skipped an update).

Run: ``.venv/bin/python bench/bench_sim.py [--quick] [--seconds S] [--rates 1000,5000,...]``.
The last rate is deliberately beyond what one process can do: its row is the server's ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


class _Head(msgspec.Struct, gc=False):
    """Only what the count needs: msgspec skips the levels without building them."""

    type: str
    seq: int = 0
    prev_seq: int = 0


_decode = msgspec.json.Decoder(_Head).decode


@dataclass
class Row:
    rate: float
    frames: int
    seconds: float
    gaps: int
    bytes: int

    @property
    def per_second(self) -> float:
        return self.frames / self.seconds


async def start_sim(rate: float, symbol: str) -> tuple[asyncio.subprocess.Process, str]:
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
        symbol,
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


async def measure(rate: float, seconds: float, symbol: str) -> Row:
    proc, url = await start_sim(rate, symbol)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_str(
                json.dumps({"op": "subscribe", "channel": "book", "symbols": [symbol]})
            )
            loop = asyncio.get_running_loop()
            warm_until = loop.time() + 1.0
            end = warm_until + seconds
            frames = gaps = size = 0
            last_seq: int | None = None
            started = 0.0
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"connection ended: {msg.type.name}")
                data = msg.data
                head = _decode(data)
                if head.type != "book_update":
                    if head.type == "book_snapshot":
                        last_seq = head.seq
                    continue
                now = loop.time()
                if last_seq is not None and head.prev_seq != last_seq:
                    gaps += 1
                last_seq = head.seq
                if now < warm_until:
                    continue
                if not started:
                    started = now
                frames += 1
                size += len(data)
                if now >= end:
                    return Row(rate, frames, now - started, gaps, size)
    finally:
        proc.terminate()
        await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per rate, three rates")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rates", default=None, help="comma-separated flow steps/s")
    parser.add_argument("--symbol", default="BTC-USD")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    if args.rates:
        rates = [float(r) for r in args.rates.split(",")]
    else:
        rates = (
            [1000.0, 5000.0, 100000.0]
            if args.quick
            else [1000.0, 2000.0, 5000.0, 10000.0, 100000.0]
        )
    rows = [await measure(rate, seconds, args.symbol) for rate in rates]
    table = Table(title=f"sim -> one loopback client, book updates ({args.symbol})")
    for column in ("flow steps/s asked", "book_update frames/s", "avg frame B", "seq gaps", "s"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row.rate:,.0f}",
            f"{row.per_second:,.0f}",
            f"{row.bytes / max(row.frames, 1):,.0f}",
            str(row.gaps),
            f"{row.seconds:.1f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}"
    )


if __name__ == "__main__":
    asyncio.run(main())
