"""Synchroniser state machines, driven by a small venue model that writes correct (or
deliberately broken) snapshots and deltas with real sequence numbers and checksums."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import aiohttp
import msgspec
import pytest
import websockets

from tickloop.book import (
    Apply,
    BinanceSync,
    BookSync,
    CoinbaseSync,
    Emit,
    KrakenSync,
    NeedSnapshot,
    OrderBook,
    SimSync,
    SnapshotVia,
    SyncState,
    make_sync,
)
from tickloop.book.sync import _TRANSITIONS, _Input
from tickloop.checksums import kraken_checksum, sim_checksum
from tickloop.exceptions import BookError, ConfigError
from tickloop.models import BookDelta, BookInvalid, BookLevel, BookSnapshot, BookValid
from tickloop.sim import SimExchange
from tickloop.venues.base import Channel, Pong, Subscription
from tickloop.venues.sim import SimCodec
from tickloop.venues.sim_rest import SimRest

D = Decimal


class Venue:
    """The exchange's side: the true book, its sequence, and messages a codec would produce."""

    def __init__(self, venue: str = "sim", depth: int | None = None) -> None:
        self.venue = venue
        self.depth = depth
        self.bids: dict[str, str] = {f"{100 - i}.00": "1.0000" for i in range(5)}
        self.asks: dict[str, str] = {f"{101 + i}.00": "2.0000" for i in range(5)}
        self.seq = 100

    def top(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: D(kv[0]), reverse=True)
        asks = sorted(self.asks.items(), key=lambda kv: D(kv[0]))
        if self.depth is not None:
            bids, asks = bids[: self.depth], asks[: self.depth]
        return bids, asks

    def checksum(self) -> int:
        bids, asks = self.top()
        fn = kraken_checksum if self.venue == "kraken" else sim_checksum
        return fn(bids, asks)

    def snapshot(self, *, checksum: int | None = None) -> BookSnapshot:
        bids, asks = self.top()
        return BookSnapshot(
            venue=self.venue,
            symbol="BTC-USD",
            bids=tuple(BookLevel(D(p), D(s)) for p, s in bids),
            asks=tuple(BookLevel(D(p), D(s)) for p, s in asks),
            sequence=self.seq,
            checksum=self.checksum() if checksum is None else checksum,
            ts=self.seq,
        )

    def update(
        self,
        bids: list[tuple[str, str]] = (),  # type: ignore[assignment]
        asks: list[tuple[str, str]] = (),  # type: ignore[assignment]
        *,
        count: int = 1,
    ) -> BookDelta:
        """Change the book; ``count`` > 1 makes a Binance-style range of update ids."""
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, s in levels:
                if D(s):
                    side[p] = s
                else:
                    side.pop(p, None)
        first = self.seq + 1
        prev = self.seq
        self.seq += count
        return BookDelta(
            venue=self.venue,
            symbol="BTC-USD",
            bids=tuple(BookLevel(D(p), D(s)) for p, s in bids),
            asks=tuple(BookLevel(D(p), D(s)) for p, s in asks),
            sequence=self.seq,
            first_sequence=first,
            prev_sequence=prev,
            checksum=self.checksum(),
            ts=self.seq,
        )

    def matches(self, book: OrderBook) -> bool:
        bids, asks = self.top()
        return book.bids() == [(D(p), D(s)) for p, s in bids] and book.asks() == [
            (D(p), D(s)) for p, s in asks
        ]


def kinds(actions: tuple[object, ...]) -> list[str]:
    out = []
    for a in actions:
        out.append(type(a.event).__name__ if isinstance(a, Emit) else type(a).__name__)
    return out


def moves(venue: Venue, n: int) -> list[BookDelta]:
    out = []
    for i in range(n):
        price = f"{96 - i % 3}.00"
        out.append(venue.update(bids=[(price, f"{i + 1}.0000")]))
    return out


# ------------------------------------------------------------------------------------ sim


def test_sim_snapshot_then_deltas() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    assert sync.start() == () and sync.state is SyncState.WAITING and not sync.valid
    actions = sync.on_update(venue.snapshot())
    assert kinds(actions) == ["BookValid", "Apply"]
    assert isinstance(actions[0], Emit) and actions[0].event.sequence == 100
    book = sync.book
    assert book.valid and sync.valid and sync.state is SyncState.LIVE
    for d in moves(venue, 5):
        assert sync.on_update(d) == (Apply(book),)
    assert sync.book is book and book.sequence == 105 and venue.matches(book)
    assert sync.applied == 5


