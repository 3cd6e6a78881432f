"""Book synchronisers: one sans-I/O state machine per symbol that keeps an OrderBook right.

Theory of operation. A synchroniser is fed everything the venue says about one symbol's book
(stream snapshots and deltas through :meth:`BookSync.on_update`, REST snapshots through
:meth:`BookSync.on_snapshot`, lost connections through :meth:`BookSync.on_disconnect`) and
answers each call with a tuple of *actions* for the I/O shell:

* :class:`Apply` - the book changed and is valid: publish it (conflate as you like);
* :class:`NeedSnapshot` - fetch a REST snapshot and pass it to ``on_snapshot``, or resubscribe
  (``via`` says which the venue wants); ask once, it is not repeated while outstanding;
* :class:`Emit` - publish a status event (:class:`~tickloop.models.BookInvalid` /
  :class:`~tickloop.models.BookValid`).

It never does I/O, never reads a clock (event timestamps come from the messages or the
caller) and never imports asyncio, so every rule below is tested on recorded real data.

States (:class:`SyncState`) and the transition table ``_TRANSITIONS``:

* ``WAITING`` - no trustworthy book: waiting for a snapshot. Deltas of sequenced venues
  (Binance, sim) are buffered (bounded, oldest dropped) to be replayed on top of it; deltas of
  unsequenced venues (Coinbase, Kraken) are dropped, since the next snapshot supersedes them.
* ``BRIDGING`` - Binance only: the REST snapshot is loaded and the next delta must straddle it
  (``U <= lastUpdateId + 1 <= u``).
* ``LIVE`` - every delta is checked (sequence continuity, checksum, crossed book) and applied.

On a gap, a checksum mismatch or a crossed/locked book: exactly one ``BookInvalid`` is emitted,
``book.valid`` turns False (a reader holding that book sees it), one ``NeedSnapshot`` is asked,
deltas are buffered, and the next good snapshot builds a *new* OrderBook off to the side; only
when it and the buffered deltas check out is it swapped in (``sync.book`` and the ``Apply``
actions point at it) and ``BookValid`` emitted. A consumer is never handed a book known to be
wrong.
"""

from __future__ import annotations

import abc
import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar
from zlib import crc32

from ..checksums import decimal_text, kraken_checksum, sim_checksum
from ..exceptions import BookError, ConfigError
from ..models import BookDelta, BookInvalid, BookSnapshot, BookValid, Side
from .engine import OrderBook

__all__ = [
    "Action",
    "Apply",
    "BinanceSync",
    "BookSync",
    "CoinbaseSync",
    "Emit",
    "KrakenSync",
    "NeedSnapshot",
    "SimSync",
    "SnapshotVia",
    "SyncState",
    "make_sync",
]


class SyncState(enum.Enum):
    WAITING = "waiting"
    BRIDGING = "bridging"
    LIVE = "live"


class _Input(enum.Enum):
    SYNCED = "synced"  # a snapshot (plus buffered deltas) gave a good book
    SYNCED_UNBRIDGED = "synced_unbridged"  # Binance snapshot with no bridging delta yet
    BRIDGED = "bridged"  # the first delta after a Binance snapshot straddled it
    INVALIDATED = "invalidated"  # gap, checksum, crossed, disconnected


S = SyncState
_TRANSITIONS: dict[tuple[SyncState, _Input], SyncState] = {
    (S.WAITING, _Input.SYNCED): S.LIVE,
    (S.WAITING, _Input.SYNCED_UNBRIDGED): S.BRIDGING,
    (S.BRIDGING, _Input.SYNCED): S.LIVE,
    (S.BRIDGING, _Input.SYNCED_UNBRIDGED): S.BRIDGING,
    (S.BRIDGING, _Input.BRIDGED): S.LIVE,
    (S.BRIDGING, _Input.INVALIDATED): S.WAITING,
    (S.LIVE, _Input.SYNCED): S.LIVE,
    (S.LIVE, _Input.SYNCED_UNBRIDGED): S.BRIDGING,
    (S.LIVE, _Input.INVALIDATED): S.WAITING,
}
del S
_WAITING = SyncState.WAITING
_BRIDGING = SyncState.BRIDGING
_LIVE = SyncState.LIVE
_BUY = Side.BUY
_SELL = Side.SELL


