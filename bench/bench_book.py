"""Local L2 book: tickloop's OrderBook against a SortedDict baseline and cryptofeed's C book.

One seeded workload, every contender side by side in one run (the machine is shared and noisy:
trust ratios, not absolute figures). The workload: ~1,500 levels a side on a 0.01 tick grid,
1M single-level updates (``--quick``: 100k), 20% deletes, 20% new levels, 60% size changes,
prices and sizes as Decimal objects interned per distinct string (what the codecs'
``DecimalCache`` hands the book).

Measured per contender:

* apply: the updates alone;
* apply + best: the updates, reading best bid and best ask after every one;
* top-10 read: the 10 best levels of both sides on an unchanged book, and after each update.

A second table measures **apply + checksum verify per update**, the path of the checksum
synchronisers (``SimSync``, ``KrakenSync``), on two realistic streams, each contender checking
every checksum (a run that fails one stops):

* sim: the embedded exchange's own book stream (its matching engine and synthetic flow, seed 7,
  in this process, encoded as the protocol's JSON and decoded by the sim codec): ~20 levels a
  side, 1-2 levels an update, a CRC32 of the top 10 a side on every update;
* Kraken: the recorded ``KRAKEN.ws.50.0`` session (10 pairs, 4,269 updates with checksums,
  books of up to 849 levels; from the repository's ``tests/data/cryptofeed``), replayed
  ``--kraken-rounds`` times.

Contenders: the synchroniser (sequence check, apply, checksum, crossed check); the reference
path, ``OrderBook.apply_delta`` then ``book.checksum(fn, 10)`` (formats the top levels with
``decimal_text`` and calls the function of :mod:`tickloop.checksums`: what the synchronisers did
before); and a straightforward baseline, a ``SortedDict`` a side formatted the same way.

Run: ``.venv/bin/python bench/bench_book.py [--quick] [--repeat N] [--only book|checksum]``.
Needs ``sortedcontainers`` and ``order-book`` (cryptofeed's C extension) installed.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import msgspec
import order_book  # cryptofeed's C extension (pip install order-book)
from rich.console import Console
from rich.table import Table
from sortedcontainers import SortedDict

from tickloop.book.engine import NATIVE, OrderBook, PureOrderBook
from tickloop.book.sync import BookSync, CoinbaseSync, KrakenSync, SimSync
from tickloop.checksums import decimal_text, kraken_checksum, sim_checksum
from tickloop.models import BookDelta, BookLevel, BookSnapshot
from tickloop.sim.exchange import SimExchange
from tickloop.venues.kraken import KrakenCodec
from tickloop.venues.recorded import Direction, read_recording
from tickloop.venues.sim import SimCodec

Update = tuple[bool, Decimal, Decimal]  # (is_bid, price, size); size zero deletes
ZERO = Decimal(0)


# ----------------------------------------------------------------------------- workload


def workload(n_updates: int, levels: int, seed: int) -> tuple[BookSnapshot, list[Update]]:
    """A snapshot with ``levels`` a side out of a grid of ``2 * levels`` prices a side, then
    ``n_updates`` updates that keep the count near ``levels``."""
    rng = random.Random(seed)
    grid = 2 * levels
    mid = 3_000_000  # in ticks of 0.01
    intern: dict[str, Decimal] = {}

    def dec(text: str) -> Decimal:
        value = intern.get(text)
        if value is None:
            value = intern[text] = Decimal(text)
        return value

    def price(ticks: int) -> Decimal:
        return dec(f"{ticks // 100}.{ticks % 100:02d}")

    sizes = [dec(f"{rng.randint(1, 50_000) / 10_000:.4f}") for _ in range(2_000)]
    bid_prices = [price(mid - k) for k in range(1, grid + 1)]
    ask_prices = [price(mid + k) for k in range(1, grid + 1)]
    present: list[list[Decimal]] = []
    absent: list[list[Decimal]] = []
    for prices in (bid_prices, ask_prices):
        chosen = rng.sample(range(grid), levels)
        chosen_set = set(chosen)
        present.append([prices[i] for i in chosen])
        absent.append([prices[i] for i in range(grid) if i not in chosen_set])
    snapshot = BookSnapshot(
        venue="bench",
        symbol="BTC-USD",
        bids=tuple(sorted(((p, rng.choice(sizes)) for p in present[0]), reverse=True)),
        asks=tuple(sorted((p, rng.choice(sizes)) for p in present[1])),
        sequence=0,
    )
    snapshot = BookSnapshot(
        venue=snapshot.venue,
        symbol=snapshot.symbol,
        bids=tuple(BookLevel(p, s) for p, s in snapshot.bids),
        asks=tuple(BookLevel(p, s) for p, s in snapshot.asks),
        sequence=0,
    )
    updates: list[Update] = []
    append = updates.append
    for _ in range(n_updates):
        side = rng.random() < 0.5
        pres = present[0 if side else 1]
        abse = absent[0 if side else 1]
        r = rng.random()
        if r < 0.2 and len(pres) > 1:  # delete an existing level
            i = rng.randrange(len(pres))
            p = pres[i]
            pres[i] = pres[-1]
            pres.pop()
            abse.append(p)
            append((side, p, ZERO))
        elif r < 0.4 and abse:  # a new level
            i = rng.randrange(len(abse))
            p = abse[i]
            abse[i] = abse[-1]
            abse.pop()
            pres.append(p)
            append((side, p, rng.choice(sizes)))
        else:  # a size change
            append((side, pres[rng.randrange(len(pres))], rng.choice(sizes)))
    return snapshot, updates


def top_churn(n_updates: int, levels: int, seed: int) -> tuple[BookSnapshot, list[Update]]:
    """A harder stream for a book that keeps its best exact without sorting: every 20th update
    deletes a side's best level (sides alternate) while the others land anywhere in the book
    (new levels, resizes, deletes), and nothing reads the book in between."""
    rng = random.Random(seed)
    grid = 2 * levels
    mid = 3_000_000
    prices = [
        [Decimal(f"{(mid - k) // 100}.{(mid - k) % 100:02d}") for k in range(1, grid + 1)],
        [Decimal(f"{(mid + k) // 100}.{(mid + k) % 100:02d}") for k in range(1, grid + 1)],
    ]
    sizes = [Decimal(f"{rng.randint(1, 50_000) / 10_000:.4f}") for _ in range(2_000)]
    present = [set(rng.sample(range(grid), levels)), set(rng.sample(range(grid), levels))]
    snapshot = BookSnapshot(
        venue="bench",
        symbol="BTC-USD",
        bids=tuple(BookLevel(prices[0][k], rng.choice(sizes)) for k in sorted(present[0])),
        asks=tuple(BookLevel(prices[1][k], rng.choice(sizes)) for k in sorted(present[1])),
        sequence=0,
    )
    updates: list[Update] = []
    for i in range(n_updates):
        side = (i // 20) % 2
        here = present[side]
        if i % 20 == 0 and len(here) > 1:
            k = min(here)  # the best: the grid counts away from the mid
            here.discard(k)
            updates.append((side == 0, prices[side][k], ZERO))
            continue
        k = rng.randrange(grid)
        if k in here and rng.random() < 0.4:
            here.discard(k)
            updates.append((side == 0, prices[side][k], ZERO))
        else:
            here.add(k)
            updates.append((side == 0, prices[side][k], rng.choice(sizes)))
    return snapshot, updates


# ----------------------------------------------------------------------------- contenders


class Contender(Protocol):
    name: str

    def load(self, snapshot: BookSnapshot) -> None: ...
    def apply(self, updates: Sequence[Update]) -> None: ...
    def apply_best(self, updates: Sequence[Update]) -> None: ...
    def apply_top10(self, updates: Sequence[Update]) -> None: ...
    def top10(self) -> tuple[list[Any], list[Any]]: ...


def _kind(cls: type[OrderBook]) -> str:
    """How ``cls`` runs: the compiled copy or the pure-Python class."""
    return "compiled" if cls is not PureOrderBook else "pure Python"


class Tickloop:
    """Per-level calls on the book class ``cls`` (the compiled one when it was built)."""

    def __init__(self, cls: type[OrderBook] = OrderBook) -> None:
        self.cls = cls
        self.name = f"tickloop OrderBook.update_bid/ask (per level, {_kind(cls)})"

    def load(self, snapshot: BookSnapshot) -> None:
        self.book = self.cls.from_snapshot(snapshot)

    def apply(self, updates: Sequence[Update]) -> None:
        ub = self.book.update_bid
        ua = self.book.update_ask
        for is_bid, p, s in updates:
            if is_bid:
                ub(p, s)
            else:
                ua(p, s)

    def apply_best(self, updates: Sequence[Update]) -> None:
        book = self.book
        ub = book.update_bid
        ua = book.update_ask
        for is_bid, p, s in updates:
            if is_bid:
                ub(p, s)
            else:
                ua(p, s)
            book.best_bid  # noqa: B018 - the read is what is measured
            book.best_ask  # noqa: B018

    def apply_top10(self, updates: Sequence[Update]) -> None:
        book = self.book
        ub = book.update_bid
        ua = book.update_ask
        for is_bid, p, s in updates:
            if is_bid:
                ub(p, s)
            else:
                ua(p, s)
            book.bids(10)
            book.asks(10)

    def top10(self) -> tuple[list[Any], list[Any]]:
        return self.book.bids(10), self.book.asks(10)


def as_deltas(updates: Sequence[Update], batch: int) -> list[BookDelta]:
    """``updates`` as BookDelta messages of ``batch`` consecutive updates each."""
    deltas = []
    for i in range(0, len(updates), batch):
        chunk = updates[i : i + batch]
        deltas.append(
            BookDelta(
                venue="bench",
                symbol="BTC-USD",
                bids=tuple(BookLevel(p, s) for b, p, s in chunk if b),
                asks=tuple(BookLevel(p, s) for b, p, s in chunk if not b),
            )
        )
    return deltas


class Messages:
    """Feeds a contender the update list as BookDelta messages of ``batch`` updates each (made
    once per list, outside the timing)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self._source: Sequence[Update] = ()
        self._deltas: list[BookDelta] = []

    def _as_deltas(self, updates: Sequence[Update]) -> list[BookDelta]:
        if updates is not self._source:
            self._source = updates
            self._deltas = as_deltas(updates, self.batch)
        return self._deltas

    def prepare(self, updates: Sequence[Update]) -> None:
        self._as_deltas(updates)