def test_sim_gap_invalidates_once_buffers_and_recovers_on_a_new_snapshot() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    sync.on_update(venue.snapshot())
    for d in moves(venue, 3):
        sync.on_update(d)
    held = sync.book  # what a consumer holds
    moves(venue, 1)  # update 104 is lost
    d105, d106, d107 = moves(venue, 3)
    actions = sync.on_update(d105)
    assert kinds(actions) == ["BookInvalid", "NeedSnapshot"]
    invalid = actions[0]
    need = actions[1]
    assert isinstance(invalid, Emit) and isinstance(invalid.event, BookInvalid)
    assert (invalid.event.reason, invalid.event.sequence) == ("gap", 105)
    assert need == NeedSnapshot("BTC-USD", "gap", SnapshotVia.SUBSCRIBE, None)
    assert not held.valid and not sync.valid and sync.state is SyncState.WAITING
    # more deltas, even another gap: buffered, no second event, no second request
    assert sync.on_update(d106) == ()
    moves(venue, 1)  # 108 lost too
    snap_at_108 = venue.snapshot()
    d109 = moves(venue, 1)[0]
    assert sync.on_update(d109) == () and sync.on_update(d107) == ()
    assert sync.buffered == 4
    # the snapshot (seq 108) drops the buffered deltas at or below it and applies 109
    actions = sync.on_snapshot(snap_at_108)
    assert kinds(actions) == ["BookValid", "Apply"]
    assert isinstance(actions[1], Apply) and actions[1].book is sync.book
    assert sync.book is not held and not held.valid  # swapped in: the old book stays invalid
    assert sync.book.valid and sync.book.sequence == 109 and venue.matches(sync.book)
    assert sync.invalidations == {"gap": 1} and sync.resyncs == 1
    assert sync.on_update(moves(venue, 1)[0]) == (Apply(sync.book),)


def test_sim_stale_and_duplicate_deltas_are_dropped() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    d101 = moves(venue, 1)[0]
    snap = venue.snapshot()  # seq 101, already contains d101
    d102 = moves(venue, 1)[0]
    assert sync.on_update(d101) == () and sync.on_update(d102) == ()  # buffered
    assert kinds(sync.on_update(snap)) == ["BookValid", "Apply"]
    assert sync.book.sequence == 102 and venue.matches(sync.book)
    assert sync.on_update(d102) == () and sync.stale == 1  # a duplicate
    assert sync.valid


def test_sim_checksum_mismatch() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    sync.on_update(venue.snapshot())
    bad = msgspec.structs.replace(moves(venue, 1)[0], checksum=12345)
    actions = sync.on_update(bad)
    assert kinds(actions) == ["BookInvalid", "NeedSnapshot"]
    assert isinstance(actions[0], Emit) and actions[0].event.reason == "checksum"
    assert not sync.book.valid
    # a snapshot whose own checksum is wrong is not used: ask again, say nothing else
    actions = sync.on_snapshot(venue.snapshot(checksum=1))
    assert kinds(actions) == ["NeedSnapshot"] and not sync.valid
    assert kinds(sync.on_snapshot(venue.snapshot())) == ["BookValid", "Apply"]


def test_crossed_book_is_never_served() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    sync.on_update(venue.snapshot())
    crossing = venue.update(bids=[("101.00", "1.0000")])  # checksum right, book locked
    actions = sync.on_update(crossing)
    assert kinds(actions) == ["BookInvalid", "NeedSnapshot"]
    assert isinstance(actions[0], Emit) and actions[0].event.reason == "crossed"
    venue.update(bids=[("101.00", "0")])
    assert kinds(sync.on_update(venue.snapshot())) == ["BookValid", "Apply"]


def test_disconnect_invalidates_and_start_asks_again() -> None:
    venue = Venue()
    sync = BinanceSync("BTC-USD", depth=500)
    assert sync.start() == (NeedSnapshot("BTC-USD", "initial", SnapshotVia.REST, 500),)
    assert sync.start() == ()  # already asked
    sync.on_snapshot(venue.snapshot())
    actions = sync.on_disconnect(ts=5)
    assert kinds(actions) == ["BookInvalid"]
    assert isinstance(actions[0], Emit) and actions[0].event == BookInvalid(
        venue="binance", symbol="BTC-USD", reason="disconnected", sequence=100, ts=5
    )
    assert sync.on_disconnect(ts=6) == ()  # once
    assert kinds(sync.start()) == ["NeedSnapshot"]


