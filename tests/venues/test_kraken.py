"""Kraken codecs on the recorded v1 sessions (KRAKEN.ws.48/49/50.0) and on documented frames."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from tickloop.checksums import decimal_text, kraken_checksum
from tickloop.exceptions import ExchangeError, InvalidRequest, ProtocolError, RateLimitError
from tickloop.models import BookDelta, BookSnapshot, Candle, Side, Ticker, Trade
from tickloop.venues import rest_codec, stream_codec
from tickloop.venues.base import (
    Channel,
    Heartbeat,
    Pong,
    Subscribed,
    Subscription,
    Unsubscribed,
    VenueError,
)
from tickloop.venues.kraken import KrakenCodec, KrakenRest, KrakenV2Codec
from tickloop.venues.recorded import Direction, read_recording

pytestmark = pytest.mark.playback


def decode_file(path: Path) -> tuple[KrakenCodec, list[object]]:
    codec = KrakenCodec()
    out: list[object] = []
    for rec in read_recording(path):
        if rec.direction is Direction.RECEIVED:
            out.extend(codec.decode(rec.frame, rec.ts))
    return codec, out


def counts(events: list[object]) -> Counter[str]:
    return Counter(type(e).__name__ for e in events)


def test_registry_names_the_kraken_codecs() -> None:
    assert stream_codec("kraken") is KrakenCodec
    assert rest_codec("kraken") is KrakenRest


def test_trades_file_decodes_completely(recorded_data: Path) -> None:
    codec, events = decode_file(recorded_data / "KRAKEN.ws.48.0")
    assert counts(events) == {"Subscribed": 10, "Heartbeat": 30, "Trade": 10}
    assert codec.unknown == 0
    trades = [e for e in events if isinstance(e, Trade)]
    first = trades[0]
    assert first.symbol == "XMR-USD" and first.id is None
    assert str(first.price) == "354.11000000" and str(first.size) == "0.89594024"
    assert first.side is Side.SELL
    assert first.ts == 1618678142_557535000
    assert trades[1].side is Side.BUY
    assert {t.symbol for t in trades} <= {
        "XMR-USD",
        "SC-EUR",
        "BTC-CHF",
        "ETH-CHF",
        "ADA-BTC",
        "WAVES-EUR",
        "KSM-BTC",
        "GRT-ETH",
        "OCEAN-BTC",
        "OMG-USD",
    }
    subs = [e for e in events if isinstance(e, Subscribed)]
    assert Subscription(Channel.TRADES, "BTC-CHF") in {s.subscriptions[0] for s in subs}


def test_ticker_file_decodes_completely(recorded_data: Path) -> None:
    codec, events = decode_file(recorded_data / "KRAKEN.ws.49.0")
    assert counts(events) == {"Subscribed": 10, "Heartbeat": 31, "Ticker": 18}
    assert codec.unknown == 0
    first = next(e for e in events if isinstance(e, Ticker))
    assert first.symbol == "WAVES-EUR"
    assert (str(first.bid), str(first.bid_size)) == ("13.232900", "185.18432037")
    assert (str(first.ask), str(first.ask_size)) == ("13.253900", "35.72892241")
    assert str(first.last) == "13.253900" and str(first.volume) == "72035.05488104"


def test_book_file_counts_and_every_checksum_matches(recorded_data: Path) -> None:
    codec, events = decode_file(recorded_data / "KRAKEN.ws.50.0")
    assert counts(events) == {
        "Subscribed": 10,
        "Heartbeat": 31,
        "BookSnapshot": 10,
        "BookDelta": 4269,
    }
    assert codec.unknown == 0
    deltas = [e for e in events if isinstance(e, BookDelta)]
    assert all(isinstance(d.checksum, int) for d in deltas)
    # A minimal book (depth 1000, as subscribed) proves the codec kept every digit: Kraken's
    # CRC32 covers the exact price and size strings.
    books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
    matched = 0
    for e in events:
        if isinstance(e, BookSnapshot):
            books[e.symbol] = (dict(e.bids), dict(e.asks))
        elif isinstance(e, BookDelta):
            bids, asks = books[e.symbol]
            for side, levels in ((bids, e.bids), (asks, e.asks)):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
            for side, best_first in ((bids, True), (asks, False)):
                for price in sorted(side, reverse=not best_first)[1000:]:
                    del side[price]
            top_b = sorted(bids.items(), reverse=True)[:10]
            top_a = sorted(asks.items())[:10]
            text = [(decimal_text(p), decimal_text(s)) for p, s in top_b]
            text_a = [(decimal_text(p), decimal_text(s)) for p, s in top_a]
            matched += kraken_checksum(text, text_a) == e.checksum
    assert matched == 4269


def test_exact_digits_survive(recorded_data: Path) -> None:
    _, events = decode_file(recorded_data / "KRAKEN.ws.50.0")
    texts = {
        decimal_text(value)
        for e in events
        if isinstance(e, BookSnapshot | BookDelta)
        for level in (*e.bids, *e.asks)
        for value in level
    }
    assert "0.05005000" in texts
    snap = next(e for e in events if isinstance(e, BookSnapshot))
    assert snap.symbol == "ADA-BTC"
    assert str(snap.asks[0].price) == "0.000022900"
    assert snap.asks[0].price < snap.asks[1].price and snap.bids[0].price > snap.bids[1].price


def test_update_with_both_sides_in_two_payloads() -> None:
    frame = (
        b'[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},'
        b'{"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"4105471083"},'
        b'"book-1000","SC/EUR"]'
    )
    (delta,) = KrakenCodec().decode(frame, 7)
    assert isinstance(delta, BookDelta)
    assert delta.symbol == "SC-EUR" and delta.checksum == 4105471083 and delta.recv_ts == 7
    assert [tuple(map(decimal_text, lv)) for lv in delta.asks] == [("0.042990", "364630.28272081")]
    assert [tuple(map(decimal_text, lv)) for lv in delta.bids] == [("0.042990", "0.00000000")]
    assert delta.ts == 1618678145_920708000


def test_republished_level_is_an_update() -> None:
    frame = (
        b'[0,{"a":[["5541.30000","2.50700000","1534614248.456738","r"],'
        b'["5542.50000","0.40100000","1534614248.456738"]],"c":"974942666"},"book-10","XBT/USD"]'
    )
    codec = KrakenCodec()
    (delta,) = codec.decode(frame, 0)
    assert isinstance(delta, BookDelta)
    assert delta.symbol == "BTC-USD" and len(delta.asks) == 2 and delta.bids == ()
    assert str(delta.asks[0].size) == "2.50700000"


def test_control_messages() -> None:
    codec = KrakenCodec()
    assert codec.decode(b'{"event":"heartbeat"}', 5) == [Heartbeat(ts=5)]
    assert codec.decode(b'{"event":"pong","reqid":42}', 9) == [Pong(ts=9, request_id=42)]
    online = b'{"connectionID":1,"event":"systemStatus","status":"online","version":"1.8.3"}'
    assert codec.decode(online, 0) == []
    (maint,) = codec.decode(b'{"event":"systemStatus","status":"maintenance"}', 0)
    assert isinstance(maint, VenueError) and not maint.fatal
    error = (
        b'{"errorMessage":"Currency pair not supported XYZ/USD","event":"subscriptionStatus",'
        b'"pair":"XYZ/USD","status":"error","subscription":{"name":"ticker"},"reqid":3}'
    )
    (err,) = codec.decode(error, 0)
    assert isinstance(err, VenueError)
    assert err.fatal and err.symbol == "XYZ-USD" and err.channel is Channel.TICKER
    assert err.request_id == 3 and "not supported" in err.message
    unsub = (
        b'{"channelID":10001,"channelName":"ticker","event":"subscriptionStatus",'
        b'"pair":"XBT/EUR","status":"unsubscribed","subscription":{"name":"ticker"}}'
    )
    assert codec.decode(unsub, 0) == [Unsubscribed((Subscription(Channel.TICKER, "BTC-EUR"),))]
    assert codec.unknown == 0


def test_learns_channel_ids_and_reads_unseen_ids_from_the_frame() -> None:
    codec = KrakenCodec()
    status = (
        b'{"channelID":336,"channelName":"trade","event":"subscriptionStatus",'
        b'"pair":"XDG/USD","status":"subscribed","subscription":{"name":"trade"}}'
    )
    (sub,) = codec.decode(status, 0)
    assert sub == Subscribed((Subscription(Channel.TRADES, "DOGE-USD"),))
    (trade,) = codec.decode(
        b'[336,[["0.30000","10.0","1618678142.5","b","m",""]],"trade","XDG/USD"]', 0
    )
    assert isinstance(trade, Trade) and trade.symbol == "DOGE-USD"
    (other,) = KrakenCodec().decode(
        b'[77,[["0.30000","10.0","1618678142","s","l",""]],"trade","XBT/USD"]', 0
    )
    assert isinstance(other, Trade) and other.symbol == "BTC-USD"
    assert other.ts == 1618678142_000000000


def test_unknown_messages_are_counted_not_errors() -> None:
    codec = KrakenCodec()
    assert codec.decode(b'{"event":"somethingNew","x":1}', 0) == []
    assert codec.decode(b'[12,["5698.4","5700.3","1542057299.545897"],"spread","XBT/USD"]', 0) == []
    assert codec.decode(b'[[{"TDLH43-DVQXD":{"cost":"1"}}],"ownTrades",{"sequence":1}]', 0) == []
    assert codec.unknown == 3


@pytest.mark.parametrize(
    "frame",
    [
        b'[1360,{"a":[["0.000023120","0.00000000","1618678135.632699"]],"c":"37728',  # truncated
        b'{"event":"heartbeat"',
        b"\xff\xfe\x00garbage\x81",
        b"",
        b"   ",
        b'[1360,{"a":[[1.5,"0.1","1618678135.632699"]],"c":"1"},"book-10","ADA/XBT"]',  # number
        b'[1360,{"a":[["1.5","0.1"]],"c":"1"},"book-10","ADA/XBT"]',  # level without time
        b'[1360,{"a":[["abc","0.1","1.0"]],"c":"1"},"book-10","ADA/XBT"]',  # not a decimal
        b'[1360,{"a":[["1.5","0.1","1.0"]]},"book-10","ADA/XBT"]',  # update without checksum
        b'[1360,{"a":[["1.5","0.1","1.0"]],"c":"x"},"book-10","ADA/XBT"]',  # bad checksum
        b'[5,[["354.1","0.8","1618678142.5","x","l",""]],"trade","XMR/USD"]',  # bad side
        b'[5,[["354.1","0.8"]],"trade","XMR/USD"]',  # short trade row
        b'[5,{"a":["1",1,"1"]},"ticker","XMR/USD"]',  # ticker missing fields
        b'{"event":42}',
        b'{"status":"online"}',  # no event
        b'[5,[],"trade","XMRUSD"]',  # pair without a slash
        b"42",
    ],
)
def test_malformed_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        KrakenCodec().decode(frame, 0)


def test_symbol_mapping_round_trips() -> None:
    codec = KrakenCodec()
    pairs = {
        "BTC-USD": "XBT/USD",
        "DOGE-USD": "XDG/USD",
        "ETH-BTC": "ETH/XBT",
        "ADA-EUR": "ADA/EUR",
    }
    for symbol, venue_symbol in pairs.items():
        assert codec.venue_symbol(symbol) == venue_symbol
        assert codec.symbol(venue_symbol) == symbol
        assert codec.symbol(codec.venue_symbol(symbol)) == symbol
    with pytest.raises(InvalidRequest):
        codec.venue_symbol("BTCUSD")
    v2 = KrakenV2Codec()
    assert v2.venue_symbol("BTC-USD") == "BTC/USD" and v2.symbol("BTC/USD") == "BTC-USD"


def test_subscribe_frames_are_what_kraken_documents() -> None:
    codec = KrakenCodec()
    frames = codec.subscribe(
        [
            Subscription(Channel.BOOK, "BTC-USD", depth=1000),
            Subscription(Channel.BOOK, "ETH-USD", depth=1000),
            Subscription(Channel.TRADES, "BTC-USD"),
            Subscription(Channel.BOOK, "BTC-EUR"),
        ]
    )
    decoded = [msgspec.json.decode(f) for f in frames]
    assert decoded == [
        {
            "event": "subscribe",
            "reqid": 1,
            "pair": ["XBT/USD", "ETH/USD"],
            "subscription": {"name": "book", "depth": 1000},
        },
        {"event": "subscribe", "reqid": 2, "pair": ["XBT/USD"], "subscription": {"name": "trade"}},
        {
            "event": "subscribe",
            "reqid": 3,
            "pair": ["XBT/EUR"],
            "subscription": {"name": "book", "depth": 10},
        },
    ]
    (unsub,) = codec.unsubscribe([Subscription(Channel.TICKER, "DOGE-USD")])
    assert msgspec.json.decode(unsub) == {
        "event": "unsubscribe",
        "reqid": 4,
        "pair": ["XDG/USD"],
        "subscription": {"name": "ticker"},
    }
    assert msgspec.json.decode(codec.ping() or b"") == {"event": "ping", "reqid": 5}
    with pytest.raises(InvalidRequest):
        codec.subscribe([Subscription(Channel.BOOK, "BTC-USD", depth=7)])
    with pytest.raises(InvalidRequest):
        codec.subscribe([Subscription(Channel.CANDLES, "BTC-USD", interval="7m")])
    with pytest.raises(InvalidRequest):
        codec.subscribe([Subscription(Channel.ORDERS)])
    many = [Subscription(Channel.TRADES, f"A{i}-USD") for i in range(120)]
    assert [len(msgspec.json.decode(f)["pair"]) for f in codec.subscribe(many)] == [50, 50, 20]


def test_candles_as_kraken_documents_them() -> None:
    codec = KrakenCodec()
    (frame,) = codec.subscribe([Subscription(Channel.CANDLES, "BTC-EUR", interval="5m")])
    assert msgspec.json.decode(frame) == {
        "event": "subscribe", "reqid": 1, "pair": ["XBT/EUR"],
        "subscription": {"name": "ohlc", "interval": 5},
    }  # fmt: skip
    status = (
        b'{"channelID":42,"channelName":"ohlc-5","event":"subscriptionStatus","pair":"XBT/EUR",'
        b'"status":"subscribed","subscription":{"interval":5,"name":"ohlc"}}'
    )
    assert codec.decode(status, 0) == [
        Subscribed((Subscription(Channel.CANDLES, "BTC-EUR", interval="5m"),))
    ]
    ohlc = (
        b'[42,["1542057314.748456","1542057360.435743","3586.70000","3586.70000","3586.60000",'
        b'"3586.60000","3586.68894","0.03373000",2],"ohlc-5","XBT/EUR"]'
    )
    (candle,) = codec.decode(ohlc, 8)
    assert isinstance(candle, Candle)
    assert (candle.symbol, candle.interval, candle.trades, candle.closed) == (
        "BTC-EUR", "5m", 2, False,
    )  # fmt: skip
    assert candle.close_time == 1542057360_435743000
    assert candle.close_time - candle.open_time == 300 * 10**9
    assert str(candle.open) == "3586.70000" and str(candle.volume) == "0.03373000"
    (unseen,) = KrakenCodec().decode(ohlc.replace(b"ohlc-5", b"ohlc-60"), 0)
    assert isinstance(unseen, Candle) and unseen.interval == "1h"
    with pytest.raises(ProtocolError):
        KrakenCodec().decode(ohlc.replace(b"ohlc-5", b"ohlc-7"), 0)


# ------------------------------------------------------------------------------------ v2
# Frames shaped as in Kraken's public v2 documentation (docs.kraken.com, websocket-v2/book,
# trade, ticker): prices and quantities are JSON numbers.

V2_SNAPSHOT = (
    b'{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD",'
    b'"bids":[{"price":0.5666,"qty":4831.75496356},{"price":0.5665,"qty":6658.22734739}],'
    b'"asks":[{"price":0.5668,"qty":4410.79769741},{"price":0.5669,"qty":4655.40412487}],'
    b'"checksum":2439117997}]}'
)
V2_UPDATE = (
    b'{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD",'
    b'"bids":[{"price":0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,'
    b'"timestamp":"2023-10-06T17:35:55.440295Z"}]}'
)


def test_v2_book_snapshot_and_update_keep_the_digits_as_sent() -> None:
    codec = KrakenV2Codec()
    (snap,) = codec.decode(V2_SNAPSHOT, 1)
    assert isinstance(snap, BookSnapshot)
    assert snap.symbol == "MATIC-USD" and snap.checksum == 2439117997
    assert [tuple(map(str, lv)) for lv in snap.bids] == [
        ("0.5666", "4831.75496356"),
        ("0.5665", "6658.22734739"),
    ]
    (delta,) = codec.decode(V2_UPDATE, 2)
    assert isinstance(delta, BookDelta)
    assert str(delta.bids[0].size) == "1098.3947558" and delta.asks == ()
    assert delta.checksum == 2114181697
    assert delta.ts == 1696613755_440295000
    trailing = V2_UPDATE.replace(b"1098.3947558", b"1098.39475580")
    (delta2,) = codec.decode(trailing, 2)
    assert isinstance(delta2, BookDelta) and str(delta2.bids[0].size) == "1098.39475580"


def test_v2_trades_ticker_and_control() -> None:
    codec = KrakenV2Codec()
    trades = codec.decode(
        b'{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",'
        b'"price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,'
        b'"timestamp":"2023-09-25T07:49:37.708706Z"}]}',
        3,
    )
    assert trades == [
        Trade(
            venue="kraken",
            symbol="MATIC-USD",
            id=4665906,
            price=Decimal("0.5117"),
            size=Decimal("40.0"),
            side=Side.SELL,
            ts=1695628177_708706000,
            recv_ts=3,
        )
    ]
    (ticker,) = codec.decode(
        b'{"channel":"ticker","type":"snapshot","data":[{"symbol":"ALGO/USD","bid":0.10025,'
        b'"bid_qty":740.0,"ask":0.10036,"ask_qty":1361.44813783,"last":0.10035,'
        b'"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,'
        b'"change":-0.00017,"change_pct":-0.17}]}',
        4,
    )
    assert isinstance(ticker, Ticker) and str(ticker.ask_size) == "1361.44813783"
    assert codec.decode(b'{"channel":"heartbeat"}', 5) == [Heartbeat(ts=5)]
    ack = (
        b'{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,'
        b'"symbol":"ALGO/USD"},"success":true,"time_in":"2023-10-06T17:35:55.219022Z",'
        b'"time_out":"2023-10-06T17:35:55.219067Z"}'
    )
    assert codec.decode(ack, 0) == [Subscribed((Subscription(Channel.BOOK, "ALGO-USD", depth=10),))]
    refused = (
        b'{"error":"Currency pair not supported","method":"subscribe","req_id":7,'
        b'"success":false,"symbol":"BTC/ABC"}'
    )
    (err,) = codec.decode(refused, 0)
    assert isinstance(err, VenueError) and err.fatal and err.symbol == "BTC-ABC"
    assert err.request_id == 7
    assert codec.decode(b'{"method":"pong","req_id":2}', 6) == [Pong(ts=6, request_id=2)]
    status = (
        b'{"channel":"status","type":"update","data":[{"api_version":"v2",'
        b'"connection_id":1,"system":"online","version":"2.0.0"}]}'
    )
    assert codec.decode(status, 0) == []
    assert codec.decode(b'{"channel":"instrument","type":"snapshot","data":{}}', 0) == []
    assert codec.unknown == 1
    (sub,) = codec.subscribe([Subscription(Channel.BOOK, "ALGO-USD", depth=10)])
    assert msgspec.json.decode(sub) == {
        "method": "subscribe",
        "params": {"channel": "book", "symbol": ["ALGO/USD"], "depth": 10},
        "req_id": 1,
    }


@pytest.mark.parametrize(
    "frame",
    [
        V2_UPDATE[:-10],
        b"\x00\x01\x02",
        V2_UPDATE.replace(b'"price":0.5657', b'"price":"x"'),
        V2_UPDATE.replace(b'"symbol":"MATIC/USD",', b""),
        b'{"channel":"trade","type":"update","data":[{"symbol":"A/B","side":"up","price":1,'
        b'"qty":1,"timestamp":"2023-09-25T07:49:37.708706Z"}]}',
    ],
)
def test_v2_malformed_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        KrakenV2Codec().decode(frame, 0)


# ------------------------------------------------------------------------------------ REST
# Bodies shaped as Kraken's public REST documentation shows them (trimmed).

ASSET_PAIRS = (
    b'{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD",'
    b'"aclass_base":"currency","base":"XXBT","aclass_quote":"currency","quote":"ZUSD",'
    b'"lot":"unit","cost_decimals":5,"pair_decimals":1,"lot_decimals":8,"lot_multiplier":1,'
    b'"ordermin":"0.0001","costmin":"0.5","tick_size":"0.1","status":"online"},'
    b'"XETHXXBT.d":{"altname":"ETHXBT.d","base":"XETH","quote":"XXBT","pair_decimals":5,'
    b'"lot_decimals":8}}}'
)


def test_rest_requests_and_bodies() -> None:
    rest = KrakenRest()
    assert rest.markets_request().path == "/0/public/AssetPairs"
    (inst,) = rest.parse_markets(ASSET_PAIRS)
    assert (inst.symbol, inst.venue_symbol, inst.base, inst.quote) == (
        "BTC-USD",
        "XBT/USD",
        "BTC",
        "USD",
    )
    assert inst.tick_size == Decimal("0.1") and inst.lot_size == Decimal("1E-8")
    assert inst.min_size == Decimal("0.0001") and inst.price_precision == 1
    req = rest.book_request("BTC-USD", 100)
    assert (req.path, req.params) == ("/0/public/Depth", (("pair", "XBTUSD"), ("count", "100")))
    depth = (
        b'{"error":[],"result":{"XXBTZUSD":{"asks":[["30384.10000","2.059",1688671659]],'
        b'"bids":[["30297.00000","0.115",1688671656],["30296.90000","0.500",1688671650]]}}}'
    )
    book = rest.parse_book(depth, "BTC-USD", recv_ts=9)
    assert [str(p) for p, _ in book.bids] == ["30297.00000", "30296.90000"]
    assert str(book.asks[0].size) == "2.059" and book.sequence is None and book.recv_ts == 9
    req = rest.trades_request("DOGE-USD", since_id=1688669448111111111)
    assert req.params == (("pair", "XDGUSD"), ("since", "1688669448111111111"))
    trades_body = (
        b'{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,'
        b'"b","m","",61044952],["30243.30000","0.00376960",1688669598.2804112,"s","l","",'
        b'61044953]],"last":"1688671969993150842"}}'
    )
    trades = rest.parse_trades(trades_body, "BTC-USD")
    assert [t.id for t in trades] == [61044952, 61044953]
    assert trades[0].ts == 1688669597_827736900 and trades[0].side is Side.BUY
    assert str(trades[1].size) == "0.00376960" and trades[1].side is Side.SELL
    old_body = (
        b'{"error":[],"result":{"XXBTZUSD":[["1.0","2.0",1688669597.5,"s","l",""]],"last":"1"}}'
    )
    (old,) = rest.parse_trades(old_body, "BTC-USD")
    assert old.id is None and old.ts == 1688669597_500000000


def test_rest_errors() -> None:
    rest = KrakenRest()
    unknown = b'{"error":["EQuery:Unknown asset pair"]}'
    with pytest.raises(InvalidRequest) as exc_info:
        rest.parse_book(unknown, "FOO-BAR")
    assert exc_info.value.field == "symbol"
    err = rest.error(429, b"", {"Retry-After": "3"})
    assert isinstance(err, RateLimitError) and err.retry_after == 3.0
    err = rest.error(520, b'{"error":["EAPI:Rate limit exceeded"]}', {})
    assert isinstance(err, RateLimitError)
    err = rest.error(500, b"<html>oops</html>", {})
    assert isinstance(err, ExchangeError) and err.status == 500
    err = rest.error(400, b'{"error":["EGeneral:Internal error"]}', {})
    assert isinstance(err, ExchangeError) and err.code == "EGeneral:Internal error"
    with pytest.raises(ProtocolError):
        rest.parse_book(b'{"error":[],"result":{"X":{"asks":[["1"]],"bids":[]}}}', "BTC-USD")
    with pytest.raises(ProtocolError):
        rest.parse_markets(b"not json")


def test_leading_whitespace_is_still_json() -> None:
    codec = KrakenCodec()
    assert codec.decode(b' \n{"event":"heartbeat"}', 4) == [Heartbeat(ts=4)]
    (trade,) = codec.decode(b'  [7,[["1.0","2.0","1.5","b","l",""]],"trade","XBT/USD"]', 5)
    assert isinstance(trade, Trade) and trade.recv_ts == 5 and trade.symbol == "BTC-USD"