class TickloopDelta(Tickloop, Messages):
    """The path a synchroniser uses: ``apply_delta`` on BookDelta messages of ``batch``
    consecutive updates each (1: one level per message, like Coinbase's l2update; 10: closer to a
    Binance 100 ms diff). Rates are per level; best and top-10 are read after each message."""

    def __init__(self, batch: int, cls: type[OrderBook] = OrderBook) -> None:
        Tickloop.__init__(self, cls)
        Messages.__init__(self, batch)
        self.name = f"tickloop OrderBook.apply_delta ({batch}-level BookDelta, {_kind(cls)})"

    def apply(self, updates: Sequence[Update]) -> None:
        apply = self.book.apply_delta
        for delta in self._as_deltas(updates):
            apply(delta)

    def apply_best(self, updates: Sequence[Update]) -> None:
        book = self.book
        apply = book.apply_delta
        for delta in self._as_deltas(updates):
            apply(delta)
            book.best_bid  # noqa: B018
            book.best_ask  # noqa: B018

    def apply_top10(self, updates: Sequence[Update]) -> None:
        book = self.book
        apply = book.apply_delta
        for delta in self._as_deltas(updates):
            apply(delta)
            book.bids(10)
            book.asks(10)


class TickloopSync(TickloopDelta):
    """The whole path a stream takes: a synchroniser (Coinbase rules: apply, then the crossed
    check) fed 1-level BookDeltas, as the StreamClient will feed it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.name = f"tickloop CoinbaseSync.on_delta (1-level BookDelta, {_kind(OrderBook)})"

    def load(self, snapshot: BookSnapshot) -> None:
        self.sync = CoinbaseSync(snapshot.symbol)
        self.sync.on_snapshot(snapshot)
        self.book = self.sync.book

    def apply(self, updates: Sequence[Update]) -> None:
        on_delta = self.sync.on_delta
        for delta in self._as_deltas(updates):
            on_delta(delta)

    def apply_best(self, updates: Sequence[Update]) -> None:
        on_delta = self.sync.on_delta
        book = self.book
        for delta in self._as_deltas(updates):
            on_delta(delta)
            book.best_bid  # noqa: B018
            book.best_ask  # noqa: B018

    def apply_top10(self, updates: Sequence[Update]) -> None:
        on_delta = self.sync.on_delta
        book = self.book
        for delta in self._as_deltas(updates):
            on_delta(delta)
            book.bids(10)
            book.asks(10)


class SortedDictBook:
    name = "sortedcontainers SortedDict"

    def load(self, snapshot: BookSnapshot) -> None:
        self.bids = SortedDict({p: s for p, s in snapshot.bids})
        self.asks = SortedDict({p: s for p, s in snapshot.asks})

    def apply(self, updates: Sequence[Update]) -> None:
        bids = self.bids
        asks = self.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            else:
                side.pop(p, None)

    def apply_best(self, updates: Sequence[Update]) -> None:
        bids = self.bids
        asks = self.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            else:
                side.pop(p, None)
            bids.peekitem(-1)
            asks.peekitem(0)

    def apply_top10(self, updates: Sequence[Update]) -> None:
        bids = self.bids
        asks = self.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            else:
                side.pop(p, None)
            self.top10()

    def top10(self) -> tuple[list[Any], list[Any]]:
        bid_items = self.bids.items()
        return bid_items[-1:-11:-1], self.asks.items()[:10]


class CryptofeedBook:
    name = "cryptofeed order_book (C)"
    #: Reading the best after every update re-sorts the dirty side (about 100 µs): measure that
    #: rate on the first updates only, or one run takes minutes.
    best_limit = 50_000

    def load(self, snapshot: BookSnapshot) -> None:
        self.book = order_book.OrderBook()
        for p, s in snapshot.bids:
            self.book.bids[p] = s
        for p, s in snapshot.asks:
            self.book.asks[p] = s

    def apply(self, updates: Sequence[Update]) -> None:
        bids = self.book.bids
        asks = self.book.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            elif p in side:
                del side[p]

    def apply_best(self, updates: Sequence[Update]) -> None:
        bids = self.book.bids
        asks = self.book.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            elif p in side:
                del side[p]
            bids.index(0)
            asks.index(0)

    def apply_top10(self, updates: Sequence[Update]) -> None:
        bids = self.book.bids
        asks = self.book.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            elif p in side:
                del side[p]
            self.top10()

    def top10(self) -> tuple[list[Any], list[Any]]:
        bids = self.book.bids
        asks = self.book.asks
        nb = min(10, len(bids))
        na = min(10, len(asks))
        return [bids.index(i) for i in range(nb)], [asks.index(i) for i in range(na)]


class CryptofeedDelta(CryptofeedBook, Messages):
    """cryptofeed's C book fed the same BookDelta messages as ``TickloopDelta(batch)``, level by
    level in Python, the way cryptofeed's feed handlers apply a venue message: the like-for-like
    comparison for ``apply_delta``. Best and top-10 are read after each message."""

    def __init__(self, batch: int) -> None:
        Messages.__init__(self, batch)
        self.name = f"cryptofeed order_book (C), {batch}-level BookDelta"

    def _apply(self, delta: BookDelta) -> None:
        bids = self.book.bids
        for p, s in delta.bids:
            if s:
                bids[p] = s
            elif p in bids:
                del bids[p]
        asks = self.book.asks
        for p, s in delta.asks:
            if s:
                asks[p] = s
            elif p in asks:
                del asks[p]

    def apply(self, updates: Sequence[Update]) -> None:
        bids = self.book.bids
        asks = self.book.asks
        for delta in self._as_deltas(updates):
            for p, s in delta.bids:
                if s:
                    bids[p] = s
                elif p in bids:
                    del bids[p]
            for p, s in delta.asks:
                if s:
                    asks[p] = s
                elif p in asks:
                    del asks[p]

    def apply_best(self, updates: Sequence[Update]) -> None:
        apply = self._apply
        bids = self.book.bids
        asks = self.book.asks
        for delta in self._as_deltas(updates):
            apply(delta)
            bids.index(0)
            asks.index(0)

    def apply_top10(self, updates: Sequence[Update]) -> None:
        apply = self._apply
        for delta in self._as_deltas(updates):
            apply(delta)
            self.top10()


# ----------------------------------------------------------------------------- measuring


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def measure(
    contender: Any, snapshot: BookSnapshot, updates: list[Update], top_updates: list[Update]
) -> dict[str, float]:
    prepare = getattr(contender, "prepare", None)
    out: dict[str, float] = {}
    if prepare is not None:
        prepare(updates)
    contender.load(snapshot)
    out["apply"] = len(updates) / timed(lambda: contender.apply(updates))
    limit = getattr(contender, "best_limit", None)
    best_updates = updates if limit is None else updates[:limit]
    if prepare is not None:
        prepare(best_updates)
    contender.load(snapshot)
    out["apply_best"] = len(best_updates) / timed(lambda: contender.apply_best(best_updates))
    reads = 20_000
    top10 = contender.top10
    out["top10_us"] = timed(lambda: [top10() for _ in range(reads)]) / reads * 1e6
    if prepare is not None:
        prepare(top_updates)
    contender.load(snapshot)
    out["apply_top10_us"] = (
        timed(lambda: contender.apply_top10(top_updates)) / len(top_updates) * 1e6
    )
    return out


def check_agree(contenders: Sequence[Any], snapshot: BookSnapshot, updates: list[Update]) -> None:
    """Every contender must end with the same top of book, or the figures mean nothing."""
    tops = []
    for c in contenders:
        prepare = getattr(c, "prepare", None)
        if prepare is not None:
            prepare(updates)
        c.load(snapshot)
        c.apply(updates)
        bids, asks = c.top10()
        tops.append(([tuple(x) for x in bids], [tuple(x) for x in asks]))
    for c, top in zip(contenders[1:], tops[1:], strict=True):
        if top != tops[0]:
            raise SystemExit(f"{c.name} disagrees with {contenders[0].name}")


# ----------------------------------------------------------------------------- apply limits


class _NoOp:
    """The per-level call and nothing else."""

    def update_bid(self, price: Decimal, size: Decimal) -> None:
        pass

    def update_ask(self, price: Decimal, size: Decimal) -> None:
        pass


class _DictOnly:
    """The per-level call and the dict store or delete, no best price and no order: the floor
    of any pure-Python book with a per-level method."""

    def __init__(self, snapshot: BookSnapshot) -> None:
        self.bids = dict(snapshot.bids)
        self.asks = dict(snapshot.asks)

    def update_bid(self, price: Decimal, size: Decimal) -> None:
        if size:
            self.bids[price] = size
        else:
            self.bids.pop(price, None)

    def update_ask(self, price: Decimal, size: Decimal) -> None:
        if size:
            self.asks[price] = size
        else:
            self.asks.pop(price, None)


def _per_level(target: Any, updates: Sequence[Update]) -> None:
    ub = target.update_bid
    ua = target.update_ask
    for is_bid, p, s in updates:
        if is_bid:
            ub(p, s)
        else:
            ua(p, s)


def limits_table(snapshot: BookSnapshot, updates: list[Update], repeat: int) -> Table:
    """Where the per-level apply time goes (ns a level, median of ``repeat``). The time spent
    finding next bests is measured on the pure-Python class (a compiled class's methods cannot
    be wrapped)."""
    spent = [0.0]
    pure = PureOrderBook
    next_bid = pure._next_bid
    next_ask = pure._next_ask

    def timed_next_bid(book: OrderBook) -> Decimal | None:
        start = time.perf_counter()
        try:
            return next_bid(book)
        finally:
            spent[0] += time.perf_counter() - start

    def timed_next_ask(book: OrderBook) -> Decimal | None:
        start = time.perf_counter()
        try:
            return next_ask(book)
        finally:
            spent[0] += time.perf_counter() - start

    cf = CryptofeedBook()
    rows: dict[str, list[float]] = {
        "loop + a method call that does nothing": [],
        "loop + a method that only stores/deletes in a dict (the pure-Python floor)": [],
        "tickloop update_bid/update_ask, pure Python": [],
        "  of which finding the next best after a deleted best": [],
    }
    if NATIVE:
        rows["tickloop update_bid/update_ask, compiled"] = []
    rows["cryptofeed C book (loop + C setitem)"] = []
    n = len(updates)
    for _ in range(repeat):
        values = iter(rows.values())
        next(values).append(timed(partial(_per_level, _NoOp(), updates)) / n * 1e9)
        run = partial(_per_level, _DictOnly(snapshot), updates)
        next(values).append(timed(run) / n * 1e9)
        run = partial(_per_level, pure.from_snapshot(snapshot), updates)
        next(values).append(timed(run) / n * 1e9)
        spent[0] = 0.0
        pure._next_bid = timed_next_bid  # type: ignore[method-assign,assignment]
        pure._next_ask = timed_next_ask  # type: ignore[method-assign,assignment]
        try:
            timed(partial(_per_level, pure.from_snapshot(snapshot), updates))
        finally:
            pure._next_bid = next_bid  # type: ignore[method-assign]
            pure._next_ask = next_ask  # type: ignore[method-assign]
        next(values).append(spent[0] / n * 1e9)
        if NATIVE:
            run = partial(_per_level, OrderBook.from_snapshot(snapshot), updates)
            next(values).append(timed(run) / n * 1e9)
        cf.load(snapshot)
        next(values).append(timed(lambda: cf.apply(updates)) / n * 1e9)
    table = Table(title="What limits apply alone (per level, no reads)")
    table.add_column("path")
    table.add_column("ns/level", justify="right")
    table.add_column("levels/s", justify="right")
    for name, ns_values in rows.items():
        ns = statistics.median(ns_values)
        table.add_row(name, f"{ns:.0f}", f"{1e3 / ns:.2f}M" if "of which" not in name else "")
    return table


# ----------------------------------------------------------------------------- checksum path

BookMessage = BookSnapshot | BookDelta
ChecksumFnT = Callable[[Sequence[tuple[str, str]], Sequence[tuple[str, str]]], int]
#: The recorded sessions the tests replay (tests/data/README.md).
RECORDED_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "cryptofeed"


def sim_stream(n_updates: int, seed: int) -> list[BookMessage]:
    """A snapshot and ``n_updates`` book updates of the embedded exchange, as a client gets them.

    The exchange is not started: its flow is stepped in this process, and its hub's broadcast
    (which would queue the frame to subscribers) is replaced by a list, so the frames are
    exactly those the server sends (one JSON object each, checksum included)."""
    symbol = "BTC-USD"
    ex = SimExchange(seed=seed, symbols=[symbol], rate=0)
    hub = ex._hub
    frames: list[bytes] = []
    hub._subs[("book", symbol, None)] = set()
    hub.broadcast = lambda key, message: frames.append(msgspec.json.encode(message))  # type: ignore[method-assign]
    first = msgspec.json.encode(hub.snapshot_message(symbol))
    while len(frames) < n_updates:
        ex.step(symbol)
    codec = SimCodec()
    out: list[BookMessage] = []
    for frame in [first, *frames[:n_updates]]:
        out.extend(m for m in codec.decode(frame, 0) if isinstance(m, BookSnapshot | BookDelta))
    return out


def kraken_stream() -> list[BookMessage]:
    """The recorded Kraken session's book messages, decoded by the Kraken codec."""
    path = RECORDED_DATA / "KRAKEN.ws.50.0"
    codec = KrakenCodec()
    out: list[BookMessage] = []
    for rec in read_recording(path):
        if rec.direction is Direction.RECEIVED:
            out.extend(
                m
                for m in codec.decode(rec.frame, rec.ts)
                if isinstance(m, BookSnapshot | BookDelta)
            )
    return out