def test_buffer_is_bounded() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD", max_buffer=3)
    old = venue.snapshot()
    for d in moves(venue, 5):
        sync.on_update(d)
    assert sync.buffered == 3 and sync.overflowed == 2
    # the two oldest are gone, so the old snapshot cannot be bridged: ask for another
    assert kinds(sync.on_snapshot(old)) == ["NeedSnapshot"]
    assert sync.state is SyncState.WAITING and sync.buffered == 3
    assert kinds(sync.on_snapshot(venue.snapshot())) == ["BookValid", "Apply"]


def test_late_older_snapshot_does_not_replace_a_live_book() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    old = venue.snapshot()
    sync.on_update(old)
    moves(venue, 2)
    sync.on_update(venue.snapshot())  # a resubscribe snapshot while live: replaces the book
    book = sync.book
    assert book.sequence == 102 and book.valid
    assert sync.on_snapshot(old) == () and sync.book is book and book.valid


def test_newer_snapshot_while_live_replaces_the_book() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    sync.on_update(venue.snapshot())
    first = sync.book
    moves(venue, 3)
    actions = sync.on_update(venue.snapshot())
    assert actions == (Apply(sync.book),) and sync.book is not first
    assert not first.valid and sync.book.valid and venue.matches(sync.book)


# ------------------------------------------------------------------------------------ Binance


def test_binance_bridging_rule() -> None:
    venue = Venue("binance")
    sync = BinanceSync("BTC-USD")
    sync.start()
    early = [
        venue.update(bids=[("96.00", "1.0000")], count=3) for _ in range(2)
    ]  # 101-103, 104-106
    # lastUpdateId 104, inside the second range (both ranges leave the same book)
    snap = msgspec.structs.replace(venue.snapshot(), sequence=104)
    late = venue.update(asks=[("101.00", "0")], count=2)  # 107-108
    for d in (*early, late):
        assert sync.on_update(d) == ()
    actions = sync.on_snapshot(snap)
    # 101-103 dropped (u <= 104), 104-106 straddles 105, 107-108 follows it
    assert kinds(actions) == ["BookValid", "Apply"]
    assert sync.state is SyncState.LIVE and sync.book.sequence == 108
    assert venue.matches(sync.book)
    gap = venue.update(bids=[("96.00", "2.0000")], count=2)
    gap = msgspec.structs.replace(gap, first_sequence=gap.first_sequence + 1)  # type: ignore[operator]
    assert kinds(sync.on_update(gap)) == ["BookInvalid", "NeedSnapshot"]


def test_binance_snapshot_before_any_diff_waits_for_the_bridge() -> None:
    venue = Venue("binance")
    sync = BinanceSync("BTC-USD")
    sync.start()
    assert kinds(sync.on_snapshot(venue.snapshot())) == ["BookValid", "Apply"]
    assert sync.state is SyncState.BRIDGING and sync.valid
    stale = BookDelta(venue="binance", symbol="BTC-USD", sequence=100, first_sequence=97)
    assert sync.on_update(stale) == () and sync.stale == 1
    straddling = venue.update(bids=[("96.00", "3.0000")], count=4)  # 101-104
    straddling = msgspec.structs.replace(straddling, first_sequence=99)  # 99-104 covers 101
    assert sync.on_update(straddling) == (Apply(sync.book),)
    assert sync.state is SyncState.LIVE
    assert sync.on_update(venue.update(bids=[("96.00", "0")], count=2)) == (Apply(sync.book),)
    assert venue.matches(sync.book)


def test_binance_first_diff_past_the_snapshot_is_a_gap() -> None:
    venue = Venue("binance")
    sync = BinanceSync("BTC-USD")
    sync.start()
    sync.on_snapshot(venue.snapshot())
    venue.update(count=2)  # 101-102 lost
    actions = sync.on_update(venue.update(bids=[("96.00", "1.0000")]))
    assert kinds(actions) == ["BookInvalid", "NeedSnapshot"]
    assert isinstance(actions[1], NeedSnapshot) and actions[1].via is SnapshotVia.REST


def test_binance_live_duplicate_and_crossing_diffs() -> None:
    venue = Venue("binance")
    sync = BinanceSync("BTC-USD")
    sync.start()
    sync.on_snapshot(venue.snapshot())
    d = venue.update(bids=[("96.00", "1.0000")], count=2)  # 99-102 straddles 101
    d = msgspec.structs.replace(d, first_sequence=99)
    assert sync.on_update(d) == (Apply(sync.book),) and sync.state is SyncState.LIVE
    follow = venue.update(asks=[("102.00", "0")], count=3)
    assert sync.on_update(follow) == (Apply(sync.book),)
    assert sync.on_update(follow) == () and sync.stale == 1  # a duplicate
    crossing = venue.update(bids=[("101.50", "1.0000")])
    actions = sync.on_update(crossing)
    assert kinds(actions) == ["BookInvalid", "NeedSnapshot"]
    assert isinstance(actions[0], Emit) and actions[0].event.reason == "crossed"
    assert not sync.valid and sync.applied == 2


