"""Property tests: any snapshot followed by any deltas gives the same book as a brute-force
dict model, for every view, whenever it is read (reads in between matter: the engine sorts
lazily and catches up on reads)."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop._native import native_name
from tickloop.book import engine
from tickloop.book.engine import OrderBook
from tickloop.models import BookDelta, BookLevel, BookSnapshot, Side

# Every property holds for the pure-Python class and for its compiled copy (when built).
IMPLEMENTATIONS = {"pure": engine.PureOrderBook}
if engine.NATIVE:
    IMPLEMENTATIONS["compiled"] = engine.OrderBook
implementations = pytest.mark.parametrize(
    "impl", list(IMPLEMENTATIONS.values()), ids=list(IMPLEMENTATIONS)
)

Levels = list[tuple[Decimal, Decimal]]

# A small price grid so that levels collide, vanish and come back often; some prices written
# with different digits ("1.5" and "1.50" are equal Decimals, as a venue could send).
PRICES = [Decimal(f"{n / 4:.2f}") for n in range(1, 41)] + [Decimal("1.5"), Decimal("2.0")]
SIZES = [Decimal(0), Decimal("0.5"), Decimal("1"), Decimal("2.25"), Decimal("0.001"), Decimal(7)]

levels_st = st.lists(st.tuples(st.sampled_from(PRICES), st.sampled_from(SIZES)), max_size=12)
step_st = st.tuples(levels_st, levels_st, st.booleans())  # bids, asks, read after this step


class Model:
    """Two dicts; every view recomputed from scratch by sorting."""

    def __init__(self, depth: int | None) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def snapshot(self, bids: Levels, asks: Levels) -> None:
        self.bids = {}
        self.asks = {}
        self.update(bids, asks)

    def update(self, bids: Levels, asks: Levels) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, s in levels:
                if s:
                    side[p] = s
                else:
                    side.pop(p, None)
        if self.depth is not None:
            self.bids = dict(self.sorted_bids()[: self.depth])
            self.asks = dict(self.sorted_asks()[: self.depth])

    def sorted_bids(self) -> Levels:
        return sorted(self.bids.items(), key=lambda kv: kv[0], reverse=True)

    def sorted_asks(self) -> Levels:
        return sorted(self.asks.items(), key=lambda kv: kv[0])

    def side(self, side: Side) -> Levels:
        return self.sorted_bids() if side is Side.BUY else self.sorted_asks()

    def best(self, side: Side) -> Decimal | None:
        levels = self.side(side)
        return levels[0][0] if levels else None

    def mid(self) -> Decimal | None:
        bid, ask = self.best(Side.BUY), self.best(Side.SELL)
        return None if bid is None or ask is None else (bid + ask) / 2

    def cumulative(self, side: Side, price: Decimal) -> Decimal:
        if side is Side.BUY:
            return sum((s for p, s in self.bids.items() if p >= price), Decimal(0))
        return sum((s for p, s in self.asks.items() if p <= price), Decimal(0))

    def within(self, side: Side, bps: int) -> Decimal:
        mid = self.mid()
        if mid is None:
            return Decimal(0)
        offset = mid * Decimal(bps) / Decimal(10_000)
        return self.cumulative(side, mid - offset if side is Side.BUY else mid + offset)

    def vwap(self, side: Side, size: Decimal) -> Decimal | None:
        if size <= 0:
            return None
        left, notional = size, Decimal(0)
        for p, s in self.side(side):
            take = min(s, left)
            notional += p * take
            left -= take
            if not left:
                return notional / size
        return None

    def imbalance(self, n: int | None) -> Decimal | None:
        b = sum((s for _, s in self.sorted_bids()[:n]), Decimal(0))
        a = sum((s for _, s in self.sorted_asks()[:n]), Decimal(0))
        return None if not a + b else (b - a) / (a + b)


def check_views(book: OrderBook, model: Model) -> None:
    for n in (None, 0, 1, 3, 100):
        assert book.bids(n) == model.sorted_bids()[:n]
        assert book.asks(n) == model.sorted_asks()[:n]
        assert book.imbalance(n) == model.imbalance(n)
    assert all(type(level) is BookLevel for level in book.bids() + book.asks())
    assert book.best_bid == model.best(Side.BUY)
    assert book.best_ask == model.best(Side.SELL)
    for side in Side:
        levels = model.side(side)
        assert book.best(side) == (levels[0] if levels else None)
        for bps in (0, 10, 600, 20_000):
            assert book.depth_within(side, bps) == model.within(side, bps)
        for price in (PRICES[0], PRICES[9], PRICES[25], PRICES[-3]):
            assert book.cumulative_size(side, price) == model.cumulative(side, price)
            assert book.size_at(side, price) == dict(levels).get(price, Decimal(0))
        for size in (Decimal(0), Decimal("0.25"), Decimal(1), Decimal("3.3"), Decimal(40)):
            assert book.vwap(side, size) == model.vwap(side, size)
    bid, ask = model.best(Side.BUY), model.best(Side.SELL)
    assert book.mid == model.mid()
    assert book.spread == (None if bid is None or ask is None else ask - bid)
    assert book.crossed == (bid is not None and ask is not None and bid > ask)
    assert book.locked == (bid is not None and ask is not None and bid == ask)
    assert len(book) == len(model.bids) + len(model.asks)
    assert (book.bid_count, book.ask_count) == (len(model.bids), len(model.asks))


def check_sorted_sides(book: OrderBook, model: Model) -> None:
    """The caught-up structures ``sorted_sides()`` shares are exactly the model's."""
    bid_px, ask_px, bid_sz, ask_sz = book.sorted_sides()
    assert bid_px == sorted(model.bids) and ask_px == sorted(model.asks)
    assert bid_sz == model.bids and ask_sz == model.asks