class SnapshotVia(enum.Enum):
    REST = "rest"  # GET the venue's REST book snapshot, pass it to on_snapshot
    SUBSCRIBE = "subscribe"  # (re)subscribe: the venue sends a snapshot on the stream


class _Verdict(enum.Enum):
    APPLY = "apply"
    STALE = "stale"  # already reflected in the book: drop
    GAP = "gap"  # something is missing between the book and this delta


_APPLY = _Verdict.APPLY
_STALE = _Verdict.STALE


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class Apply:
    """The book changed and is valid: publish ``book`` (the same object until a resync)."""

    book: OrderBook


@dataclass(frozen=True, slots=True)
class NeedSnapshot:
    """The shell must get a fresh snapshot of ``symbol`` (``via``), at ``depth`` levels where
    the venue takes a depth, and hand it to :meth:`BookSync.on_snapshot` / ``on_update``."""

    symbol: str
    reason: str  # "initial", "gap", "checksum", "crossed", "stale_snapshot", ...
    via: SnapshotVia
    depth: int | None = None


@dataclass(frozen=True, slots=True)
class Emit:
    """Publish a status event on the stream. The streaming client counts it (``book_invalid`` /
    ``book_valid`` in ``feed.stats()``), which the server exports on /metrics as
    ``tickloop_book_invalidations_total`` / ``tickloop_book_validations_total``."""

    event: BookInvalid | BookValid


Action = Apply | NeedSnapshot | Emit

_NOTHING: tuple[Action, ...] = ()


# ------------------------------------------------------------------------------ base machine


