"""AsyncClient and HttpSession against a small fake exchange of our own (aiohttp, 127.0.0.1):
retries, Retry-After, timeouts, cancellation, auth renewal, error mapping, the unclosed warning,
and the sync Client inside a running event loop. The end-to-end tests against the embedded
exchange are in test_rest_sim.py."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import threading
import warnings
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from tickloop import (
    AsyncClient,
    AuthError,
    Client,
    Credentials,
    ExchangeError,
    InvalidRequest,
    NetworkError,
    OrderRejected,
    RateLimitError,
    Selection,
    TickloopError,
    TimeoutError,
)
from tickloop.client.http import HttpSession
from tickloop.client.results import UNSET
from tickloop.venues.base import RestRequest

KEY, SECRET = "key-1", "secret-1"
MARKET = {
    "symbol": "BTC-USD",
    "base": "BTC",
    "quote": "USD",
    "status": "open",
    "price_precision": 2,
    "size_precision": 4,
    "tick_size": "0.01",
    "lot_size": "0.0001",
    "min_size": "0.0001",
    "book": {"seq": 7, "bids": [["100.00", "1.5000"]], "asks": [["100.01", "0.2500"]]},
    "ticker": {"bid": "100.00", "ask": "100.01", "last": "100.00", "volume": "12.3400"},
}


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status)


class FakeExchange:
    """A few endpoints of the sim's protocol, with scripted faults (docs/protocol.md)."""

    def __init__(self) -> None:
        self.faults: deque[str] = deque()  # "429", "503", "drop", "slow"
        self.requests = 0
        self.logins = 0
        self.tokens: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self.open_connections = 0
        self.slow_started = asyncio.Event()
        self.release = asyncio.Event()  # ends "slow" answers (set when the test ends)
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        r = app.router
        r.add_get("/api/v1/markets", self.markets)
        r.add_get("/api/v1/trades/{symbol}", self.trades)
        r.add_get("/api/v1/book/{symbol}", self.book)
        r.add_post("/api/v1/auth/token", self.login)
        r.add_post("/api/v1/orders", self.place)
        r.add_get("/api/v1/orders", self.list_orders)
        return app

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        fault = self.faults.popleft() if self.faults else None
        if fault == "429":
            return web.json_response(
                {"error": {"code": "rate_limited", "message": "slow down"}},
                status=429,
                headers={"Retry-After": "1", "TL-Retry-After-Ms": "50"},
            )
        if fault == "503":
            return error(503, "unavailable", "injected server fault")
        if fault == "slow":
            self.slow_started.set()
            await asyncio.wait_for(self.release.wait(), 30)
        response = await handler(request)
        if fault == "drop":  # processed, then the answer is lost
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("answer dropped")
        return response

    async def markets(self, request: web.Request) -> web.Response:
        value: Any = [MARKET]
        fields = request.query.get("fields")
        if fields is not None:
            try:
                value = Selection.parse(fields).apply(value)
            except InvalidRequest as exc:
                return error(400, "invalid_request", exc.message, field=exc.field)
        return web.json_response(value, headers={"TL-RateLimit-Remaining": "190"})

    async def trades(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since_id", "0"))
        trades = [
            {
                "id": i,
                "symbol": "BTC-USD",
                "price": "100.01",
                "size": "0.0100",
                "side": "buy",
                "ts": 1_700_000_000_000_000_000 + i,
            }
            for i in range(since + 1, since + 4)
        ]
        return web.json_response(trades)

    async def book(self, request: web.Request) -> web.Response:
        if request.match_info["symbol"] != "BTC-USD":
            return error(404, "unknown_symbol", "unknown symbol", field="symbol")
        return web.json_response(
            {
                "symbol": "BTC-USD",
                "seq": 9,
                "bids": [["100.00", "1.5000"]],
                "asks": [["100.01", "0.2500"]],
                "checksum": 123,
                "ts": 5,
            }
        )

    async def login(self, request: web.Request) -> web.Response:
        key, ts, sig = (request.headers.get(h) for h in ("TL-KEY", "TL-TS", "TL-SIGN"))
        if key != KEY or ts is None or sig is None:
            return error(401, "unknown_key", "unknown key")
        nonce = request.headers.get("TL-NONCE", "")
        payload = (ts + nonce + request.method + request.raw_path).encode() + await request.read()
        if not hmac.compare_digest(
            hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest(), sig
        ):
            return error(401, "bad_signature", "signature does not match")
        self.logins += 1
        token = f"tok-{self.logins}"
        self.tokens.add(token)
        return web.json_response({"token": token, "expires_at": 0, "ttl": 300})

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") in self.tokens

    async def place(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return error(401, "bad_token", "unknown token")
        body = json.loads(await request.read())
        if body["size"] == "999":
            return error(422, "order_rejected", "insufficient_balance")
        if body["size"] == "0.00001":
            return error(
                400, "invalid_request", "size is not a multiple of the lot size", field="size"
            )
        cid = body.get("client_order_id")
        if cid in self.orders:
            return web.json_response(self.orders[cid], headers={"TL-Idempotent-Replay": "true"})
        order = {
            "id": str(len(self.orders) + 1),
            "client_order_id": cid,
            "symbol": body["symbol"],
            "side": body["side"],
            "type": body["type"],
            "price": body.get("price"),
            "size": body["size"],
            "filled_size": "0",
            "avg_price": None,
            "status": "open",
            "time_in_force": "gtc",
            "post_only": False,
            "reject_reason": None,
            "created_ts": 1,
            "updated_ts": 1,
        }
        self.orders[cid] = order
        return web.json_response(order, status=201)

    async def list_orders(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return error(401, "bad_token", "unknown token")
        return web.json_response(list(self.orders.values()))


async def _start(fake: FakeExchange) -> web.AppRunner:
    runner = web.AppRunner(fake.app(), handle_signals=False)
    await runner.setup()

    def connected() -> None:
        fake.open_connections += 1

    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = runner.server
    assert server is not None
    original = server.connection_made, server.connection_lost

    def made(handler: Any, transport: Any) -> None:
        fake.open_connections += 1
        original[0](handler, transport)

    def lost(handler: Any, exc: BaseException | None) -> None:
        fake.open_connections -= 1
        original[1](handler, exc)

    server.connection_made = made  # type: ignore[method-assign]
    server.connection_lost = lost  # type: ignore[method-assign]
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/api/v1"
    return runner


@pytest.fixture
async def fake() -> AsyncIterator[FakeExchange]:
    exchange = FakeExchange()
    runner = await _start(exchange)
    try:
        yield exchange
    finally:
        exchange.release.set()
        await runner.cleanup()


@pytest.fixture
def fake_in_thread() -> Iterator[FakeExchange]:
    """The fake exchange on its own loop in a thread, for clients that block the test's loop."""
    exchange = FakeExchange()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    box: dict[str, web.AppRunner] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        box["runner"] = loop.run_until_complete(_start(exchange))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield exchange
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def client(fake: FakeExchange, **options: Any) -> AsyncClient:
    options.setdefault("credentials", Credentials(KEY, SECRET))
    options.setdefault("rate_limit", (10_000.0, 1.0))
    return AsyncClient("sim", url=fake.url, **options)


# ------------------------------------------------------------------------------ happy paths


async def test_markets_with_field_selection_sets_only_selected_fields(fake: FakeExchange) -> None:
    async with client(fake) as c:
        markets = await c.markets(fields=Selection("symbol", "status", book=Selection("bids")))
        assert len(markets) == 1
        m = markets[0]
        assert m.symbol == "BTC-USD" and m.status == "open"
        assert m.book is not UNSET and m.book.bids is not UNSET
        assert str(m.book.bids[0].price) == "100.00"
        assert m.book.asks is UNSET and m.tick_size is UNSET and m.ticker is UNSET
        full = (await c.markets())[0]
        assert str(full.tick_size) == "0.01"
        instruments = await c.instruments()
        assert instruments[0].symbol == "BTC-USD" and str(instruments[0].lot_size) == "0.0001"


async def test_bad_field_is_named(fake: FakeExchange) -> None:
    async with client(fake) as c:
        with pytest.raises(InvalidRequest) as info:
            await c.markets(fields=Selection("symbol", book=Selection("bogus")))
        assert info.value.field == "book.bogus"


async def test_book_and_trades(fake: FakeExchange) -> None:
    async with client(fake) as c:
        book = await c.book("BTC-USD")
        assert book.sequence == 9 and book.checksum == 123 and book.recv_ts > 0
        assert book.bids[0] == (book.bids[0].price, book.bids[0].size)
        trades = await c.trades("BTC-USD", since_id=10)
        assert [t.id for t in trades] == [11, 12, 13]
        assert str(trades[0].price) == "100.01" and trades[0].venue == "sim"
        with pytest.raises(ExchangeError) as info:
            await c.book("NOPE-USD")
        assert info.value.code == "unknown_symbol" and info.value.status == 404


# ------------------------------------------------------------------------------ retries


async def test_reads_retry_through_503_and_dropped_answers(fake: FakeExchange) -> None:
    async with client(fake, max_retries=5) as c:
        fake.faults.extend(["503", "drop", "503"])
        trades = await c.trades("BTC-USD")
        assert len(trades) == 3
        assert c.stats.retries >= 3


async def test_retries_give_up_with_a_typed_error(fake: FakeExchange) -> None:
    async with client(fake, max_retries=2) as c:
        fake.faults.extend(["503"] * 5)
        with pytest.raises(ExchangeError) as info:
            await c.trades("BTC-USD")
        assert info.value.status == 503
        assert fake.requests == 3  # one try and two retries, no more


async def test_order_through_dropped_answers_exists_once(fake: FakeExchange) -> None:
    async with client(fake) as c:
        await c.markets()  # warm up the pool
        fake.faults.extend(["drop", "drop"])
        order = await c.place_order("BTC-USD", side="buy", type="limit", price="100.5", size="0.1")
        assert order.client_order_id is not None and order.client_order_id.startswith("tl-")
        assert len(fake.orders) == 1
        again = await c.place_order(
            "BTC-USD",
            side="buy",
            type="limit",
            price="100.5",
            size="0.1",
            client_order_id=order.client_order_id,
        )
        assert again.id == order.id and len(fake.orders) == 1


async def test_non_idempotent_request_not_retried_after_lost_answer(fake: FakeExchange) -> None:
    async with client(fake) as c:
        await c.orders()  # logged in, pool warm
        http = c.http
        fake.faults.append("drop")
        request = RestRequest(
            "POST",
            "/orders",
            body=b'{"symbol":"BTC-USD","side":"buy","type":"limit","price":"1","size":"1"}',
            private=True,
            idempotent=False,
        )
        with pytest.raises(NetworkError) as info:
            await http.request(request)
        assert not isinstance(info.value, TimeoutError)
        assert len(fake.orders) == 1  # processed once, never sent again


async def test_429_honours_retry_after_and_completes(fake: FakeExchange) -> None:
    async with client(fake, max_retries=5) as c:
        fake.faults.extend(["429"] * 6)
        results = await asyncio.gather(*(c.trades("BTC-USD") for _ in range(6)))
        assert all(len(r) == 3 for r in results)
        assert c.stats.rate_limited == 6
        throttle = c.http.throttle
        assert throttle is not None and throttle.rate_factor < 1.0  # it slowed down


async def test_429_beyond_the_retries_is_a_rate_limit_error(fake: FakeExchange) -> None:
    async with client(fake, max_retries=1) as c:
        fake.faults.extend(["429"] * 3)
        with pytest.raises(RateLimitError) as info:
            await c.trades("BTC-USD")
        assert info.value.retry_after == pytest.approx(0.05)  # the exact header is preferred


# ------------------------------------------------------------------------------ auth


async def test_one_login_for_three_clients_and_many_calls(fake: FakeExchange) -> None:
    creds = Credentials(KEY, SECRET)
    clients = [client(fake, credentials=creds) for _ in range(3)]
    try:
        await asyncio.gather(*(c.orders() for c in clients for _ in range(5)))
    finally:
        for c in clients:
            await c.aclose()
    assert fake.logins == 1 and creds.logins == 1


async def test_refused_token_is_renewed_once(fake: FakeExchange) -> None:
    creds = Credentials(KEY, SECRET)
    async with client(fake, credentials=creds) as c:
        await c.orders()
        fake.tokens.clear()  # the exchange forgot every token (restart)
        await c.orders()
    assert fake.logins == 2


async def test_wrong_secret_is_auth_error_without_secret(fake: FakeExchange) -> None:
    wrong = "definitely-not-the-secret"
    async with client(fake, credentials=Credentials(KEY, wrong)) as c:
        with pytest.raises(AuthError) as info:
            await c.orders()
    text = str(info.value) + repr(info.value) + repr(info.value.__cause__)
    assert wrong not in text and "bad_signature" in text


async def test_private_call_without_credentials(fake: FakeExchange) -> None:
    async with client(fake, credentials=None) as c:
        with pytest.raises(AuthError):
            await c.orders()
    assert fake.requests == 0


async def test_rejections_and_bad_fields_are_typed(fake: FakeExchange) -> None:
    async with client(fake) as c:
        with pytest.raises(OrderRejected) as rejected:
            await c.place_order("BTC-USD", side="buy", type="limit", price="1", size="999")
        assert rejected.value.reason == "insufficient_balance"
        with pytest.raises(InvalidRequest) as bad:
            await c.place_order("BTC-USD", side="buy", type="limit", price="1", size="0.00001")
        assert bad.value.field == "size"
        before = fake.requests
        with pytest.raises(InvalidRequest) as local:
            await c.place_order("BTC-USD", side="buy", type="limit", price="abc", size="1")
        assert local.value.field == "price" and fake.requests == before  # refused locally


# ------------------------------------------------------------------------------ timeouts


async def test_call_timeout_fires(fake: FakeExchange) -> None:
    async with client(fake, timeout=0.3, attempt_timeout=0.3) as c:
        fake.faults.append("slow")
        with pytest.raises(TimeoutError) as info:
            await c.trades("BTC-USD")
        assert isinstance(info.value, NetworkError) and isinstance(info.value, TickloopError)


async def test_attempt_timeout_is_retried_for_reads(fake: FakeExchange) -> None:
    async with client(fake, timeout=10.0, attempt_timeout=0.2) as c:
        fake.faults.append("slow")
        assert len(await c.trades("BTC-USD")) == 3
        assert c.stats.timeouts == 1 and c.stats.retries == 1


async def test_connection_refused_is_network_error() -> None:
    async with AsyncClient("sim", url="http://127.0.0.1:9/api/v1", max_retries=1, timeout=5.0) as c:
        with pytest.raises(NetworkError) as info:
            await c.trades("BTC-USD")
    assert not isinstance(info.value.__class__, type(None))
    assert "aiohttp" not in type(info.value).__module__


# ------------------------------------------------------------------------------ lifecycle


async def _eventually(predicate: Any, seconds: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_cancellation_mid_request_leaks_no_connection(fake: FakeExchange) -> None:
    async with client(fake) as c:
        await c.trades("BTC-USD")
        fake.faults.append("slow")
        task = asyncio.create_task(c.trades("BTC-USD"))
        await fake.slow_started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c.stats.in_flight == 0
        assert len(await c.trades("BTC-USD")) == 3  # the client still works
    # every connection the client opened is closed once it is closed
    assert await _eventually(lambda: fake.open_connections == 0)


async def test_many_concurrent_calls_bounded(fake: FakeExchange) -> None:
    async with client(fake, max_concurrency=4) as c:
        results = await asyncio.gather(*(c.trades("BTC-USD", since_id=i) for i in range(40)))
        assert [r[0].id for r in results] == [i + 1 for i in range(40)]
        assert c.stats.in_flight == 0
    assert await _eventually(lambda: fake.open_connections == 0)
    assert fake.open_connections == 0


async def test_closed_client_refuses_calls(fake: FakeExchange) -> None:
    c = client(fake)
    await c.aclose()
    await c.aclose()  # idempotent
    with pytest.raises(NetworkError):
        await c.trades("BTC-USD")
    with pytest.deprecated_call():  # the old name still closes
        await c.close()


async def test_unclosed_client_warns_once(fake: FakeExchange) -> None:
    c = client(fake)
    await c.trades("BTC-USD")
    gc.collect()  # earlier tests' garbage warns now, not inside the block below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del c
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert messages == ["AsyncClient('sim') was never closed"]
    assert await _eventually(lambda: fake.open_connections == 0)


async def test_http_session_url_checked() -> None:
    with pytest.raises(TickloopError):
        HttpSession("ftp://example")


# ------------------------------------------------------------------------------ sync twin


def test_sync_client_in_plain_code(fake_in_thread: FakeExchange) -> None:
    creds = Credentials(KEY, SECRET)
    with Client("sim", url=fake_in_thread.url, credentials=creds) as c:
        assert c.markets()[0].symbol == "BTC-USD"
        order = c.place_order("BTC-USD", side="sell", type="limit", price="101", size="0.5")
        assert c.orders()[0].id == order.id
        with pytest.raises(OrderRejected):  # the same exceptions as AsyncClient
            c.place_order("BTC-USD", side="buy", type="limit", price="1", size="999")
        thread = c._runner.thread
    assert not thread.is_alive()  # close() ended the client's thread
    with pytest.raises(NetworkError):
        c.markets()


async def test_sync_client_inside_a_running_loop(fake_in_thread: FakeExchange) -> None:
    asyncio.get_running_loop()  # as in Jupyter: a loop is running in this thread
    creds = Credentials(KEY, SECRET)
    with Client("sim", url=fake_in_thread.url, credentials=creds) as c:
        assert len(c.trades("BTC-USD")) == 3
        c.orders()
    # shared with an AsyncClient on this loop: still one login
    async with AsyncClient("sim", url=fake_in_thread.url, credentials=creds) as ac:
        await ac.orders()
    assert fake_in_thread.logins == 1


def test_unclosed_sync_client_warns_once_and_ends_its_thread(
    fake_in_thread: FakeExchange,
) -> None:
    c = Client("sim", url=fake_in_thread.url)
    c.trades("BTC-USD")
    thread = c._runner.thread
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del c
        gc.collect()
        thread.join(10)
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert messages == ["tickloop Client('sim') was never closed"]
    assert not thread.is_alive()


async def test_throttle_wait_beyond_the_deadline_fails_at_once(fake: FakeExchange) -> None:
    # a budget of 1 request per 10 s: the second call cannot go out within its 1 s timeout
    async with client(fake, rate_limit=(1.0, 10.0), timeout=1.0) as c:
        await c.trades("BTC-USD")
        with pytest.raises(TimeoutError, match="rate limit"):
            await c.trades("BTC-USD")
        assert c.stats.retries == 0 and fake.requests == 1


async def test_logs_carry_no_secret_token_or_signature(
    fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="tickloop")
    creds = Credentials(KEY, SECRET)
    async with client(fake, credentials=creds) as c:
        await c.orders()
        fake.tokens.clear()
        fake.faults.extend(["503", "429", "drop"])
        await c.orders()
        await c.orders()
    text = caplog.text
    assert "rate limited" in text and "logging in again" in text and "retry in" in text
    token = creds.cached_token()
    assert token is not None and token not in text
    assert SECRET not in text and "TL-SIGN" not in text and "Bearer" not in text
