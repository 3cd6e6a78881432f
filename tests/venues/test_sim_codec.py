"""The sim's WebSocket codec on the messages of docs/protocol.md, without a network."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tickloop.exceptions import ProtocolError
from tickloop.models import (
    BookDelta,
    BookLevel,
    BookSnapshot,
    Candle,
    Fill,
    Liquidity,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    Side,
    Ticker,
    Trade,
)
from tickloop.venues import stream_codec
from tickloop.venues.base import (
    Channel,
    Heartbeat,
    LoggedIn,
    Pong,
    Subscribed,
    Subscription,
    Unsubscribed,
    VenueError,
)
from tickloop.venues.sim import SimCodec


def frame(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode()


def one(codec: SimCodec, message: dict[str, object]) -> object:
    (event,) = codec.decode(frame(message), 42)
    return event


def test_registry_returns_the_sim_codec() -> None:
    assert stream_codec("sim") is SimCodec
    assert SimCodec.contiguous_trade_ids
    assert SimCodec.channels == frozenset(Channel)


def test_trade_is_exact_and_typed() -> None:
    event = one(
        SimCodec(),
        {
            "type": "trade",
            "symbol": "BTC-USD",
            "id": 17,
            "price": "100.10",
            "size": "0.0100",
            "side": "buy",
            "ts": 5,
        },
    )
    assert event == Trade(
        venue="sim",
        symbol="BTC-USD",
        id=17,
        price=Decimal("100.10"),
        size=Decimal("0.0100"),
        side=Side.BUY,
        ts=5,
        recv_ts=42,
    )
    assert isinstance(event, Trade) and str(event.price) == "100.10"  # digits kept


def test_decimal_strings_are_interned() -> None:
    codec = SimCodec()
    msg = {
        "type": "trade",
        "symbol": "BTC-USD",
        "id": 1,
        "price": "100.10",
        "size": "1.0000",
        "side": "sell",
        "ts": 1,
    }
    a = one(codec, msg)
    b = one(codec, {**msg, "id": 2})
    assert isinstance(a, Trade) and isinstance(b, Trade)
    assert a.price is b.price


def test_book_snapshot_and_update() -> None:
    codec = SimCodec()
    snap = one(
        codec,
        {
            "type": "book_snapshot",
            "symbol": "BTC-USD",
            "seq": 1812,
            "bids": [["100.00", "1.5000"]],
            "asks": [["100.01", "0.2500"]],
            "checksum": 3954718391,
            "ts": 9,
        },
    )
    assert isinstance(snap, BookSnapshot)
    assert snap.sequence == 1812 and snap.checksum == 3954718391
    assert snap.bids == (BookLevel(Decimal("100.00"), Decimal("1.5000")),)
    update = one(
        codec,
        {
            "type": "book_update",
            "symbol": "BTC-USD",
            "seq": 1813,
            "prev_seq": 1812,
            "bids": [["100.00", "0.0000"]],
            "asks": [["100.02", "3.0000"]],
            "checksum": 1,
            "ts": 9,
        },
    )
    assert isinstance(update, BookDelta)
    assert (update.sequence, update.prev_sequence) == (1813, 1812)
    assert update.bids[0].size == 0 and update.asks[0].price == Decimal("100.02")


def test_candle_and_ticker_with_nulls() -> None:
    codec = SimCodec()
    candle = one(
        codec,
        {
            "type": "candle",
            "symbol": "BTC-USD",
            "interval": "1m",
            "open_time": 0,
            "close_time": 60,
            "open": "1.00",
            "high": "2.00",
            "low": "0.50",
            "close": "1.50",
            "volume": "3.0000",
            "trades": 4,
            "closed": True,
        },
    )
    assert isinstance(candle, Candle) and candle.closed and candle.high == Decimal("2.00")
    ticker = one(
        codec,
        {
            "type": "ticker",
            "symbol": "BTC-USD",
            "bid": "1.00",
            "bid_size": "2.0000",
            "ask": None,
            "ask_size": None,
            "last": None,
            "volume": "0.0000",
            "ts": 3,
        },
    )
    assert isinstance(ticker, Ticker) and ticker.ask is None and ticker.bid == Decimal("1.00")


def test_private_order_event_and_fill() -> None:
    codec = SimCodec()
    order = {
        "id": "o-1",
        "client_order_id": "c-1",
        "symbol": "BTC-USD",
        "side": "buy",
        "type": "limit",
        "price": "100.00",
        "size": "1.0000",
        "filled_size": "0.5000",
        "avg_price": "100.00",
        "status": "partially_filled",
        "time_in_force": "gtc",
        "post_only": False,
        "reject_reason": None,
        "created_ts": 1,
        "updated_ts": 2,
    }
    event = one(codec, {"type": "order", "event": "fill", "order": order, "ts": 2})
    assert isinstance(event, OrderEvent) and event.kind is OrderEventKind.FILL
    assert event.order.status is OrderStatus.PARTIALLY_FILLED
    assert event.order.remaining == Decimal("0.5000")
    fill = one(
        codec,
        {
            "type": "fill",
            "order_id": "o-1",
            "client_order_id": "c-1",
            "trade_id": 9,
            "symbol": "BTC-USD",
            "side": "buy",
            "price": "100.00",
            "size": "0.5000",
            "fee": "0.05",
            "fee_asset": "USD",
            "liquidity": "taker",
            "ts": 2,
        },
    )
    assert isinstance(fill, Fill) and fill.liquidity is Liquidity.TAKER
    assert fill.fee == Decimal("0.05")


def test_control_messages() -> None:
    codec = SimCodec()
    codec.subscribe([Subscription(Channel.CANDLES, "BTC-USD", "1m")])
    sub = one(
        codec,
        {
            "type": "subscribed",
            "id": 1,
            "channel": "candles",
            "symbols": ["BTC-USD"],
            "interval": "1m",
        },
    )
    assert sub == Subscribed(
        subscriptions=(Subscription(Channel.CANDLES, "BTC-USD", "1m"),), request_id=1
    )
    private = one(codec, {"type": "subscribed", "channel": "orders"})
    assert private == Subscribed(subscriptions=(Subscription(Channel.ORDERS),))
    unsub = one(codec, {"type": "unsubscribed", "channel": "trades", "symbols": ["ETH-USD"]})
    assert unsub == Unsubscribed(subscriptions=(Subscription(Channel.TRADES, "ETH-USD"),))
    assert one(codec, {"type": "logged_in", "expires_at": 7}) == LoggedIn(expires_at=7)
    assert one(codec, {"type": "pong", "ts": 3}) == Pong(ts=3)
    assert one(codec, {"type": "heartbeat", "ts": 4}) == Heartbeat(ts=4)


def test_error_names_the_refused_stream_of_a_multi_symbol_request() -> None:
    codec = SimCodec()
    (request,) = codec.subscribe(
        [Subscription(Channel.TRADES, "BTC-USD"), Subscription(Channel.TRADES, "FOO-USD")]
    )
    request_id = json.loads(request)["id"]
    error = one(
        codec,
        {
            "type": "error",
            "id": request_id,
            "code": "unknown_symbol",
            "message": "unknown symbol 'FOO-USD'",
            "field": "symbols",
        },
    )
    assert error == VenueError(
        code="unknown_symbol",
        message="unknown symbol 'FOO-USD'",
        request_id=request_id,
        field="symbols",
        symbol="FOO-USD",
        channel=Channel.TRADES,
        fatal=True,
    )
    other = one(codec, {"type": "error", "code": "invalid_json", "message": "bad"})
    assert isinstance(other, VenueError) and not other.fatal and other.symbol is None


def test_subscribe_frames_group_by_channel_and_interval() -> None:
    codec = SimCodec()
    frames = codec.subscribe(
        [
            Subscription(Channel.TRADES, "BTC-USD"),
            Subscription(Channel.TRADES, "ETH-USD"),
            Subscription(Channel.CANDLES, "BTC-USD", "1m"),
            Subscription(Channel.ORDERS),
        ]
    )
    assert [json.loads(f) for f in frames] == [
        {"op": "subscribe", "channel": "trades", "id": 1, "symbols": ["BTC-USD", "ETH-USD"]},
        {
            "op": "subscribe",
            "channel": "candles",
            "id": 2,
            "symbols": ["BTC-USD"],
            "interval": "1m",
        },
        {"op": "subscribe", "channel": "orders", "id": 3},
    ]
    (unsub,) = codec.unsubscribe([Subscription(Channel.TICKER, "BTC-USD")])
    assert json.loads(unsub)["op"] == "unsubscribe"
    assert json.loads(codec.ping() or b"") == {"op": "ping"}
    assert json.loads(codec.login("tok") or b"")["token"] == "tok"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type": "trade", "symbol": "BTC-USD", "id": 1, "price": "1.0',  # truncated
        b"not json",
        b"[1, 2]",
        b'{"no_type": 1}',
        b'{"type": "trade", "symbol": "BTC-USD", "id": "x", "price": "1", "size": "1",'
        b' "side": "buy", "ts": 1}',
        b'{"type": "trade", "symbol": "BTC-USD", "id": 1, "price": "NaN", "size": "1",'
        b' "side": "buy", "ts": 1}',
        b'{"type": "trade", "symbol": "BTC-USD", "id": 1, "price": "abc", "size": "1",'
        b' "side": "buy", "ts": 1}',
    ],
)
def test_malformed_frames_raise_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        SimCodec().decode(payload, 0)


def test_unknown_message_types_are_counted_not_errors() -> None:
    codec = SimCodec()
    assert codec.decode(b'{"type": "announcement", "text": "hi"}', 0) == []
    assert codec.unknown == 1


def test_memoryview_payloads_decode() -> None:
    payload = frame({"type": "heartbeat", "ts": 1})
    assert SimCodec().decode(memoryview(payload), 0) == [Heartbeat(ts=1)]  # type: ignore[arg-type]
