"""Coinbase codecs on the recorded Exchange (Pro-era) session COINBASE.ws.28.0."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from tickloop.checksums import decimal_text
from tickloop.exceptions import ExchangeError, InvalidRequest, ProtocolError, RateLimitError
from tickloop.models import BookDelta, BookSnapshot, Side, Ticker, Trade
from tickloop.venues import rest_codec, stream_codec
from tickloop.venues.base import Channel, Heartbeat, Subscribed, Subscription, VenueError
from tickloop.venues.coinbase import CoinbaseCodec, CoinbaseRest
from tickloop.venues.recorded import Direction, read_recording

pytestmark = pytest.mark.playback

PRODUCTS = {
    "SKL-USD", "SKL-BTC", "BAND-GBP", "NMR-EUR", "BAND-BTC", "YFI-BTC", "DASH-BTC", "NU-GBP",
    "CRV-EUR", "SKL-GBP",
}  # fmt: skip


@pytest.fixture(scope="module")
def session(recorded_data: Path) -> tuple[CoinbaseCodec, list[object]]:
    codec = CoinbaseCodec()
    out: list[object] = []
    for rec in read_recording(recorded_data / "COINBASE.ws.28.0"):
        if rec.direction is Direction.RECEIVED:
            out.extend(codec.decode(rec.frame, rec.ts))
    return codec, out


def test_registry_names_the_coinbase_codecs() -> None:
    assert stream_codec("coinbase") is CoinbaseCodec
    assert rest_codec("coinbase") is CoinbaseRest


def test_every_frame_decodes(session: tuple[CoinbaseCodec, list[object]]) -> None:
    codec, events = session
    assert Counter(type(e).__name__ for e in events) == {
        "Subscribed": 3,
        "BookSnapshot": 10,
        "BookDelta": 9719,
        "Trade": 107,  # 97 match + 10 last_match
        "Ticker": 107,
    }
    assert codec.unknown == 0
    last = [e for e in events if isinstance(e, Subscribed)][-1]
    assert len(last.subscriptions) == 30
    assert {s.symbol for s in last.subscriptions} == PRODUCTS
    assert {s.channel for s in last.subscriptions} == {Channel.TRADES, Channel.BOOK, Channel.TICKER}


def test_trade_ids_contiguous_per_product(session: tuple[CoinbaseCodec, list[object]]) -> None:
    _, events = session
    ids: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if isinstance(e, Trade):
            assert e.id is not None
            ids[e.symbol].append(e.id)
    assert set(ids) == PRODUCTS
    for seq in ids.values():
        assert seq == list(range(seq[0], seq[0] + len(seq)))


def test_match_side_is_the_aggressor(session: tuple[CoinbaseCodec, list[object]]) -> None:
    _, events = session
    first = next(e for e in events if isinstance(e, Trade) and e.id == 280232)
    # {"type":"match","trade_id":280232,...,"side":"sell","size":"985","price":"0.00001305",
    #  "product_id":"SKL-BTC",...,"time":"2021-04-17T16:43:37.089723Z"}: a buyer took a sell order
    assert first == Trade(
        venue="coinbase", symbol="SKL-BTC", id=280232, price=Decimal("0.00001305"),
        size=Decimal("985"), side=Side.BUY, ts=1618677817_089723000, recv_ts=first.recv_ts,
    )  # fmt: skip
    assert str(first.price) == "0.00001305"


def test_book_never_crosses_and_keeps_digits(
    session: tuple[CoinbaseCodec, list[object]],
) -> None:
    _, events = session
    books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
    applied = 0
    for e in events:
        if isinstance(e, BookSnapshot):
            assert e.sequence is None
            books[e.symbol] = (dict(e.bids), dict(e.asks))
        elif isinstance(e, BookDelta):
            assert e.ts > 0 and len(e.bids) + len(e.asks) >= 1
            bids, asks = books[e.symbol]
            for side, levels in ((bids, e.bids), (asks, e.asks)):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
            if bids and asks:
                assert max(bids) < min(asks)
            applied += 1
    assert applied == 9719
    snap = next(e for e in events if isinstance(e, BookSnapshot))
    assert snap.symbol == "BAND-GBP" and decimal_text(snap.asks[3].size) == "123.10"
    assert snap.asks[0].price < snap.asks[1].price and snap.bids[0].price > snap.bids[1].price


def test_ticker_fields(session: tuple[CoinbaseCodec, list[object]]) -> None:
    _, events = session
    t = next(e for e in events if isinstance(e, Ticker))
    assert t.symbol == "BAND-GBP"
    assert (str(t.bid), str(t.ask), str(t.last)) == ("14.7550", "14.8060", "14.7775")
    assert str(t.volume) == "94381.28000000" and t.bid_size is None
    assert t.ts == 1618677810_244075000


def test_control_and_unknown_messages() -> None:
    codec = CoinbaseCodec()
    hb = (
        b'{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD",'
        b'"time":"2014-11-07T08:19:28.464459Z"}'
    )
    assert codec.decode(hb, 1) == [Heartbeat(symbol="BTC-USD", ts=1415348368_464459000)]
    err = (
        b'{"type":"error","message":"Failed to subscribe","reason":"BTC-XYZ is not a valid '
        b'product"}'
    )
    (e,) = codec.decode(err, 0)
    assert isinstance(e, VenueError) and e.fatal and e.symbol == "BTC-XYZ"
    (e2,) = codec.decode(b'{"type":"error","message":"Type has to be either subscribe"}', 0)
    assert isinstance(e2, VenueError) and not e2.fatal
    assert codec.decode(b'{"type":"received","order_id":"x","sequence":10}', 0) == []
    assert codec.decode(b'{"sequence":10,"type":"open"}', 0) == []
    assert codec.unknown == 2
    reordered = (
        b'{"product_id":"BTC-USD","type":"l2update","changes":[["buy","10101.80000000",'
        b'"0.162567"]],"time":"2019-08-14T20:42:27.265Z"}'
    )
    (delta,) = codec.decode(reordered, 0)
    assert isinstance(delta, BookDelta) and str(delta.bids[0].size) == "0.162567"
    assert delta.ts == 1565815347_265000000


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"l2update","product_id":"SKL-BTC","changes":[["sell","0.00001306","660',
        b"\xde\xad\xbe\xef\x00",
        b"",
        b'{"type":"l2update","product_id":"SKL-BTC","changes":[["up","1","1"]],'
        b'"time":"2021-04-17T16:43:37.075687Z"}',  # unknown side
        b'{"type":"l2update","product_id":"SKL-BTC","changes":[["buy","1"]],'
        b'"time":"2021-04-17T16:43:37.075687Z"}',  # change without size
        b'{"type":"l2update","product_id":"SKL-BTC","changes":[["buy","1","1"]]}',  # no time
        b'{"type":"l2update","product_id":"SKL-BTC","changes":[["buy",1.5,"1"]],'
        b'"time":"2021-04-17T16:43:37.075687Z"}',  # number, not string
        b'{"type":"match","trade_id":"x","side":"sell","size":"1","price":"1",'
        b'"product_id":"A-B","time":"2021-04-17T16:43:37.089723Z"}',
        b'{"type":"match","trade_id":1,"side":"sell","size":"1","price":"1e",'
        b'"product_id":"A-B","time":"2021-04-17T16:43:37.089723Z"}',
        b'{"type":"match","trade_id":1,"side":"sell","size":"1","price":"1",'
        b'"product_id":"A-B","time":"yesterday"}',
        b'{"type":"snapshot","product_id":"A-B","bids":[["1","2"]]}',
        b'{"type":"subscriptions","channels":"level2"}',
        b'{"type":5}',
        b'{"no_type":true}',
        b"[]",
    ],
)
def test_malformed_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        CoinbaseCodec().decode(frame, 0)


def test_symbols_and_subscribe_frames() -> None:
    codec = CoinbaseCodec()
    for symbol in ("BTC-USD", "SKL-BTC", "BAND-GBP"):
        assert codec.symbol(codec.venue_symbol(symbol)) == symbol
    with pytest.raises(InvalidRequest):
        codec.venue_symbol("BTCUSD")
    frames = codec.subscribe(
        [
            Subscription(Channel.BOOK, "BTC-USD"),
            Subscription(Channel.BOOK, "ETH-USD"),
            Subscription(Channel.TRADES, "BTC-USD"),
            Subscription(Channel.TICKER, "ETH-USD"),
        ]
    )
    assert [msgspec.json.decode(f) for f in frames] == [
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["level2"]},
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]},
        {"type": "subscribe", "product_ids": ["ETH-USD"], "channels": ["ticker"]},
    ]
    (unsub,) = CoinbaseCodec(book_channel="level2_batch").unsubscribe(
        [Subscription(Channel.BOOK, "BTC-USD")]
    )
    assert msgspec.json.decode(unsub) == {
        "type": "unsubscribe", "product_ids": ["BTC-USD"], "channels": ["level2_batch"],
    }  # fmt: skip
    with pytest.raises(InvalidRequest):
        codec.subscribe([Subscription(Channel.CANDLES, "BTC-USD", interval="1m")])


def test_rest_requests_and_bodies() -> None:
    rest = CoinbaseRest()
    products = (
        b'[{"id":"BTC-USD","base_currency":"BTC","quote_currency":"USD",'
        b'"quote_increment":"0.01000000","base_increment":"0.00000001","display_name":"BTC/USD",'
        b'"min_market_funds":"1","margin_enabled":false,"post_only":false,"limit_only":false,'
        b'"cancel_only":false,"status":"online","status_message":"","auction_mode":false},'
        b'{"id":"SKL-GBP","base_currency":"SKL","quote_currency":"GBP","quote_increment":"0.0001",'
        b'"base_increment":"0.1","base_min_size":"5.0","status":"delisted"}]'
    )
    btc, skl = rest.parse_markets(products)
    assert (btc.symbol, btc.tick_size, btc.lot_size, btc.price_precision, btc.size_precision) == (
        "BTC-USD", Decimal("0.01"), Decimal("1E-8"), 2, 8,
    )  # fmt: skip
    assert (skl.min_size, skl.status) == (Decimal(5), "delisted")
    req = rest.book_request("BTC-USD", 50)
    assert (req.path, req.params) == ("/products/BTC-USD/book", (("level", "2"),))
    body = (
        b'{"bids":[["295.96","4.39088265",2]],"asks":[["295.97","25.23542881",12]],'
        b'"sequence":3,"auction_mode":false,"auction":null,"time":"2023-10-06T17:35:55.219022Z"}'
    )
    book = rest.parse_book(body, "BTC-USD", recv_ts=5)
    assert book.sequence == 3 and str(book.bids[0].size) == "4.39088265" and book.recv_ts == 5
    req = rest.trades_request("BTC-USD", since_id=100, limit=50)
    assert (req.path, req.params) == (
        "/products/BTC-USD/trades",
        (("after", "151"), ("limit", "50")),
    )
    assert rest.trades_request("BTC-USD").params == ()
    trades = rest.parse_trades(
        b'[{"time":"2014-11-07T22:19:28.578544Z","trade_id":75,"price":"10.00000000",'
        b'"size":"0.01000000","side":"buy"},{"time":"2014-11-07T01:08:43.642366Z",'
        b'"trade_id":74,"price":"100.00000000","size":"0.01000000","side":"sell"}]',
        "BTC-USD",
    )
    assert [(t.id, t.side) for t in trades] == [(74, Side.BUY), (75, Side.SELL)]
    assert str(trades[0].price) == "100.00000000"
    with pytest.raises(ProtocolError):
        rest.parse_book(b'{"bids":[],"asks":[]}', "BTC-USD")  # no sequence


def test_rest_errors() -> None:
    rest = CoinbaseRest()
    err = rest.error(404, b'{"message":"NotFound"}', {})
    assert isinstance(err, InvalidRequest) and err.field == "symbol"
    err = rest.error(429, b'{"message":"Public rate limit exceeded"}', {"Retry-After": "1"})
    assert isinstance(err, RateLimitError) and err.retry_after == 1.0
    err = rest.error(500, b"oops", {})
    assert isinstance(err, ExchangeError) and err.status == 500
