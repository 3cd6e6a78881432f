"""Models: exact values survive encode/decode, repr is readable, structs are immutable."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickloop.models import (
    BookLevel,
    BookSnapshot,
    ConsumerDetached,
    Gap,
    MarketEvent,
    Order,
    OrderStatus,
    OrderType,
    Side,
    StatusEvent,
    Trade,
)
from tickloop.venues.base import DecimalCache


def trade(price: str = "301727260.79999999", size: str = "0.05005000") -> Trade:
    return Trade(
        venue="kraken",
        symbol="BTC-USD",
        id=None,
        price=Decimal(price),
        size=Decimal(size),
        side=Side.BUY,
        ts=1,
    )


def test_venue_digits_survive_a_round_trip() -> None:
    t = trade()
    data = msgspec.json.encode(t)
    assert b'"price":"301727260.79999999"' in data
    assert b'"size":"0.05005000"' in data  # trailing zeros kept: checksums need them
    assert msgspec.json.decode(data, type=Trade) == t


def test_float_and_decimal_conversion_and_arithmetic() -> None:
    t = trade("100.10", "0.3")
    assert float(t.price) == 100.1
    assert t.price * t.size == Decimal("30.030")  # exact, not 30.029999999999998
    assert "price=Decimal('100.10')" in repr(t)


def test_models_are_frozen() -> None:
    t = trade()
    with pytest.raises(AttributeError):
        t.price = Decimal(1)  # type: ignore[misc]


def test_book_levels_compare_with_plain_tuples() -> None:
    level = BookLevel(Decimal("1.5"), Decimal("2"))
    assert level == (Decimal("1.5"), Decimal("2"))
    snap = BookSnapshot(venue="sim", symbol="X", bids=(level,), asks=())
    back = msgspec.json.decode(msgspec.json.encode(snap), type=BookSnapshot)
    assert back.bids == ((Decimal("1.5"), Decimal("2")),)


def test_mixed_streams_decode_through_one_tagged_union() -> None:
    events = [
        trade(),
        Gap(venue="sim", symbol="X", channel="trades", recovered=True, ts=3),
        ConsumerDetached(
            venue="sim", channel="trades", consumer="on_trade", symbols=("X",), dropped=7, ts=4
        ),
    ]
    decoder = msgspec.json.Decoder(list[MarketEvent | StatusEvent])  # type: ignore[valid-type]
    assert decoder.decode(msgspec.json.encode(events)) == events


def test_order_remaining_and_final_status() -> None:
    order = Order(
        venue="sim",
        symbol="BTC-USD",
        id="1",
        side=Side.SELL,
        type=OrderType.LIMIT,
        price=Decimal("10"),
        size=Decimal("2"),
        filled_size=Decimal("0.5"),
        status=OrderStatus.PARTIALLY_FILLED,
    )
    assert order.remaining == Decimal("1.5")
    assert not order.status.is_final and OrderStatus.FILLED.is_final


@given(st.decimals(min_value=0, max_value=10**20, allow_nan=False, allow_infinity=False, places=8))
def test_decimal_cache_is_exact(value: Decimal) -> None:
    text = format(value, "f")
    cache = DecimalCache(max_size=4)
    first = cache[text]
    assert format(first, "f") == text
    assert cache[text] is first  # interned: one object per distinct string


def test_decimal_cache_rejects_non_numbers_and_stays_bounded() -> None:
    cache = DecimalCache(max_size=2)
    for bad in ("", "abc", "NaN", "-Infinity"):
        with pytest.raises(ValueError):
            cache[bad]
    for i in range(10):
        cache[str(i)]
    assert len(cache) <= 2
