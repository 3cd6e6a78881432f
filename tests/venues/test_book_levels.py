"""venues.base.book_levels: the unrolled per-level conversion every diff goes through."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickloop.models import BookLevel
from tickloop.venues.base import DecimalCache, book_levels, interned_levels

numbers = st.decimals(
    min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=4
).map(str)
prices = st.decimals(
    min_value=Decimal("0.0001"), max_value=10**12, allow_nan=False, allow_infinity=False, places=4
).map(str)


@given(st.lists(st.tuples(prices, numbers), max_size=7))
def test_book_levels_equal_the_plain_conversion(pairs: list[tuple[str, str]]) -> None:
    cache = DecimalCache()
    levels = book_levels(pairs, cache)
    assert interned_levels(cache, pairs) == levels  # the same, the cache first
    assert type(levels) is tuple
    assert all(type(level) is BookLevel for level in levels)
    assert levels == tuple(BookLevel(Decimal(p), Decimal(q)) for p, q in pairs)
    # the venue's digits are kept, and equal strings give the very same interned Decimal
    assert [(str(lv.price), str(lv.size)) for lv in levels] == [
        (str(Decimal(p)), str(Decimal(q))) for p, q in pairs
    ]
    again = book_levels(pairs, cache)
    assert all(a.price is b.price and a.size is b.size for a, b in zip(levels, again, strict=True))


@pytest.mark.parametrize("n", range(1, 8))
def test_a_zero_price_is_refused_whatever_the_number_of_levels(n: int) -> None:
    """Issue 15 case 3: a level's size of 0 deletes it, a price of 0 is nothing a venue sends;
    the unrolled cases (1-3 levels) and the general one refuse it alike."""
    cache = DecimalCache()
    for zero in ("0", "0.00000000", "0E-8"):
        pairs = [("100.5", "1")] * (n - 1) + [(zero, "1")]
        with pytest.raises(ValueError, match="must be > 0"):
            interned_levels(cache, pairs)
    assert interned_levels(cache, [("100.5", "0")] * n) == ((Decimal("100.5"), Decimal(0)),) * n


def test_more_levels_than_the_bound_are_refused_on_every_call() -> None:
    """Issue 15 / levels per message: a side over limits.max_levels_per_message, typed."""
    from tickloop.limits import LevelLimitError, Limits
    from tickloop.venues.base import counted_levels

    cache = DecimalCache(limits=Limits(max_levels_per_message=4))
    assert len(interned_levels(cache, [("1", "1")] * 4)) == 4
    with pytest.raises(LevelLimitError) as info:
        interned_levels(cache, [("1", "1")] * 5)
    assert info.value.limit == "max_levels_per_message"
    tight = DecimalCache(limits=Limits(max_levels_per_message=1))
    with pytest.raises(LevelLimitError):
        counted_levels(tight, [("1", "1")] * 2)
