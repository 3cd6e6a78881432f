"""REST client throughput: requests/s at concurrency 1, 10 and 100 against the embedded exchange.

The exchange runs in a child process (its rate limit raised out of the way), the client in this
one. Each row runs ``concurrency`` workers that call the same endpoint back to back for a fixed
time through one client, and reports completed requests/s and latency percentiles. Next to
``AsyncClient`` (throttle, retries, auth-free public call, typed parse) a bare aiohttp session
doing the same GET and ``json.loads`` shows what the client's machinery costs.

    .venv/bin/python bench/bench_rest.py            # 5 s per row
    .venv/bin/python bench/bench_rest.py --quick    # 1 s per row
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from tickloop import AsyncClient
from tickloop.sim import SimExchange

SYMBOL = "BTC-USD"
DEPTH = 10


def _serve(conn: Connection, rate: float) -> None:
    async def main() -> None:
        async with SimExchange(seed=7, symbols=[SYMBOL], rate=rate, rate_limit_weight=10**9) as ex:
            conn.send(ex.rest_url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # any message: stop

    asyncio.run(main())


async def _run(
    call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float
) -> tuple[int, list[float]]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    stop_at = loop.time() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while loop.time() < stop_at:
            start = loop.time()
            await call()
            latencies.append(loop.time() - start)
            count += 1

    for _ in range(min(concurrency, 5)):  # warm the pool and the server
        await call()
    begin = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = loop.time() - begin
    return int(count / elapsed), latencies


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def bench(
    url: str, seconds: float, levels: list[int]
) -> list[tuple[str, int, int, list[float]]]:
    rows: list[tuple[str, int, int, list[float]]] = []
    for concurrency in levels:
        async with AsyncClient(
            "sim", url=url, rate_limit=(1e9, 1.0), max_concurrency=concurrency
        ) as client:

            async def typed(client: AsyncClient = client) -> Any:
                return await client.book(SYMBOL, depth=DEPTH)

            rate, lat = await _run(typed, concurrency, seconds)
            rows.append(("tickloop AsyncClient.book", concurrency, rate, lat))
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            target = f"{url}/book/{SYMBOL}?depth={DEPTH}"

            async def raw(session: aiohttp.ClientSession = session, target: str = target) -> Any:
                async with session.get(target) as resp:
                    return json.loads(await resp.read())

            rate, lat = await _run(raw, concurrency, seconds)
            rows.append(("bare aiohttp + json.loads", concurrency, rate, lat))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s per row instead of 5 s")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--flow", type=float, default=20.0, help="sim flow steps/s per symbol")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    levels = [1, 10, 100]

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, args.flow), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            print("the exchange did not start", file=sys.stderr)
            return 1
        url = parent.recv()
        started = time.monotonic()
        rows = asyncio.run(bench(url, seconds, levels))
        total = time.monotonic() - started
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.terminate()

    table = Table(
        title=f"REST GET /book/{SYMBOL}?depth={DEPTH} against SimExchange (child process)"
    )
    for name in ("client", "concurrency", "requests/s", "p50 ms", "p99 ms"):
        table.add_column(name, justify="right" if name != "client" else "left")
    for name, concurrency, rate, lat in rows:
        table.add_row(
            name,
            str(concurrency),
            f"{rate:,}",
            f"{_pct(lat, 0.5):.2f}",
            f"{_pct(lat, 0.99):.2f}",
        )
    console = Console()
    console.print(table)
    mean = statistics.fmean(r[2] for r in rows)
    console.print(f"{seconds:g} s per row, {total:.1f} s in all; mean {mean:,.0f} requests/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