def run_sync(make: Callable[[str], BookSync], messages: Sequence[BookMessage]) -> int:
    """The synchroniser path; returns the deltas applied (all of them, or it raises)."""
    syncs: dict[str, BookSync] = {}
    for msg in messages:
        sync = syncs.get(msg.symbol)
        if sync is None:
            sync = syncs[msg.symbol] = make(msg.symbol)
        sync.on_update(msg)
    applied = sum(s.applied for s in syncs.values())
    bad = {k: v for s in syncs.values() for k, v in s.invalidations.items()}
    if bad:
        raise SystemExit(f"synchroniser refused updates: {bad}")
    return applied


def run_reference(fn: ChecksumFnT, depth: int | None, messages: Sequence[BookMessage]) -> int:
    """apply_delta then ``book.checksum(fn, 10)`` after every update (the path before)."""
    books: dict[str, OrderBook] = {}
    n = 0
    for msg in messages:
        if type(msg) is BookSnapshot:
            books[msg.symbol] = OrderBook.from_snapshot(msg, depth=depth)
            continue
        book = books[msg.symbol]
        book.apply_delta(msg)  # type: ignore[arg-type]
        if msg.checksum is not None and book.checksum(fn, 10) != msg.checksum:
            raise SystemExit("reference path: checksum mismatch")
        n += 1
    return n