# --------------------------------------------------------------------------- Kraken, Coinbase


def test_kraken_depth_limited_book_with_replacement_levels() -> None:
    venue = Venue("kraken", depth=3)
    sync = KrakenSync("BTC-USD", depth=3)
    snap = msgspec.structs.replace(venue.snapshot(), sequence=None, checksum=None)
    assert kinds(sync.on_update(snap)) == ["BookValid", "Apply"]
    assert sync.book.bid_count == 3
    # a new best bid pushes the third out; Kraken does not say so, the book truncates
    d = venue.update(bids=[("100.50", "1.0000")])
    assert sync.on_update(d) == (Apply(sync.book),) and venue.matches(sync.book)
    # a level inside the limit is deleted: Kraken sends the replacement in the same update
    d = venue.update(bids=[("100.00", "0"), ("98.00", "1.0000")])
    assert sync.on_update(d) == (Apply(sync.book),) and venue.matches(sync.book)
    # without the replacement the top-3 checksum catches the hole
    venue.update(bids=[("100.50", "0")])
    venue_view = venue.checksum()
    broken = msgspec.structs.replace(d, bids=(BookLevel(D("100.50"), D(0)),), checksum=venue_view)
    assert kinds(sync.on_update(broken)) == ["BookInvalid", "NeedSnapshot"]


def test_kraken_default_depth_is_ten() -> None:
    assert KrakenSync("BTC-USD").book.depth == 10
    assert make_sync("kraken", "BTC-USD").book.depth == 10


def test_coinbase_drops_updates_until_a_snapshot_and_checks_crossing() -> None:
    venue = Venue("coinbase")
    sync = CoinbaseSync("BTC-USD")
    early = venue.update(bids=[("96.00", "5.0000")])
    assert sync.on_update(early) == () and sync.buffered == 0
    sync.on_update(venue.snapshot())
    assert venue.matches(sync.book)
    crossing = venue.update(asks=[("99.00", "1.0000")])
    actions = sync.on_update(crossing)
    assert kinds(actions) == ["BookInvalid", "NeedSnapshot"]
    assert isinstance(actions[1], NeedSnapshot) and actions[1].via is SnapshotVia.SUBSCRIBE
    assert sync.on_update(venue.update(asks=[("99.00", "0")])) == ()  # dropped, not buffered
    assert kinds(sync.on_update(venue.snapshot())) == ["BookValid", "Apply"]
    assert venue.matches(sync.book)


# ------------------------------------------------------------------------- the machine itself


def test_transition_table_is_closed_and_illegal_moves_raise() -> None:
    reachable = {SyncState.WAITING} | set(_TRANSITIONS.values())
    assert reachable == set(SyncState)
    sync = SimSync("BTC-USD")
    with pytest.raises(BookError) as info:
        sync._move(_Input.BRIDGED)
    assert info.value.symbol == "BTC-USD" and info.value.venue == "sim"
    with pytest.raises(BookError):
        sync._move(_Input.INVALIDATED)  # nothing to invalidate while waiting


@pytest.mark.parametrize(
    ("venue", "cls"),
    [
        ("sim", SimSync),
        ("binance", BinanceSync),
        ("coinbase", CoinbaseSync),
        ("kraken", KrakenSync),
    ],
)
def test_make_sync(venue: str, cls: type[BookSync]) -> None:
    sync = make_sync(venue, "BTC-USD", depth=25)
    assert type(sync) is cls and sync.venue_name == venue and sync.depth == 25
    assert sync.book.depth == (25 if cls.truncates else None)
    assert "BTC-USD" in repr(sync)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError) as info:
        make_sync("nope", "BTC-USD")
    assert info.value.field == "venue"
    with pytest.raises(ConfigError):
        SimSync("BTC-USD", max_buffer=0)
    with pytest.raises(ConfigError):
        SimSync("BTC-USD", depth=0)


def test_status_events_carry_the_message_time() -> None:
    venue = Venue()
    sync = SimSync("BTC-USD")
    snap = msgspec.structs.replace(venue.snapshot(), recv_ts=777)
    (valid, _) = sync.on_update(snap)
    assert isinstance(valid, Emit) and valid.event == BookValid(
        venue="sim", symbol="BTC-USD", sequence=100, ts=777
    )