class BookSync:
    """Keeps one symbol's OrderBook in sync with a venue. Subclasses set the venue's rules."""

    venue: ClassVar[str] = ""
    #: How this venue's snapshots are obtained after a gap.
    snapshot_via: ClassVar[SnapshotVia] = SnapshotVia.SUBSCRIBE
    #: Whether the initial snapshot must be asked for (REST), or comes with the subscription.
    initial_snapshot: ClassVar[bool] = False
    #: Whether deltas carry sequence numbers, so that buffering them while waiting is useful.
    buffers: ClassVar[bool] = False
    #: Whether the venue's book is depth-limited, so the local book truncates to ``depth``.
    truncates: ClassVar[bool] = False
    #: Whether the first delta after a snapshot follows a looser rule (Binance).
    bridges: ClassVar[bool] = False
    #: Whether deltas are judged by ``_sequence_verdict`` (venues with sequence numbers).
    sequenced: ClassVar[bool] = False
    #: Whether updates carry a checksum that ``_check_book`` verifies.
    checksummed: ClassVar[bool] = False

    def __init__(
        self,
        symbol: str,
        *,
        depth: int | None = None,
        max_buffer: int = 10_000,
        venue: str | None = None,
    ) -> None:
        if max_buffer < 1:
            raise ConfigError("max_buffer must be >= 1", field="max_buffer")
        if depth is not None and depth < 1:
            raise ConfigError("depth must be >= 1 or None", field="depth")
        self.symbol = symbol
        self.venue_name = venue or self.venue
        self.depth = depth
        self.state = SyncState.WAITING
        self.book = OrderBook(self.venue_name, symbol, depth=self._book_depth())
        self._applied: tuple[Action, ...] = (Apply(self.book),)
        self._buffer: deque[BookDelta] = deque(maxlen=max_buffer)
        self._snapshot_pending = False
        # counters, in feed.stats()["books"] and on the server's /metrics (but rechecks)
        self.applied = 0  # deltas applied
        self.stale = 0  # deltas dropped as already reflected
        self.overflowed = 0  # buffered deltas dropped because the buffer was full
        self.invalidations: dict[str, int] = {}  # reason -> count
        self.resyncs = 0  # books rebuilt after an invalidation
        self._recovering = False

    def _book_depth(self) -> int | None:
        return self.depth if self.truncates else None

    @property
    def valid(self) -> bool:
        return self.state is not SyncState.WAITING and self.book.valid

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _move(self, event: _Input) -> None:
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise BookError(
                f"illegal book transition {self.state.value} --{event.value}-->",
                symbol=self.symbol,
                venue=self.venue_name,
            ) from None

    def _need(self, reason: str) -> tuple[Action, ...]:
        if self._snapshot_pending:
            return _NOTHING
        self._snapshot_pending = True
        return (NeedSnapshot(self.symbol, reason, self.snapshot_via, self.depth),)

    # -------------------------------------------------------------- inputs from the shell

    def start(self) -> tuple[Action, ...]:
        """Call once subscribed (and again after every reconnect and resubscribe)."""
        if self.initial_snapshot and self.state is SyncState.WAITING:
            return self._need("initial")
        return _NOTHING

    def on_update(self, message: BookSnapshot | BookDelta) -> tuple[Action, ...]:
        """A book message from the stream."""
        if type(message) is BookDelta:
            return self.on_delta(message)
        if isinstance(message, BookSnapshot):
            return self.on_snapshot(message)
        return self.on_delta(message)

    def on_disconnect(self, ts: int) -> tuple[Action, ...]:
        """The stream carrying this book was lost: the book can no longer be trusted."""
        self._buffer.clear()
        self._snapshot_pending = False
        if self.state is SyncState.WAITING:
            return _NOTHING
        return self._invalidate("disconnected", self.book.sequence, ts, ask=False)

    def on_malformed(self, ts: int) -> tuple[Action, ...]:
        """A message of this book arrived but could not be used (a bad number, a broken level
        array): whatever it changed is unknown, so the book is invalid until a new snapshot."""
        if self.state is SyncState.WAITING:
            # Deltas held for a snapshot no longer chain: drop them, the snapshot starts afresh.
            self._buffer.clear()
            return _NOTHING
        return self._invalidate("malformed", self.book.sequence, ts)

    def on_snapshot_failed(self) -> tuple[Action, ...]:
        """The snapshot a NeedSnapshot asked for could not be had (the shell gave up on that
        request): ask again. The shell waits (its backoff) before acting on the answer."""
        if self.state is not _WAITING and not self._snapshot_pending:
            return _NOTHING
        self._snapshot_pending = False
        return self._need("retry")

    def on_snapshot(self, snapshot: BookSnapshot) -> tuple[Action, ...]:
        """A snapshot, from the stream or from the REST request a NeedSnapshot asked for."""
        if snapshot.symbol != self.symbol:
            raise BookError(
                f"snapshot of {snapshot.symbol!r} given to the {self.symbol!r} book",
                symbol=self.symbol,
                venue=self.venue_name,
            )
        self._snapshot_pending = False
        ts = snapshot.recv_ts or snapshot.ts
        if (
            self.state is not SyncState.WAITING
            and snapshot.sequence is not None
            and self.book.sequence is not None
            and snapshot.sequence <= self.book.sequence
        ):
            return _NOTHING  # older than the live book (a late answer): keep the live book
        new = OrderBook(self.venue_name, self.symbol, depth=self._book_depth())
        new.apply_snapshot(snapshot)
        new.valid = False  # not valid until it has checked out and been swapped in
        reason = self._check_snapshot(new, snapshot)
        if reason is not None:
            return self._reject_snapshot(reason, snapshot.sequence, ts)

        first = True
        replay = list(self._buffer)
        self._buffer.clear()
        for i, delta in enumerate(replay):
            verdict = self._sequence_verdict(delta, new, first)
            if verdict is _Verdict.STALE:
                continue
            if verdict is _Verdict.GAP:
                # The buffered stream does not connect to this snapshot: keep what is newer
                # than it and try another snapshot.
                self._buffer.extend(replay[i:])
                return self._reject_snapshot(
                    "stale_snapshot" if first else "gap", delta.sequence, ts
                )
            new.apply_delta(delta)
            reason = self._check_book(new, delta)
            if reason is not None:
                self._buffer.extend(replay[i + 1 :])
                return self._reject_snapshot(reason, delta.sequence, ts)
            first = False
            self.applied += 1

        was_waiting = self.state is SyncState.WAITING
        self._move(_Input.SYNCED_UNBRIDGED if first and self.bridges else _Input.SYNCED)
        new.valid = True
        old = self.book
        self.book = new
        self._applied = (Apply(new),)
        if not was_waiting:
            old.valid = False  # replaced: whoever still holds it should stop using it
            return self._applied
        if self._recovering:
            self._recovering = False
            self.resyncs += 1
        valid = BookValid(venue=self.venue_name, symbol=self.symbol, sequence=new.sequence, ts=ts)
        return (Emit(valid), self._applied[0])

    def _reject_snapshot(self, reason: str, sequence: int | None, ts: int) -> tuple[Action, ...]:
        if self.state is SyncState.WAITING:
            return self._need(reason)
        return self._invalidate(reason, sequence, ts)

    def on_delta(self, delta: BookDelta) -> tuple[Action, ...]:
        """A delta from the stream (what ``on_update`` does for a delta, one call less)."""
        state = self.state
        if state is _WAITING:
            if self.buffers:
                if len(self._buffer) == self._buffer.maxlen:
                    self.overflowed += 1
                self._buffer.append(delta)
            return _NOTHING
        book = self.book
        if self.sequenced:
            verdict = self._sequence_verdict(delta, book, state is _BRIDGING)
            if verdict is not _APPLY:
                if verdict is _STALE:
                    self.stale += 1
                    return _NOTHING
                actions = self._invalidate("gap", delta.sequence, delta.recv_ts or delta.ts)
                if self.buffers:
                    self._buffer.append(delta)  # it may be needed on top of the next snapshot
                return actions
        book.apply_delta(delta)
        if self.checksummed:
            reason = self._check_book(book, delta)
            if reason is not None:
                return self._invalidate(reason, delta.sequence, delta.recv_ts or delta.ts)
        else:  # _check_book's crossed test, inlined: this is the per-message hot path
            bid = book.best_bid
            if bid is not None:
                ask = book.best_ask
                if ask is not None and bid >= ask:
                    return self._invalidate("crossed", delta.sequence, delta.recv_ts or delta.ts)
        if state is _BRIDGING:
            self._move(_Input.BRIDGED)
        self.applied += 1
        return self._applied

    def _invalidate(
        self, reason: str, sequence: int | None, ts: int, *, ask: bool = True
    ) -> tuple[Action, ...]:
        self.book.valid = False
        self._move(_Input.INVALIDATED)
        self._recovering = True
        self._buffer.clear()
        self.invalidations[reason] = self.invalidations.get(reason, 0) + 1
        event = BookInvalid(
            venue=self.venue_name, symbol=self.symbol, reason=reason, sequence=sequence, ts=ts
        )
        if not ask:
            return (Emit(event),)
        return (Emit(event), *self._need(reason))

    # -------------------------------------------------------------- venue rules

    def _sequence_verdict(self, delta: BookDelta, book: OrderBook, first: bool) -> _Verdict:
        """Whether ``delta`` follows ``book`` (``first``: the first delta after a snapshot)."""
        return _Verdict.APPLY

    def _check_book(self, book: OrderBook, update: BookDelta | BookSnapshot) -> str | None:
        """Why ``book`` is wrong after applying ``update`` (None when it is fine)."""
        bid = book.best_bid
        ask = book.best_ask
        if bid is not None and ask is not None and bid >= ask:
            return "crossed"
        return None

    def _check_snapshot(self, book: OrderBook, snapshot: BookSnapshot) -> str | None:
        return self._check_book(book, snapshot)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.symbol!r}, state={self.state.value}, "
            f"buffered={len(self._buffer)}, book={self.book!r})"
        )