def run_sorteddict(fn: ChecksumFnT, depth: int | None, messages: Sequence[BookMessage]) -> int:
    """The straightforward way: a SortedDict a side, top 10 formatted after every update."""
    books: dict[str, tuple[SortedDict, SortedDict]] = {}
    n = 0
    for msg in messages:
        if type(msg) is BookSnapshot:
            bids = SortedDict({p: s for p, s in msg.bids if s})
            asks = SortedDict({p: s for p, s in msg.asks if s})
            books[msg.symbol] = (bids, asks)
        else:
            bids, asks = books[msg.symbol]
            for side, levels in ((bids, msg.bids), (asks, msg.asks)):
                for p, s in levels:
                    if s:
                        side[p] = s
                    else:
                        side.pop(p, None)
            n += 1
        if depth is not None:
            while len(bids) > depth:
                bids.popitem(0)
            while len(asks) > depth:
                asks.popitem(-1)
        if msg.checksum is None:
            continue
        top_b = [(decimal_text(p), decimal_text(s)) for p, s in bids.items()[-1:-11:-1]]
        top_a = [(decimal_text(p), decimal_text(s)) for p, s in asks.items()[:10]]
        if fn(top_b, top_a) != msg.checksum:
            raise SystemExit("SortedDict baseline: checksum mismatch")
    return n


