"""What the cycle collector need not walk is not walked (``tickloop._gc_native``), and nothing
it would have collected is kept: the interning caches and the book's level and text memos.

A full collection walks every tracked container; a number cache of 100k entries or a book memo
of thousands of levels made each one 10-16 ms longer under load (docs/runtime.md, "The garbage
collector"). These tests check the tracking state itself, never a duration."""

from __future__ import annotations

import gc
import os
import weakref
from decimal import Decimal

import pytest

from tickloop._native import gc_native, pure_requested
from tickloop.book import engine
from tickloop.models import BookDelta, BookLevel, BookSnapshot, Side
from tickloop.venues.base import DecimalCache, PositiveDecimalCache

native = gc_native()


@pytest.fixture
def compiled() -> None:
    if native is None:
        if pure_requested():
            pytest.skip("the pure-Python leg has no C module: nothing is untracked there")
        if os.environ.get("CI") == "true":
            pytest.fail("the install did not build tickloop._gc_native")
        pytest.skip("no C module _gc_native in this checkout")


def book(levels: int) -> engine.OrderBook:
    b = engine.OrderBook("sim", "BTC-USD")
    bids = tuple(BookLevel(Decimal(f"{100 - i}.5"), Decimal(f"{i + 1}.25")) for i in range(levels))
    asks = tuple(BookLevel(Decimal(f"{101 + i}.5"), Decimal(f"{i + 1}.75")) for i in range(levels))
    b.apply_snapshot(
        BookSnapshot(venue="sim", symbol="BTC-USD", bids=bids, asks=asks, sequence=1, ts=0)
    )
    return b


def test_a_cache_and_its_twin_are_freed_without_the_collector() -> None:
    """Both builds: the twin holds its base weakly, so no cycle (untracked, one would leak)."""
    cache = DecimalCache()
    untracked = native is not None
    assert gc.is_tracked(cache) is not untracked and gc.is_tracked(cache.positive) is not untracked
    assert cache["1.50"] == Decimal("1.50")
    assert cache.positive["2.5"] is cache["2.5"]  # one Decimal per string, through the twin
    assert cache.positive.base is cache and cache.positive.positive is cache.positive
    assert gc.is_tracked(cache) is not untracked
    refs = weakref.ref(cache), weakref.ref(cache.positive)
    gc.disable()
    try:
        del cache
        # no cycle: reference counting alone frees both (an untracked cycle would leak)
        assert refs[0]() is None and refs[1]() is None
    finally:
        gc.enable()
    lone = PositiveDecimalCache()
    ref = weakref.ref(lone)
    assert lone["3"] == 3 and gc.is_tracked(lone) is not untracked
    del lone
    assert ref() is None


def test_a_twin_whose_base_is_gone_still_validates() -> None:
    cache = DecimalCache()
    twin = cache.positive
    del cache
    assert twin.base is None
    assert twin["4.5"] == Decimal("4.5")
    with pytest.raises(ValueError, match="> 0"):
        twin["0.000"]
    with pytest.raises(ValueError):
        twin["-1"]


@pytest.mark.usefixtures("compiled")
def test_a_cache_given_a_container_is_tracked_again() -> None:
    cache = DecimalCache()
    cache["x"] = [cache]  # type: ignore[assignment]  # not what a cache holds: then walked
    assert gc.is_tracked(cache)
    ref = weakref.ref(cache)
    del cache
    gc.collect()
    assert ref() is None


@pytest.mark.usefixtures("compiled")
def test_the_book_memos_and_their_levels_stay_untracked() -> None:
    b = book(50)
    for _ in range(3):
        levels = b.bids(20) + b.asks(20)
        texts = b.side_texts(Side.BUY, 20, lambda p, s: f"{p}:{s}")[0]
        assert len(levels) == 40 and len(texts) == 20
        assert not any(gc.is_tracked(level) for level in levels)
        b.apply_delta(
            BookDelta(
                venue="sim",
                symbol="BTC-USD",
                bids=(BookLevel(Decimal("100.5"), Decimal("9.5")),),
                asks=(),
                sequence=None,
                ts=1,
            )
        )
    for memo in (b._bid_levels, b._ask_levels, b._bid_text):
        assert memo and not gc.is_tracked(memo)
        assert not any(gc.is_tracked(v) for v in memo.values())
    # the levels are real BookLevels, equal to (price, size), reused while unchanged
    top = b.bids(2)
    assert type(top[0]) is BookLevel and top[0] == (Decimal("100.5"), Decimal("9.5"))
    assert b.bids(2)[1] is top[1]
    assert b.side_texts(Side.BUY, 1, lambda p, s: f"{p}:{s}")[0] == ["100.5:9.5"]
    assert not gc.is_tracked(b._bid_levels) and not gc.is_tracked(b._bid_text)
    # a whole collection finds none of them (they are not on its lists at all)
    tracked = {id(o) for o in gc.get_objects()}
    assert id(b._bid_levels) not in tracked and id(top[0]) not in tracked


@pytest.mark.usefixtures("compiled")
def test_frozen_into_rules() -> None:
    assert native is not None
    memo: dict[object, object] = {}
    level = native.frozen_into(memo, Decimal(1), BookLevel, Decimal(1), Decimal(2))
    assert type(level) is BookLevel and level == (1, 2) and memo == {Decimal(1): level}
    assert not gc.is_tracked(level) and not gc.is_tracked(memo)
    plain = native.frozen_into(memo, "t", tuple, Decimal(1), "x")
    assert type(plain) is tuple and plain == (Decimal(1), "x") and not gc.is_tracked(plain)

    # an item that may hold a cycle keeps the tuple and the memo tracked
    class Box:
        ref: object = None

    inner = Box()
    held = native.frozen_into(memo, "held", tuple, inner)
    inner.ref = memo  # a real cycle: memo -> held -> inner -> memo
    assert gc.is_tracked(held) and gc.is_tracked(memo)
    ref = weakref.ref(inner)
    del inner, held, memo, level, plain
    gc.collect()
    assert ref() is None  # the collector still saw the cycle, and freed it
    for bad in ((), ({}, 1), ([], 1, tuple), ({}, 1, list), ({}, 1, int)):
        with pytest.raises(TypeError):
            native.frozen_into(*bad)  # type: ignore[arg-type]