@contextmanager
def merge_threshold(value: int, scans: int = 8) -> Iterator[None]:
    """Force the engine's catch-up path: one bisect per price, or one merge for any count (0:
    a side also stops recording touched prices at its first change, 3: after a few); and how
    many deleted bests an untracked side finds by scanning before it catches up (0: never
    scans)."""
    modules = [engine]
    compiled = sys.modules.get(native_name(engine.__name__))
    if compiled is not None:
        modules.append(compiled)  # the compiled copy reads its own module's globals
    saved = [(m._MERGE_AT, m._SCANS) for m in modules]
    for m in modules:
        m._MERGE_AT = value
        m._SCANS = scans
    try:
        yield
    finally:
        for m, (merge_at, old_scans) in zip(modules, saved, strict=True):
            m._MERGE_AT = merge_at
            m._SCANS = old_scans


@implementations
@settings(max_examples=250, deadline=None)
@given(
    snapshot=st.tuples(levels_st, levels_st),
    steps=st.lists(step_st, max_size=25),
    depth=st.one_of(st.none(), st.integers(1, 8)),
    merge_at=st.sampled_from([0, 3, 10**6]),
    scans=st.sampled_from([0, 1, 8]),
)
def test_book_matches_the_dict_model(
    snapshot: tuple[Levels, Levels],
    steps: list[tuple[Levels, Levels, bool]],
    depth: int | None,
    merge_at: int,
    scans: int,
    impl: type[OrderBook],
) -> None:
    with merge_threshold(merge_at, scans):
        book = impl("test", "X-Y", depth=depth)
        model = Model(depth)
        book.apply_snapshot(
            BookSnapshot(
                venue="test",
                symbol="X-Y",
                bids=tuple(BookLevel(p, s) for p, s in snapshot[0]),
                asks=tuple(BookLevel(p, s) for p, s in snapshot[1]),
                sequence=1,
            )
        )
        model.snapshot(*snapshot)
        check_views(book, model)
        for seq, (bids, asks, read) in enumerate(steps, start=2):
            book.apply_delta(
                BookDelta(
                    venue="test",
                    symbol="X-Y",
                    bids=tuple(BookLevel(p, s) for p, s in bids),
                    asks=tuple(BookLevel(p, s) for p, s in asks),
                    sequence=seq,
                )
            )
            model.update(bids, asks)
            # the cheap reads after every update, the full set only sometimes
            assert book.best_bid == model.best(Side.BUY)
            assert book.best_ask == model.best(Side.SELL)
            if read:
                check_views(book, model)
        check_views(book, model)
        assert book.sequence == len(steps) + 1
        snap = book.snapshot()
        assert list(snap.bids) == model.sorted_bids() and list(snap.asks) == model.sorted_asks()
        check_sorted_sides(book, model)