def timed_count(fn: Callable[[], int]) -> tuple[float, int]:
    result: list[int] = []
    seconds = timed(lambda: result.append(fn()))
    return seconds, result[0]


def checksum_rows(
    quick: bool, repeat: int, seed: int, kraken_rounds: int
) -> list[tuple[str, str, float]]:
    """(stream, contender, µs per update), median of ``repeat`` alternating runs."""
    sim = sim_stream(20_000 if quick else 100_000, seed)
    kraken = kraken_stream() * kraken_rounds
    streams: list[tuple[str, list[BookMessage], list[tuple[str, Callable[[], int]]]]] = [
        (
            f"sim ({len(sim) - 1:,} updates)",
            sim,
            [
                ("tickloop SimSync.on_update", lambda: run_sync(SimSync, sim)),
                (
                    "reference: apply_delta + book.checksum(sim_checksum)",
                    lambda: run_reference(sim_checksum, None, sim),
                ),
                (
                    "SortedDict + decimal_text + sim_checksum",
                    lambda: run_sorteddict(sim_checksum, None, sim),
                ),
            ],
        ),
        (
            f"Kraken recorded, depth 1000 ({kraken_rounds} x 4,269 updates)",
            kraken,
            [
                (
                    "tickloop KrakenSync.on_update",
                    lambda: run_sync(lambda s: KrakenSync(s, depth=1000), kraken),
                ),
                (
                    "reference: apply_delta + book.checksum(kraken_checksum)",
                    lambda: run_reference(kraken_checksum, 1000, kraken),
                ),
                (
                    "SortedDict + decimal_text + kraken_checksum",
                    lambda: run_sorteddict(kraken_checksum, 1000, kraken),
                ),
            ],
        ),
    ]
    rows: list[tuple[str, str, float]] = []
    for stream, _, contenders in streams:
        times: dict[str, list[float]] = {name: [] for name, _ in contenders}
        counts: dict[str, int] = {}
        for _ in range(repeat):
            for name, fn in contenders:
                seconds, counts[name] = timed_count(fn)
                times[name].append(seconds)
        for name, _ in contenders:
            rows.append((stream, name, statistics.median(times[name]) / counts[name] * 1e6))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k updates instead of 1M")
    parser.add_argument("--updates", type=int, default=None)
    parser.add_argument("--levels", type=int, default=1_500, help="levels per side")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=["book", "checksum"], default=None)
    parser.add_argument(
        "--kraken-rounds",
        type=int,
        default=None,
        help="replays of the Kraken recording (10; 3 quick)",
    )
    args = parser.parse_args(argv)
    console = Console(width=200)
    if args.only != "checksum":
        book_tables(args, console)
    if args.only != "book":
        rounds = args.kraken_rounds or (3 if args.quick else 10)
        table = Table(title="Apply + checksum verify per update (every checksum checked)")
        table.add_column("stream")
        table.add_column("path")
        table.add_column("µs/update", justify="right")
        table.add_column("vs reference", justify="right")
        rows = checksum_rows(args.quick, args.repeat, args.seed, rounds)
        reference = {stream: us for stream, name, us in rows if name.startswith("reference")}
        for stream, name, us in rows:
            table.add_row(stream, name, f"{us:.2f}", f"{reference[stream] / us:.2f}x")
        console.print(table)
    console.print(
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )


