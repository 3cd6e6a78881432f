"""How books reach user code: views shared with the live book until it changes (and copied
then, only if still held), the zero-copy ``live=True`` handler, and REST snapshot re-requests
with backoff. Loopback only; the waits are bounded and only stop a broken run from hanging.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tickloop.book import BookSync, OrderBook, SimSync, SnapshotVia
from tickloop.client.books import BookView
from tickloop.client.rest import AsyncClient
from tickloop.client.stream import StreamClient
from tickloop.exceptions import BookError, ConfigError
from tickloop.models import BookDelta, BookLevel, BookSnapshot, BookValid, StatusEvent, Trade
from tickloop.sim import SimExchange

from .helpers import until

A = "BTC-USD"


def _levels(*pairs: tuple[int, int]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(Decimal(p), Decimal(s)) for p, s in pairs)


def _book() -> OrderBook:
    book = OrderBook.from_snapshot(
        BookSnapshot(
            venue="sim",
            symbol=A,
            bids=_levels((99, 1), (98, 2), (97, 3)),
            asks=_levels((101, 4), (102, 5), (103, 6)),
            sequence=1,
            ts=1,
        )
    )
    book.valid = True
    return book


def _shown(view: BookView) -> tuple[list[BookLevel], list[BookLevel], Any, Any, Any]:
    return view.bids(), view.asks(), view.best_bid, view.best_ask, view.mid


def test_shared_views_show_the_same_book_and_keep_it_once_frozen() -> None:
    book = _book()
    eager = BookView(book)
    shared = BookView(book, shared=True)
    top2 = BookView(book, 2, shared=True)
    assert _shown(shared) == _shown(eager)
    assert top2.bids() == eager.bids(2) and top2.asks(5) == eager.asks(2)
    assert shared.bids(1) == [BookLevel(Decimal(99), Decimal(1))] and shared.asks(0) == []
    assert shared.snapshot() == eager.snapshot() and shared.sequence == 1
    before = _shown(shared)
    before2 = _shown(top2)
    shared._freeze()  # what the feed does before the book changes
    assert top2.freeze() is top2  # what a user does before handing a view to a thread
    book.apply_delta(
        BookDelta(
            venue="sim",
            symbol=A,
            bids=_levels((100, 7), (99, 0)),
            asks=_levels((101, 0), (104, 1)),
            sequence=2,
            ts=2,
        )
    )
    assert book.bids(1) == [BookLevel(Decimal(100), Decimal(7))]
    assert _shown(shared) == before == _shown(eager)
    assert _shown(top2) == before2 and len(top2.bids()) == 2
    assert BookView(book).bids(1) == book.bids(1)
    with pytest.raises(AttributeError):
        shared.ts = 5


async def test_views_kept_across_updates_show_the_book_as_delivered() -> None:
    kept: list[tuple[BookView, list[BookLevel], list[BookLevel], int | None]] = []

    def keep(view: BookView) -> None:
        # Read inline (the live state at delivery), then kept while the book moves on.
        kept.append((view, view.bids(), view.asks(), view.sequence))

    dropped = 0

    def drop(view: BookView) -> None:
        nonlocal dropped
        assert view.valid
        dropped += 1

    async with (
        SimExchange(seed=4, symbols=[A], rate=300) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        await feed.subscribe_books(A, keep)
        await feed.subscribe_books(A, drop, depth=5)
        stream = feed.books(A, depth=3)
        held = []
        for _ in range(5):
            view = await anext(stream)
            held.append((view, view.bids(), view.asks()))
            await asyncio.sleep(0.02)  # the book moves on while the view is held
        await until(lambda: len(kept) > 100 and dropped > 100, "many deliveries")
        await feed.unsubscribe_books(A, keep)
        assert len({seq for _, _, _, seq in kept}) == len(kept)  # each state once
        for view, bids, asks, seq in kept:
            assert view.sequence == seq and view.bids() == bids and view.asks() == asks
        for view, bids, asks in held:
            assert view.bids() == bids and view.asks() == asks and len(bids) == 3
        # Views no one holds are not copied, and the tracking does not pile up.
        assert len(feed._books._shared.get(A, ())) <= 3
        await stream.aclose()


async def test_live_handler_gets_the_live_valid_book_inline() -> None:
    seen: list[int] = []
    books: set[int] = set()

    async with (
        SimExchange(seed=6, symbols=[A], rate=300) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):

        def on_book(book: OrderBook) -> None:
            assert type(book) is OrderBook and book.valid and book is feed.book(A)
            seen.append(book.sequence or 0)
            books.add(id(book))

        await feed.subscribe_books(A, on_book, live=True)
        await until(lambda: len(seen) > 50, "live books")
        assert seen == sorted(seen) and len(set(seen)) == len(seen)

        async def on_async(book: OrderBook) -> None:
            return None

        with pytest.raises(ConfigError) as info:
            await feed.subscribe_books(A, on_async, live=True)
        assert info.value.field == "live"
        with pytest.raises(ConfigError):
            feed.change_handler("books", on_async, on_book)
        assert feed.upstream() and len(feed._handlers_all()) == 1
        await feed.unsubscribe_books(A, on_book)


# --------------------------------------------------------------------- snapshot re-requests


class _RestSimSync(SimSync):
    """The sim's book as Binance's works: no snapshot on the stream (the ones the sim sends are
    ignored), a REST snapshot to bridge the buffered deltas."""

    snapshot_via = SnapshotVia.REST
    initial_snapshot = True

    def on_update(self, message: BookSnapshot | BookDelta) -> tuple[Any, ...]:
        if isinstance(message, BookSnapshot):
            return ()
        return super().on_update(message)


def _rest_sync(venue: str, symbol: str, *, depth: int | None = None) -> BookSync:
    return _RestSimSync(symbol, depth=depth or 1000)


class _StaleSnapshots:
    """The sim's REST book, except that the first ``stale`` answers are an old snapshot, too old
    to bridge the deltas the client has buffered since it subscribed."""

    def __init__(self, rest: AsyncClient, old: BookSnapshot, stale: int, log: list[str]) -> None:
        self.rest = rest
        self.old = old
        self.stale = stale
        self.log = log
        self.calls = 0

    async def trades(
        self, symbol: str, *, since_id: int | None = None, limit: int | None = None
    ) -> list[Trade]:
        return []

    buffered: Any = None  # () -> deltas the synchroniser holds

    async def book(self, symbol: str, *, depth: int | None = None) -> BookSnapshot:
        self.calls += 1
        self.log.append("request")
        if self.calls <= self.stale:
            # Answer once deltas newer than the old snapshot are buffered: it cannot bridge them.
            await until(lambda: self.buffered() > 0, "deltas buffered")
            return self.old
        return await self.rest.book(symbol, depth=depth)


async def test_unusable_snapshots_are_asked_again_with_backoff_then_recover() -> None:
    stale = 3
    log: list[str] = []
    waits: list[float] = []
    async with (
        SimExchange(seed=8, symbols=[A], rate=200) as ex,
        AsyncClient("sim", url=ex.rest_url) as rest,
    ):
        old = await rest.book(A)
        await until(
            lambda: (ex.book(A).sequence or 0) > (old.sequence or 0) + 5, "the book moves on"
        )
        source = _StaleSnapshots(rest, old, stale, log)
        feed = StreamClient(
            "sim",
            url=ex.ws_url,
            rest=source,
            book_sync=_rest_sync,
            book_snapshot_retries=10,
            book_snapshot_wait=0.002,
            book_snapshot_max_wait=0.008,
        )

        async def sleep(delay: float) -> None:
            log.append("sleep")
            waits.append(delay)
            await asyncio.sleep(delay)

        feed._books._sleep = sleep
        source.buffered = lambda: feed._books._books[A].sync.buffered
        valid: list[StatusEvent] = []
        async with feed:
            await feed.subscribe_status(
                lambda e: valid.append(e) if isinstance(e, BookValid) else None
            )
            view = await anext(feed.books(A))
            assert view.valid and view.sequence is not None and view.sequence > (old.sequence or 0)
            await until(lambda: len(valid) == 1, "BookValid")
            stats = feed.stats()
        # Every re-request came after a wait; none came back to back.
        assert log == ["request", "sleep"] * stale + ["request"]
        assert stats["book_snapshots_unusable"] == stale
        assert stats["book_snapshot_retries"] == stale
        assert stats["book_rest_snapshots"] == stale + 1
        caps = [min(0.008, 0.002 * 2**i) for i in range(stale)]
        assert all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))


async def test_snapshots_that_are_never_usable_end_in_book_error_not_a_storm() -> None:
    log: list[str] = []
    async with (
        SimExchange(seed=9, symbols=[A], rate=200) as ex,
        AsyncClient("sim", url=ex.rest_url) as rest,
    ):
        old = await rest.book(A)
        await until(
            lambda: (ex.book(A).sequence or 0) > (old.sequence or 0) + 5, "the book moves on"
        )
        source = _StaleSnapshots(rest, old, 10**9, log)
        feed = StreamClient(
            "sim",
            url=ex.ws_url,
            rest=source,
            book_sync=_rest_sync,
            book_snapshot_retries=3,
            book_snapshot_wait=0.001,
            book_snapshot_max_wait=0.004,
        )
        real_sleep = feed._books._sleep

        async def sleep(delay: float) -> None:
            log.append("sleep")
            await real_sleep(delay)

        feed._books._sleep = sleep
        source.buffered = lambda: feed._books._books[A].sync.buffered
        async with feed:
            with pytest.raises(BookError) as info:
                async for _ in feed.books(A):
                    raise AssertionError("a book that never synchronised was delivered")
            assert info.value.symbol == A
            stats = feed.stats()
        # The budget bounds the requests: the first and three re-requests, each after a wait.
        assert source.calls == 4
        assert log == ["request", "sleep"] * 3 + ["request"]
        assert stats["book_snapshots_unusable"] == 4 and stats["book_snapshot_retries"] == 3


async def test_views_kept_unread_by_a_handler_still_show_the_book_as_delivered() -> None:
    """A sync handler that stores views without reading them: the views take their levels
    only when the book is about to change (the client sees the handler kept a reference), and
    show exactly the book of their sequence; views a handler drops are never tracked."""
    truth: dict[int | None, tuple[list[BookLevel], list[BookLevel]]] = {}

    def record(book: OrderBook) -> None:  # live=True: the live book, inline
        truth[book.sequence] = (book.bids(), book.asks())

    stored: list[BookView] = []
    handed: list[BookView] = []
    tasks: set[asyncio.Task[None]] = set()

    async def later(view: BookView) -> None:
        await asyncio.sleep(0.01)
        handed.append(view)

    def hand_to_task(view: BookView) -> None:
        task = asyncio.get_running_loop().create_task(later(view))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    drops = 0

    def drop(view: BookView) -> None:
        nonlocal drops
        drops += 1

    async with (
        SimExchange(seed=5, symbols=[A], rate=300) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        await feed.subscribe_books(A, record, live=True)
        await feed.subscribe_books(A, stored.append)
        await feed.subscribe_books(A, hand_to_task, depth=4)
        await until(lambda: len(stored) > 100 and len(handed) > 50, "many deliveries")
        await feed.unsubscribe_books(A, stored.append)
        await feed.unsubscribe_books(A, hand_to_task)
        await until(lambda: not tasks, "the handed views arrive")
        await feed.subscribe_books(A, drop)
        await until(lambda: drops > 50, "views dropped by the handler")
        assert feed._books._shared.get(A, []) == []  # nothing tracked for a dropping handler
    assert len({view.sequence for view in stored}) == len(stored)
    for view in stored:
        assert (view.bids(), view.asks()) == truth[view.sequence]
    for view in handed:
        bids, asks = truth[view.sequence]
        assert (view.bids(), view.asks()) == (bids[:4], asks[:4])