class _ChecksumSync(BookSync, abc.ABC):
    """A venue whose updates carry a checksum of the book after them.

    The check runs after every update, so it is built to be cheap: the book hands over each top
    level's venue text from a memo (:meth:`OrderBook.top_texts`, formatting only levels whose
    price or size object changed) and :meth:`_combine` joins and hashes them. It computes
    exactly what the venue's function in :mod:`tickloop.checksums` (``_checksum``) computes from
    ``book.checksum_levels``; the tests hold the two equal.
    """

    checksummed = True
    #: How many levels a side the venue's checksum reads.
    checksum_depth: ClassVar[int] = 10

    @staticmethod
    @abc.abstractmethod
    def _checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
        """The venue's checksum of the top levels (see :mod:`tickloop.checksums`)."""

    @staticmethod
    @abc.abstractmethod
    def _level_text(price: Decimal, size: Decimal) -> str:
        """The venue's text of one level inside its checksum string."""

    @staticmethod
    @abc.abstractmethod
    def _combine(bid_texts: list[str], ask_texts: list[str]) -> int:
        """The checksum from the top levels' texts (best first), as ``_checksum`` gives it."""

    def __init__(
        self,
        symbol: str,
        *,
        depth: int | None = None,
        max_buffer: int = 10_000,
        venue: str | None = None,
    ) -> None:
        super().__init__(symbol, depth=depth, max_buffer=max_buffer, venue=venue)
        # The top levels' texts of the last checksum computed, per side, with the price of the
        # side's checksum_depth-th level then (None: fewer levels, so any change counts) and
        # whether a delta applied since then touched the side at or better than that price.
        self._sum_book: OrderBook | None = None
        self._bid_texts: list[str] = []
        self._ask_texts: list[str] = []
        self._bid_floor: Decimal | None = None
        self._ask_floor: Decimal | None = None
        self._bid_stale = True
        self._ask_stale = True
        # The checksum of _bid_texts and _ask_texts (None: not computed since they were made):
        # an update that changes neither side's top levels has the same checksum as the last.
        self._sum: int | None = None
        #: Mismatches that the texts kept between updates gave but a computation from scratch
        #: did not (the book was changed behind the synchroniser's back): expected to stay 0.
        self.rechecks = 0

    def book_checksum(self, book: OrderBook | None = None) -> int:
        """The venue checksum of ``book`` (default: this synchroniser's book), from scratch."""
        book = self.book if book is None else book
        return self._combine(*book.top_texts(self.checksum_depth, self._level_text))

    def _check_book(self, book: OrderBook, update: BookDelta | BookSnapshot) -> str | None:
        # Only the sides a delta touched inside the top checksum_depth levels are made again:
        # a level strictly worse than the checksum_depth-th (added, resized or deleted) cannot
        # change the top. Every delta applied to the book goes through here, so the marks
        # cover them all; any other book, or a snapshot, starts from scratch.
        if book is self._sum_book and type(update) is BookDelta:
            if not self._bid_stale and update.bids:
                floor = self._bid_floor
                if floor is None:
                    self._bid_stale = True
                else:
                    for price, _ in update.bids:
                        if price >= floor:
                            self._bid_stale = True
                            break
            if not self._ask_stale and update.asks:
                floor = self._ask_floor
                if floor is None:
                    self._ask_stale = True
                else:
                    for price, _ in update.asks:
                        if price <= floor:
                            self._ask_stale = True
                            break
        else:
            self._sum_book = book
            self._bid_stale = self._ask_stale = True
            self._sum = None
        expected = update.checksum
        if expected is not None:
            total = self._sum
            if self._bid_stale:
                self._bid_texts, self._bid_floor = book.side_texts(
                    _BUY, self.checksum_depth, self._level_text
                )
                self._bid_stale = False
                total = None
            if self._ask_stale:
                self._ask_texts, self._ask_floor = book.side_texts(
                    _SELL, self.checksum_depth, self._level_text
                )
                self._ask_stale = False
                total = None
            if total is None:  # a side's texts were made again: so is their checksum
                total = self._sum = self._combine(self._bid_texts, self._ask_texts)
            if total != expected:
                # Before calling the book wrong, make sure it is not the marks: from scratch.
                self._sum_book = None
                self._sum = None
                if self.book_checksum(book) != expected:
                    return "checksum"
                self.rechecks += 1
        bid = book.best_bid  # BookSync._check_book's crossed test, inlined (hot path)
        ask = book.best_ask
        if bid is not None and ask is not None and bid >= ask:
            return "crossed"
        return None