def churn_table(n: int, levels: int, seed: int, repeat: int) -> Table:
    """Apply alone on :func:`top_churn`'s stream (levels/s, median of ``repeat``)."""
    snapshot, updates = top_churn(min(n, 300_000), levels, seed)
    contenders: list[Any] = [Tickloop(), TickloopDelta(10)]
    if NATIVE:
        contenders.append(Tickloop(PureOrderBook))
    contenders += [SortedDictBook(), CryptofeedBook()]
    check_agree(contenders, snapshot, updates[:20_000])
    rates: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(repeat):
        for c in contenders:
            if isinstance(c, TickloopDelta):
                c.prepare(updates)
            c.load(snapshot)
            rates[c.name].append(len(updates) / timed(partial(c.apply, updates)))
    cf = statistics.median(rates[CryptofeedBook.name])
    table = Table(
        title=f"Apply alone with the best deleted every 20 updates, the rest anywhere "
        f"({len(updates):,} updates, ~{levels:,} levels a side, no reads)"
    )
    table.add_column("structure")
    table.add_column("apply (levels/s)", justify="right")
    table.add_column("vs cryptofeed C", justify="right")
    for name, values in rates.items():
        rate = statistics.median(values)
        table.add_row(name, f"{rate / 1e6:.2f}M", f"{rate / cf:.2f}x")
    return table


