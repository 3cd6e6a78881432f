"""The hub's book mirror: after each update, the protocol's checksum of the whole book, and the
update's levels as the protocol's texts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.sim.engine import DEFAULT_MARKETS, BookUpdate
from tickloop.sim.feed import _Mirror, checksum_of, levels_json

Level = tuple[int, int]
SPEC = DEFAULT_MARKETS["SOL-USD"]  # 3 price decimals, 2 size decimals

prices = st.integers(1, 40)
levels = st.dictionaries(prices, st.integers(1, 10**7), max_size=15)
changes = st.lists(st.tuples(prices, st.integers(0, 10**7)), max_size=4, unique_by=lambda c: c[0])


def depth(side: dict[int, int], best_first_desc: bool) -> list[tuple[int, int]]:
    return sorted(side.items(), reverse=best_first_desc)


@settings(max_examples=300, deadline=None)
@given(levels, levels, st.lists(st.tuples(changes, changes), max_size=30))
def test_mirror_checksum_and_texts_follow_every_update(
    bids: dict[int, int], asks: dict[int, int], updates: list[tuple[list[Level], list[Level]]]
) -> None:
    # bids below 100 ticks, asks above: the book is never crossed, as the engine's
    asks = {p + 100: q for p, q in asks.items()}
    mirror = _Mirror(SPEC, depth(bids, True), depth(asks, False))
    assert mirror.checksum() == checksum_of(SPEC, depth(bids, True), depth(asks, False))
    for seq, (bid_changes, ask_changes) in enumerate(updates, 1):
        bid_levels = tuple(sorted(bid_changes, reverse=True))
        ask_levels = tuple(sorted((p + 100, q) for p, q in ask_changes))
        update = BookUpdate("SOL-USD", seq, seq - 1, bid_levels, ask_levels, seq)
        for side, levels_ in ((bids, bid_levels), (asks, ask_levels)):
            for price, lots in levels_:
                if lots:
                    side[price] = lots
                else:
                    side.pop(price, None)
        texts = mirror.apply(update)
        assert texts == (levels_json(SPEC, bid_levels), levels_json(SPEC, ask_levels))
        assert mirror.checksum() == checksum_of(SPEC, depth(bids, True), depth(asks, False))
