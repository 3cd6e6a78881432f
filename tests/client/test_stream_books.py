"""``feed.books`` end to end against the embedded exchange, with faults injected.

After every fault the flow is paused and the client's book must equal the exchange's true book
level for level, and the fault must have produced exactly one BookInvalid followed by one
BookValid for the symbol it hit, while the other symbol on the same connection is left alone
(unless the fault hit the whole connection). Loopback only; the waits are bounded and only stop
a broken run from hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from tickloop.book import BookSync, OrderBook, SimSync, SnapshotVia
from tickloop.client.books import BookConsumer, BookView
from tickloop.client.stream import StreamClient
from tickloop.exceptions import BookError, ConfigError, NetworkError
from tickloop.models import BookInvalid, BookLevel, BookSnapshot, BookValid, StatusEvent, Trade
from tickloop.sim import SimExchange

from .helpers import until

A, B = "BTC-USD", "ETH-USD"
SYMBOLS = [A, B]


class _Watch:
    """The latest view per symbol from one iterator, and every book status event."""

    def __init__(self) -> None:
        self.latest: dict[str, BookView] = {}
        self.views = 0
        self.status: list[BookInvalid | BookValid] = []

    def on_status(self, event: StatusEvent) -> None:
        if isinstance(event, BookInvalid | BookValid):
            self.status.append(event)

    def events(self, symbol: str, since: int = 0) -> list[str]:
        return [
            f"{type(e).__name__}:{getattr(e, 'reason', '')}"
            for e in self.status[since:]
            if e.symbol == symbol
        ]

    def count(self, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self.status)


@asynccontextmanager
async def _running(
    ex: SimExchange, symbols: list[str], **options: Any
) -> AsyncIterator[tuple[StreamClient, _Watch]]:
    options.setdefault("base_wait", 0.005)
    options.setdefault("max_wait", 0.05)
    feed = StreamClient("sim", url=ex.ws_url, **options)
    async with feed:
        watch = _Watch()
        await feed.subscribe_status(watch.on_status)

        async def consume() -> None:
            async for view in feed.books(symbols):
                # Never handed a book known to be wrong, and the latest at delivery.
                live = feed.book(view.symbol)
                assert view.valid and live is not None and live.valid
                assert view.sequence == live.sequence
                watch.latest[view.symbol] = view
                watch.views += 1

        task = asyncio.create_task(consume())
        try:
            await until(lambda: all(s in watch.latest for s in symbols), "first books")
            yield feed, watch
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def _settle(ex: SimExchange, feed: StreamClient, watch: _Watch, symbols: list[str]) -> None:
    """Pause the flow; the client's books must reach the true books and equal them."""
    ex.pause_flow()
    for symbol in symbols:
        truth = ex.book(symbol)
        await until(
            lambda s=symbol, t=truth: (
                s in watch.latest
                and watch.latest[s].sequence == t.sequence
                and watch.latest[s].valid
            ),
            f"{symbol} reaches sequence {truth.sequence}",
        )
        _equal(watch.latest[symbol], truth)
        live = feed.book(symbol)
        assert live is not None and live.valid
        assert live.bids() == list(truth.bids) and live.asks() == list(truth.asks)


def _equal(view: BookView, truth: BookSnapshot) -> None:
    assert view.sequence == truth.sequence
    assert view.bids(10) == list(truth.bids[:10])
    assert view.asks(10) == list(truth.asks[:10])
    assert view.bids() == list(truth.bids)  # level for level, the whole book
    assert view.asks() == list(truth.asks)


