"""The live executor against the sim's private API: after 20 forced disconnects, and after the
engine is SIGKILLed and restarted, its orders and fills are the venue's, with nothing lost and
nothing sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import tickloop
from tickloop.models import OrderStatus
from tickloop.runtime import Bot, Engine, LiveExecutor
from tickloop.runtime.store import Store
from tickloop.sim import SimExchange

D = Decimal


async def until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


class LiveTrader(Bot):
    """Market orders both ways, limits at the touch (some fill), cancels: ``n`` orders."""

    symbols = ["BTC-USD"]
    every = 0.05

    def __init__(self, id: str, n: int = 40) -> None:
        super().__init__(id)
        self.n = n
        self.placed = 0
        self.in_flight = 0  # calls to the venue not answered yet

    async def tick(self) -> None:
        book = self.book("BTC-USD")
        if self.placed >= self.n or book is None or not book.valid:
            return
        self.in_flight += 1
        try:
            await self._trade(book)
        finally:
            self.in_flight -= 1

    async def _trade(self, book: Any) -> None:
        i = self.placed
        self.placed += 1
        if i % 4 == 0:
            await self.buy("BTC-USD", "0.001")
        elif i % 4 == 1:
            await self.sell("BTC-USD", "0.001")
        elif i % 4 == 2:
            await self.buy("BTC-USD", "0.001", price=str(book.best_bid))
        elif self.orders:
            self.placed -= 1  # a cancel, not an order
            await self.cancel(self.orders[0].id)
        else:
            await self.sell("BTC-USD", "0.001", price=str(book.best_ask))


async def _check_against_venue(engine: Engine, ex: SimExchange, key: Any, journal: Path) -> int:
    """Assert the runtime's orders, fills and position are the venue's; returns how many
    orders the venue holds."""
    executor = engine.executor
    assert isinstance(executor, LiveExecutor)
    # The market stops first: a resting order that fills between the venue's answer and the
    # runtime's state being read would otherwise be "open" there and "filled" here.
    ex.pause_flow()
    await executor.reconcile()
    await engine.flush()
    creds = tickloop.Credentials(key.key_id, key.secret)
    async with tickloop.AsyncClient("sim", url=ex.rest_url, credentials=creds) as rest:
        venue_orders = await rest.orders(status="all")
        venue_fills = await rest.fills(limit=1000)
    known = {o.id: (o.status, o.filled_size) for o in executor.known_orders()
             if o.status is not OrderStatus.REJECTED}
    assert known == {o.id: (o.status, o.filled_size) for o in venue_orders}
    assert executor.known_fills() == {(f.order_id, f.trade_id) for f in venue_fills}
    # never twice: one venue order per client order id, and one per journaled intent that
    # reached the venue
    cids = [o.client_order_id for o in venue_orders]
    assert len(cids) == len(set(cids))
    async with Store(journal) as store:
        rows = (await store.orders(limit=10_000)).items
    sent = {r["client_order_id"] for r in rows if r["status"] != "rejected"}
    assert sent == set(cids)
    assert not [r for r in rows if r["status"] == "pending"]
    # the position the runtime books is the venue's
    venue_pos = {p.symbol: p.size for p in ex.engine.positions(key.key_id)}
    portfolio = engine.portfolio("t1")
    assert portfolio.size("BTC-USD") == venue_pos.get("BTC-USD", D(0))
    # and the balances: what the runtime booked moved the venue's balances exactly
    start = ex.engine.default_balances()
    balances = {asset: total for asset, (total, _) in ex.engine.balances(key.key_id).items()}
    assert balances["BTC"] - start["BTC"] == portfolio.size("BTC-USD")
    assert balances["USD"] - start["USD"] == portfolio.cash - portfolio.start_cash
    return len(cids)


async def test_state_equals_the_venue_after_20_forced_disconnects(tmp_path: Path) -> None:
    async with SimExchange(seed=21, symbols=["BTC-USD"], rate=60) as ex:
        key = ex.create_api_key()
        creds = tickloop.Credentials(key.key_id, key.secret)
        fast = {"base_wait": 0.01, "max_wait": 0.2}  # reconnect at once, every time
        executor = LiveExecutor(creds, rest_url=ex.rest_url, ws_url=ex.ws_url,
                                stream_options=fast)
        bot = LiveTrader("t1", n=60)
        db = tmp_path / "live.db"
        async with Engine([bot], url=ex.ws_url, executor=executor, store=db, feed_options=fast,
                          breaker_errors=1000, cancel_on_stop=False) as engine:
            for i in range(20):
                before = executor.reconciliations
                await ex.faults.disconnect_all()
                await until(lambda b=before: executor.reconciliations > b,  # type: ignore[misc]
                            f"reconciled after disconnect {i + 1}")
            await until(lambda: bot.placed >= bot.n and not bot.in_flight,
                        "all orders placed and answered")
            assert await _check_against_venue(engine, ex, key, db) >= bot.n
            assert executor.reconciliations >= 21


_CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, sys.argv[5])
    import tickloop
    from tickloop.runtime import Engine, LiveExecutor
    from test_live import LiveTrader

    async def main():
        ws, rest, key_id, secret, _, db = sys.argv[1:7]
        executor = LiveExecutor(tickloop.Credentials(key_id, secret), rest_url=rest, ws_url=ws)
        bot = LiveTrader("t1", n=10_000)
        async with Engine([bot], url=ws, executor=executor, store=db, breaker_errors=10**6):
            while bot.placed < 25:
                await asyncio.sleep(0.01)
            print("ready", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
""")


async def test_state_equals_the_venue_after_sigkill_and_restart(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    async with SimExchange(seed=22, symbols=["BTC-USD"], rate=60) as ex:
        key = ex.create_api_key()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, ex.ws_url, ex.rest_url, key.key_id, key.secret,
            str(Path(__file__).parent), str(db), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":  # say why the child ended
                err = await asyncio.wait_for(proc.stderr.read(), 10)
                raise AssertionError(f"child ended: {err.decode(errors='replace')[-3000:]}")
            await asyncio.sleep(0.1)  # killed mid-run, orders in flight
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        executor = LiveExecutor(tickloop.Credentials(key.key_id, key.secret),
                                rest_url=ex.rest_url, ws_url=ex.ws_url)
        async with Engine([LiveTrader("t1", n=0)], url=ex.ws_url, executor=executor,
                          store=db, cancel_on_stop=False) as engine:
            assert await _check_against_venue(engine, ex, key, db) >= 25
    async with Store(db) as store:
        assert await store.integrity_check() == "ok"
