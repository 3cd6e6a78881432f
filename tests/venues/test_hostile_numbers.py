"""Hostile values in venue messages (issue 15, cases 1, 3, 6 and 8): every codec refuses them
with a ProtocolError that names the stream, never with a hang, a RecursionError or a valid
model carrying a number no venue sends."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import pytest

from tickloop.exceptions import ProtocolError
from tickloop.models import Instrument
from tickloop.venues.base import Channel, DecimalCache
from tickloop.venues.binance import BinanceCodec
from tickloop.venues.coinbase import CoinbaseCodec
from tickloop.venues.kraken import KrakenCodec, KrakenV2Codec
from tickloop.venues.sim import SimCodec
from tickloop.venues.sim_rest import SimRest

HOSTILE = [
    "1e300000000",  # case 1: written out in full, a gigabyte
    "1E+400",
    "9" * 10_000,
    "-1.5",
    "-0",
    "+1",
    "١",  # an Arabic-Indic one: Decimal() takes it
    "1_0",  # Decimal() takes it as 10
    " 1",
    "1 ",
    "0x10",
    "Infinity",
    "NaN",
    "0E-999999",  # zero, but a million zeros written out
    "1e-31",
    "",
]


def _sim_book(price: str, size: str = "1.0000") -> bytes:
    return json.dumps(
        {
            "type": "book_snapshot",
            "symbol": "BTC-USD",
            "seq": 1,
            "bids": [[price, size]],
            "asks": [],
            "checksum": 0,
        }
    ).encode()


@pytest.mark.parametrize("text", HOSTILE)
def test_number_grammar_refuses_what_no_venue_sends(text: str) -> None:
    with pytest.raises(ValueError):
        DecimalCache()[text]


@pytest.mark.parametrize("text", ["0", "0.00000000", "100.50", "301727260.79999999", "1.5e-8"])
def test_number_grammar_takes_what_venues_send(text: str) -> None:
    assert DecimalCache()[text] == Decimal(text)


@pytest.mark.parametrize(
    ("length", "exponent"), [(4, 2), (3, 5), (6, 3), (40, 30), (8, 8)]
)
def test_parse_number_shortcut_agrees_with_both_checks(length: int, exponent: int) -> None:
    # parse_number skips the regex and check_decimal for plain short texts: on every text
    # near the bounds it must still give what the two checks give (value or ValueError).
    from tickloop.limits import Limits, check_decimal, check_number_text, parse_number

    limits = Limits(max_number_length=length, max_exponent=exponent)
    texts = {"0", "00", "0.0", "1.", ".5", "1.2.3", "1e1", "+1", "١", "1_0", " 1"}
    for n in range(1, max(length, exponent) + 4):
        for point in range(n):
            texts.add("9" * n if point == 0 else "9" * point + "." + "0" * (n - point - 1) + "1")
            texts.add("0" * point + ("." if point else "") + "0" * (n - point))
    for text in sorted(texts):
        try:
            check_number_text(text, limits)
            expected: Decimal | None = check_decimal(Decimal(text), limits)
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(ValueError):
                parse_number(text, limits)
        else:
            got = parse_number(text, limits)
            assert got == expected and got.as_tuple() == expected.as_tuple(), text


def test_limits_are_configurable_and_validated() -> None:
    from tickloop.limits import DEFAULT_LIMITS, Limits, check_decimal, check_number_text

    tight = Limits(max_number_length=4, max_exponent=2)
    check_number_text("12.5", tight)
    with pytest.raises(ValueError):
        check_number_text("12.55", tight)
    with pytest.raises(ValueError):
        check_decimal(Decimal("1E+3"), tight)
    from tickloop.exceptions import ConfigError

    with pytest.raises(ConfigError, match="max_symbols"):
        Limits(max_symbols=0)
    assert DEFAULT_LIMITS.max_message_size >= DEFAULT_LIMITS.max_frame_size


@pytest.mark.parametrize("price", ["1e300000000", "9" * 10_000, "1E+400"])
def test_case1_sim_book_with_a_huge_number_is_refused_before_any_checksum(price: str) -> None:
    with pytest.raises(ProtocolError) as info:
        SimCodec().decode(_sim_book(price), 0)
    assert info.value.symbol == "BTC-USD" and info.value.channel == "book"


@pytest.mark.parametrize("size", ["-1.0000", "١", "1_0"])
def test_case3_sim_book_and_trade_with_a_negative_or_foreign_number(size: str) -> None:
    with pytest.raises(ProtocolError):
        SimCodec().decode(_sim_book("100.00", size), 0)
    trade = {
        "type": "trade",
        "symbol": "BTC-USD",
        "id": 1,
        "price": "100.00",
        "size": size,
        "side": "buy",
        "ts": 1,
    }
    with pytest.raises(ProtocolError) as info:
        SimCodec().decode(json.dumps(trade).encode(), 0)
    assert info.value.channel == "trades"


def test_case1_kraken_v1_book_string_and_v2_number_are_refused() -> None:
    codec = KrakenCodec()
    codec._channels[42] = (Channel.BOOK, "BTC-USD")
    frame = json.dumps(
        [42, {"as": [["1e300000000", "1.0", "1.0"]], "bs": []}, "book-10", "XBT/USD"]
    ).encode()
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame, 0)
    assert info.value.symbol == "BTC-USD" and info.value.channel == "book"

    v2 = (
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":'
        b'[{"price":1e300000000,"qty":1.0}],"asks":[],"checksum":1}]}'
    )
    with pytest.raises(ProtocolError) as info:
        KrakenV2Codec().decode(v2, 0)
    assert info.value.symbol == "BTC-USD"
    negative = v2.replace(b"1e300000000", b"-5.0")
    with pytest.raises(ProtocolError):
        KrakenV2Codec().decode(negative, 0)


def test_case3_binance_and_coinbase_negative_sizes() -> None:
    depth = {
        "e": "depthUpdate",
        "E": 1,
        "s": "BTCUSDT",
        "U": 1,
        "u": 2,
        "b": [["100.00", "-1.0"]],
        "a": [],
    }
    with pytest.raises(ProtocolError) as info:
        BinanceCodec().decode(json.dumps(depth).encode(), 0)
    assert info.value.symbol == "BTC-USDT" and info.value.channel == "book"
    match = {
        "type": "match",
        "trade_id": 1,
        "product_id": "BTC-USD",
        "price": "-100.00",
        "size": "1.0",
        "side": "buy",
        "time": "2024-01-01T00:00:00.000000Z",
    }
    with pytest.raises(ProtocolError):
        CoinbaseCodec().decode(json.dumps(match).encode(), 0)


def test_case3_sim_rest_refuses_negative_and_huge_numbers() -> None:
    book = {
        "symbol": "BTC-USD",
        "seq": 1,
        "bids": [["100.00", "-1"]],
        "asks": [],
        "checksum": 0,
        "ts": 1,
    }
    with pytest.raises(ProtocolError):
        SimRest().parse_book(json.dumps(book).encode(), "BTC-USD")
    book["bids"] = [["1e300000000", "1"]]
    with pytest.raises(ProtocolError):
        SimRest().parse_book(json.dumps(book).encode(), "BTC-USD")


NESTED = [
    b'{"type":"trade","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"[" * 100_000,
    b'{"e":"depthUpdate","b":' + b"[" * 100_000,
    b'{"stream":"btcusdt@trade","data":' + b"{" * 50_000,
]


@pytest.mark.parametrize(
    "codec",
    [SimCodec, BinanceCodec, CoinbaseCodec, KrakenCodec, KrakenV2Codec],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("frame", NESTED, ids=["object", "array", "depth", "combined"])
def test_case6_deep_nesting_is_a_protocol_error(codec: type, frame: bytes) -> None:
    assert len(frame) > sys.getrecursionlimit()
    with pytest.raises(ProtocolError):
        codec().decode(frame, 0)


def test_case6_rest_codecs_type_deep_nesting() -> None:
    with pytest.raises(ProtocolError):
        SimRest().parse_trades(b"[" * 100_000, "BTC-USD")


def test_case8_binance_symbol_cache_is_bounded() -> None:
    btc = Instrument(
        venue="binance",
        symbol="BTC-USDT",
        venue_symbol="BTCUSDT",
        base="BTC",
        quote="USDT",
        price_precision=2,
        size_precision=5,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.00001"),
    )
    codec = BinanceCodec(instruments=[btc])
    for i in range(20_000):  # distinct symbols, as a hostile stream could name them
        assert codec.symbol(f"C{i}USDT") == f"C{i}-USDT"
    assert len(codec._symbols) <= 10_000  # limits.max_symbols
    assert codec.symbol("BTCUSDT") == "BTC-USDT"


def test_case8_symbol_caches_follow_the_configured_limit() -> None:
    from tickloop.limits import Limits

    kraken = KrakenV2Codec(limits=Limits(max_symbols=50))
    for i in range(1_000):
        assert kraken.symbol(f"C{i}/USD") == f"C{i}-USD"
    assert len(kraken._symbols) == 50


def test_case8_names_past_the_symbol_cache_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A full name cache is handled (names are worked out each time) and must also be visible:
    # counted per name decoded uncached, with one warning naming the bound.
    from tickloop.limits import Limits

    kraken = KrakenV2Codec(limits=Limits(max_symbols=50))
    binance = BinanceCodec(limits=Limits(max_symbols=50))
    with caplog.at_level("WARNING", logger="tickloop.venues"):
        for i in range(80):
            assert kraken.symbol(f"C{i}/USD") == f"C{i}-USD"
            assert binance.symbol(f"C{i}USDT") == f"C{i}-USDT"
        assert kraken.symbol("C0/USD") == "C0-USD"  # cached: not counted
    assert kraken.uncached_symbols == 30
    assert binance.uncached_symbols == 30
    warnings = [r for r in caplog.records if "max_symbols" in r.getMessage()]
    assert len(warnings) == 2
    assert {r.getMessage().split(":")[0] for r in warnings} == {"kraken", "binance"}