async def test_faults_each_give_one_invalid_then_one_valid_and_the_true_book() -> None:
    async with (
        SimExchange(seed=11, symbols=SYMBOLS, rate=150) as ex,
        _running(ex, SYMBOLS, heartbeat_timeout=0.6, ping_interval=0.15) as (feed, watch),
    ):
        await _settle(ex, feed, watch, SYMBOLS)
        assert watch.events(A) == ["BookValid:"] and watch.events(B) == ["BookValid:"]
        resubscribes = feed.stats()["book_resubscribes"]

        # 1. A skipped sequence number on A: A alone resyncs; B is not disturbed.
        for round_ in range(3):
            mark = len(watch.status)
            ex.resume_flow()
            ex.faults.skip_sequence(A)
            await until(lambda m=mark: len(watch.events(A, m)) == 2, "A resynced")
            await _settle(ex, feed, watch, SYMBOLS)
            assert watch.events(A, mark) == ["BookInvalid:gap", "BookValid:"], round_
            assert watch.events(B, mark) == []
        assert feed.stats()["book_resubscribes"] == resubscribes + 3
        assert feed.stats()["reconnects"] == 0  # the connection was never dropped

        # 2. Truncated frames (the connection carries book updates only, so each one hits a
        # book update of one symbol): one invalidation pair per frame, for the symbol it hit.
        for _ in range(3):
            mark = len(watch.status)
            malformed = ex.stats.malformed_sent
            ex.resume_flow()
            ex.faults.malformed(1)
            await until(lambda m=mark: len(watch.status) >= m + 2, "the hit book resynced")
            await _settle(ex, feed, watch, SYMBOLS)
            assert ex.stats.malformed_sent == malformed + 1
            hit = [s for s in SYMBOLS if watch.events(s, mark)]
            assert len(hit) == 1, watch.events(A, mark) + watch.events(B, mark)
            assert watch.events(hit[0], mark) == ["BookInvalid:gap", "BookValid:"]
        assert feed.stats()["malformed"] == 3

        # 3. A dropped connection: every book on it is invalid once, then valid once.
        for _ in range(3):
            mark = len(watch.status)
            ex.resume_flow()
            assert await ex.faults.disconnect_all() == 1
            await until(
                lambda m=mark: all(len(watch.events(s, m)) == 2 for s in SYMBOLS),
                "books back after the reconnect",
            )
            await _settle(ex, feed, watch, SYMBOLS)
            for symbol in SYMBOLS:
                assert watch.events(symbol, mark) == ["BookInvalid:disconnected", "BookValid:"]

        # 4. A short stall (frames lost, the connection kept): a gap on each symbol that lost
        # updates, found when the flow comes back.
        mark = len(watch.status)
        reconnects = feed.stats()["reconnects"]
        ex.resume_flow()
        ex.faults.stall(0.25)
        await until(
            lambda: (
                ex.stats.frames_dropped_stalled > 0
                and not ex.faults.stalled(asyncio.get_running_loop().time())
                and all(len(watch.events(s, mark)) == 2 for s in SYMBOLS)
            ),
            "gaps after the stall found and repaired",
        )
        await _settle(ex, feed, watch, SYMBOLS)
        assert feed.stats()["reconnects"] == reconnects
        for symbol in SYMBOLS:
            assert watch.events(symbol, mark) == ["BookInvalid:gap", "BookValid:"]

        # 5. A stall longer than the watchdog allows: the connection is replaced, once per book.
        mark = len(watch.status)
        ex.resume_flow()
        ex.faults.stall(1.0)
        await until(
            lambda: (
                feed.stats()["reconnects"] > reconnects
                and all(len(watch.events(s, mark)) == 2 for s in SYMBOLS)
            ),
            "books back after the stale connection was replaced",
            limit=20,
        )
        await _settle(ex, feed, watch, SYMBOLS)
        for symbol in SYMBOLS:
            assert watch.events(symbol, mark) == ["BookInvalid:disconnected", "BookValid:"]
        assert feed.stats()["books"][A]["state"] == "live"


class _RestSimSync(SimSync):
    """The sim's synchroniser asking for REST snapshots (GET /book, with its sequence) instead
    of a resubscription: the same stream, the other resync path."""

    snapshot_via = SnapshotVia.REST
    initial_snapshot = True


def _rest_sync(venue: str, symbol: str, *, depth: int | None = None) -> BookSync:
    return _RestSimSync(symbol, depth=depth or 1000)


class _RestResyncSimSync(SimSync):
    """First snapshot from the stream, resync over REST."""

    snapshot_via = SnapshotVia.REST


def _rest_resync(venue: str, symbol: str, *, depth: int | None = None) -> BookSync:
    return _RestResyncSimSync(symbol, depth=depth or 1000)