def _plain(value: Decimal) -> str:
    """``decimal_text(value)``, about three times faster where ``str`` already gives plain
    notation (it writes an exponent only for very small or positive exponents; ``e`` when the
    context says ``capitals=0``)."""
    text = str(value)
    return decimal_text(value) if "E" in text or "e" in text else text


def _kraken_digits(value: Decimal) -> str:
    return _plain(value).replace(".", "").lstrip("0")


# ------------------------------------------------------------------------------ venues


class BinanceSync(BookSync):
    """Binance spot diff depth: buffer diffs, GET /api/v3/depth, drop ``u <= lastUpdateId``,
    the first applied diff straddles it (``U <= L + 1 <= u``), then ``U == previous u + 1``.
    (BookDelta: ``first_sequence`` = U, ``sequence`` = u; BookSnapshot ``sequence`` = L.)"""

    venue = "binance"
    snapshot_via = SnapshotVia.REST
    initial_snapshot = True
    buffers = True
    bridges = True
    sequenced = True

    def on_delta(self, delta: BookDelta) -> tuple[Action, ...]:
        # Fast path for the common case (live, the diff follows the last one, the book stays
        # uncrossed), about a third cheaper than the general path; everything else goes there.
        if self.state is _LIVE:
            book = self.book
            last = book.sequence
            u = delta.sequence
            if last is not None and u is not None and u > last and delta.first_sequence == last + 1:
                book.apply_delta(delta)
                bid = book.best_bid
                ask = book.best_ask
                if bid is None or ask is None or bid < ask:
                    self.applied += 1
                    return self._applied
                return self._invalidate("crossed", u, delta.recv_ts or delta.ts)
        return super().on_delta(delta)

    def _sequence_verdict(self, delta: BookDelta, book: OrderBook, first: bool) -> _Verdict:
        last = book.sequence
        u = delta.sequence
        if last is None or u is None:
            return _Verdict.GAP
        if u <= last:
            return _Verdict.STALE
        first_u = delta.first_sequence if delta.first_sequence is not None else u
        if first:
            return _Verdict.APPLY if first_u <= last + 1 else _Verdict.GAP
        return _Verdict.APPLY if first_u == last + 1 else _Verdict.GAP


