"""Property tests for the checksum fast path: ``OrderBook.top_texts`` / ``side_texts`` and the
checksum synchronisers' per-side marks must give exactly what the reference path gives
(``checksum_levels`` + the venue function in :mod:`tickloop.checksums`), whatever the updates,
the reads in between, the depth limit and the digits (``1.5`` and ``1.50`` are equal Decimals
with different checksum texts)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.book import Emit, KrakenSync, OrderBook, SimSync
from tickloop.checksums import decimal_text, kraken_checksum, sim_checksum
from tickloop.models import BookDelta, BookInvalid, BookLevel, BookSnapshot, Side

Levels = list[tuple[Decimal, Decimal]]

PRICES = [Decimal(f"{n / 4:.2f}") for n in range(1, 41)] + [
    Decimal("1.5"),
    Decimal("2.0"),
    Decimal("1E+1"),  # 10, written with an exponent
    Decimal("0.000000025"),  # str() would say 2.5E-8
]
SIZES = [
    Decimal(0),
    Decimal("0.5"),
    Decimal("0.50"),
    Decimal("1"),
    Decimal("1.0"),
    Decimal("2.25"),
    Decimal("0.001"),
    Decimal("1E-7"),
    Decimal(7),
]

levels_st = st.lists(st.tuples(st.sampled_from(PRICES), st.sampled_from(SIZES)), max_size=8)

# For the synchronisers: bids below asks (a crossed book ends a run early), and about as many
# prices a side as the checksum reads, so that changes at, just inside and just outside the
# 10th level are frequent. Equal prices with other digits on both sides.
BID_PRICES = [Decimal(f"{n / 4:.2f}") for n in range(1, 15)] + [Decimal("1.5"), Decimal("3")]
ASK_PRICES = [Decimal(f"{n / 4:.2f}") for n in range(16, 30)] + [Decimal("5.5"), Decimal("6.0")]
bid_st = st.lists(st.tuples(st.sampled_from(BID_PRICES), st.sampled_from(SIZES)), max_size=4)
ask_st = st.lists(st.tuples(st.sampled_from(ASK_PRICES), st.sampled_from(SIZES)), max_size=4)
book_st = st.tuples(
    st.lists(st.tuples(st.sampled_from(BID_PRICES), st.sampled_from(SIZES[1:])), max_size=16),
    st.lists(st.tuples(st.sampled_from(ASK_PRICES), st.sampled_from(SIZES[1:])), max_size=16),
)
# bids, asks, whether the delta carries a checksum, whether that checksum is wrong (0: wrong)
step_st = st.tuples(bid_st, ask_st, st.booleans(), st.integers(0, 40))


def _levels(levels: Levels) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(p, s) for p, s in levels)


def _plain_texts(book: OrderBook, n: int) -> tuple[list[str], list[str]]:
    return (
        [f"{decimal_text(p)}:{decimal_text(s)}" for p, s in book.bids(n)],
        [f"{decimal_text(p)}:{decimal_text(s)}" for p, s in book.asks(n)],
    )


@settings(max_examples=200, deadline=None)
@given(
    snapshot=st.tuples(levels_st, levels_st),
    steps=st.lists(
        st.tuples(levels_st, levels_st, st.sampled_from([0, 1, 3, 10, 50])), max_size=20
    ),
    depth=st.one_of(st.none(), st.integers(1, 12)),
)
def test_top_texts_equal_the_levels_formatted(
    snapshot: tuple[Levels, Levels], steps: list[tuple[Levels, Levels, int]], depth: int | None
) -> None:
    book = OrderBook("test", "X-Y", depth=depth)
    book.apply_snapshot(
        BookSnapshot(
            venue="test", symbol="X-Y", bids=_levels(snapshot[0]), asks=_levels(snapshot[1])
        )
    )

    def fmt(p: Decimal, s: Decimal) -> str:
        return f"{decimal_text(p)}:{decimal_text(s)}"

    for bids, asks, n in steps:
        assert book.top_texts(n, fmt) == _plain_texts(book, n)
        for side in Side:
            texts, floor = book.side_texts(side, n, fmt)
            levels = book.levels(side, n)
            assert texts == [fmt(p, s) for p, s in levels]
            assert floor == (levels[-1].price if n > 0 and len(levels) == n else None)
        book.apply_delta(
            BookDelta(venue="test", symbol="X-Y", bids=_levels(bids), asks=_levels(asks))
        )
    assert book.top_texts(10, fmt) == _plain_texts(book, 10)


def _run_sync(
    sync: SimSync | KrakenSync,
    reference: OrderBook,
    fn: object,
    snapshot: tuple[Levels, Levels],
    steps: list[tuple[Levels, Levels, bool, int]],
    sequenced: bool,
) -> None:
    """Feed ``sync`` a snapshot and deltas whose checksums the reference path computed on a
    plain book given the same updates; a wrong checksum must be caught, a right one never
    refused, and the fast checksum must equal the reference after every delta."""
    assert fn is sim_checksum or fn is kraken_checksum
    snap = BookSnapshot(
        venue=sync.venue_name,
        symbol="X-Y",
        bids=_levels(snapshot[0]),
        asks=_levels(snapshot[1]),
        sequence=1 if sequenced else None,
    )
    reference.apply_snapshot(snap)
    snap = msgspec.structs.replace(snap, checksum=reference.checksum(fn, 10))
    actions = sync.on_update(snap)
    if reference.crossed or reference.locked:
        return  # refused as crossed; covered by the synchroniser tests
    assert sync.valid, actions
    for seq, (bids, asks, with_checksum, wrong) in enumerate(steps, start=2):
        reference.apply_delta(
            BookDelta(venue="test", symbol="X-Y", bids=_levels(bids), asks=_levels(asks))
        )
        right = reference.checksum(fn, 10)
        checksum = None if not with_checksum else right if wrong else right ^ 1
        delta = BookDelta(
            venue=sync.venue_name,
            symbol="X-Y",
            bids=_levels(bids),
            asks=_levels(asks),
            sequence=seq if sequenced else None,
            prev_sequence=seq - 1 if sequenced else None,
            checksum=checksum,
        )
        book = sync.book
        actions = sync.on_update(delta)
        assert sync.book is book
        assert sync.book_checksum() == right == book.checksum(fn, 10)
        assert sync.rechecks == 0  # the per-side marks never missed a change
        invalid = [a.event for a in actions if isinstance(a, Emit)]
        if reference.crossed or reference.locked:
            assert invalid and isinstance(invalid[0], BookInvalid)
            return
        if checksum is not None and checksum != right:
            assert len(invalid) == 1 and isinstance(invalid[0], BookInvalid)
            assert invalid[0].reason == "checksum"
            return
        assert not invalid and sync.valid, actions


@settings(max_examples=300, deadline=None)
@given(snapshot=book_st, steps=st.lists(step_st, max_size=40))
def test_sim_sync_checks_every_checksum_like_the_reference(
    snapshot: tuple[Levels, Levels], steps: list[tuple[Levels, Levels, bool, int]]
) -> None:
    _run_sync(SimSync("X-Y"), OrderBook(), sim_checksum, snapshot, steps, sequenced=True)


@settings(max_examples=300, deadline=None)
@given(
    snapshot=book_st,
    steps=st.lists(step_st, max_size=40),
    depth=st.sampled_from([3, 9, 10, 11, 25, 1000]),
)
def test_kraken_sync_checks_every_checksum_like_the_reference(
    snapshot: tuple[Levels, Levels], steps: list[tuple[Levels, Levels, bool, int]], depth: int
) -> None:
    _run_sync(
        KrakenSync("X-Y", depth=depth),
        OrderBook(depth=depth),
        kraken_checksum,
        snapshot,
        steps,
        sequenced=False,
    )


def test_level_texts_keep_the_venue_digits() -> None:
    book = OrderBook()
    book.update_bid(Decimal("1.50"), Decimal("1E-7"))
    book.update_ask(Decimal("1E+1"), Decimal("2.0"))
    assert SimSync._level_text(Decimal("1.50"), Decimal("1E-7")) == "1.50:0.0000001"
    assert KrakenSync._level_text(Decimal("0.0500"), Decimal("1.0")) == "50010"
    assert book.top_texts(10, SimSync._level_text) == (["1.50:0.0000001"], ["10:2.0"])
    # the same value written with other digits is a new text, not the memoised one
    book.update_bid(Decimal("1.50"), Decimal("1E-7"))
    book.update_bid(Decimal("1.50"), Decimal("0.00000010"))
    assert book.top_texts(10, SimSync._level_text)[0] == ["1.50:0.00000010"]


def test_a_checksum_is_verified_on_updates_that_leave_the_top_levels_unchanged() -> None:
    # The checksum of unchanged top texts is kept between updates: an update below the top 10
    # (or with no levels) with a wrong checksum must still be refused, a right one accepted.
    bids = tuple(BookLevel(Decimal(100 - i), Decimal(1)) for i in range(15))
    asks = tuple(BookLevel(Decimal(101 + i), Decimal(1)) for i in range(15))
    snap = BookSnapshot(venue="sim", symbol="X-Y", bids=bids, asks=asks, sequence=1)
    sync = SimSync("X-Y")
    sync.on_update(
        msgspec.structs.replace(snap, checksum=sync.book_checksum(OrderBook.from_snapshot(snap)))
    )
    assert sync.valid
    right = sync.book_checksum()
    deep = (BookLevel(Decimal(80), Decimal(2)),)
    for seq, (bid_levels, checksum) in enumerate([(deep, right), ((), right)], start=2):
        delta = BookDelta(
            venue="sim",
            symbol="X-Y",
            bids=bid_levels,
            sequence=seq,
            prev_sequence=seq - 1,
            checksum=checksum,
        )
        assert not [a for a in sync.on_update(delta) if isinstance(a, Emit)]
        assert sync.valid
    wrong = BookDelta(
        venue="sim", symbol="X-Y", bids=deep, sequence=4, prev_sequence=3, checksum=right ^ 1
    )
    invalid = [a.event for a in sync.on_update(wrong) if isinstance(a, Emit)]
    assert len(invalid) == 1 and isinstance(invalid[0], BookInvalid)
    assert invalid[0].reason == "checksum" and not sync.valid