async def test_rest_snapshot_resync_with_failing_requests() -> None:
    async with (
        SimExchange(seed=5, symbols=SYMBOLS, rate=150) as ex,
        _running(ex, SYMBOLS, book_sync=_rest_sync) as (feed, watch),
    ):
        await until(lambda: feed.stats()["book_rest_snapshots"] >= 2, "start() asked, per symbol")
        await _settle(ex, feed, watch, SYMBOLS)
        first = feed.stats()["book_rest_snapshots"]
        for round_ in range(2):
            mark = len(watch.status)
            ex.resume_flow()
            ex.faults.fail_requests(2)  # the snapshot request meets 503s first: retried
            ex.faults.skip_sequence(B)
            await until(lambda m=mark: len(watch.events(B, m)) == 2, "B resynced over REST")
            await _settle(ex, feed, watch, SYMBOLS)
            assert watch.events(B, mark) == ["BookInvalid:gap", "BookValid:"], round_
            assert watch.events(A, mark) == []
        stats = feed.stats()
        assert stats["book_rest_snapshots"] >= first + 2
        assert stats["book_resubscribes"] == 0 and stats["reconnects"] == 0


class _NoBooks:
    """A REST source whose snapshots always fail."""

    calls = 0

    async def trades(
        self, symbol: str, *, since_id: int | None = None, limit: int | None = None
    ) -> list[Trade]:
        return []

    async def book(self, symbol: str, *, depth: int | None = None) -> BookSnapshot:
        self.calls += 1
        raise NetworkError("no route", venue="sim")


async def test_spent_snapshot_retries_end_the_book_stream_with_book_error() -> None:
    source = _NoBooks()
    async with SimExchange(seed=3, symbols=[A], rate=50) as ex:
        feed = StreamClient(
            "sim", url=ex.ws_url, rest=source, book_sync=_rest_resync, book_snapshot_retries=2
        )
        async with feed:
            views = 0
            with pytest.raises(BookError) as info:
                async for view in feed.books(A):
                    assert view.valid
                    views += 1
                    if views == 1:
                        ex.faults.skip_sequence(A)
            assert info.value.symbol == A
            assert source.calls == 3  # the first request and two retries
            assert feed.stats()["book_invalid"] == 1 and feed.stats()["book_valid"] == 1
            await until(lambda: feed.book(A) is None, "the book dropped")
            assert feed.upstream() == {}


