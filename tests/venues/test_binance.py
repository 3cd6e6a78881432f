"""Binance codecs on the recorded spot sessions (BINANCE*.ws.1.0, BINANCE*.http.0.0)."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from tickloop.checksums import decimal_text
from tickloop.exceptions import ExchangeError, InvalidRequest, ProtocolError, RateLimitError
from tickloop.models import BookDelta, BookSnapshot, Candle, Quote, Side, Ticker, Trade
from tickloop.venues import rest_codec, stream_codec
from tickloop.venues.base import Channel, Subscribed, Subscription, Unsubscribed, VenueError
from tickloop.venues.binance import BinanceCodec, BinanceRest, split_binance_symbol
from tickloop.venues.recorded import Direction, read_recording

pytestmark = pytest.mark.playback

EXPECTED = {
    "BINANCE": {"BookDelta": 177, "Quote": 84, "Trade": 2, "Candle": 2},
    "BINANCE_US": {"BookDelta": 336, "Quote": 128, "Trade": 11, "Candle": 5},
}


def decode_file(path: Path) -> tuple[BinanceCodec, list[object]]:
    codec = BinanceCodec()
    out: list[object] = []
    for rec in read_recording(path):
        if rec.direction is Direction.RECEIVED:
            out.extend(codec.decode(rec.frame, rec.ts))
    return codec, out


def snapshots(path: Path) -> dict[str, BookSnapshot]:
    rest = BinanceRest()
    out = {}
    for rec in read_recording(path):
        assert rec.direction is Direction.HTTP and "/api/v3/depth?symbol=" in rec.url
        venue_symbol = rec.url.partition("symbol=")[2].partition("&")[0]
        symbol = BinanceCodec().symbol(venue_symbol)
        out[symbol] = rest.parse_book(rec.frame, symbol, recv_ts=rec.ts)
    return out


def test_registry_names_the_binance_codecs() -> None:
    assert stream_codec("binance") is BinanceCodec
    assert rest_codec("binance") is BinanceRest


@pytest.mark.parametrize("name", ["BINANCE", "BINANCE_US"])
def test_every_frame_decodes(recorded_data: Path, name: str) -> None:
    codec, events = decode_file(recorded_data / f"{name}.ws.1.0")
    assert Counter(type(e).__name__ for e in events) == EXPECTED[name]
    assert codec.unknown == 0


@pytest.mark.parametrize("name", ["BINANCE", "BINANCE_US"])
def test_depth_follows_the_spot_sync_rule_against_the_rest_snapshots(
    recorded_data: Path, name: str
) -> None:
    books = snapshots(recorded_data / f"{name}.http.0.0")
    assert len(books) == 4
    assert all(b.sequence and b.bids and b.asks for b in books.values())
    _, events = decode_file(recorded_data / f"{name}.ws.1.0")
    last: dict[str, int] = {}
    kept = 0
    for e in events:
        if not isinstance(e, BookDelta):
            continue
        assert e.sequence is not None and e.first_sequence is not None
        assert e.first_sequence <= e.sequence
        snap_seq = books[e.symbol].sequence
        assert snap_seq is not None
        if e.sequence <= snap_seq:
            continue
        if e.symbol not in last:
            assert e.first_sequence <= snap_seq + 1 <= e.sequence
        else:
            assert e.first_sequence == last[e.symbol] + 1
        last[e.symbol] = e.sequence
        kept += 1
    assert set(last) == set(books) and kept > 100


def test_trade_ids_contiguous_per_symbol(recorded_data: Path) -> None:
    ids: dict[str, list[int]] = defaultdict(list)
    for name in ("BINANCE", "BINANCE_US"):
        _, events = decode_file(recorded_data / f"{name}.ws.1.0")
        for e in events:
            if isinstance(e, Trade):
                assert e.id is not None
                ids[e.symbol].append(e.id)
    assert ids["OMG-BUSD"] == list(range(425085, 425096))
    for seq in ids.values():
        assert seq == list(range(seq[0], seq[0] + len(seq)))


def test_models_keep_the_venue_digits(recorded_data: Path) -> None:
    _, events = decode_file(recorded_data / "BINANCE.ws.1.0")
    delta = next(e for e in events if isinstance(e, BookDelta))
    assert delta.symbol == "NKN-USDT" and (delta.first_sequence, delta.sequence) == (
        499869750,
        499869752,
    )
    assert tuple(map(str, delta.bids[0])) == ("0.35130000", "6195.00000000")
    assert delta.asks == () and delta.ts == 1633998512068_000000
    quote = next(e for e in events if isinstance(e, Quote))
    assert (str(quote.bid), str(quote.bid_size)) == ("0.35210000", "672.00000000")
    candle = next(e for e in events if isinstance(e, Candle))
    assert candle.interval == "1m" and candle.close_time - candle.open_time == 60 * 10**9
    _, us_events = decode_file(recorded_data / "BINANCE_US.ws.1.0")
    trade = next(e for e in us_events if isinstance(e, Trade))
    assert trade == Trade(
        venue="binance",
        symbol="OMG-BUSD",
        id=425085,
        price=Decimal("13.80480000"),
        size=Decimal("2.10000000"),
        side=Side.BUY,
        ts=1633998288467_000000,
        recv_ts=trade.recv_ts,
    )
    assert str(trade.price) == "13.80480000"
    sells = [e for e in us_events if isinstance(e, Trade) and e.side is Side.SELL]
    assert len(sells) == 9  # "m": true, the buyer was the maker


def test_raw_stream_frames_and_other_key_orders() -> None:
    codec = BinanceCodec()
    raw_trade = (
        b'{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",'
        b'"T":1672515782136,"m":true,"M":true}'
    )
    (trade,) = codec.decode(raw_trade, 1)
    assert isinstance(trade, Trade) and trade.id == 12345 and trade.side is Side.SELL
    assert trade.symbol == "BNB-BTC" and str(trade.size) == "100"
    raw_book_ticker = (
        b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",'
        b'"a":"25.36520000","A":"40.66000000"}'
    )
    (quote,) = codec.decode(raw_book_ticker, 2)
    assert isinstance(quote, Quote) and quote.ts == 2 and str(quote.ask) == "25.36520000"
    reordered = (
        b'{"data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":5,"u":6,"b":[["1.0","2.0"]],'
        b'"a":[]},"stream":"btcusdt@depth@100ms"}'
    )
    (delta,) = codec.decode(reordered, 3)
    assert isinstance(delta, BookDelta) and (delta.first_sequence, delta.sequence) == (5, 6)
    ticker = (
        b'{"stream":"bnbbtc@ticker","data":{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC",'
        b'"p":"0.0015","P":"250.00","w":"0.0018","x":"0.0009","c":"0.0025","Q":"10",'
        b'"b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010","h":"0.0025",'
        b'"l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}}'
    )
    (tick,) = codec.decode(ticker, 4)
    assert isinstance(tick, Ticker) and str(tick.last) == "0.0025" and str(tick.volume) == "10000"
    partial = (
        b'{"stream":"bnbbtc@depth5@100ms","data":{"lastUpdateId":160,'
        b'"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}'
    )
    (snap,) = codec.decode(partial, 5)
    assert isinstance(snap, BookSnapshot) and snap.symbol == "BNB-BTC" and snap.sequence == 160
    assert codec.unknown == 0


def test_subscribe_ack_and_errors() -> None:
    codec = BinanceCodec()
    subs = [
        Subscription(Channel.TRADES, "BTC-USDT"),
        Subscription(Channel.BOOK, "BTC-USDT"),
        Subscription(Channel.CANDLES, "ETH-BTC", interval="1m"),
        Subscription(Channel.TICKER, "BNB-FDUSD"),
    ]
    (frame,) = codec.subscribe(subs)
    assert msgspec.json.decode(frame) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@aggTrade", "btcusdt@depth@100ms", "ethbtc@kline_1m", "bnbfdusd@ticker"],
        "id": 1,
    }
    assert codec.decode(b'{"result":null,"id":1}', 0) == [Subscribed(tuple(subs), request_id=1)]
    (unsub,) = codec.unsubscribe(subs[:1])
    assert msgspec.json.decode(unsub) == {
        "method": "UNSUBSCRIBE",
        "params": ["btcusdt@aggTrade"],
        "id": 2,
    }
    assert codec.decode(b'{"result":null,"id":2}', 0) == [Unsubscribed(tuple(subs[:1]), 2)]
    (err,) = codec.decode(
        b'{"error":{"code":2,"msg":"Invalid request: unknown variable"},"id":3}', 0
    )
    assert err == VenueError(code="2", message="Invalid request: unknown variable", request_id=3)
    assert codec.decode(b'{"result":["btcusdt@aggTrade"],"id":4}', 0) == []
    assert codec.decode(b'{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate"}}', 0) == []
    assert codec.decode(b'{"e":"outboundAccountPosition","E":1}', 0) == []
    assert codec.decode(b'{"something":"else"}', 0) == []
    assert codec.unknown == 4
    raw = BinanceCodec(trade_stream="trade", depth_speed="1000ms")
    assert raw.stream_name(Subscription(Channel.TRADES, "BTC-USDT")) == "btcusdt@trade"
    assert raw.stream_name(Subscription(Channel.BOOK, "BTC-USDT")) == "btcusdt@depth@1000ms"
    with pytest.raises(InvalidRequest):
        codec.subscribe([Subscription(Channel.CANDLES, "BTC-USDT", interval="7m")])
    with pytest.raises(InvalidRequest):
        codec.subscribe([Subscription(Channel.ORDERS)])
    many = [Subscription(Channel.TRADES, f"A{i}-USDT") for i in range(450)]
    assert [len(msgspec.json.decode(f)["params"]) for f in codec.subscribe(many)] == [200, 200, 50]
    assert BinanceCodec.max_streams_per_connection == 1024
    assert BinanceCodec.max_messages_per_second == 5.0


@pytest.mark.parametrize(
    "frame",
    [
        b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKN',
        b"\x89PNG\r\n\x1a\n\x00\x00garbage",
        b"",
        b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT",'
        b'"U":"x","u":2,"b":[],"a":[]}}',  # wrong type
        b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT",'
        b'"u":2,"b":[],"a":[]}}',  # missing U
        b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT",'
        b'"U":1,"u":2,"b":[["1.0"]],"a":[]}}',  # level without size
        b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT",'
        b'"U":1,"u":2,"b":[["NaN","1"]],"a":[]}}',  # not a finite decimal
        b'{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","s":"NKNUSDT","a":1,"p":"1",'
        b'"q":"1","T":1,"m":"yes"}}',
        b'{"e":"trade","s":"BTCUSDT","t":1}',
        b'{"stream":"nknusdt@bookTicker","data":{"u":1,"s":"NKNUSDT","b":"1"}}',
        b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"X",'
        b'"U":1,"u":2,"b":[],"a":[]}}',  # a symbol that cannot be split
        b"[1,2,3]",
        b'"text"',
    ],
)
def test_malformed_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        BinanceCodec().decode(frame, 0)


def test_symbol_mapping_round_trips() -> None:
    codec = BinanceCodec()
    cases = {
        "BTC-USDT": "BTCUSDT",
        "NKN-USDT": "NKNUSDT",
        "BLZ-ETH": "BLZETH",
        "LRC-BTC": "LRCBTC",
        "RUNE-EUR": "RUNEEUR",
        "OMG-BUSD": "OMGBUSD",
        "BTC-FDUSD": "BTCFDUSD",
        "BTC-TUSD": "BTCTUSD",
        "ETH-USDC": "ETHUSDC",
        "BNB-BTC": "BNBBTC",
        "BTC-USD": "BTCUSD",
    }
    for symbol, venue_symbol in cases.items():
        assert codec.venue_symbol(symbol) == venue_symbol
        assert codec.symbol(venue_symbol) == symbol
    assert split_binance_symbol("btcusdt") == ("BTC", "USDT")
    with pytest.raises(InvalidRequest):
        codec.venue_symbol("BTCUSDT")
    with pytest.raises(ProtocolError):
        codec.symbol("USDT")
    known = BinanceRest().parse_markets(EXCHANGE_INFO)
    taught = BinanceCodec(instruments=known)
    assert taught.symbol("1000SATSUSDT") == "1000SATS-USDT"
    assert taught.venue_symbol("1000SATS-USDT") == "1000SATSUSDT"


EXCHANGE_INFO = (
    b'{"timezone":"UTC","serverTime":1565246363776,"rateLimits":[],"exchangeFilters":[],'
    b'"symbols":[{"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH",'
    b'"baseAssetPrecision":8,"quoteAsset":"BTC","quotePrecision":8,"quoteAssetPrecision":8,'
    b'"orderTypes":["LIMIT","MARKET"],"filters":[{"filterType":"PRICE_FILTER",'
    b'"minPrice":"0.00000100","maxPrice":"100000.00000000","tickSize":"0.00000100"},'
    b'{"filterType":"LOT_SIZE","minQty":"0.00010000","maxQty":"100000.00000000",'
    b'"stepSize":"0.00010000"},{"filterType":"NOTIONAL","minNotional":"0.00010000"}]},'
    b'{"symbol":"1000SATSUSDT","status":"BREAK","baseAsset":"1000SATS","baseAssetPrecision":8,'
    b'"quoteAsset":"USDT","quotePrecision":8,"filters":[{"filterType":"PRICE_FILTER",'
    b'"tickSize":"10.00000000"},{"filterType":"LOT_SIZE","minQty":"1.00000000",'
    b'"stepSize":"1.00000000"}]}]}'
)


def test_rest_requests_and_bodies(recorded_data: Path) -> None:
    rest = BinanceRest()
    eth, sats = rest.parse_markets(EXCHANGE_INFO)
    assert (eth.symbol, eth.venue_symbol, eth.status) == ("ETH-BTC", "ETHBTC", "open")
    assert (eth.tick_size, eth.lot_size, eth.min_size) == (
        Decimal("0.000001"),
        Decimal("0.0001"),
        Decimal("0.0001"),
    )
    assert (eth.price_precision, eth.size_precision) == (6, 4)
    assert (sats.tick_size, sats.lot_size, sats.price_precision, sats.status) == (
        Decimal(10),
        Decimal(1),
        0,
        "break",
    )
    assert rest.markets_request().path == "/api/v3/exchangeInfo"
    req = rest.book_request("NKN-USDT", 1000)
    assert (req.path, req.params, req.weight) == (
        "/api/v3/depth",
        (("symbol", "NKNUSDT"), ("limit", "1000")),
        50,
    )
    req = rest.trades_request("OMG-BUSD", since_id=425084, limit=500)
    assert (req.path, req.params) == (
        "/api/v3/aggTrades",
        (("symbol", "OMGBUSD"), ("fromId", "425085"), ("limit", "500")),
    )
    assert BinanceRest(trades="trades").trades_request("BTC-USDT").path == "/api/v3/trades"
    books = snapshots(recorded_data / "BINANCE.http.0.0")
    nkn = books["NKN-USDT"]
    assert nkn.sequence == 499869752 and len(nkn.asks) == 1000
    assert decimal_text(nkn.bids[0].price) == "0.35210000"
    us = snapshots(recorded_data / "BINANCE_US.http.0.0")
    assert {s: b.sequence for s, b in us.items()} == {
        "COMP-USDT": 113129219,
        "OMG-BUSD": 77819467,
        "CRV-USDT": 1938834,
        "ZRX-USDT": 96974986,
    }
    for book in (*books.values(), *us.values()):
        assert book.bids[0].price < book.asks[0].price
        assert all(a.price > b.price for a, b in zip(book.bids, book.bids[1:], strict=False))
    agg = (
        b'[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,'
        b'"T":1498793709153,"m":true,"M":true}]'
    )
    (t,) = rest.parse_trades(agg, "ETH-BTC")
    assert (t.id, str(t.price), t.side, t.ts) == (
        26129,
        "0.01633102",
        Side.SELL,
        1498793709153 * 10**6,
    )
    plain = (
        b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
        b'"time":1499865549590,"isBuyerMaker":false,"isBestMatch":true}]'
    )
    (t,) = rest.parse_trades(plain, "ETH-BTC")
    assert (t.id, str(t.size), t.side) == (28457, "12.00000000", Side.BUY)
    with pytest.raises(ProtocolError):
        rest.parse_trades(b'[{"p":"1"}]', "ETH-BTC")
    with pytest.raises(ProtocolError):
        rest.parse_book(b'{"lastUpdateId":1,"bids":[["1"]],"asks":[]}', "ETH-BTC")


def test_rest_errors() -> None:
    rest = BinanceRest()
    err = rest.error(429, b'{"code":-1003,"msg":"Too many requests."}', {"Retry-After": "7"})
    assert isinstance(err, RateLimitError) and err.retry_after == 7.0
    err = rest.error(418, b"", {"retry-after": "120"})
    assert isinstance(err, RateLimitError) and err.retry_after == 120.0
    err = rest.error(400, b'{"code":-1121,"msg":"Invalid symbol."}', {})
    assert isinstance(err, InvalidRequest) and err.field == "symbol" and err.code == "-1121"
    err = rest.error(400, b'{"code":-1100,"msg":"Illegal characters found."}', {})
    assert isinstance(err, ExchangeError) and (err.code, err.status) == ("-1100", 400)
    assert err.message == "Illegal characters found."
    err = rest.error(502, b"<html>bad gateway</html>", {})
    assert isinstance(err, ExchangeError) and err.code is None and err.status == 502


@pytest.mark.parametrize("name", ["BINANCE", "BINANCE_US"])
def test_one_pass_event_path_equals_the_general_path(recorded_data: Path, name: str) -> None:
    """Events (``"e"``) are decoded in one pass from the session's memoryview; every recorded
    frame gives the same models as the general path (bytes, stream name looked up first)."""
    fast, general = BinanceCodec(), BinanceCodec()
    general._events_first = False
    seen: Counter[str] = Counter()
    for rec in read_recording(recorded_data / f"{name}.ws.1.0"):
        if rec.direction is not Direction.RECEIVED:
            continue
        fast._events_first = True  # bookTicker frames turn it off; force the one-pass try
        expected = general.decode(bytes(rec.frame), rec.ts)
        assert fast.decode(memoryview(rec.frame), rec.ts) == expected
        seen.update(type(e).__name__ for e in expected)
    assert seen == EXPECTED[name]
    assert fast.unknown == general.unknown == 0


def test_streams_without_event_type_turn_the_one_pass_try_off() -> None:
    depth = (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        b'"U":5,"u":6,"b":[["1.0","2.0"],["0.9","0"]],"a":[["1.1","3"]]}}'
    )
    book_ticker = (
        b'{"stream":"btcusdt@bookTicker","data":{"u":7,"s":"BTCUSDT","b":"1.0","B":"2",'
        b'"a":"1.1","A":"3"}}'
    )
    codec = BinanceCodec(ticker_stream="bookTicker")
    (delta,) = codec.decode(memoryview(depth), 1)
    assert isinstance(delta, BookDelta)
    assert delta.bids == ((Decimal("1.0"), Decimal("2.0")), (Decimal("0.9"), Decimal("0")))
    assert delta.bids[0].price == Decimal("1.0") and delta.asks[0].size == Decimal("3")
    assert codec._events_first
    (quote,) = codec.decode(memoryview(book_ticker), 2)
    assert isinstance(quote, Ticker) and str(quote.bid) == "1.0"
    assert not codec._events_first  # bookTicker payloads have no "e": no failing try per frame
    assert codec.decode(memoryview(depth), 3) == [msgspec.structs.replace(delta, recv_ts=3)]
    subscriber = BinanceCodec(ticker_stream="bookTicker")
    subscriber.subscribe([Subscription(Channel.TRADES, "BTC-USDT")])
    assert subscriber._events_first
    subscriber.subscribe([Subscription(Channel.TICKER, "BTC-USDT")])
    assert not subscriber._events_first
    # Unknown event types and malformed events still go where the general path sends them.
    assert codec.decode(memoryview(b'{"e":"outboundAccountPosition","E":1}'), 0) == []
    assert codec.unknown == 1
    with pytest.raises(ProtocolError):
        codec.decode(memoryview(b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":"x"}'), 0)
    with pytest.raises(ProtocolError):
        codec.decode(memoryview(b'{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[],"a":[]}'), 0)
    assert codec.decode(memoryview(b"{}"), 0) == [] and codec.unknown == 2
