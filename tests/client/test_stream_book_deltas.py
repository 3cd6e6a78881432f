"""``feed.book_deltas`` / ``subscribe_book_deltas``: the venue's book messages, raw and typed.

Against the embedded exchange over loopback: a raw consumer's snapshot and deltas rebuild the
true book; raw and books consumers share one upstream subscription in any order; overflow
policies; callbacks; cleanup. Against the ReplayServer on a recorded Binance session: the raw
stream is exactly what the codec decodes offline, in order. Waits are bounded only to stop a
broken run from hanging.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import msgspec
import pytest

from tickloop.book import OrderBook
from tickloop.client.books import BookView
from tickloop.client.stream import StreamClient
from tickloop.exceptions import ConfigError, ConsumerOverflow
from tickloop.models import BookDelta, BookSnapshot
from tickloop.replay import ReplayServer
from tickloop.sim import SimExchange
from tickloop.venues.base import Channel, Subscription
from tickloop.venues.binance import BinanceCodec
from tickloop.venues.recorded import Direction, read_recording

from .helpers import until

pytestmark = pytest.mark.timeout(60)

A, B = "BTC-USD", "ETH-USD"
Raw = BookSnapshot | BookDelta


class _Rebuilt:
    """A user's own book from the raw stream: reset on every snapshot, deltas applied in
    order, and the sequence chain checked (``prev_sequence`` links the sim's deltas)."""

    def __init__(self, symbol: str) -> None:
        self.book: OrderBook | None = None
        self.symbol = symbol
        self.messages: list[Raw] = []
        self.breaks = 0  # deltas whose prev_sequence is not the last applied sequence

    def on_message(self, message: Raw) -> None:
        assert message.symbol == self.symbol
        self.messages.append(message)
        if isinstance(message, BookSnapshot):
            self.book = OrderBook.from_snapshot(message)
            return
        assert self.book is not None, "a delta before the first snapshot"
        if message.prev_sequence != self.book.sequence:
            self.breaks += 1
        self.book.apply(message)


async def _matches_truth(ex: SimExchange, rebuilt: _Rebuilt) -> None:
    ex.pause_flow()
    truth = ex.book(rebuilt.symbol)
    await until(
        lambda: rebuilt.book is not None and rebuilt.book.sequence == truth.sequence,
        f"the raw stream reaches sequence {truth.sequence}",
    )
    assert rebuilt.book is not None
    assert rebuilt.book.bids() == list(truth.bids) and rebuilt.book.asks() == list(truth.asks)


async def test_raw_snapshot_and_deltas_rebuild_the_true_book() -> None:
    async with (
        SimExchange(seed=21, symbols=[A, B], rate=200) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        rebuilt = _Rebuilt(A)

        async def consume() -> None:
            async for message in feed.book_deltas(A):
                rebuilt.on_message(message)

        task = asyncio.create_task(consume())
        await until(lambda: len(rebuilt.messages) > 50, "deltas")
        await _matches_truth(ex, rebuilt)
        assert isinstance(rebuilt.messages[0], BookSnapshot)
        assert sum(isinstance(m, BookSnapshot) for m in rebuilt.messages) == 1
        assert rebuilt.breaks == 0
        assert all(type(m) is BookDelta and m.venue == "sim" for m in rebuilt.messages[1:])
        assert feed.book(A) is None  # no local book is kept for a raw consumer
        assert feed.stats()["books"] == {}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await until(lambda: feed.upstream() == {}, "unsubscribed after the consumer left")


async def test_raw_and_books_share_one_subscription_raw_first() -> None:
    async with (
        SimExchange(seed=22, symbols=[A], rate=200) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        rebuilt = _Rebuilt(A)
        await feed.subscribe_book_deltas(A, rebuilt.on_message)
        await until(lambda: len(rebuilt.messages) > 20, "raw deltas")
        views: list[BookView] = []
        books = feed.books(A)

        async def read_books() -> None:
            async for view in books:
                views.append(view)

        task = asyncio.create_task(read_books())
        # The books consumer joined a confirmed subscription: it asked for its snapshot by
        # resubscribing the symbol, which the raw consumer sees as a fresh snapshot.
        await until(lambda: views and views[-1].valid, "a valid book for the joining consumer")
        assert list(feed.upstream().values()) == [2]
        assert feed.upstream() == {Subscription(Channel.BOOK, A): 2}
        assert sum(isinstance(m, BookSnapshot) for m in rebuilt.messages) == 2
        # leaving the books consumer keeps the raw one, and stops maintaining the book
        await books.aclose()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert feed.upstream() == {Subscription(Channel.BOOK, A): 1}
        await until(lambda: feed.book(A) is None, "the book no longer maintained")
        count = len(rebuilt.messages)
        await until(lambda: len(rebuilt.messages) > count + 20, "raw deltas go on")
        await _matches_truth(ex, rebuilt)
        await feed.unsubscribe_book_deltas(A, rebuilt.on_message)
        assert feed.upstream() == {}


async def test_raw_and_books_share_one_subscription_books_first() -> None:
    async with (
        SimExchange(seed=23, symbols=[A], rate=200) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        latest: list[BookView] = []
        await feed.subscribe_books(A, latest.append)
        await until(lambda: bool(latest), "a book")
        subscribes = sum(s.stats.subscribe_messages for s in feed.sessions)
        got: list[Raw] = []
        raw = feed.book_deltas(A)

        async def read_raw() -> None:
            async for message in raw:
                got.append(message)

        task = asyncio.create_task(read_raw())
        await until(lambda: len(got) > 20, "raw deltas from the shared subscription")
        # no new venue subscription, no resync of the book: the raw consumer joined quietly
        assert sum(s.stats.subscribe_messages for s in feed.sessions) == subscribes
        assert feed.upstream() == {Subscription(Channel.BOOK, A): 2}
        assert all(type(m) is BookDelta for m in got)  # it joined after the snapshot
        first = got[0]
        assert isinstance(first, BookDelta) and first.prev_sequence is not None
        assert all(b.prev_sequence == a.sequence for a, b in itertools.pairwise(got))
        # leaving the raw consumer keeps the books one
        await raw.aclose()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert feed.upstream() == {Subscription(Channel.BOOK, A): 1}
        ex.pause_flow()
        truth = ex.book(A)
        await until(lambda: latest[-1].sequence == truth.sequence, "books go on")
        assert latest[-1].bids() == list(truth.bids)
        assert feed.stats()["book_invalid"] == 0


async def test_client_close_leaves_no_task_behind() -> None:
    async with SimExchange(seed=24, symbols=[A], rate=100) as ex:
        before = asyncio.all_tasks()
        async with StreamClient("sim", url=ex.ws_url) as feed:
            got: list[Raw] = []

            async def slow(message: Raw) -> None:
                got.append(message)

            await feed.subscribe_book_deltas(A, slow)
            stream = feed.book_deltas(A, overflow="backpressure")
            first = await anext(stream)
            # it joined a subscription already live: deltas from now on, no snapshot
            assert isinstance(first, BookDelta)
            books = feed.books(A)
            await anext(books)
            await until(lambda: len(got) > 5, "the async handler runs")
        leftover = [
            t
            for t in asyncio.all_tasks() - before
            # the client's tasks (the exchange's own are named tickloop-sim-*)
            if not t.done()
            and t.get_name().startswith("tickloop")
            and not t.get_name().startswith("tickloop-sim")
        ]
        assert leftover == []
        with pytest.raises(StopAsyncIteration):
            while True:  # yields what it had buffered, then stops
                await anext(stream)


async def test_default_policy_detaches_a_consumer_that_falls_behind() -> None:
    async with (
        SimExchange(seed=25, symbols=[A], rate=400) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        with pytest.raises(ConfigError):
            feed.book_deltas(A, overflow="conflate")  # raw deltas are never conflated away
        stream = feed.book_deltas(A, buffer=5)
        assert isinstance(await anext(stream), BookSnapshot)
        await until(lambda: stream.consumer.closed, "the consumer overflows")
        with pytest.raises(ConsumerOverflow) as info:
            while True:
                await anext(stream)
        assert info.value.dropped >= 1
        await until(lambda: feed.upstream() == {}, "unsubscribed after the overflow")


async def test_backpressure_loses_nothing() -> None:
    async with (
        SimExchange(seed=26, symbols=[A], rate=400) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        rebuilt = _Rebuilt(A)
        stream = feed.book_deltas(A, buffer=8, overflow="backpressure")
        async for message in stream:
            rebuilt.on_message(message)
            if len(rebuilt.messages) % 4 == 0:
                await asyncio.sleep(0.01)  # a consumer slower than the venue
            if len(rebuilt.messages) >= 150:
                break
        assert rebuilt.breaks == 0
        assert stream.consumer.stats.pauses >= 1 and stream.consumer.stats.dropped == 0
        # catch up with the live stream through a callback and compare with the truth
        await stream.aclose()
        rebuilt = _Rebuilt(A)
        await feed.subscribe_book_deltas(A, rebuilt.on_message, overflow="backpressure")
        await _matches_truth(ex, rebuilt)
        assert rebuilt.breaks == 0


async def test_sync_and_async_handlers() -> None:
    async with (
        SimExchange(seed=27, symbols=[A, B], rate=150) as ex,
        StreamClient("sim", url=ex.ws_url) as feed,
    ):
        rebuilt = {A: _Rebuilt(A), B: _Rebuilt(B)}
        seen_async: list[Raw] = []

        def on_sync(message: Raw) -> None:
            rebuilt[message.symbol].on_message(message)

        async def on_async(message: Raw) -> None:
            await asyncio.sleep(0)
            seen_async.append(message)

        await feed.subscribe_book_deltas([A, B], on_sync)
        await feed.subscribe_book_deltas(A, on_async)
        assert {s.symbol: n for s, n in feed.upstream().items()} == {A: 2, B: 1}
        await until(lambda: all(len(r.messages) > 10 for r in rebuilt.values()), "both symbols")
        ex.pause_flow()
        for symbol in (A, B):
            await _matches_truth(ex, rebuilt[symbol])
        final = ex.book(A).sequence
        await until(lambda: seen_async[-1].sequence == final, "the async handler catches up")
        # it joined after the sync handler's snapshot: the same messages from then on
        ours = [m for m in rebuilt[A].messages if (m.sequence or 0) <= final]
        assert [msgspec.structs.asdict(m) for m in seen_async] == [
            msgspec.structs.asdict(m) for m in ours[-len(seen_async) :]
        ]
        await feed.unsubscribe_book_deltas(A)
        assert {s.symbol: n for s, n in feed.upstream().items()} == {B: 1}
        await feed.unsubscribe_book_deltas(B, on_sync)
        assert feed.upstream() == {}


# --------------------------------------------------------------------- recorded Binance session


def _offline(path: Path) -> list[BookDelta]:
    codec = BinanceCodec()
    frames = [r.frame for r in read_recording(path) if r.direction is Direction.RECEIVED]
    return [e for f in frames for e in codec.decode(f, 0) if isinstance(e, BookDelta)]


@pytest.mark.playback
async def test_binance_raw_stream_equals_offline_decode(recorded_data: Path) -> None:
    path = recorded_data / "BINANCE.ws.1.0"
    expected = _offline(path)
    symbols = sorted({d.symbol for d in expected})
    assert expected and len(symbols) > 1
    async with (
        ReplayServer(
            [path], start_on_message=True, close_at_end=False, subscribed_only=True
        ) as srv,
        StreamClient("binance", url=srv.url("/stream"), rest_url=srv.rest_url) as feed,
    ):
        handled: list[Raw] = []
        iterated: list[Raw] = []
        async with feed.book_deltas(symbols) as stream:
            # attached before the loop runs again: no frame can come in between
            await feed.subscribe_book_deltas(symbols, handled.append)

            async def read() -> None:
                async for message in stream:
                    iterated.append(message)
                    if len(handled) >= len(expected) and not len(stream.consumer):
                        return

            await asyncio.wait_for(read(), 30)  # a hang guard, not a timing goal
            await until(
                lambda: srv.ended == 1 and feed.stats()["frames"] >= srv.frames_sent,
                "the whole recording read",
            )
            assert len(stream.consumer) == 0
            assert len(feed.upstream()) == len(symbols)  # one subscription per symbol, shared
        assert feed.stats()["book_rest_snapshots"] == 0  # raw consumers keep no book

    def fields(m: Raw) -> dict[str, object]:
        out = msgspec.structs.asdict(m)
        out.pop("recv_ts")
        return out

    want = [fields(d) for d in expected]
    assert [fields(m) for m in handled] == want
    assert [fields(m) for m in iterated] == want


async def test_books_resync_after_a_gap_shows_on_the_raw_stream_as_a_fresh_snapshot() -> None:
    async with (
        SimExchange(seed=28, symbols=[A], rate=200) as ex,
        StreamClient("sim", url=ex.ws_url, base_wait=0.005, max_wait=0.05) as feed,
    ):
        rebuilt = _Rebuilt(A)
        await feed.subscribe_book_deltas(A, rebuilt.on_message)
        latest: list[BookView] = []
        await feed.subscribe_books(A, latest.append)
        await until(lambda: bool(latest) and latest[-1].valid, "a valid book")
        snapshots = sum(isinstance(m, BookSnapshot) for m in rebuilt.messages)
        ex.faults.skip_sequence(A)
        # books: one invalidation, then a resubscription and a valid book again
        await until(lambda: feed.stats()["book_valid"] >= 2, "the book resynchronised")
        assert feed.stats()["book_invalid"] == 1
        # raw: the skipped update is visible as a break in the sequence chain, then the
        # resubscription's fresh snapshot restarts the user's book
        await until(
            lambda: sum(isinstance(m, BookSnapshot) for m in rebuilt.messages) > snapshots,
            "a fresh snapshot on the raw stream",
        )
        assert rebuilt.breaks >= 1
        assert feed.upstream() == {Subscription(Channel.BOOK, A): 2}
        await _matches_truth(ex, rebuilt)
        truth = ex.book(A)
        await until(lambda: latest[-1].sequence == truth.sequence, "books caught up")
        assert latest[-1].bids() == list(truth.bids)
