"""venues.base.book_levels: the unrolled per-level conversion every diff goes through."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tickloop.models import BookLevel
from tickloop.venues.base import DecimalCache, book_levels, interned_levels

numbers = st.decimals(
    min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=4
).map(str)


@given(st.lists(st.tuples(numbers, numbers), max_size=7))
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
