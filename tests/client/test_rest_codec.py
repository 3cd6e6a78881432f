"""The sim's REST codec (sans-I/O): requests built, answers parsed, errors mapped."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from tickloop import (
    AuthError,
    ExchangeError,
    InvalidRequest,
    OrderRejected,
    ProtocolError,
    RateLimitError,
    Selection,
)
from tickloop.client.http import HttpSession
from tickloop.models import OrderStatus, Side
from tickloop.venues import rest_codec
from tickloop.venues.sim_rest import SimRest

rest = SimRest()


def err(
    status: int, code: str, message: str = "m", headers: dict[str, str] | None = None, **extra: str
) -> object:
    body = msgspec.json.encode({"error": {"code": code, "message": message, **extra}})
    return rest.error(status, body, headers or {})


def test_registry_finds_the_codec() -> None:
    assert rest_codec("sim") is SimRest


def test_weights_follow_the_protocol() -> None:
    assert rest.markets_request().weight == 10
    assert rest.book_request("BTC-USD").weight == 1
    assert rest.book_request("BTC-USD", 100).weight == 1
    assert rest.book_request("BTC-USD", 101).weight == 5
    assert rest.trades_request("BTC-USD").weight == 1


def test_field_selection_goes_into_the_query_readably() -> None:
    req = rest.markets_request(Selection("symbol", "status", book=Selection("bids", "asks")))
    assert req.params == (("fields", "symbol,status,book(bids,asks)"),)
    http = HttpSession("http://127.0.0.1:1/api/v1")
    assert http.target(req) == "/api/v1/markets?fields=symbol,status,book(bids,asks)"
    assert http.target(rest.trades_request("BTC-USD", 5, 10)) == (
        "/api/v1/trades/BTC-USD?since_id=5&limit=10"
    )
    assert http.target(rest.orders_request("A B")) == "/api/v1/orders?symbol=A%20B&status=open"
    assert http.target(rest.book_request("X/Y")) == "/api/v1/book/X%2FY"  # one path segment


def test_place_order_request() -> None:
    req = rest.place_order_request(
        "BTC-USD", side="buy", type="limit", size=Decimal("0.1000"), price="100.50",
        time_in_force="ioc", client_order_id="c1",
    )  # fmt: skip
    assert (req.method, req.path, req.private, req.idempotent) == ("POST", "/orders", True, True)
    assert msgspec.json.decode(req.body or b"") == {
        "symbol": "BTC-USD", "side": "buy", "type": "limit", "size": "0.1000",
        "price": "100.50", "time_in_force": "ioc", "client_order_id": "c1",
    }  # fmt: skip
    market = rest.place_order_request("BTC-USD", side=Side.SELL, type="market", size=1)
    assert not market.idempotent  # without a client order id a retry could duplicate it
    assert "price" not in msgspec.json.decode(market.body or b"")
    tiny = rest.place_order_request("BTC-USD", side="buy", type="limit", size="1E-7", price=1)
    assert msgspec.json.decode(tiny.body or b"")["size"] == "0.0000001"  # never exponent form


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"side": "up"}, "side"),
        ({"type": "stop"}, "type"),
        ({"size": 0.1}, "size"),  # a float is inexact: refused
        ({"size": "-1"}, "size"),
        ({"size": "abc"}, "size"),
        ({"price": None}, "price"),  # a limit order needs a price
        ({"type": "market", "price": "1"}, "price"),
        ({"time_in_force": "day"}, "time_in_force"),
        ({"client_order_id": "x" * 65}, "client_order_id"),
        ({"symbol": ""}, "symbol"),
    ],
)
def test_place_order_request_names_the_bad_field(options: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"side": "buy", "type": "limit", "size": "1", "price": "1"}
    args.update(options)
    symbol = str(args.pop("symbol", "BTC-USD"))
    with pytest.raises(InvalidRequest) as info:
        rest.place_order_request(symbol, **args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_query_values_are_refused_locally() -> None:
    with pytest.raises(InvalidRequest, match="depth"):
        rest.book_request("BTC-USD", 0)
    with pytest.raises(InvalidRequest, match="limit"):
        rest.trades_request("BTC-USD", limit=1001)
    with pytest.raises(InvalidRequest, match="since_id"):
        rest.trades_request("BTC-USD", since_id=-1)
    with pytest.raises(InvalidRequest, match="interval"):
        rest.candles_request("BTC-USD", "2m")
    with pytest.raises(InvalidRequest, match="status"):
        rest.orders_request(status="closed")


def test_cancel_is_not_retried_after_a_lost_answer() -> None:
    assert not rest.cancel_order_request("1").idempotent
    assert rest.amend_order_request("1", "0.5").idempotent
    assert rest.order_request("1").private


def test_errors_map_onto_the_tree() -> None:
    bad = err(400, "invalid_request", "size is not a multiple of the lot size", field="size")
    assert isinstance(bad, InvalidRequest) and bad.field == "size" and bad.code == "invalid_request"
    auth = err(401, "bad_signature", "signature does not match")
    assert isinstance(auth, AuthError) and "bad_signature" in str(auth)
    rejected = err(422, "order_rejected", "post_only_would_take")
    assert isinstance(rejected, OrderRejected) and rejected.reason == "post_only_would_take"
    missing = err(404, "unknown_order", "no such order")
    assert isinstance(missing, ExchangeError) and not isinstance(missing, OrderRejected)
    assert (missing.code, missing.status) == ("unknown_order", 404)
    limited = err(429, "rate_limited", headers={"Retry-After": "1", "TL-Retry-After-Ms": "250"})
    assert isinstance(limited, RateLimitError) and limited.retry_after == 0.25
    only_header = err(429, "rate_limited", headers={"Retry-After": "2"})
    assert isinstance(only_header, RateLimitError) and only_header.retry_after == 2.0
    garbage = rest.error(502, b"<html>bad gateway</html>", {})
    assert isinstance(garbage, ExchangeError) and garbage.status == 502
    assert all(e.venue == "sim" for e in (bad, auth, rejected, missing, limited, garbage))  # type: ignore[attr-defined]


def test_parsers_keep_exact_digits_and_refuse_garbage() -> None:
    order = rest.parse_order(
        b'{"id":"17","client_order_id":"c1","symbol":"BTC-USD","side":"buy","type":"limit",'
        b'"price":"100.50","size":"0.1000","filled_size":"0.0000","avg_price":null,'
        b'"status":"open","time_in_force":"gtc","post_only":false,"reject_reason":null,'
        b'"created_ts":1,"updated_ts":2}'
    )
    assert order.id == "17" and str(order.price) == "100.50" and order.status is OrderStatus.OPEN
    book = rest.parse_book(
        b'{"symbol":"BTC-USD","seq":5,"bids":[["100.00","1.5000"]],"asks":[],"checksum":7,"ts":3}',
        "BTC-USD",
        recv_ts=9,
    )
    assert (book.sequence, book.checksum, book.recv_ts) == (5, 7, 9)
    assert str(book.bids[0].size) == "1.5000" and book.asks == ()
    with pytest.raises(ProtocolError):
        rest.parse_trades(b'[{"id":"x"}]', "BTC-USD")
    with pytest.raises(ProtocolError):
        rest.parse_markets(b"not json")