def book_tables(args: argparse.Namespace, console: Console) -> None:
    n = args.updates or (100_000 if args.quick else 1_000_000)
    engine = "compiled by mypyc" if NATIVE else "pure Python (no compiled copy)"
    console.print(
        f"[bold]L2 book[/] {n:,} updates, ~{args.levels:,} levels a side, 20% deletes, "
        f"seed {args.seed}; Python {platform.python_version()}, median of {args.repeat}; "
        f"OrderBook {engine}"
    )
    snapshot, updates = workload(n, args.levels, args.seed)
    top_updates = updates[: min(n, 50_000)]
    contenders: list[Any] = [Tickloop(), TickloopDelta(1), TickloopDelta(10)]
    if NATIVE:
        contenders += [Tickloop(PureOrderBook), TickloopDelta(1, PureOrderBook)]
        contenders += [TickloopDelta(10, PureOrderBook)]
    contenders += [
        TickloopSync(),
        SortedDictBook(),
        CryptofeedBook(),
        CryptofeedDelta(1),
        CryptofeedDelta(10),
    ]
    check_agree(contenders, snapshot, updates[:20_000])

    runs: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    for _ in range(args.repeat):  # alternate contenders so drift hits all of them alike
        for c in contenders:
            runs[c.name].append(measure(c, snapshot, updates, top_updates))
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }

    table = Table(title="Local L2 book")
    table.add_column("structure")
    table.add_column("apply (updates/s)", justify="right")
    table.add_column("apply + best bid/ask read (updates/s)", justify="right")
    table.add_column("top-10 read, unchanged (µs)", justify="right")
    table.add_column("apply + top-10 read (µs/update)", justify="right")
    for name, m in med.items():
        table.add_row(
            name,
            f"{m['apply'] / 1e6:.2f}M",
            f"{m['apply_best'] / 1e6:.2f}M",
            f"{m['top10_us']:.2f}",
            f"{m['apply_top10_us']:.2f}",
        )
    console.print(table)

    sd = med[SortedDictBook.name]
    cf = med[CryptofeedBook.name]
    ratios = Table(title="Ratios: tickloop / other (higher is better for tickloop)")
    ratios.add_column("tickloop path")
    ratios.add_column("apply vs SortedDict", justify="right")
    ratios.add_column("apply vs cryptofeed C (its per-level loop)", justify="right")
    ratios.add_column("apply vs cryptofeed C (same messages)", justify="right")
    ratios.add_column("apply + best vs SortedDict", justify="right")
    ratios.add_column("apply + best vs cryptofeed C", justify="right")
    for c in contenders:
        if not isinstance(c, Tickloop):
            continue
        m = med[c.name]
        batch = getattr(c, "batch", None)
        same = med.get(CryptofeedDelta(batch).name) if batch is not None else None
        ratios.add_row(
            c.name,
            f"{m['apply'] / sd['apply']:.2f}x",
            f"{m['apply'] / cf['apply']:.2f}x",
            f"{m['apply'] / same['apply']:.2f}x" if same is not None else "",
            f"{m['apply_best'] / sd['apply_best']:.2f}x",
            f"{m['apply_best'] / cf['apply_best']:.0f}x",
        )
    console.print(ratios)
    console.print(limits_table(snapshot, updates, args.repeat))
    console.print(churn_table(n, args.levels, args.seed, args.repeat))
    console.print(
        "Rates are levels per second. The BookDelta rows read the best price (or the top 10) "
        "after each message, the other rows after each level."
    )


if __name__ == "__main__":
    main()
