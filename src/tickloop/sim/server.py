"""The embedded exchange's REST and WebSocket API (aiohttp), exactly as docs/protocol.md says.

:class:`SimServer` builds the aiohttp application around an :class:`~tickloop.sim.engine.Engine`
and a :class:`~tickloop.sim.feed.Hub`. One middleware does everything every REST request needs,
in this order: count it, injected latency, injected 429/503, authentication (private routes),
the weighted rate limit, the handler, the rate-limit headers, and an injected lost answer. A
handler raises :class:`ApiError` for any 4xx; nothing a client sends can raise anything else.

WebSocket requests never close the connection: each bad one is answered with an ``error``
message. Frames leave through the connection's bounded buffer in the hub (see feed.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, NoReturn

import msgspec
from aiohttp import WSMsgType, web

from ..checksums import decimal_text
from ..exceptions import InvalidRequest
from ..fields import Selection
from ..models import OrderType, Side, TimeInForce
from .auth import AuthFailure, KeyStore, RateLimiter, Verdict
from .engine import Engine, Rejected, SimOrder
from .faults import Faults
from .feed import (
    INTERVALS,
    Connection,
    ExchangeStats,
    Hub,
    book_json,
    candle_json,
    fill_json,
    order_json,
    ticker_json,
    trade_json,
)
from .market import MarketSpec

__all__ = ["API_PREFIX", "ApiError", "SimServer"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
MAX_CLIENT_ORDER_ID = 64
CHANNELS = frozenset({"trades", "book", "candles", "ticker", "orders", "fills"})
PRIVATE_CHANNELS = frozenset({"orders", "fills"})

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class _BadJson(ValueError):
    """A request body or WebSocket frame that is not acceptable JSON (the message says why)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _BadJson(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _parse_json(raw: bytes) -> Any:
    """A client's JSON, strictly: valid (msgspec), not nested past the interpreter's recursion
    limit (a RecursionError is a bad request, not a 500), and without a key given twice (which
    value would count is a parser's choice: two parsers of one request could disagree)."""
    try:
        value = _decode(raw)
    except msgspec.DecodeError as exc:
        raise _BadJson(f"not JSON: {exc}") from None
    except RecursionError:
        raise _BadJson("JSON nested too deeply") from None
    if isinstance(value, dict | list) and b"{" in raw:
        try:
            json.loads(raw, object_pairs_hook=_no_duplicates)
        except RecursionError:
            raise _BadJson("JSON nested too deeply") from None
    return value

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ACCOUNT = web.RequestKey("tickloop_sim_account", str)


class ApiError(Exception):
    """A REST error answer: ``{"error": {"code", "message", "field"?}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def _bad(field: str, message: str) -> NoReturn:
    raise ApiError(400, "invalid_request", message, field=field)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        _bad(name, f"{name} must be an integer, got {raw!r}")
    if not lo <= value <= hi:
        _bad(name, f"{name} must be within {lo}..{hi}, got {value}")
    return value


def _json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encode(value), status=status, content_type="application/json", headers=headers
    )


class SimServer:
    """The aiohttp application of one exchange."""

    def __init__(
        self,
        engine: Engine,
        hub: Hub,
        keys: KeyStore,
        faults: Faults,
        stats: ExchangeStats,
        *,
        rate_limit_weight: int = 200,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.keys = keys
        self.faults = faults
        self.stats = stats
        self.limiter = RateLimiter(rate_limit_weight, 1.0)
        self._private: set[Handler] = set()

    # ------------------------------------------------------------------------- application
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        p = API_PREFIX
        public: list[tuple[str, str, Handler]] = [
            ("GET", "/time", self.get_time),
            ("GET", "/markets", self.get_markets),
            ("GET", "/markets/{symbol}", self.get_market),
            ("GET", "/book/{symbol}", self.get_book),
            ("GET", "/trades/{symbol}", self.get_trades),
            ("GET", "/candles/{symbol}", self.get_candles),
            ("GET", "/ticker/{symbol}", self.get_ticker),
        ]
        private: list[tuple[str, str, Handler]] = [
            ("POST", "/auth/token", self.post_token),
            ("POST", "/orders", self.post_order),
            ("GET", "/orders", self.get_orders),
            ("DELETE", "/orders", self.delete_orders),
            ("GET", "/orders/by-client-id/{client_order_id}", self.get_order_by_client_id),
            ("GET", "/orders/{id}", self.get_order),
            ("PATCH", "/orders/{id}", self.patch_order),
            ("DELETE", "/orders/{id}", self.delete_order),
            ("GET", "/fills", self.get_fills),
            ("GET", "/balances", self.get_balances),
            ("GET", "/positions", self.get_positions),
        ]
        for method, path, handler in public + private:
            app.router.add_route(method, p + path, handler)
        self._private = {handler for _, _, handler in private}
        app.router.add_get("/ws", self.websocket)
        return app

    # ------------------------------------------------------------------------- middleware
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        stats, faults = self.stats, self.faults
        stats.rest_requests += 1
        if faults.latency_s > 0:
            await asyncio.sleep(faults.latency_s)
        injected = faults.take_rest_fault()
        if injected is not None:
            stats.rest_errors += 1
            if injected.status == 429:
                stats.rate_limited += 1
                return self._rate_limited(injected.retry_after or 0.2, None)
            return _json_response(
                ApiError(injected.status, "unavailable", "injected server fault").body(),
                injected.status,
            )
        verdict: Verdict | None = None
        try:
            account: str | None = None
            route_handler = request.match_info.route.handler
            if route_handler in self._private:
                try:
                    account = await self._authenticate(request)
                except AuthFailure as exc:
                    stats.rejected_auth += 1
                    # a failed attempt costs 1 of the address's budget
                    verdict = self._charge(request, None, 1)
                    if not verdict.allowed:
                        stats.rate_limited += 1
                        stats.rest_errors += 1
                        return self._rate_limited(verdict.retry_after, verdict)
                    raise ApiError(401, exc.code, exc.message) from None
            verdict = self._charge(request, account, self._weight(request))
            if not verdict.allowed:
                stats.rate_limited += 1
                stats.rest_errors += 1
                return self._rate_limited(verdict.retry_after, verdict)
            if account is not None:
                request[_ACCOUNT] = account
            response = await handler(request)
        except ApiError as exc:
            stats.rest_errors += 1
            response = _json_response(exc.body(), exc.status)
        except (asyncio.CancelledError, ConnectionError):
            raise  # the client went away: nobody to answer
        except web.HTTPException as exc:  # aiohttp's own 404/405 for unknown paths
            stats.rest_errors += 1
            code = "not_found" if exc.status == 404 else "invalid_request"
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            response = _json_response(
                ApiError(exc.status, code, exc.reason).body(), exc.status, allow
            )
        except Exception:
            # A bug of the exchange, not the client's fault: say so in JSON and log it.
            log.exception("sim: %s %s failed", request.method, request.path)
            stats.rest_errors += 1
            body = ApiError(500, "internal", "the exchange failed to answer").body()
            response = _json_response(body, 500)
        if verdict is not None:
            self._limit_headers(response, verdict)
        if faults.take_drop_response():
            stats.dropped_responses += 1
            if request.transport is not None:
                request.transport.abort()  # the answer below goes nowhere: it is lost
        return response

    def _charge(self, request: web.Request, account: str | None, weight: int) -> Verdict:
        identity = f"key:{account}" if account else f"addr:{request.remote}"
        return self.limiter.check(identity, weight, time.monotonic())

    @staticmethod
    def _weight(request: web.Request) -> int:
        info = request.match_info
        handler = info.route.handler
        name = getattr(handler, "__name__", "")
        if name == "get_markets":
            return 10
        if name == "get_book":
            raw = request.query.get("depth", "")
            if raw.isdigit() and int(raw) > 100:
                return 5
        return 1

    @staticmethod
    def _limit_headers(response: web.StreamResponse, verdict: Verdict) -> None:
        response.headers["TL-RateLimit-Limit"] = str(verdict.limit)
        response.headers["TL-RateLimit-Remaining"] = str(verdict.remaining)
        response.headers["TL-RateLimit-Weight"] = str(verdict.weight)

    def _rate_limited(self, retry_after: float, verdict: Verdict | None) -> web.Response:
        ms = max(1, math.ceil(retry_after * 1000))
        headers = {"Retry-After": str(max(1, math.ceil(ms / 1000))), "TL-Retry-After-Ms": str(ms)}
        body = ApiError(429, "rate_limited", f"rate limit exceeded; retry after {ms} ms").body()
        response = _json_response(body, 429, headers)
        if verdict is not None:
            self._limit_headers(response, verdict)
        return response

    async def _authenticate(self, request: web.Request) -> str:
        headers = request.headers
        key, ts, sig = headers.get("TL-KEY"), headers.get("TL-TS"), headers.get("TL-SIGN")
        if key is not None or ts is not None or sig is not None:
            missing = [
                name for name, v in (("TL-KEY", key), ("TL-TS", ts), ("TL-SIGN", sig)) if not v
            ]
            if missing:
                raise AuthFailure("missing_credentials", f"missing header {', '.join(missing)}")
            assert key is not None and ts is not None and sig is not None
            body = await request.read()
            rest = (request.method + request.raw_path).encode() + body
            return self.keys.verify_signed(
                key,
                ts,
                sig,
                rest,
                now_ms=time.time_ns() // 1_000_000,
                nonce=headers.get("TL-NONCE"),
            )
        auth = headers.get("Authorization")
        if auth is None:
            raise AuthFailure(
                "missing_credentials", "send TL-KEY, TL-TS and TL-SIGN, or a bearer token"
            )
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure("missing_credentials", "Authorization must be 'Bearer <token>'")
        key_id, _ = self.keys.verify_token(token.strip(), now=time.monotonic())
        return key_id

    # ------------------------------------------------------------------------- helpers
    def _respond(self, request: web.Request, value: Any, status: int = 200) -> web.Response:
        raw = request.query.get("fields")
        if raw is not None:
            try:
                value = Selection.parse(raw).apply(value)
            except InvalidRequest as exc:
                _bad(exc.field or "fields", exc.message)
        return _json_response(value, status)

    def _symbol(self, request: web.Request) -> str:
        symbol = request.match_info["symbol"]
        if symbol not in self.engine.markets:
            raise ApiError(404, "unknown_symbol", f"unknown symbol {symbol!r}", field="symbol")
        return symbol

    def _query_symbol(self, request: web.Request) -> str | None:
        symbol = request.query.get("symbol")
        if symbol is None or symbol == "":
            return None
        if symbol not in self.engine.markets:
            _bad("symbol", f"unknown symbol {symbol!r}")
        return symbol

    @staticmethod
    def _account(request: web.Request) -> str:
        return request[_ACCOUNT]

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = _parse_json(raw)
        except _BadJson as exc:
            raise ApiError(400, "invalid_json", f"body is not acceptable JSON: {exc}") from None
        if not isinstance(body, dict):
            _bad("body", "body must be a JSON object")
        return body

    def _market_json(self, spec: MarketSpec) -> dict[str, Any]:
        engine = self.engine
        symbol = spec.symbol
        bids, asks = engine.depth(symbol, 10)
        last = engine.last_price(symbol)
        return {
            "symbol": symbol,
            "base": spec.base,
            "quote": spec.quote,
            "status": "open",
            "price_precision": spec.price_precision,
            "size_precision": spec.size_precision,
            "tick_size": spec.price_text(1),
            "lot_size": spec.size_text(1),
            "min_size": spec.size_text(spec.min_size_lots),
            "book": {
                "seq": engine.seq(symbol),
                "bids": [[spec.price_text(p), spec.size_text(s)] for p, s in bids],
                "asks": [[spec.price_text(p), spec.size_text(s)] for p, s in asks],
            },
            "ticker": {
                "bid": spec.price_text(bids[0][0]) if bids else None,
                "ask": spec.price_text(asks[0][0]) if asks else None,
                "last": spec.price_text(last) if last is not None else None,
                "volume": spec.size_text(self.hub.volume.get(symbol, 0)),
            },
        }

    def _order_json(self, order: SimOrder) -> dict[str, Any]:
        return order_json(order.to_model(self.engine.markets[order.symbol]))

    def _rejected(self, exc: Rejected) -> ApiError:
        if exc.reason == "unknown_order":
            return ApiError(404, "unknown_order", exc.message, field="id")
        if exc.reason in ("amend_not_smaller", "amend_below_filled"):
            return ApiError(400, "invalid_request", exc.message, field="size")
        if exc.field is not None:
            return ApiError(400, "invalid_request", exc.message, field=exc.field)
        return ApiError(422, "order_rejected", exc.reason)

    # ------------------------------------------------------------------------- public REST
    async def get_time(self, request: web.Request) -> web.Response:
        return self._respond(request, {"ts": time.time_ns()})

    async def get_markets(self, request: web.Request) -> web.Response:
        markets = [self._market_json(spec) for spec in self.engine.markets.values()]
        return self._respond(request, markets)

    async def get_market(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        return self._respond(request, self._market_json(self.engine.markets[symbol]))

    async def get_book(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        depth = _int_param(request, "depth", 100, 1, 1000)
        return self._respond(request, book_json(self.engine, symbol, depth, time.time_ns()))

    async def get_trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        since_id = _int_param(request, "since_id", 0, 0, 2**62)
        limit = _int_param(request, "limit", 1000, 1, 1000)
        spec = self.engine.markets[symbol]
        trades = self.engine.trades(symbol, since_id, limit)
        return self._respond(request, [trade_json(spec, t) for t in trades])

    async def get_candles(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        interval = request.query.get("interval", "1m")
        if interval not in INTERVALS:
            _bad("interval", f"interval must be one of {' '.join(INTERVALS)}, got {interval!r}")
        limit = _int_param(request, "limit", 100, 1, 1000)
        candles = self.hub.candles.candles(symbol, interval, limit)
        return self._respond(request, [candle_json(c) for c in candles])

    async def get_ticker(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        volume = self.hub.volume.get(symbol, 0)
        return self._respond(request, ticker_json(self.engine, symbol, volume, time.time_ns()))

    # ------------------------------------------------------------------------- private REST
    async def post_token(self, request: web.Request) -> web.Response:
        token, expires_at = self.keys.issue_token(
            self._account(request), now=time.monotonic(), now_ns=time.time_ns()
        )
        self.stats.tokens_issued += 1
        self.stats.logins += 1
        ttl = self.keys.token_ttl
        return _json_response(
            {"token": token, "expires_at": expires_at, "ttl": int(ttl) if ttl == int(ttl) else ttl}
        )

    async def post_order(self, request: web.Request) -> web.Response:
        account = self._account(request)
        body = await self._body(request)
        engine = self.engine

        symbol = body.get("symbol")
        if not isinstance(symbol, str):
            _bad("symbol", "symbol is required (a string such as 'BTC-USD')")
        spec = engine.markets.get(symbol)
        if spec is None:
            _bad("symbol", f"unknown symbol {symbol!r}")
        try:
            side = Side(str(body.get("side")))
        except ValueError:
            _bad("side", "side must be 'buy' or 'sell'")
        try:
            otype = OrderType(str(body.get("type")))
        except ValueError:
            _bad("type", "type must be 'limit' or 'market'")
        raw_size = body.get("size")
        if raw_size is None:
            _bad("size", "size is required")
        try:
            size = spec.parse_size(raw_size)
        except ValueError as exc:
            _bad("size", str(exc))
        raw_price = body.get("price")
        price: int | None = None
        if otype is OrderType.LIMIT:
            if raw_price is None:
                _bad("price", "price is required for a limit order")
            try:
                price = spec.parse_price(raw_price)
            except ValueError as exc:
                _bad("price", str(exc))
        elif raw_price is not None:
            _bad("price", "a market order takes no price")
        raw_tif = body.get("time_in_force", "gtc")
        try:
            tif = TimeInForce(str(raw_tif))
        except ValueError:
            _bad("time_in_force", "time_in_force must be 'gtc', 'ioc' or 'fok'")
        post_only = body.get("post_only", False)
        if not isinstance(post_only, bool):
            _bad("post_only", "post_only must be true or false")
        if post_only and (otype is OrderType.MARKET or tif is not TimeInForce.GTC):
            _bad("post_only", "post_only needs a limit order with time_in_force 'gtc'")
        coid = body.get("client_order_id")
        if coid is not None:
            if not isinstance(coid, str) or not coid:
                _bad("client_order_id", "client_order_id must be a non-empty string")
            if len(coid) > MAX_CLIENT_ORDER_ID:
                _bad(
                    "client_order_id",
                    f"client_order_id is longer than {MAX_CLIENT_ORDER_ID} characters",
                )
            existing = engine.order_by_client_id(account, coid)
            if existing is not None:
                return _json_response(
                    self._order_json(existing), 200, {"TL-Idempotent-Replay": "true"}
                )
        try:
            order, events = engine.place(
                account,
                symbol,
                side,
                otype,
                size,
                price,
                time_in_force=tif,
                post_only=post_only,
                client_order_id=coid,
                ts=time.time_ns(),
            )
        except Rejected as exc:
            raise self._rejected(exc) from None
        self.hub.publish(events)
        return _json_response(self._order_json(order), 201)

    async def get_orders(self, request: web.Request) -> web.Response:
        account = self._account(request)
        symbol = self._query_symbol(request)
        status = request.query.get("status", "open")
        if status not in ("open", "all"):
            _bad("status", f"status must be 'open' or 'all', got {status!r}")
        orders = self.engine.orders(account, symbol, open_only=status == "open")
        return self._respond(request, [self._order_json(o) for o in orders])

    async def get_order(self, request: web.Request) -> web.Response:
        order = self.engine.order(self._account(request), request.match_info["id"])
        if order is None:
            raise ApiError(404, "unknown_order", "no such order", field="id")
        return self._respond(request, self._order_json(order))

    async def get_order_by_client_id(self, request: web.Request) -> web.Response:
        coid = request.match_info["client_order_id"]
        order = self.engine.order_by_client_id(self._account(request), coid)
        if order is None:
            raise ApiError(
                404, "unknown_order", "no order with that client_order_id", field="client_order_id"
            )
        return self._respond(request, self._order_json(order))

    async def patch_order(self, request: web.Request) -> web.Response:
        account = self._account(request)
        order = self.engine.order(account, request.match_info["id"])
        if order is None:
            raise ApiError(404, "unknown_order", "no such order", field="id")
        body = await self._body(request)
        raw = body.get("size")
        if raw is None:
            _bad("size", "size is required")
        try:
            size = self.engine.markets[order.symbol].parse_size(raw)
        except ValueError as exc:
            _bad("size", str(exc))
        try:
            amended, events = self.engine.amend(account, order.id, size, ts=time.time_ns())
        except Rejected as exc:
            raise self._rejected(exc) from None
        self.hub.publish(events)
        return _json_response(self._order_json(amended))

    async def delete_order(self, request: web.Request) -> web.Response:
        try:
            order, events = self.engine.cancel(
                self._account(request), request.match_info["id"], ts=time.time_ns()
            )
        except Rejected as exc:
            raise self._rejected(exc) from None
        self.hub.publish(events)
        return _json_response(self._order_json(order))

    async def delete_orders(self, request: web.Request) -> web.Response:
        symbol = self._query_symbol(request)
        orders, events = self.engine.cancel_all(self._account(request), symbol, ts=time.time_ns())
        self.hub.publish(events)
        return _json_response([self._order_json(o) for o in orders])

    async def get_fills(self, request: web.Request) -> web.Response:
        symbol = self._query_symbol(request)
        limit = _int_param(request, "limit", 1000, 1, 1000)
        fills = self.engine.fills(self._account(request), symbol)[-limit:]
        markets = self.engine.markets
        return self._respond(request, [fill_json(markets[f.symbol], f) for f in fills])

    async def get_balances(self, request: web.Request) -> web.Response:
        balances = self.engine.balances(self._account(request))
        return self._respond(
            request,
            [
                {"asset": asset, "total": decimal_text(total), "available": decimal_text(avail)}
                for asset, (total, avail) in sorted(balances.items())
            ],
        )

    async def get_positions(self, request: web.Request) -> web.Response:
        positions = self.engine.positions(self._account(request))

        def dec(value: Decimal | None) -> str | None:
            return None if value is None else decimal_text(value)

        return self._respond(
            request,
            [
                {
                    "symbol": p.symbol,
                    "size": decimal_text(p.size),
                    "avg_price": dec(p.avg_price),
                    "realized_pnl": decimal_text(p.realized_pnl),
                }
                for p in positions
            ],
        )

    # ------------------------------------------------------------------------- WebSocket
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        hub = self.hub
        conn = hub.connect(ws, request)
        writer = asyncio.create_task(self._write(conn), name=f"tickloop-sim-ws-{conn.id}")
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._ws_request(conn, msg.data.encode())
                elif msg.type is WSMsgType.BINARY:
                    self._ws_request(conn, msg.data)
                elif msg.type is WSMsgType.PING:
                    hub.send(conn, msg.data, WSMsgType.PONG)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            hub.disconnected(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            transport = conn.transport
            if not ws.closed and transport is not None and not transport.is_closing():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)
        return ws

    async def _write(self, conn: Connection) -> None:
        try:
            await self.hub.write_loop(conn)
        except (ConnectionError, RuntimeError):
            conn.abort()  # the peer is gone; the read loop sees it and cleans up

    def _ws_error(
        self,
        conn: Connection,
        req_id: int | None,
        code: str,
        message: str,
        field: str | None = None,
    ) -> None:
        self.stats.ws_errors += 1
        error: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if req_id is not None:
            error["id"] = req_id
        if field is not None:
            error["field"] = field
        self.hub.send_json(conn, error)

    def _ws_request(self, conn: Connection, data: bytes) -> None:
        try:
            msg = _parse_json(data)
        except _BadJson as exc:
            self._ws_error(conn, None, "invalid_json", str(exc))
            return
        if not isinstance(msg, dict):
            self._ws_error(conn, None, "invalid_request", "a request must be a JSON object")
            return
        req_id = msg.get("id")
        if req_id is not None and (not isinstance(req_id, int) or isinstance(req_id, bool)):
            self._ws_error(conn, None, "invalid_request", "id must be an integer", "id")
            return
        try:
            self._ws_op(conn, req_id, msg)
        except Exception:
            # A bug of the exchange, not the client's fault: an error message, never a closed
            # connection (the protocol's promise), and a log line.
            log.exception("sim: WebSocket request failed")
            self._ws_error(conn, req_id, "internal", "the exchange failed to answer")

    def _ws_op(self, conn: Connection, req_id: int | None, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op is None:
            self._ws_error(conn, req_id, "invalid_request", "missing op", "op")
        elif op == "subscribe" or op == "unsubscribe":
            self._ws_subscribe(conn, req_id, msg, op == "subscribe")
        elif op == "login":
            self._ws_login(conn, req_id, msg)
        elif op == "ping":
            answer: dict[str, Any] = {"type": "pong", "ts": time.time_ns()}
            if req_id is not None:
                answer["id"] = req_id
            self.hub.send_json(conn, answer)
        else:
            self._ws_error(conn, req_id, "unknown_op", f"unknown op {op!r}", "op")

    def _ws_subscribe(
        self, conn: Connection, req_id: int | None, msg: dict[str, Any], subscribe: bool
    ) -> None:
        hub = self.hub
        channel = msg.get("channel")
        if channel is None:
            self._ws_error(conn, req_id, "invalid_request", "missing channel", "channel")
            return
        if not isinstance(channel, str) or channel not in CHANNELS:
            shown = repr(channel) if len(repr(channel)) <= 40 else repr(channel)[:40] + "..."
            self._ws_error(
                conn,
                req_id,
                "unknown_channel",
                f"unknown channel {shown}; channels: {', '.join(sorted(CHANNELS))}",
                "channel",
            )
            return
        answer: dict[str, Any] = {
            "type": "subscribed" if subscribe else "unsubscribed",
            "channel": channel,
        }
        if req_id is not None:
            answer["id"] = req_id
        if channel in PRIVATE_CHANNELS:
            if conn.account is None:
                self._ws_error(
                    conn, req_id, "auth_required", f"log in before subscribing to {channel}"
                )
                return
            key = (channel, conn.account, None)
            if subscribe:
                hub.subscribe(conn, key)
            else:
                hub.unsubscribe(conn, key)
            answer["symbols"] = []
            hub.send_json(conn, answer)
            return
        symbols = msg.get("symbols")
        if (
            not isinstance(symbols, list)
            or not symbols
            or not all(isinstance(s, str) for s in symbols)
        ):
            self._ws_error(
                conn, req_id, "invalid_request", "symbols must be a non-empty list", "symbols"
            )
            return
        for symbol in symbols:
            if symbol not in self.engine.markets:
                self._ws_error(
                    conn, req_id, "unknown_symbol", f"unknown symbol {symbol!r}", "symbols"
                )
                return
        interval: str | None = None
        if channel == "candles":
            interval = msg.get("interval")
            if interval not in INTERVALS:
                self._ws_error(
                    conn,
                    req_id,
                    "invalid_request",
                    f"candles need an interval, one of {' '.join(INTERVALS)}",
                    "interval",
                )
                return
            answer["interval"] = interval
        symbols = list(dict.fromkeys(symbols))
        answer["symbols"] = symbols
        for symbol in symbols:
            if subscribe:
                hub.subscribe(conn, (channel, symbol, interval))
            else:
                hub.unsubscribe(conn, (channel, symbol, interval))
        hub.send_json(conn, answer)
        if subscribe and channel == "book":
            for symbol in symbols:
                hub.send_json(conn, hub.snapshot_message(symbol))

    def _ws_login(self, conn: Connection, req_id: int | None, msg: dict[str, Any]) -> None:
        token = msg.get("token")
        expires_at: int | None = None
        try:
            if token is not None:
                if not isinstance(token, str):
                    raise AuthFailure("bad_token", "token must be a string")
                account, expires_at = self.keys.verify_token(token, now=time.monotonic())
                signed = False
            else:
                key, ts, sig = msg.get("key"), msg.get("ts"), msg.get("sig")
                if not isinstance(key, str) or not isinstance(sig, str):
                    raise AuthFailure(
                        "missing_credentials", "login needs a token, or key, ts and sig"
                    )
                if not isinstance(ts, (int, str)) or isinstance(ts, bool):
                    raise AuthFailure("stale_timestamp", "ts must be integer milliseconds")
                nonce = msg.get("nonce")
                if nonce is not None and not isinstance(nonce, str):
                    raise AuthFailure("bad_nonce", "nonce must be a string")
                account = self.keys.verify_signed(
                    key, str(ts), sig, b"login", now_ms=time.time_ns() // 1_000_000, nonce=nonce
                )
                signed = True
        except AuthFailure as exc:
            self.stats.rejected_auth += 1
            self._ws_error(conn, req_id, "auth_failed", f"{exc.code}: {exc.message}")
            return
        if conn.account is not None and conn.account != account:
            for key_ in [k for k in conn.subs if k[0] in PRIVATE_CHANNELS]:
                self.hub.unsubscribe(conn, key_)
        conn.account = account
        self.stats.ws_logins += 1
        if signed:
            self.stats.logins += 1
        answer: dict[str, Any] = {"type": "logged_in", "expires_at": expires_at}
        if req_id is not None:
            answer["id"] = req_id
        self.hub.send_json(conn, answer)
