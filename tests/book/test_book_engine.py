"""OrderBook unit tests: the API on small hand-made books (the property tests cover the rest)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tickloop.book import OrderBook, engine
from tickloop.checksums import kraken_checksum, sim_checksum
from tickloop.exceptions import ConfigError
from tickloop.models import BookDelta, BookLevel, BookSnapshot, Side

D = Decimal


def lv(price: str, size: str) -> BookLevel:
    return BookLevel(D(price), D(size))


def snapshot(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]], seq: int | None = 7
) -> BookSnapshot:
    return BookSnapshot(
        venue="sim",
        symbol="BTC-USD",
        bids=tuple(lv(p, s) for p, s in bids),
        asks=tuple(lv(p, s) for p, s in asks),
        sequence=seq,
        ts=123,
    )


def delta(
    bids: list[tuple[str, str]] = (),  # type: ignore[assignment]
    asks: list[tuple[str, str]] = (),  # type: ignore[assignment]
    seq: int | None = None,
    ts: int = 0,
) -> BookDelta:
    return BookDelta(
        venue="sim",
        symbol="BTC-USD",
        bids=tuple(lv(p, s) for p, s in bids),
        asks=tuple(lv(p, s) for p, s in asks),
        sequence=seq,
        ts=ts,
    )


SNAP = snapshot(
    [("100.00", "1.5000"), ("99.50", "2.0000"), ("99.00", "0.2500")],
    [("100.10", "0.5000"), ("100.50", "1.0000"), ("101.00", "3.0000")],
)


def test_new_book_is_empty_and_not_valid() -> None:
    book = OrderBook("sim", "BTC-USD")
    assert not book.valid and book.sequence is None and len(book) == 0
    assert book.bids(10) == [] and book.asks(10) == []
    assert book.best_bid is None and book.best_ask is None and book.best(Side.BUY) is None
    assert book.mid is None and book.spread is None
    assert not book.crossed and not book.locked
    assert book.vwap(Side.SELL, D(1)) is None and book.imbalance() is None
    assert book.depth_within(Side.BUY, 100) == 0


def test_snapshot_then_views() -> None:
    book = OrderBook.from_snapshot(SNAP)
    assert book.valid and book.sequence == 7 and book.ts == 123
    assert (book.venue, book.symbol) == ("sim", "BTC-USD")
    # compare equal to the snapshot's levels, best first
    assert book.bids(10) == list(SNAP.bids) and book.asks(10) == list(SNAP.asks)
    assert book.bids(2) == [lv("100.00", "1.5000"), lv("99.50", "2.0000")]
    assert book.asks(1) == [(D("100.10"), D("0.5000"))]
    assert book.bids(0) == [] and book.bids() == list(SNAP.bids)
    assert book.levels(Side.SELL, 2) == list(SNAP.asks[:2])
    assert book.best_bid == D("100.00") and book.best_ask == D("100.10")
    assert book.best(Side.SELL) == lv("100.10", "0.5000")
    assert book.mid == D("100.05") and book.spread == D("0.10")
    assert book.size_at(Side.BUY, D("99.5")) == D(2) and book.size_at(Side.BUY, D(1)) == 0
    assert book.snapshot() == SNAP.__class__(
        venue="sim", symbol="BTC-USD", bids=SNAP.bids, asks=SNAP.asks, sequence=7, ts=123
    )
    assert book.snapshot(1).bids == SNAP.bids[:1]


def test_digits_are_kept_exactly() -> None:
    book = OrderBook.from_snapshot(snapshot([("0.10", "1.000")], [("301727260.79999999", "1E-7")]))
    (bid,) = book.bids()
    (ask,) = book.asks()
    assert str(bid.price) == "0.10" and str(bid.size) == "1.000"
    assert str(ask.price) == "301727260.79999999"
    bids, asks = book.checksum_levels(10)
    assert bids == [("0.10", "1.000")] and asks == [("301727260.79999999", "0.0000001")]


def test_deltas_change_add_and_delete_levels() -> None:
    book = OrderBook.from_snapshot(SNAP)
    book.apply_delta(
        delta(
            bids=[("100.00", "0"), ("99.75", "4"), ("98.00", "0")],  # delete best, add, no-op
            asks=[("100.10", "0.7500"), ("100.05", "1")],  # change, new best
            seq=8,
            ts=456,
        )
    )
    assert book.sequence == 8 and book.ts == 456
    assert book.best_bid == D("99.75") and book.best_ask == D("100.05")
    assert book.bids() == [lv("99.75", "4"), lv("99.50", "2.0000"), lv("99.00", "0.2500")]
    assert book.asks(2) == [lv("100.05", "1"), lv("100.10", "0.7500")]
    book.apply_delta(delta(asks=[("100.05", "0"), ("100.10", "0"), ("100.50", "0"), ("101", "0")]))
    assert book.best_ask is None and book.asks() == [] and book.sequence == 8
    book.apply_delta(delta(bids=[("99.75", "0.0000"), ("99.50", "0"), ("99.00", "0")]))
    assert book.best_bid is None and len(book) == 0


def test_apply_dispatches_on_the_message_type() -> None:
    book = OrderBook()
    book.apply(SNAP)
    book.apply(delta(bids=[("100.00", "0")], seq=8))
    assert book.valid and book.sequence == 8 and book.best_bid == D("99.50")


def test_snapshot_replaces_everything() -> None:
    book = OrderBook.from_snapshot(SNAP)
    book.apply_snapshot(snapshot([("5", "1")], [("6", "1")], seq=None))
    assert book.bids() == [lv("5", "1")] and book.asks() == [lv("6", "1")]
    assert book.sequence is None and book.valid


def test_crossed_and_locked() -> None:
    book = OrderBook.from_snapshot(SNAP)
    book.apply_delta(delta(bids=[("100.10", "1")]))
    assert book.locked and not book.crossed and book.spread == 0
    book.apply_delta(delta(bids=[("100.20", "1")]))
    assert book.crossed and not book.locked and book.spread == D("-0.10")


def test_statistics() -> None:
    book = OrderBook.from_snapshot(SNAP)
    assert book.cumulative_size(Side.BUY, D("99.50")) == D("3.5")
    assert book.cumulative_size(Side.SELL, D("100.50")) == D("1.5")
    assert book.cumulative_size(Side.SELL, D("1")) == 0
    # buying 1.5 takes 0.5 @ 100.10 and 1.0 @ 100.50
    assert book.vwap(Side.SELL, D("1.5")) == (D("0.5") * D("100.10") + D("100.50")) / D("1.5")
    assert book.vwap(Side.BUY, D("1")) == D("100.00")
    assert book.vwap(Side.BUY, D("3.75")) == (
        D("1.5") * 100 + D("2") * D("99.5") + D("0.25") * 99
    ) / D("3.75")
    assert book.vwap(Side.BUY, D("3.7501")) is None and book.vwap(Side.BUY, D(0)) is None
    # mid 100.05; 50 bps = 0.50025: bids >= 99.54975, asks <= 100.55025
    assert book.depth_within(Side.BUY, 50) == D("1.5")
    assert book.depth_within(Side.SELL, 50) == D("1.5")
    assert book.depth_within(Side.SELL, D("0.5")) == 0
    assert book.imbalance(1) == (D("1.5") - D("0.5")) / 2
    assert book.imbalance() == (D("3.75") - D("4.5")) / (D("3.75") + D("4.5"))


def test_depth_limit_truncates_after_each_update() -> None:
    book = OrderBook.from_snapshot(SNAP, depth=2)
    assert book.bids() == list(SNAP.bids[:2]) and book.asks() == list(SNAP.asks[:2])
    book.apply_delta(delta(bids=[("99.75", "1")], asks=[("102", "1")]))  # in, and out of range
    assert book.bids() == [lv("100.00", "1.5000"), lv("99.75", "1")]
    assert book.asks() == list(SNAP.asks[:2]) and book.ask_count == 2
    # a level inside the limit is deleted and the venue sends the replacement in the same update
    book.apply_delta(delta(bids=[("100.00", "0"), ("99.50", "2.0000")]))
    assert book.bids() == [lv("99.75", "1"), lv("99.50", "2.0000")]


@pytest.mark.parametrize("depth", [0, -1])
def test_bad_depth_is_a_config_error(depth: int) -> None:
    with pytest.raises(ConfigError) as info:
        OrderBook("sim", "BTC-USD", depth=depth)
    assert info.value.field == "depth"


def test_checksums_from_the_books_own_digits() -> None:
    book = OrderBook.from_snapshot(SNAP)
    bids = [("100.00", "1.5000"), ("99.50", "2.0000"), ("99.00", "0.2500")]
    asks = [("100.10", "0.5000"), ("100.50", "1.0000"), ("101.00", "3.0000")]
    assert book.checksum(sim_checksum, 10) == sim_checksum(bids, asks)
    assert book.checksum(kraken_checksum, 10) == kraken_checksum(bids, asks)
    assert book.checksum(sim_checksum, 1) == sim_checksum(bids[:1], asks[:1])


def test_single_level_updates() -> None:
    book = OrderBook()
    book.update_bid(D("1"), D("2"))
    book.update_bid(D("3"), D("1"))
    book.update_ask(D("5"), D("1"))
    book.update_ask(D("4"), D("1"))
    assert (book.best_bid, book.best_ask) == (D(3), D(4))
    book.update_bid(D("3"), D("0"))
    book.update_ask(D("4"), D("0"))
    book.update_ask(D("9"), D("0"))  # absent: no-op
    assert (book.best_bid, book.best_ask) == (D(1), D(5))
    assert "bids=1" in repr(book) and "valid=False" in repr(book)


def test_public_names_exist() -> None:
    import tickloop.book
    import tickloop.book.engine
    import tickloop.book.sync

    for module in (tickloop.book, tickloop.book.engine, tickloop.book.sync):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    assert set(tickloop.book.engine.__all__) <= set(tickloop.book.__all__)
    assert set(tickloop.book.sync.__all__) <= set(tickloop.book.__all__)


def test_sorted_sides_are_the_caught_up_structures() -> None:
    book = OrderBook.from_snapshot(SNAP)
    book.apply_delta(delta([("100.25", "1"), ("99.50", "0")], [("100.10", "0"), ("100.05", "2")]))
    bid_px, ask_px, bid_sz, ask_sz = book.sorted_sides()
    assert bid_px == [D("99.00"), D("100.00"), D("100.25")]
    assert ask_px == [D("100.05"), D("100.50"), D("101.00")]
    assert [(p, bid_sz[p]) for p in reversed(bid_px)] == book.bids()
    assert [(p, ask_sz[p]) for p in ask_px] == book.asks()
    assert len(bid_sz) == len(bid_px) and len(ask_sz) == len(ask_px)
    # shared, not copied: a second call without an update in between gives the same objects
    again = book.sorted_sides()
    assert all(a is b for a, b in zip(again, (bid_px, ask_px, bid_sz, ask_sz), strict=True))


def test_deleting_the_best_finds_the_next_without_reading() -> None:
    """The best is found again after deletes whether the new levels were recorded or not (a
    side stops recording touched prices past the merge threshold)."""
    book = OrderBook.from_snapshot(SNAP)
    book.update_bid(D("99.75"), D("1"))  # new, not yet in the sorted list
    book.update_ask(D("100.20"), D("1"))
    book.update_bid(D("100.00"), D("0"))
    book.update_ask(D("100.10"), D("0"))
    assert (book.best_bid, book.best_ask) == (D("99.75"), D("100.20"))
    for i in range(1_000):  # far past the merge threshold: the sides stop recording
        book.update_bid(D(90) - D(i) / 100, D("1"))
        book.update_ask(D(110) + D(i) / 100, D("1"))
    book.update_bid(D("99.80"), D("1"))
    book.update_ask(D("100.15"), D("1"))
    book.apply_delta(delta([("99.80", "0"), ("99.75", "0")], [("100.15", "0"), ("100.20", "0")]))
    assert (book.best_bid, book.best_ask) == (D("99.50"), D("100.50"))
    book.apply_delta(delta([("99.50", "0"), ("99.00", "0")], [("100.50", "0"), ("101.00", "0")]))
    assert (book.best_bid, book.best_ask) == (D(90), D(110))
    assert book.bids(2) == [(D(90), D(1)), (D("89.99"), D(1))]
    assert book.asks(2) == [(D(110), D(1)), (D("110.01"), D(1))]
    assert len(book.bids()) == book.bid_count == 1_000 and len(book.asks()) == 1_000
    book.apply_delta(delta([(str(p), "0") for p, _ in book.bids()]))
    assert book.best_bid is None and book.bids() == [] and book.best_ask == D(110)


def test_often_deleted_bests_bring_a_side_back_to_recording() -> None:
    """A side that stopped recording touched prices finds a deleted best by scanning at most
    ``_SCANS`` times, then catches up and records again, so bests deleted often cost a short
    walk each rather than a scan of the whole side; and while recording, the second deleted
    best since the last catch-up catches up, so the touched prices are not searched each time.
    """
    book = OrderBook.from_snapshot(snapshot([(str(100 - i), "1") for i in range(50)], []))
    for i in range(600):  # wide changes, no read: past the merge threshold
        book.update_bid(D(40) - D(i) / 100, D("2"))
    assert book._bid_touched is not None and len(book._bid_touched) > engine._MERGE_AT
    for i in range(engine._SCANS):  # the first deleted best stops the recording: scans
        book.update_bid(D(100 - i), D("0"))
        assert book.best_bid == D(99 - i) and book._bid_touched is None
    book.update_bid(D(100 - engine._SCANS), D("0"))  # one more: caught up, recording again
    assert book.best_bid == D(99 - engine._SCANS) and book._bid_touched == {}
    book.update_bid(D("99.5"), D("3"))  # touched while recording
    book.update_bid(D("99.5"), D("0"))  # first deleted best since the catch-up: a search
    assert book._bid_touched == {D("99.5"): None} and book.best_bid == D(99 - engine._SCANS)
    book.update_bid(D(99 - engine._SCANS), D("0"))  # the second: caught up
    assert book._bid_touched == {} and book.best_bid == D(98 - engine._SCANS)
    assert book.bids(2) == [(D(98 - engine._SCANS), D(1)), (D(97 - engine._SCANS), D(1))]


@pytest.mark.parametrize("cls", [engine.PureOrderBook, engine.OrderBook], ids=["pure", "book"])
def test_level_reads_reuse_unchanged_levels_and_keep_new_digits(cls: type[OrderBook]) -> None:
    """``bids(n)``/``asks(n)`` hand out the same (immutable) BookLevel again for a level whose
    price and size objects did not change, and a new one as soon as either did, even for an
    equal value written with other digits (the venue's digits are what checksums read)."""
    book = cls()
    book.update_bid(D("100.0"), D("1.5"))
    book.update_bid(D("99.0"), D("2"))
    book.update_ask(D("101.0"), D("3"))
    first, again = book.bids(2), book.bids(2)
    assert first == again == [(D("100.0"), D("1.5")), (D("99.0"), D("2"))]
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert all(type(level) is BookLevel for level in first)

    book.update_bid(D("100.0"), D("1.50"))  # equal size, other digits: a new level
    top = book.bids(1)[0]
    assert top is not first[0] and str(top.size) == "1.50"
    assert book.bids(2)[1] is first[1]  # the untouched level is reused
    book.update_bid(D("100.0"), D("0"))
    assert book.bids() == [(D("99.0"), D("2"))]
    asks = book.asks()
    assert asks == [(D("101.0"), D("3"))] and book.asks()[0] is asks[0]

    for i in range(engine._TEXT_MEMO + 10):  # the memo is bounded: emptied when full
        book.update_ask(D(200 + i), D(1))
    assert len(book.asks()) == engine._TEXT_MEMO + 11  # one read may fill it past the bound
    assert len(book._ask_levels) == engine._TEXT_MEMO + 11
    assert book.asks(1) == [(D("101.0"), D("3"))]  # the next read starts it afresh
    assert len(book._ask_levels) == 1
