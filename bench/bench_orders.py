"""Order round trips to the embedded exchange through the live executor, and store rows/s.

Round trip: a bot in an Engine with the :class:`~tickloop.runtime.LiveExecutor` places a small
market order (journaled in the store first), and the time is taken at three points: the call
(``place``), the REST answer (``ack``: the call returned), and the fill arriving on the private
stream and reaching the bot's ``on_fill`` (``fill``). The exchange runs in this process (its
API keys are made in process), with its synthetic flow on so the book is live: it shares the
loop with the engine, so a round trip includes the exchange's own work.

Store: ``Store.write`` of ``--rows`` platform events in batches of 1,000, and the same through
a lossless bus subscription (``Store.consume``, what the engine runs), rows committed per second.

Run: ``.venv/bin/python bench/bench_orders.py [--orders 300] [--rows 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import tickloop
from tickloop.bus import Bus
from tickloop.models import BotError, Fill
from tickloop.runtime import Bot, Engine, LiveExecutor
from tickloop.runtime.store import Record, Store
from tickloop.sim import SimExchange


class RoundTripper(Bot):
    symbols = ("BTC-USD",)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.waiting: dict[str, float] = {}
        self.acks: list[float] = []
        self.fills: list[float] = []
        self.done = asyncio.Event()

    def on_fill(self, fill: Fill) -> None:
        start = self.waiting.pop(fill.client_order_id or "", None)
        if start is not None:
            self.fills.append(time.perf_counter() - start)
            self.done.set()

    async def round_trip(self, i: int) -> None:
        cid = f"{self.id}-rt-{os.getpid()}-{i}"
        self.done.clear()
        start = time.perf_counter()
        self.waiting[cid] = start
        await self.place("BTC-USD", "buy" if i % 2 == 0 else "sell", "0.001",
                         client_order_id=cid)
        self.acks.append(time.perf_counter() - start)
        await asyncio.wait_for(self.done.wait(), 10)


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(q / 100 * len(data)))]


async def round_trips(n: int, db: Path) -> tuple[list[float], list[float]]:
    async with SimExchange(seed=7, symbols=["BTC-USD"], rate=50) as ex:
        key = ex.create_api_key()
        executor = LiveExecutor(tickloop.Credentials(key.key_id, key.secret),
                                rest_url=ex.rest_url, ws_url=ex.ws_url)
        bot = RoundTripper("rt")
        async with Engine([bot], url=ex.ws_url, executor=executor, store=db,
                          equity_every=0):
            for _ in range(200):
                book = bot.book("BTC-USD")
                if book is not None and book.valid:
                    break
                await asyncio.sleep(0.02)
            for i in range(10):  # warm-up
                await bot.round_trip(-i - 1)
            bot.acks.clear()
            bot.fills.clear()
            for i in range(n):
                await bot.round_trip(i)
        return bot.acks, bot.fills


async def store_rows(n: int, db: Path) -> tuple[float, float]:
    records = [Record("b", BotError(bot="b", handler="tick", error=f"E{i}", ts=i))
               for i in range(n)]
    async with Store(db) as store:
        start = time.perf_counter()
        for i in range(0, n, 1000):
            await store.write(records[i:i + 1000])
        direct = n / (time.perf_counter() - start)
    async with Bus() as bus, Store(db.with_suffix(".bus.db")) as store:
        sub = bus.subscribe("bot.*", maxsize=10_000, policy="lossless", name="store")
        writer = asyncio.create_task(store.consume(sub))
        start = time.perf_counter()
        for i in range(n):
            if not bus.writable:
                await bus.wait_writable()
            bus.publish("bot.error.b", records[i].payload)
        sub.close()
        await writer
        through_bus = n / (time.perf_counter() - start)
        assert store.written == n
    return direct, through_bus


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    acks, fills = await round_trips(args.orders, tmp / "orders.db")
    direct, through_bus = await store_rows(args.rows, tmp / "rows.db")
    console = Console(width=140)
    table = Table(title=f"live executor round trips to the sim ({args.orders} market orders), "
                  f"store rows/s ({args.rows:,} rows); CPython {platform.python_version()}")
    for col in ("measure", "p50", "p99"):
        table.add_column(col, justify="right")
    table.add_row("place -> ack (REST answer; journal write included)",
                  f"{pct(acks, 50) * 1e3:.2f} ms", f"{pct(acks, 99) * 1e3:.2f} ms")
    table.add_row("place -> fill event at the bot", f"{pct(fills, 50) * 1e3:.2f} ms",
                  f"{pct(fills, 99) * 1e3:.2f} ms")
    table.add_row("store rows/s: Store.write, batches of 1,000", f"{direct:,.0f}", "")
    table.add_row("store rows/s: lossless bus subscription -> Store.consume",
                  f"{through_bus:,.0f}", "")
    console.print(table)


if __name__ == "__main__":
    asyncio.run(main())
