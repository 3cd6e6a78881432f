"""The SQLite store: migrations, batched atomic writes, paged queries, lossless consumption
of a bus subscription, and a sound database after SIGKILL mid-write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from tickloop.bus import Bus
from tickloop.exceptions import StoreError
from tickloop.models import (
    BotError,
    Equity,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from tickloop.runtime.store import SCHEMA_VERSION, Record, Store

D = Decimal


def _order(cid: str, status: OrderStatus = OrderStatus.OPEN, filled: str = "0",
           symbol: str = "BTC-USD", ts: int = 1) -> Order:
    return Order(venue="sim", symbol=symbol, id=f"o-{cid}", client_order_id=cid,
                 side=Side.BUY, type=OrderType.LIMIT, price=D("100.50"), size=D("1.0000"),
                 filled_size=D(filled), status=status, created_ts=ts, updated_ts=ts)


def _fill(cid: str, trade_id: int, ts: int = 2) -> Fill:
    return Fill(venue="sim", symbol="BTC-USD", order_id=f"o-{cid}", client_order_id=cid,
                trade_id=trade_id, side=Side.BUY, price=D("100.50"), size=D("0.5000"),
                fee=D("0.05025"), liquidity=Liquidity.MAKER, ts=ts)


async def test_schema_is_created_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Store(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await store.integrity_check() == "ok"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    async with Store(path) as store:  # reopening migrates nothing and keeps the version
        assert await store.schema_version() == SCHEMA_VERSION


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with Store(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path)


async def test_orders_fills_positions_state_roundtrip_exactly(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        await store.write([
            Record("b1", _order("c1")),
            Record("b1", OrderEvent(venue="sim", kind=OrderEventKind.FILL,
                                    order=_order("c1", OrderStatus.PARTIALLY_FILLED, "0.5",
                                                 ts=2),
                                    fill=_fill("c1", 7), ts=2)),
            Record("b1", _fill("c1", 7)),  # the same fill again: stored once
            Record("b1", Position(venue="sim", symbol="BTC-USD", size=D("0.5000"),
                                  avg_price=D("100.50")), ts=3),
            Record("b1", Equity(bot="b1", equity=D("1000.10"), cash=D("949.75"), ts=3)),
        ])
        await store.save_state("b1", {"n": 3, "last": "x"}, ts=4)
        orders = (await store.orders(bot="b1")).items
        assert len(orders) == 1
        assert (orders[0]["status"], orders[0]["filled_size"], orders[0]["price"]) == \
            ("partially_filled", "0.5", "100.50")
        fills = (await store.fills(symbol="BTC-USD")).items
        assert [(f["trade_id"], f["fee"]) for f in fills] == [(7, "0.05025")]
        assert (await store.positions(bot="b1"))[0]["size"] == "0.5000"
        assert (await store.equity(bot="b1")).items[0]["equity"] == "1000.10"
        assert await store.load_state("b1") == {"n": 3, "last": "x"}
        assert await store.load_state("nobody") is None
        # a final state is never overwritten by a stale update
        await store.write([Record("b1", _order("c1", OrderStatus.CANCELED, "0.5", ts=5))])
        await store.write([Record("b1", _order("c1", OrderStatus.OPEN, "0.5", ts=6))])
        assert (await store.orders()).items[0]["status"] == "canceled"


async def test_paged_queries_by_bot_symbol_time(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db", batch=10) as store:
        records = [Record(f"b{i % 3}", _order(f"c{i}", symbol="ETH-USD" if i % 2 else
                                              "BTC-USD", ts=i)) for i in range(25)]
        await store.write(records)
        seen: list[str] = []
        after = None
        while True:
            page = await store.orders(bot="b1", limit=3, after=after)
            seen.extend(o["client_order_id"] for o in page.items)
            if page.next is None:
                break
            after = page.next
        assert seen == [f"c{i}" for i in range(25) if i % 3 == 1]
        eth = await store.orders(symbol="ETH-USD", since=10, until=20, limit=100)
        assert [o["updated_ts"] for o in eth.items] == [11, 13, 15, 17, 19]
        assert (await store.orders(status=["open"], limit=1)).next is not None


async def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db") as store:
        from tickloop.exceptions import ConfigError

        with pytest.raises(ConfigError):
            await store.write([Record("b1", _order("c1")), Record("b1", object())])
        assert await store.count("orders") == 0


async def test_lossless_subscription_burst_count_in_equals_rows(tmp_path: Path) -> None:
    n = 20_000
    async with Bus() as bus, Store(tmp_path / "s.db", batch=500) as store:
        sub = bus.subscribe("bot.error.*", maxsize=1000, policy="lossless", name="store")
        writer = asyncio.create_task(store.consume(sub))
        published = 0
        for i in range(n):
            if not bus.writable:
                await bus.wait_writable("bot.error.b")
            bus.publish(f"bot.error.b{i % 7}", BotError(bot=f"b{i % 7}", handler="tick",
                                                         error=f"E{i}", ts=i))
            published += 1
        sub.close()
        await writer
        assert sub.dropped == 0
        assert await store.count("events") == published == store.written
        assert store.transactions < n // 10  # batched
        page = await store.events(bot="b3", type="bot_error", limit=2)
        assert page.items[0]["payload"]["error"] == "E3"
        assert await store.integrity_check() == "ok"


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from tickloop.models import BotError
    from tickloop.runtime.store import Record, Store

    async def main():
        async with Store(sys.argv[1]) as store:
            i = 0
            while True:
                await store.write([Record("b", BotError(bot="b", handler="tick",
                                   error="x" * 200, ts=i + k)) for k in range(100)])
                i += 100
                if i == 500:
                    print("ready", flush=True)

    asyncio.run(main())
""")


def test_integrity_after_sigkill_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert rows >= 500
    assert rows % 100 == 0  # whole batches only: no transaction half-written