async def test_conflated_slow_consumer_gets_few_latest_books_and_the_final_one() -> None:
    async with (
        SimExchange(seed=9, symbols=[A], rate=300) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        got: list[BookView] = []
        stale: list[tuple[int | None, int | None]] = []

        async def slow() -> None:
            async for view in feed.books(A, conflate=50, depth=10):
                live = feed.book(A)
                assert live is not None
                if view.sequence != live.sequence:
                    stale.append((view.sequence, live.sequence))
                got.append(view)
                await asyncio.sleep(0.1)  # a slow consumer

        task = asyncio.create_task(slow())
        await until(lambda: len(got) >= 5, "a few books")
        ex.pause_flow()
        final = ex.book(A).sequence
        await until(lambda: got[-1].sequence == final, "the final book delivered after the burst")
        applied = feed.stats()["books"][A]["applied"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stale == []  # each one the latest at delivery
        assert len(got) * 5 < applied, (len(got), applied)  # conflated, not queued
        assert len({v.sequence for v in got}) == len(got)  # never the same book twice
        truth = ex.book(A)
        assert got[-1].bids() == list(truth.bids[:10]) and got[-1].asks() == list(truth.asks[:10])
        assert len(got[-1].bids()) <= 10


async def test_handlers_and_shared_subscriptions() -> None:
    async with (
        SimExchange(seed=4, symbols=SYMBOLS, rate=100) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        sync_views: list[BookView] = []
        async_views: list[BookView] = []
        invalid_at_call: list[BookView] = []

        def on_book(view: BookView) -> None:
            if not view.valid:
                invalid_at_call.append(view)
            sync_views.append(view)

        async def on_book_async(view: BookView) -> None:
            async_views.append(view)

        await feed.subscribe_books(SYMBOLS, handler=on_book, depth=5)
        await feed.subscribe_books(A, handler=on_book_async, conflate=20)
        stream = feed.books(A)
        first = await anext(stream)
        assert isinstance(first, BookView) and first.valid
        upstream = {s.symbol: n for s, n in feed.upstream().items()}
        assert upstream == {A: 3, B: 1}  # one upstream subscription per symbol, shared
        await until(lambda: len(async_views) >= 2 and len(sync_views) >= 10, "handlers fire")
        assert invalid_at_call == []
        assert all(len(v.bids()) <= 5 and len(v.asks()) <= 5 for v in sync_views)
        assert {v.symbol for v in async_views} == {A}
        ex.pause_flow()
        truth = ex.book(A)
        await until(
            lambda: [v for v in sync_views if v.symbol == A][-1].sequence == truth.sequence,
            "sync handler caught up",
        )
        await until(lambda: async_views[-1].sequence == truth.sequence, "async handler caught up")
        assert async_views[-1].bids() == list(truth.bids)

        await feed.unsubscribe_books(SYMBOLS, handler=on_book)
        assert {s.symbol: n for s, n in feed.upstream().items()} == {A: 2}
        assert feed.book(B) is None
        await feed.unsubscribe_books(A)
        await stream.aclose()
        assert feed.upstream() == {}
        assert feed.book(A) is None


async def test_views_are_immutable_and_report_invalidation() -> None:
    async with (
        SimExchange(seed=2, symbols=[A], rate=100) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        stream = feed.books(A, depth=3)
        view = await anext(stream)
        with pytest.raises(AttributeError):
            view.sequence = 1
        assert len(view.bids()) == 3 and view.bids(1) == [view.bids()[0]]
        assert view.best_bid == view.bids()[0].price and view.mid is not None
        snap = view.snapshot()
        assert snap.bids == tuple(view.bids()) and snap.sequence == view.sequence
        assert view.to_book().bids() == view.bids()
        old = feed.book(A)
        ex.faults.skip_sequence(A)
        await until(lambda: not view.valid, "the view reports its book was found wrong")
        await until(lambda: feed.book(A) is not old and feed.book(A).valid, "resynced")  # type: ignore[union-attr]
        assert old is not None and not old.valid  # the old object stays invalid for good
        await stream.aclose()


async def test_leaving_the_iterator_unsubscribes_and_leaks_no_task() -> None:
    async with SimExchange(seed=1, symbols=[A], rate=200) as ex:
        before = _client_tasks()
        async with StreamClient("sim", url=ex.ws_url) as feed:
            for _ in range(3):
                async for view in feed.books(A, conflate=10):
                    assert view.valid
                    break
                await until(
                    lambda: not feed.upstream() and feed.book(A) is None, "unsubscribed after break"
                )
            # Leaving while a resync task runs: it is cancelled with the subscription.
            stream = feed.books(A)
            await anext(stream)
            ex.faults.skip_sequence(A)
            await until(lambda: feed.stats()["book_invalid"] > 0, "invalidated")
            await stream.aclose()
            assert feed.upstream() == {}
        assert _client_tasks() - before == set()


def _client_tasks() -> set[asyncio.Task[Any]]:
    return {
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("tickloop") and not t.get_name().startswith("tickloop-sim")
    }


async def test_depth_limits_and_bad_arguments() -> None:
    async with (
        SimExchange(seed=6, symbols=[A], rate=50) as ex,
        StreamClient("sim", url=ex.ws_url, book_sync=_rest_sync) as feed,
    ):
        with pytest.raises(ConfigError) as info:
            feed.books(A, depth=0)
        assert info.value.field == "depth"
        with pytest.raises(ConfigError):
            feed.books(A, conflate=-1)
        shallow = feed.books(A, depth=50)
        view = await anext(shallow)
        assert len(view.bids()) <= 50
        deep = feed.books(A, depth=100)  # the shared REST book is kept at 50 levels
        with pytest.raises(ConfigError) as info:
            await anext(deep)
        assert info.value.field == "depth"
        again = feed.books(A, depth=20)
        assert len((await anext(again)).asks()) <= 20
        await again.aclose()
        await shallow.aclose()
        assert feed.upstream() == {}


async def test_conflated_handler_at_most_once_per_interval_then_the_final_state() -> None:
    async with (
        SimExchange(seed=8, symbols=SYMBOLS, rate=300) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        loop = asyncio.get_running_loop()
        calls: dict[str, list[tuple[float, BookView]]] = {A: [], B: []}

        def on_book(view: BookView) -> None:
            assert view.valid
            calls[view.symbol].append((loop.time(), view))

        await feed.subscribe_books(SYMBOLS, handler=on_book, conflate=30)
        await until(lambda: all(len(c) >= 10 for c in calls.values()), "books of both symbols")
        ex.pause_flow()
        for symbol in SYMBOLS:
            truth = ex.book(symbol)
            await until(
                lambda s=symbol, t=truth: calls[s][-1][1].sequence == t.sequence,
                f"final {symbol} book",
            )
            _equal(calls[symbol][-1][1], truth)
        applied = sum(feed.stats()["books"][s]["applied"] for s in SYMBOLS)
        assert sum(len(c) for c in calls.values()) < applied
        await feed.unsubscribe_books(SYMBOLS)
        assert feed.upstream() == {}


class _Handle:
    def __init__(self, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class _FakeLoop:
    """The two loop methods a BookConsumer uses, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> _Handle:
        handle = _Handle(when, callback, args)
        self.handles.append(handle)
        return handle

    def advance(self, to: float) -> None:
        self.now = to
        for handle in sorted(self.handles, key=lambda h: h.when):
            if handle.when <= to and not handle.cancelled:
                self.handles.remove(handle)
                handle.callback(*handle.args)


def _book(sequence: int) -> OrderBook:
    book = OrderBook("sim", A)
    book.apply_snapshot(
        BookSnapshot(
            venue="sim",
            symbol=A,
            bids=(BookLevel(Decimal("99"), Decimal("1")),),
            asks=(BookLevel(Decimal("101"), Decimal("1")),),
            sequence=sequence,
        )
    )
    return book


def test_conflation_on_the_loop_clock_at_most_once_per_interval() -> None:
    loop = _FakeLoop()
    got: list[tuple[float, int | None]] = []
    consumer = BookConsumer(
        loop=loop,  # type: ignore[arg-type]
        depth=None,
        conflate=0.05,
        maxsize=10,
        handler=lambda view: got.append((loop.now, view.sequence)),
        name="test",
    )
    book = _book(1)
    consumer.offer(book)  # quiet before: delivered at once
    for t, seq in ((0.01, 2), (0.02, 3), (0.04, 4)):
        loop.advance(t)
        book.sequence = seq
        consumer.offer(book)  # held: one timer, for the end of the interval
    assert len(loop.handles) == 1 and got == [(0.0, 1)]
    loop.advance(0.05)
    assert got == [(0.0, 1), (0.05, 4)]  # the latest, once, at the end of the burst
    loop.advance(0.5)
    assert got == [(0.0, 1), (0.05, 4)]  # nothing changed: nothing more
    book.sequence = 5
    consumer.offer(book)  # quiet for longer than the interval: at once again
    assert got[-1] == (0.5, 5)
    loop.advance(0.51)
    book.sequence = 6
    consumer.offer(book)
    consumer.discard(A)  # the book was found wrong: the held delivery is dropped
    loop.advance(0.6)
    assert got[-1] == (0.5, 5) and not [h for h in loop.handles if not h.cancelled]
    loop.advance(0.7)
    book.sequence = 7
    book.valid = False  # never delivered, even when offered
    consumer.offer(book)
    assert got[-1] == (0.5, 5) and consumer.skipped == 1
    fresh = _book(8)
    consumer.offer(fresh)  # within the interval of the last offer: held, then released
    loop.advance(0.8)
    assert got[-1] == (0.8, 8)
    consumer.close()
    assert consumer.closed


async def test_case3_a_book_that_received_a_hostile_number_never_stays_valid() -> None:
    """Issue 15, case 3: a book message with a hostile number (1e300000000, a negative size,
    "١", 10,000 digits) is refused as malformed, and the book it belonged to is invalid at once
    ("malformed"), then rebuilt; JSON nested too deep to tell its symbol shows as a gap."""
    async with (
        SimExchange(seed=11, symbols=SYMBOLS, rate=150) as ex,
        _running(ex, SYMBOLS, heartbeat_timeout=0.6, ping_interval=0.15) as (feed, watch),
    ):
        await _settle(ex, feed, watch, SYMBOLS)
        expected = ["malformed"] * 4 + ["gap"]
        for round_, reason in enumerate(expected):
            mark = len(watch.status)
            ex.resume_flow()
            ex.faults.hostile(1)
            await until(lambda m=mark: len(watch.status) >= m + 2, "the hit book resynced")
            await _settle(ex, feed, watch, SYMBOLS)
            hit = [s for s in SYMBOLS if watch.events(s, mark)]
            assert len(hit) == 1, round_
            assert watch.events(hit[0], mark) == [f"BookInvalid:{reason}", "BookValid:"], round_
        assert ex.stats.hostile_sent == len(expected)
        assert feed.stats()["malformed"] == len(expected)