class CoinbaseSync(BookSync):
    """Coinbase level2: a snapshot on subscribe, then l2updates with no sequence number; the
    only check is that the book never crosses. Resync = resubscribe."""

    venue = "coinbase"


class KrakenSync(_ChecksumSync):
    """Kraken book: a snapshot on subscribe, then updates carrying the CRC32 of the top 10
    levels; the book is truncated to the subscribed depth (10, 25, 100, 500 or 1000).
    Resync = resubscribe."""

    venue = "kraken"
    truncates = True

    @staticmethod
    def _checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
        return kraken_checksum(bids, asks)

    @staticmethod
    def _level_text(price: Decimal, size: Decimal) -> str:
        return _kraken_digits(price) + _kraken_digits(size)

    @staticmethod
    def _combine(bid_texts: list[str], ask_texts: list[str]) -> int:
        # asks first, then bids, nothing between
        return crc32(("".join(ask_texts) + "".join(bid_texts)).encode())

    def __init__(
        self,
        symbol: str,
        *,
        depth: int | None = 10,
        max_buffer: int = 10_000,
        venue: str | None = None,
    ) -> None:
        super().__init__(symbol, depth=depth, max_buffer=max_buffer, venue=venue)


class SimSync(_ChecksumSync):
    """The embedded exchange: ``prev_sequence`` links every update to the one before, and each
    update (and snapshot) carries the checksum of the book after it. A snapshot comes on
    (re)subscribe or from GET /book with its sequence; deltas at or below it are dropped."""

    venue = "sim"
    buffers = True
    sequenced = True

    @staticmethod
    def _checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
        return sim_checksum(bids, asks)

    @staticmethod
    def _level_text(price: Decimal, size: Decimal) -> str:
        # _plain of each, inlined (one call per new top level of every update): str is the
        # plain text unless it wrote an exponent, and ":" holds neither "E" nor "e".
        text = str(price) + ":" + str(size)
        if "E" in text or "e" in text:
            return _plain(price) + ":" + _plain(size)
        return text

    @staticmethod
    def _combine(bid_texts: list[str], ask_texts: list[str]) -> int:
        # bid, ask, bid, ask, ... then the longer side's rest, all joined by ":"
        n = len(bid_texts)
        if n == len(ask_texts):
            parts = bid_texts + ask_texts
            parts[::2] = bid_texts
            parts[1::2] = ask_texts
        else:
            parts = [t for pair in zip(bid_texts, ask_texts, strict=False) for t in pair]
            common = min(n, len(ask_texts))
            parts += bid_texts[common:] if n > common else ask_texts[common:]
        return crc32(":".join(parts).encode())

    def on_delta(self, delta: BookDelta) -> tuple[Action, ...]:
        # Fast path for the common case (live, the update links to the last one, checksum and
        # book fine), as BinanceSync's; everything else goes through the general path.
        if self.state is _LIVE:
            book = self.book
            last = book.sequence
            seq = delta.sequence
            if last is not None and seq is not None and seq > last and delta.prev_sequence == last:
                book.apply_delta(delta)
                reason = self._check_book(book, delta)
                if reason is None:
                    self.applied += 1
                    return self._applied
                return self._invalidate(reason, seq, delta.recv_ts or delta.ts)
        return super().on_delta(delta)

    def _sequence_verdict(self, delta: BookDelta, book: OrderBook, first: bool) -> _Verdict:
        last = book.sequence
        seq = delta.sequence
        if last is None or seq is None:
            return _Verdict.GAP
        if seq <= last:
            return _Verdict.STALE
        prev = delta.prev_sequence if delta.prev_sequence is not None else seq - 1
        return _Verdict.APPLY if prev == last else _Verdict.GAP


SYNCS: dict[str, type[BookSync]] = {
    "binance": BinanceSync,
    "coinbase": CoinbaseSync,
    "kraken": KrakenSync,
    "sim": SimSync,
}


def make_sync(
    venue: str, symbol: str, *, depth: int | None = None, max_buffer: int = 10_000
) -> BookSync:
    """The synchroniser for ``venue``'s book of ``symbol``."""
    try:
        cls = SYNCS[venue]
    except KeyError:
        known = ", ".join(sorted(SYNCS))
        raise ConfigError(
            f"no book synchroniser for venue {venue!r} (known: {known})", field="venue"
        ) from None
    if depth is None and cls.truncates:
        return cls(symbol, max_buffer=max_buffer)
    return cls(symbol, depth=depth, max_buffer=max_buffer)