@implementations
@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from(PRICES),
            st.sampled_from(SIZES),
            st.integers(0, 9),
        ),
        max_size=80,
    ),
    merge_at=st.sampled_from([0, 3, 10**6]),
    scans=st.sampled_from([0, 1, 8]),
)
def test_single_level_updates_match_the_dict_model(
    steps: list[tuple[bool, Decimal, Decimal, int]],
    merge_at: int,
    scans: int,
    impl: type[OrderBook],
) -> None:
    """``update_bid`` / ``update_ask`` (the per-level path) keep the same invariants, read or
    not in between (a read catches the sorted lists up; without reads, deleted bests are found
    again from the lists and the touched prices, or from the whole side once untracked)."""
    with merge_threshold(merge_at, scans):
        book = impl()
        model = Model(None)
        for is_bid, price, size, read in steps:
            if is_bid:
                book.update_bid(price, size)
                model.update([(price, size)], [])
            else:
                book.update_ask(price, size)
                model.update([], [(price, size)])
            assert book.best_bid == model.best(Side.BUY)
            assert book.best_ask == model.best(Side.SELL)
            if read == 0:
                assert book.bids(3) == model.sorted_bids()[:3]
                assert book.asks(3) == model.sorted_asks()[:3]
        check_views(book, model)
        check_sorted_sides(book, model)


@implementations
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    depth=st.one_of(st.none(), st.integers(1, 8)),
    merge_at=st.sampled_from([0, 3, 10**6]),
    read_every=st.sampled_from([1, 4, 1_000]),
    scans=st.sampled_from([0, 1, 8]),
)
def test_long_uniform_sequences_match_the_dict_model(
    seed: int, depth: int | None, merge_at: int, read_every: int, scans: int, impl: type[OrderBook]
) -> None:
    """Long sequences with prices and sizes drawn uniformly (hypothesis' own draws favour the
    first size, zero, which keeps books near empty): books stay populated, bests get deleted
    while a side is or is not noting touched prices, and reads come after every delta, every
    few, or only at the end. Deltas and per-level updates alternate."""
    rng = random.Random(seed)
    with merge_threshold(merge_at, scans):
        book = impl("test", "X-Y", depth=depth)
        model = Model(depth)
        book.apply_snapshot(BookSnapshot(venue="test", symbol="X-Y", bids=(), asks=()))
        for step in range(1, 121):
            bids = [(rng.choice(PRICES), rng.choice(SIZES)) for _ in range(rng.randint(0, 6))]
            asks = [(rng.choice(PRICES), rng.choice(SIZES)) for _ in range(rng.randint(0, 6))]
            if depth is None and step % 3 == 0:
                for price, size in bids:
                    book.update_bid(price, size)
                for price, size in asks:
                    book.update_ask(price, size)
            else:
                book.apply_delta(
                    BookDelta(
                        venue="test",
                        symbol="X-Y",
                        bids=tuple(BookLevel(p, s) for p, s in bids),
                        asks=tuple(BookLevel(p, s) for p, s in asks),
                    )
                )
            model.update(bids, asks)
            assert book.best_bid == model.best(Side.BUY)
            assert book.best_ask == model.best(Side.SELL)
            if step % read_every == 0:
                assert book.bids(5) == model.sorted_bids()[:5]
                assert book.asks(5) == model.sorted_asks()[:5]
        check_views(book, model)
