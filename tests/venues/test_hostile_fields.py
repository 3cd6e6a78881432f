"""Issue 15, case 3, the last gaps: duplicate JSON keys, zero prices and sizes, and levels per
message on diffs, for every venue codec (WebSocket and REST).

* A frame in which an object gives a key twice is a ProtocolError naming the key and, where the
  frame tells it, the stream (a book that received one must resync), whichever key it is and
  however it is written (an escaped key is the same key); the same key in two sibling objects
  (Kraken v2's levels) is not a duplicate.
* A trade's price and size must be > 0; a book level's price must be > 0; its size is 0 only in
  a diff, where it deletes the level; a snapshot lists the levels there are (size > 0).
* One side of one book message, diff or snapshot, holds at most
  ``limits.max_levels_per_message`` levels: beyond, a ProtocolError whose ``limit`` names it.

These tests run on both builds (the pure-Python leg runs tests/venues too), so the C scan and
its pure fallback are each held to the same answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tickloop.exceptions import ProtocolError
from tickloop.limits import DEFAULT_LIMITS, Limits
from tickloop.models import BookDelta, BookSnapshot, Trade
from tickloop.venues.base import Channel, Codec
from tickloop.venues.binance import BinanceCodec, BinanceRest
from tickloop.venues.coinbase import CoinbaseCodec, CoinbaseRest
from tickloop.venues.kraken import KrakenCodec, KrakenRest, KrakenV2Codec
from tickloop.venues.sim import SimCodec
from tickloop.venues.sim_rest import SimRest

TIME = "2024-01-01T00:00:00.000000Z"


def kraken_v1(limits: Limits = DEFAULT_LIMITS) -> KrakenCodec:
    codec = KrakenCodec(limits=limits)
    codec._channels.update({1: (Channel.BOOK, "BTC-USD"), 2: (Channel.TRADES, "BTC-USD")})
    return codec


def text(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


# Real message shapes of each venue: (codec factory, trade, diff, snapshot). Each is a function
# of the numbers put in (price, size; a diff's and a snapshot's levels).
def sim_trade(price: str = "100.50", size: str = "0.0100") -> str:
    return text(
        {
            "type": "trade",
            "symbol": "BTC-USD",
            "id": 7,
            "price": price,
            "size": size,
            "side": "buy",
            "ts": 1,
        }
    )


def sim_book(kind: str, bids: list[list[str]], asks: list[list[str]] | None = None) -> str:
    message: dict[str, Any] = {"type": kind, "symbol": "BTC-USD", "seq": 4, "bids": bids}
    message["asks"] = asks or []
    if kind == "book_update":
        message["prev_seq"] = 3
    message["checksum"] = 1
    return text(message)


def binance_trade(price: str = "100.00", size: str = "0.5") -> str:
    return text(
        {
            "e": "aggTrade",
            "E": 1,
            "s": "BTCUSDT",
            "a": 5,
            "p": price,
            "q": size,
            "f": 1,
            "l": 1,
            "T": 1,
            "m": True,
            "M": True,
        }
    )


def binance_book(kind: str, bids: list[list[str]], asks: list[list[str]] | None = None) -> str:
    if kind == "book_update":
        return text(
            {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": bids, "a": asks or []}
        )
    return text(
        {"stream": "btcusdt@depth5", "data": {"lastUpdateId": 3, "bids": bids, "asks": asks or []}}
    )


def coinbase_trade(price: str = "100.00", size: str = "0.1") -> str:
    return text(
        {
            "type": "match",
            "trade_id": 1,
            "sequence": 5,
            "product_id": "BTC-USD",
            "price": price,
            "size": size,
            "side": "buy",
            "time": TIME,
        }
    )


def coinbase_book(kind: str, bids: list[list[str]], asks: list[list[str]] | None = None) -> str:
    if kind == "book_update":
        changes = [["buy", *level] for level in bids] + [["sell", *lv] for lv in asks or []]
        return text({"type": "l2update", "product_id": "BTC-USD", "changes": changes, "time": TIME})
    return text({"type": "snapshot", "product_id": "BTC-USD", "bids": bids, "asks": asks or []})


def kraken_trade(price: str = "100.00", size: str = "0.1") -> str:
    return text([2, [[price, size, "1.0", "b", "l", ""]], "trade", "XBT/USD"])


def kraken_book(kind: str, bids: list[list[str]], asks: list[list[str]] | None = None) -> str:
    def rows(levels: list[list[str]]) -> list[list[str]]:
        return [[*level, "1.0"] for level in levels]

    if kind == "book_update":
        payload: dict[str, Any] = {"b": rows(bids), "c": "12345"}
        if asks:
            payload["a"] = rows(asks)
        return text([1, payload, "book-10", "XBT/USD"])
    return text([1, {"as": rows(asks or []), "bs": rows(bids)}, "book-10", "XBT/USD"])


def kraken_v2_trade(price: str = "100.0", size: str = "0.5") -> str:
    return (
        '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
        f'"price":{price},"qty":{size},"ord_type":"market","trade_id":4,"timestamp":"{TIME}"'
        "}]}"
    )


def kraken_v2_book(kind: str, bids: list[list[str]], asks: list[list[str]] | None = None) -> str:
    def rows(levels: list[list[str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

    kind = "update" if kind == "book_update" else "snapshot"
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"BTC/USD",'
        f'"bids":[{rows(bids)}],"asks":[{rows(asks or [])}],"checksum":1}}]}}'
    )


VENUES: dict[str, tuple[Callable[..., Codec], Callable[..., str], Callable[..., str], str]] = {
    "sim": (SimCodec, sim_trade, sim_book, "BTC-USD"),
    "binance": (BinanceCodec, binance_trade, binance_book, "BTC-USDT"),
    "coinbase": (CoinbaseCodec, coinbase_trade, coinbase_book, "BTC-USD"),
    "kraken": (kraken_v1, kraken_trade, kraken_book, "BTC-USD"),
    "kraken_v2": (KrakenV2Codec, kraken_v2_trade, kraken_v2_book, "BTC-USD"),
}
# The key of each venue's trade that carries its price, as the venue writes it.
PRICE_KEY = {"sim": "price", "binance": "p", "coinbase": "price", "kraken_v2": "price"}


def refused(codec: Codec, frame: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame.encode(), 0)
    return info.value


def decoded(codec: Codec, frame: str) -> list[Any]:
    return list(codec.decode(frame.encode(), 0))


def again(frame: str, key: str, value: str) -> str:
    """``frame`` (an object) with ``"key": value`` added at its end: the key given twice."""
    assert frame.endswith("}")
    return frame[:-1] + f',"{key}":{value}' + "}"


# ----------------------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize("venue", sorted(PRICE_KEY))
@pytest.mark.parametrize("escaped", [False, True])
def test_a_trade_whose_price_is_given_twice_is_refused(venue: str, escaped: bool) -> None:
    """The second price would be believed (msgspec keeps the last value): refused, naming the
    key and the stream, however the key is written."""
    factory, trade, _, symbol = VENUES[venue]
    codec = factory()
    frame = trade()
    assert len(decoded(codec, frame)) == 1
    key = PRICE_KEY[venue]
    name = f"\\u{ord(key[0]):04x}{key[1:]}" if escaped else key
    value = '"1.00"' if venue != "kraken_v2" else "1.0"
    if venue == "kraken_v2":  # the price is inside data[0]
        twice = frame.replace(f'"{key}":', f'"{name}":1.0,"{key}":', 1)
    else:
        twice = again(frame, name, value)
    from tickloop.venues.keys import duplicated_key  # here: the file also runs on older code

    assert duplicated_key(twice.encode()) == key
    error = refused(codec, twice)
    assert f"duplicate JSON key '{key}'" in str(error)
    assert (error.symbol, error.channel) == (symbol, "trades")


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_a_book_diff_with_a_key_given_twice_is_refused_and_names_its_book(venue: str) -> None:
    factory, _, book, symbol = VENUES[venue]
    codec = factory()
    frame = book("book_update", [["100.00", "1.0"]])
    assert isinstance(decoded(codec, frame)[0], BookDelta)
    if venue == "kraken":  # [id, {"b": [...], "c": ...}, ...]: the payload gives "c" twice
        twice = frame.replace('"c":"12345"', '"c":"12345","c":"99"')
    elif venue == "kraken_v2":
        twice = frame.replace('"checksum":1', '"checksum":1,"checksum":2')
    else:
        key = {"sim": "bids", "binance": "b", "coinbase": "changes"}[venue]
        twice = again(frame, key, '[["buy","1.00","5.0"]]' if venue == "coinbase" else "[]")
    error = refused(codec, twice)
    assert "duplicate JSON key" in str(error)
    assert (error.symbol, error.channel) == (symbol, "book")


def test_the_same_key_in_sibling_objects_is_no_duplicate() -> None:
    """Kraken v2's levels are objects with the same keys; nested objects may reuse a key."""
    frame = kraken_v2_book("book_update", [["100.0", "1.0"], ["99.0", "2.0"]], [["101.0", "0"]])
    (delta,) = decoded(KrakenV2Codec(), frame)
    assert len(delta.bids) == 2 and len(delta.asks) == 1
    combined = text(
        {
            "stream": "btcusdt@aggTrade",
            "data": {"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 5, "p": "1.5", "q": "2"}
            | {"T": 1, "m": False},
        }
    )
    assert decoded(BinanceCodec(), combined)[0].price == 1.5
    assert refused(BinanceCodec(), again(combined, "stream", '"x"')).channel == "trades"


def test_control_messages_with_a_key_given_twice_are_refused_before_they_are_believed() -> None:
    """A subscription status with a key given twice changes no state of the codec."""
    status = {
        "event": "subscriptionStatus",
        "status": "subscribed",
        "channelID": 7,
        "channelName": "book-10",
        "pair": "XBT/USD",
        "subscription": {"name": "book"},
    }
    codec = KrakenCodec()
    refused(codec, again(text(status), "channelID", "8"))
    assert 7 not in codec._channels and 8 not in codec._channels
    sim = SimCodec()
    error = refused(sim, '{"type":"subscribed","channel":"trades","symbols":["X"],"id":1,"id":2}')
    assert "'id'" in str(error)
    binance = BinanceCodec()
    assert refused(binance, '{"result":null,"id":1,"id":2}').symbol is None


def test_rest_answers_with_a_key_given_twice_are_refused() -> None:
    trades = '[{"a":1,"p":"1.5","q":"2","T":1,"m":true,"p":"9"}]'
    with pytest.raises(ProtocolError, match="duplicate JSON key 'p'") as info:
        BinanceRest().parse_trades(trades.encode(), "BTC-USDT")
    assert info.value.channel == "trades" and info.value.symbol == "BTC-USDT"
    book = '{"lastUpdateId":1,"bids":[["1.0","1.0"]],"asks":[],"asks":[["0.5","1"]]}'
    with pytest.raises(ProtocolError, match="'asks'"):
        BinanceRest().parse_book(book.encode(), "BTC-USDT")
    coinbase = '{"bids":[["1.0","1.0",1]],"asks":[],"sequence":3,"sequence":9}'
    with pytest.raises(ProtocolError, match="'sequence'"):
        CoinbaseRest().parse_book(coinbase.encode(), "BTC-USD")
    kraken = '{"error":[],"result":{"XXBTZUSD":{"asks":[],"bids":[],"bids":[]}}}'
    with pytest.raises(ProtocolError, match="'bids'"):
        KrakenRest().parse_book(kraken.encode(), "BTC-USD")
    sim = '{"symbol":"BTC-USD","seq":1,"seq":2,"bids":[],"asks":[],"checksum":0,"ts":0}'
    with pytest.raises(ProtocolError, match="'seq'"):
        SimRest().parse_book(sim.encode(), "BTC-USD")
    sim_trades = '[{"id":1,"price":"1.5","size":"1","side":"buy","ts":1,"size":"7"}]'
    with pytest.raises(ProtocolError, match="'size'"):
        SimRest().parse_trades(sim_trades.encode(), "BTC-USD")


# --------------------------------------------------------------------- zero prices and sizes


@pytest.mark.parametrize("venue", sorted(VENUES))
@pytest.mark.parametrize("field", ["price", "size"])
def test_a_trade_of_zero_price_or_size_is_refused(venue: str, field: str) -> None:
    factory, trade, _, symbol = VENUES[venue]
    codec = factory()
    zero = "0" if venue == "kraken_v2" else "0.00"
    error = refused(codec, trade(**{field: zero}))
    assert error.channel == "trades" and error.symbol == symbol
    (ok,) = decoded(codec, trade())
    assert isinstance(ok, Trade) and ok.price > 0 and ok.size > 0


@pytest.mark.parametrize("venue", sorted(VENUES))
def test_a_level_price_of_zero_is_refused_a_size_of_zero_deletes(venue: str) -> None:
    """Diffs: size 0 deletes the level (every venue says so), price 0 is refused. Snapshots:
    every level has a size > 0."""
    factory, _, book, symbol = VENUES[venue]
    codec = factory()
    (delta,) = decoded(codec, book("book_update", [["100.00", "0"]], [["101.00", "0.5"]]))
    assert isinstance(delta, BookDelta) and delta.bids[0].size == 0
    for kind in ("book_update", "book_snapshot"):
        error = refused(codec, book(kind, [["0", "1.0"]]))
        assert (error.symbol, error.channel) == (symbol, "book")
    error = refused(codec, book("book_snapshot", [["100.00", "1.0"], ["99.00", "0"]]))
    assert (error.symbol, error.channel) == (symbol, "book")
    (snapshot,) = decoded(codec, book("book_snapshot", [["100.00", "1.0"]], [["101.00", "2"]]))
    assert isinstance(snapshot, BookSnapshot)


def test_rest_books_and_trades_of_zero_are_refused() -> None:
    with pytest.raises(ProtocolError):
        BinanceRest().parse_trades(b'[{"a":1,"p":"0.00","q":"2","T":1,"m":true}]', "BTC-USDT")
    with pytest.raises(ProtocolError):
        BinanceRest().parse_book(b'{"lastUpdateId":1,"bids":[["1.0","0"]],"asks":[]}', "X-Y")
    trade = text([{"time": TIME, "trade_id": 1, "price": "1.0", "size": "0", "side": "buy"}])
    with pytest.raises(ProtocolError):
        CoinbaseRest().parse_trades(trade.encode(), "BTC-USD")
    with pytest.raises(ProtocolError):
        KrakenRest().parse_book(
            b'{"error":[],"result":{"XXBTZUSD":{"asks":[["0","1",1]],"bids":[]}}}', "BTC-USD"
        )
    with pytest.raises(ProtocolError):
        SimRest().parse_book(
            b'{"symbol":"BTC-USD","seq":1,"bids":[["1.00","0"]],"asks":[],"checksum":0,"ts":0}',
            "BTC-USD",
        )


# ------------------------------------------------------------------- levels per message (diffs)


@pytest.mark.parametrize("venue", sorted(VENUES))
@pytest.mark.parametrize("kind", ["book_update", "book_snapshot"])
def test_a_side_over_max_levels_per_message_is_refused_in_diffs_too(venue: str, kind: str) -> None:
    """Issue 15, Build: "levels per message" bounded on every book message, typed (the error's
    ``limit`` names the field the session reports in ``Malformed.limit``)."""
    factory, _, book, symbol = VENUES[venue]
    codec = factory(limits=Limits(max_levels_per_message=2))
    two = [["100.00", "1.0"], ["99.00", "1.0"]]
    (ok,) = decoded(codec, book(kind, two, [["101.00", "1.0"], ["102.00", "1.0"]]))
    assert len(ok.bids) == len(ok.asks) == 2  # the bound is per side
    for many in (3, 50):  # 50: past the C decoder's stack of levels
        levels = [[f"{100 - i}.00", "1.0"] for i in range(many)]
        error = refused(codec, book(kind, levels))
        assert error.limit == "max_levels_per_message", str(error)
        assert (error.symbol, error.channel) == (symbol, "book")


def test_case8_kraken_channel_table_is_bounded() -> None:
    """Every table a venue's messages fill is bounded: a venue that announces a million channel
    ids keeps at most 4 x max_streams_per_connection of them."""
    codec = KrakenCodec()
    for channel_id in range(5000):
        status = {
            "event": "subscriptionStatus",
            "status": "subscribed",
            "channelID": channel_id,
            "channelName": "trade",
            "pair": "XBT/USD",
            "subscription": {"name": "trade"},
        }
        codec.decode(text(status).encode(), 0)
    assert len(codec._channels) == 4 * codec.max_streams_per_connection
    assert 4999 in codec._channels and 0 not in codec._channels


def test_the_exact_check_reads_bytes_that_are_not_utf8_as_themselves() -> None:
    """msgspec lets a byte that is not UTF-8 through in a key it skips (found by the fuzz
    boundary): the exact check compares such keys by their bytes instead of failing."""
    from tickloop.venues.keys import duplicate_keys, duplicated_key

    frame = b'{"type":"heartbeat","\x80equence":1,"product_id":"BTC-USD","time":"%s"}' % (
        TIME.encode()
    )
    assert duplicated_key(frame) is None
    assert CoinbaseCodec().decode(frame, 0)  # decodes, nothing refused
    twice = b'{"\x80a":1,"\x80a":2}'
    assert duplicated_key(twice) == "\udc80a" and duplicate_keys(twice) != 0
    assert duplicated_key(b'{"\x80a":1,"\x81a":2}') is None