def test_failed_snapshot_request_is_asked_again() -> None:
    sync = BinanceSync("BTC-USD")
    (first,) = sync.start()
    assert isinstance(first, NeedSnapshot) and sync.start() == ()
    (again,) = sync.on_snapshot_failed()
    assert isinstance(again, NeedSnapshot) and again.reason == "retry"
    assert again.via is SnapshotVia.REST
    sync.on_snapshot(Venue("binance").snapshot())
    assert sync.on_snapshot_failed() == ()  # nothing outstanding any more


def test_snapshot_of_another_symbol_is_refused() -> None:
    snap = msgspec.structs.replace(Venue().snapshot(), symbol="ETH-USD")
    with pytest.raises(BookError):
        SimSync("BTC-USD").on_snapshot(snap)


# ----------------------------------------------------------- the real embedded exchange (loopback)


async def _read_until_pong(ws: Any, codec: SimCodec, sync: SimSync, req_id: int) -> list[object]:
    """Feed every book message the server queued before now to ``sync``; the actions taken."""
    await ws.send(json.dumps({"op": "ping", "id": req_id}))
    actions: list[object] = []
    while True:
        frame = await asyncio.wait_for(ws.recv(), 5.0)  # a hang guard, not a timing assertion
        for msg in codec.decode(frame.encode() if isinstance(frame, str) else frame, 1):
            if isinstance(msg, BookSnapshot | BookDelta):
                actions.extend(sync.on_update(msg))
            elif isinstance(msg, Pong) and msg.request_id == req_id:
                return actions


def _same_book(book: OrderBook, truth: BookSnapshot) -> bool:
    return (
        book.bids() == list(truth.bids)
        and book.asks() == list(truth.asks)
        and book.sequence == truth.sequence
    )


async def test_sim_sync_against_the_embedded_exchange() -> None:
    """The sim's own book stream, decoded by the sim codec: every checksum verifies, the book
    equals the exchange's true book, a skipped sequence number is caught and a resubscribe
    recovers, and a REST snapshot (GET /book) works as well."""
    symbol = "BTC-USD"
    async with SimExchange(seed=11, symbols=[symbol], rate=0, heartbeat=0.5) as ex:
        codec = SimCodec()
        sync = SimSync(symbol)
        sub = Subscription(Channel.BOOK, symbol)
        async with websockets.connect(ex.ws_url) as ws:
            for frame in codec.subscribe([sub]):
                await ws.send(frame.decode())
            assert sync.start() == ()
            first = await _read_until_pong(ws, codec, sync, 1)
            assert kinds(tuple(first)) == ["BookValid", "Apply"]
            ex.step(symbol, 200)
            applied = await _read_until_pong(ws, codec, sync, 2)
            assert applied and all(isinstance(a, Apply) for a in applied)
            assert sync.applied == len(applied) and _same_book(sync.book, ex.book(symbol))

            ex.faults.skip_sequence(symbol)
            ex.step(symbol, 50)
            actions = await _read_until_pong(ws, codec, sync, 3)
            assert kinds(tuple(actions)) == ["BookInvalid", "NeedSnapshot"]
            need = actions[1]
            assert isinstance(need, NeedSnapshot) and need.via is SnapshotVia.SUBSCRIBE
            assert not sync.valid and sync.invalidations == {"gap": 1}
            for frame in codec.subscribe([sub]):  # the shell's answer: subscribe again
                await ws.send(frame.decode())
            ex.step(symbol, 20)
            actions = await _read_until_pong(ws, codec, sync, 4)
            assert kinds(tuple(actions))[:2] == ["BookValid", "Apply"]
            assert sync.valid and sync.resyncs == 1
            assert _same_book(sync.book, ex.book(symbol))

            # the REST path: a snapshot taken now, with updates buffered around it
            sync.on_disconnect(ts=0)
            ex.step(symbol, 10)
            assert await _read_until_pong(ws, codec, sync, 5) == []  # buffered
            rest = SimRest()
            request = rest.book_request(symbol, depth=1000)
            url = ex.rest_url + request.path
            async with (
                aiohttp.ClientSession() as http,
                http.get(url, params=request.params) as resp,
            ):
                body = await resp.read()
            ex.step(symbol, 10)
            await _read_until_pong(ws, codec, sync, 6)  # buffered too
            actions = list(sync.on_snapshot(rest.parse_book(body, symbol)))
            assert kinds(tuple(actions)) == ["BookValid", "Apply"]
            assert _same_book(sync.book, ex.book(symbol))
