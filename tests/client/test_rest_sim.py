"""AsyncClient and Client end to end against the embedded exchange (tickloop.sim.SimExchange)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from tickloop import (
    AsyncClient,
    AuthError,
    Client,
    Credentials,
    InvalidRequest,
    OrderRejected,
    Selection,
    TimeoutError,
)
from tickloop.client.results import UNSET
from tickloop.sim import SimExchange

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=7, symbols=SYMBOLS, rate=20.0) as exchange:
        yield exchange


@pytest.fixture
def ex_in_thread() -> Iterator[SimExchange]:
    """The exchange on its own loop in a thread: a sync Client blocks the test's own loop."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["stop"] = asyncio.Event()
        box["loop"] = asyncio.get_running_loop()
        async with SimExchange(seed=7, symbols=SYMBOLS) as exchange:
            box["ex"] = exchange
            ready.set()
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield box["ex"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


def creds_for(ex: SimExchange) -> Credentials:
    key = ex.create_api_key()
    return Credentials(key.key_id, key.secret)


async def test_public_data(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url) as client:
        markets = await client.markets(
            fields=Selection("symbol", "status", book=Selection("bids", "asks"))
        )
        assert [m.symbol for m in markets] == SYMBOLS
        m = markets[0]
        assert m.status == "open" and m.tick_size is UNSET and m.ticker is UNSET
        assert m.book is not UNSET and m.book.seq is UNSET and m.book.bids is not UNSET
        assert m.book.bids and m.book.bids[0].price > 0
        one = await client.market("BTC-USD", fields=Selection("symbol", "tick_size"))
        assert one.symbol == "BTC-USD" and one.tick_size is not UNSET and one.base is UNSET
        instruments = await client.instruments()
        assert {i.symbol for i in instruments} == set(SYMBOLS)
        book = await client.book("BTC-USD", depth=5)
        assert book.sequence is not None and 0 < len(book.bids) <= 5
        assert book.bids[0].price < book.asks[0].price
        ticker = await client.ticker("BTC-USD")
        assert ticker.symbol == "BTC-USD"
        assert await client.server_time() > 0
        candles = await client.candles("BTC-USD", interval="1s", limit=5)
        assert all(c.interval == "1s" for c in candles)


async def test_trades_since_id_is_the_backfill_contract(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url) as client:
        for _ in range(200):
            first = await client.trades("BTC-USD", limit=1000)
            if len(first) >= 3:
                break
            await asyncio.sleep(0.05)
        assert len(first) >= 3
        ids = [t.id for t in first]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous, oldest first
        after = await client.trades("BTC-USD", since_id=ids[-3], limit=2)
        assert [t.id for t in after] == ids[-2:]
        assert all(t.price == u.price for t, u in zip(after, first[-2:], strict=True))


async def test_bad_field_selection_names_the_field(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url) as client:
        with pytest.raises(InvalidRequest) as info:
            await client.markets(fields=Selection("symbol", book=Selection("bogus")))
        assert info.value.field == "book.bogus"


async def test_one_login_for_three_clients(ex: SimExchange) -> None:
    creds = creds_for(ex)
    clients = [AsyncClient("sim", url=ex.rest_url, credentials=creds) for _ in range(3)]
    try:
        await asyncio.gather(*(c.balances() for c in clients for _ in range(4)))
        await asyncio.gather(*(c.orders() for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    assert ex.stats.logins == 1
    assert creds.logins == 1


async def test_wrong_secret_is_auth_error(ex: SimExchange) -> None:
    key = ex.create_api_key()
    wrong = "0" * len(key.secret)
    async with AsyncClient("sim", url=ex.rest_url, credentials=Credentials(key.key_id, wrong)) as c:
        with pytest.raises(AuthError) as info:
            await c.balances()
    assert wrong not in str(info.value) and key.secret not in str(info.value)
    assert ex.stats.logins == 0


async def test_trading_round_trip(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url, credentials=creds_for(ex)) as c:
        book = await c.book("BTC-USD")
        far = book.bids[-1].price - Decimal("50")
        order = await c.place_order(
            "BTC-USD", side="buy", type="limit", price=far, size="0.1", client_order_id="rt-1"
        )
        assert order.status == "open" and order.client_order_id == "rt-1"
        assert (await c.order(order.id)).id == order.id
        assert (await c.order_by_client_id("rt-1")).id == order.id
        assert [o.id for o in await c.orders("BTC-USD")] == [order.id]
        amended = await c.amend_order(order.id, size="0.05")
        assert amended.size == Decimal("0.05")
        canceled = await c.cancel_order(order.id)
        assert canceled.status == "canceled"
        assert await c.orders() == []
        balances = {b.asset: b for b in await c.balances()}
        assert balances["USD"].available == balances["USD"].total
        with pytest.raises(OrderRejected) as rejected:
            await c.place_order("BTC-USD", side="buy", type="limit", price="1000000", size="500")
        assert rejected.value.reason
        with pytest.raises(InvalidRequest) as bad:
            await c.place_order("BTC-USD", side="buy", type="limit", price=far, size="0.00001")
        assert bad.value.field == "size"
        await c.positions()
        await c.fills()
        await c.cancel_all()


async def test_429_burst_completes_late_but_completes(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url, max_concurrency=10) as c:
        await c.server_time()
        before = ex.stats.rest_requests
        ex.faults.rate_limit(20, retry_after=0.2)
        results = await asyncio.gather(*(c.book(s) for s in SYMBOLS * 4))
        assert len(results) == 12
        assert c.stats.rate_limited == 20
        # every 429 was followed by a wait, not by an immediate resend: 12 answers + 20 refusals
        assert ex.stats.rest_requests - before == 32


async def test_real_rate_limit_slows_the_client_down() -> None:
    # the client believes in a budget 50x the exchange's: the 429s teach it otherwise
    async with SimExchange(seed=7, symbols=SYMBOLS, rate=0, rate_limit_weight=20) as ex:
        async with AsyncClient(
            "sim", url=ex.rest_url, rate_limit=(1000.0, 1.0), max_concurrency=10, max_retries=20
        ) as c:
            results = await asyncio.gather(*(c.ticker("BTC-USD") for _ in range(50)))
        assert len(results) == 50
        # the budget is learnt from the first answers' headers: at most the first wave (one
        # request per concurrency slot) may be refused, and the rest is paced
        assert ex.stats.rate_limited <= 10
        assert c.http.throttle is not None and c.http.throttle.limit == 20


async def test_network_faults_reads_retried_and_order_exists_once(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url, credentials=creds_for(ex)) as c:
        await c.balances()  # logged in
        ex.faults.drop_responses(2)
        assert (await c.book("BTC-USD")).sequence is not None
        ex.faults.fail_requests(2, status=503)
        assert len(await c.markets()) == 3
        book = await c.book("ETH-USD")
        ex.faults.drop_responses(2)
        order = await c.place_order(
            "ETH-USD", side="sell", type="limit", price=book.asks[-1].price + 100, size="1"
        )
        everything = await c.orders(status="all")
        assert [o.id for o in everything if o.client_order_id == order.client_order_id] == [
            order.id
        ]
        assert len(everything) == 1
        ex.faults.fail_requests(1, status=503)
        await c.cancel_order(order.id)  # 503: not processed, so even a cancel is retried
        assert c.stats.retries >= 7


async def test_timeout_fires(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url, timeout=0.3) as c:
        ex.faults.latency(2.0)
        with pytest.raises(TimeoutError):
            await c.server_time()
        ex.faults.latency(0.0)


async def test_cancellation_mid_request(ex: SimExchange) -> None:
    async with AsyncClient("sim", url=ex.rest_url) as c:
        await c.server_time()
        ex.faults.latency(5.0)
        task = asyncio.create_task(c.server_time())
        for _ in range(1000):  # until the request is on the wire
            if c.stats.in_flight:
                break
            await asyncio.sleep(0.01)
        assert c.stats.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats.in_flight == 0
        ex.faults.latency(0.0)
        assert await c.server_time() > 0


async def test_fan_out_books_of_every_market(ex: SimExchange) -> None:
    # the docs/rest.md example
    async with AsyncClient("sim", url=ex.rest_url, max_concurrency=8) as client:
        symbols = [m.symbol for m in await client.markets(fields=Selection("symbol"))]
        books = await asyncio.gather(*(client.book(str(s), depth=10) for s in symbols))
    assert [b.symbol for b in books] == SYMBOLS


def test_sync_client_shares_the_login(ex_in_thread: SimExchange) -> None:
    creds = creds_for(ex_in_thread)
    with (
        Client("sim", url=ex_in_thread.rest_url, credentials=creds) as c1,
        Client("sim", url=ex_in_thread.rest_url, credentials=creds) as c2,
    ):
        assert c1.balances() and c2.balances()
        order = c1.place_order("BTC-USD", side="buy", type="limit", price="1.00", size="0.1")
        assert c2.order(order.id).client_order_id == order.client_order_id
        c2.cancel_all()
    assert ex_in_thread.stats.logins == 1


async def test_sync_client_inside_a_running_loop(ex_in_thread: SimExchange) -> None:
    assert asyncio.get_running_loop().is_running()  # as in a Jupyter cell
    with Client("sim", url=ex_in_thread.rest_url) as client:
        markets = client.markets()
        assert [m.symbol for m in markets] == SYMBOLS
        assert client.book("BTC-USD").sequence is not None
