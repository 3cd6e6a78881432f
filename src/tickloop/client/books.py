"""Local order books on the streaming client: what ``feed.books(...)`` runs on.

Theory of operation. For every symbol whose book at least one consumer wants, :class:`BookFeed`
keeps one synchroniser (:mod:`tickloop.book.sync`, sans-I/O) fed with the stream's snapshots and
deltas, and carries out the actions it answers with, the same way for every venue:

* ``Apply(book)`` - offer the live :class:`~tickloop.book.OrderBook` to the symbol's consumers.
  A :class:`BookConsumer` either queues it at once (``conflate`` None) or holds it back so that
  at most one book per ``conflate`` interval (event-loop clock) is queued, with a timer that
  delivers the final state after a burst. The consumer's buffer keeps one pending book per
  symbol (the latest); nothing stale is ever queued.
* ``Emit(BookInvalid | BookValid)`` - published on the client's status stream and counted; an
  invalidation also drops every pending delivery of that symbol.
* ``NeedSnapshot(via=REST)`` - an owned task GETs the venue's REST snapshot (``AsyncClient.book``:
  throttle, retries, timeouts) and hands it to the synchroniser, which has buffered the deltas
  meanwhile and swaps the rebuilt book in only when it checks out. A failed request is retried
  with backoff (``on_snapshot_failed``); when the retries are spent the symbol's book consumers
  end with :class:`~tickloop.exceptions.BookError`.
* ``NeedSnapshot(via=SUBSCRIBE)`` - that one symbol's book subscription is sent again
  (unsubscribe, subscribe) on its connection; the venue answers with a fresh snapshot on the
  stream. The connection and the other symbols on it are not touched.

A lost connection invalidates its books (``on_disconnect``: one ``BookInvalid("disconnected")``);
the reconnect's resubscription brings a snapshot and one ``BookValid``.

What consumers receive. Each delivery is a :class:`BookView`: an immutable copy of the top
``depth`` levels a side (all levels when ``depth`` is None), taken at the moment of delivery
(when the iterator or async handler takes it, or when a sync handler is called), so it is the
latest state at that moment and never changes under the consumer afterwards. A book that is not
valid at that moment is never delivered. ``view.valid`` reads the live book the view was taken
from: it turns False when that book is found wrong (or replaced) later, so a consumer holding a
view across ``await`` can tell whether it is still backed by a trusted book. The live book itself
is ``feed.book(symbol)``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from decimal import Decimal
from sys import getrefcount
from typing import Any, Protocol

from ..book import Apply, BookSync, Emit, NeedSnapshot, OrderBook, SnapshotVia
from ..exceptions import BookError, ConfigError, TickloopError
from ..models import BookDelta, BookInvalid, BookLevel, BookSnapshot, BookValid, Side
from ..venues.base import Channel, Subscription
from .backoff import Backoff
from .consumers import Consumer, Handler, Overflow, _is_async
from .tasks import TaskOwner

__all__ = ["BookConsumer", "BookFeed", "BookSource", "BookView", "SyncFactory"]

#: Reference counts are exact on CPython's default build; a free-threaded build may defer them,
#: so there every view a handler was given is tracked (copied if still alive at the next change).
_EXACT_REFCOUNTS: bool = getattr(sys, "_is_gil_enabled", lambda: True)()

log = logging.getLogger("tickloop.client.books")

_TWO = Decimal(2)
_new = tuple.__new__


class BookSource(Protocol):
    """What a REST snapshot needs (``tickloop.client.rest.AsyncClient``)."""

    async def book(self, symbol: str, *, depth: int | None = None) -> BookSnapshot: ...


class SyncFactory(Protocol):
    """Makes the synchroniser of one symbol (default :func:`tickloop.book.make_sync`)."""

    def __call__(self, venue: str, symbol: str, *, depth: int | None = None) -> BookSync: ...


# ------------------------------------------------------------------------------------- view


class BookView:
    """An immutable copy of a synchronised book's top levels, taken when it was delivered.

    ``bids(n)`` / ``asks(n)`` return up to ``n`` levels best first as
    :class:`~tickloop.models.BookLevel` ``(price, size)`` pairs, equal to a ``BookSnapshot``'s
    levels. ``sequence`` and ``ts`` are those of the book at that moment. ``valid`` is live: it
    is False once the book this view was copied from has been found wrong or replaced.

    Cost. A view made by the streaming client is copied lazily: it first reads the live book's
    structures (nothing is copied at delivery), and the client copies it, with C-level copies
    only (the sorted price list sliced to ``depth``, and the sizes), just before the book
    next changes, and only if the view is still alive then. A view that user code drops
    before the next update (the usual sync handler) is never copied at all; one kept across
    ``await`` is copied once. Either way it shows the book as it was at delivery. The
    ``BookLevel`` tuples are built only when ``bids()`` / ``asks()`` are read. Before handing a
    view to another thread, call :meth:`freeze`.
    """

    __slots__ = (
        "__weakref__",
        "_ask_px",
        "_ask_sz",
        "_bid_px",
        "_bid_sz",
        "_depth",
        "_live",
        "_sequence",
        "_source",
        "_taken",
        "_ts",
    )

    # Shared with the live book (``_live``): the engine's ascending price lists and level
    # dicts, taken on the first read that needs them (``_taken``; the book cannot change
    # before :meth:`_freeze`, so a late take still sees the state at delivery). Copied
    # (:meth:`_freeze`): best-first price lists cut to ``depth``, and sizes. The public
    # attributes are read-only properties; nothing else can be set (slots, no ``__dict__``).
    _bid_px: list[Decimal]
    _ask_px: list[Decimal]
    _bid_sz: dict[Decimal, Decimal]
    _ask_sz: dict[Decimal, Decimal]
    _live: bool
    _taken: bool
    _source: OrderBook

    def __init__(self, book: OrderBook, depth: int | None = None, *, shared: bool = False) -> None:
        # Plain slot stores: delivering a view is on the per-update path of every books
        # consumer, so nothing is read from the book here beyond two numbers.
        self._source = book
        self._sequence = book.sequence
        self._ts = book.ts
        self._depth = depth
        self._live = True
        self._taken = False
        if not shared:
            self._freeze()

    @property
    def sequence(self) -> int | None:
        """The venue sequence number of the book when the view was delivered."""
        return self._sequence

    @property
    def ts(self) -> int:
        """The book's timestamp (ns) when the view was delivered."""
        return self._ts

    @property
    def depth(self) -> int | None:
        """Levels a side the view shows (None: all)."""
        return self._depth

    def _take(self) -> None:
        """Point at the live book's caught-up sorted price lists and level dicts."""
        self._bid_px, self._ask_px, self._bid_sz, self._ask_sz = self._source.sorted_sides()
        self._taken = True

    def _freeze(self) -> None:
        """Copy what the view shows out of the live book (before the book changes)."""
        if not self._live:
            return
        if not self._taken:
            self._take()
        depth = self._depth
        bids = self._bid_sz
        asks = self._ask_sz
        if depth is None:
            self._bid_px = self._bid_px[::-1]
            self._ask_px = self._ask_px[:]
            self._bid_sz = bids.copy()
            self._ask_sz = asks.copy()
        else:
            bpx = self._bid_px[: -depth - 1 : -1]
            apx = self._ask_px[:depth]
            self._bid_px = bpx
            self._ask_px = apx
            self._bid_sz = {p: bids[p] for p in bpx}
            self._ask_sz = {p: asks[p] for p in apx}
        self._live = False

    def freeze(self) -> BookView:
        """Take the copy now and return the view. The client does this itself before the book
        changes, on the event loop's thread; call it before handing the view to another thread
        (``run_in_executor``), which could otherwise read it while the loop updates the book."""
        self._freeze()
        return self

    def _bid_prices(self, n: int | None) -> list[Decimal]:
        if not self._taken:
            self._take()
        depth = self._depth
        if n is None or (depth is not None and n > depth):
            n = depth
        px = self._bid_px
        if not self._live:
            return px if n is None else px[:n] if n > 0 else []
        if n is None:
            return px[::-1]
        return px[: -n - 1 : -1] if n > 0 else []

    def _ask_prices(self, n: int | None) -> list[Decimal]:
        if not self._taken:
            self._take()
        depth = self._depth
        if n is None or (depth is not None and n > depth):
            n = depth
        px = self._ask_px
        if n is None:
            return px
        return px[:n] if n > 0 else []

    @property
    def venue(self) -> str:
        return self._source.venue

    @property
    def symbol(self) -> str:
        return self._source.symbol

    @property
    def best_bid(self) -> Decimal | None:
        if self._live:  # the live book is unchanged since delivery: its tracked best is O(1)
            return self._source.best_bid
        px = self._bid_px
        return px[0] if px else None

    @property
    def best_ask(self) -> Decimal | None:
        if self._live:
            return self._source.best_ask
        px = self._ask_px
        return px[0] if px else None

    @property
    def valid(self) -> bool:
        """Whether the live book this view was copied from is still the trusted one."""
        return self._source.valid

    def bids(self, n: int | None = None) -> list[BookLevel]:
        """Up to ``n`` bid levels (all held when None), best (highest) first."""
        prices = self._bid_prices(n)
        sizes = self._bid_sz
        return [_new(BookLevel, (p, sizes[p])) for p in prices]

    def asks(self, n: int | None = None) -> list[BookLevel]:
        """Up to ``n`` ask levels (all held when None), best (lowest) first."""
        prices = self._ask_prices(n)
        sizes = self._ask_sz
        return [_new(BookLevel, (p, sizes[p])) for p in prices]

    def levels(self, side: Side, n: int | None = None) -> list[BookLevel]:
        """``bids(n)`` for ``Side.BUY`` (the bid side), ``asks(n)`` for ``Side.SELL``."""
        return self.bids(n) if side is Side.BUY else self.asks(n)

    def best(self, side: Side) -> BookLevel | None:
        if not self._taken:
            self._take()
        if side is Side.BUY:
            price = self.best_bid
            return None if price is None else BookLevel(price, self._bid_sz[price])
        price = self.best_ask
        return None if price is None else BookLevel(price, self._ask_sz[price])

    @property
    def mid(self) -> Decimal | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return (self.best_bid + self.best_ask) / _TWO

    @property
    def spread(self) -> Decimal | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return self.best_ask - self.best_bid

    def snapshot(self) -> BookSnapshot:
        """The view as a :class:`~tickloop.models.BookSnapshot` (what the bus carries)."""
        return BookSnapshot(
            venue=self.venue,
            symbol=self.symbol,
            bids=tuple(self.bids()),
            asks=tuple(self.asks()),
            sequence=self.sequence,
            ts=self.ts,
        )

    def to_book(self) -> OrderBook:
        """A private OrderBook built from the view, for statistics (vwap, imbalance, ...)."""
        return OrderBook.from_snapshot(self.snapshot())

    def __repr__(self) -> str:
        return (
            f"BookView({self.venue}:{self.symbol} seq={self.sequence} "
            f"best={self.best_bid}/{self.best_ask} "
            f"levels={len(self._bid_prices(None))}/{len(self._ask_prices(None))} "
            f"valid={self.valid})"
        )


# ---------------------------------------------------------------------------------- consumer


def _book_key(book: Any) -> Hashable:
    return str(book.symbol)


class BookConsumer(Consumer):
    """A book consumer: conflates by time (``conflate`` seconds, None: every update), keeps one
    pending book per symbol, and hands out a :class:`BookView` of ``depth`` levels taken at
    delivery. Invalid books are skipped (counted in ``skipped``).

    ``live=True`` (sync handlers only) hands the handler the live, valid
    :class:`~tickloop.book.OrderBook` itself, inline, with no copy: the handler must not keep
    it past the call (it changes with the next update and may be replaced by a resync)."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        depth: int | None,
        conflate: float | None,
        maxsize: int,
        handler: Handler | None = None,
        name: str = "",
        live: bool = False,
    ) -> None:
        # Set before Consumer.__init__: set_handler may already deliver through _call_handler.
        self.live = live
        self.depth = depth
        self.conflate = conflate
        self.skipped = 0  # books not delivered: found invalid, or unchanged since the last one
        self._loop = loop
        self._last: dict[str, tuple[int, int | None, int]] = {}  # symbol -> what was delivered
        self._next_at: dict[str, float] = {}
        self._held: dict[str, OrderBook] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: Set by the feed: views are then shared with the live book and copied by the feed
        #: just before the book changes (:meth:`BookFeed.track`); None: copied at once.
        self.track: Callable[[BookView], None] | None = None
        super().__init__(
            Channel.BOOK,
            policy=Overflow.CONFLATE,
            maxsize=maxsize,
            key=_book_key,
            handler=handler,
            name=name,
        )

    # ------------------------------------------------------------------------------ producing
    def offer(self, event: Any) -> None:
        interval = self.conflate
        if interval is None:
            self.push(event)
            return
        if self.closed:
            return
        symbol: str = event.symbol
        timers = self._timers
        if symbol in timers:  # a delivery is scheduled: it will take this (latest) book
            self._held[symbol] = event
            return
        loop = self._loop
        now = loop.time()
        at = self._next_at.get(symbol, 0.0)
        if now >= at:
            self._next_at[symbol] = now + interval
            self.push(event)
        else:
            self._held[symbol] = event
            timers[symbol] = loop.call_at(at, self._release, symbol)

    def _release(self, symbol: str) -> None:
        self._timers.pop(symbol, None)
        book = self._held.pop(symbol, None)
        if book is None or not book.valid or self.closed or self.conflate is None:
            return
        self._next_at[symbol] = self._loop.time() + self.conflate
        self.push(book)

    def discard(self, key: Hashable) -> None:
        timer = self._timers.pop(str(key), None)
        if timer is not None:
            timer.cancel()
        self._held.pop(str(key), None)
        super().discard(key)

    def close(self, end: BaseException | None = None) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._held.clear()
        super().close(end)

    def set_handler(self, handler: Handler | None) -> None:
        if self.live and (handler is None or _is_async(handler)):
            raise ConfigError(
                "live=True hands over the live book inline: it needs a sync handler",
                field="live",
            )
        super().set_handler(handler)

    # ------------------------------------------------------------------------------ consuming
    def _view(self, event: Any, *, untracked: bool = False) -> Any:
        """The view to deliver for ``event`` (None: skip it). A shared view is tracked (copied
        before the book changes) unless ``untracked``: the caller then tracks it itself."""
        if type(event) is OrderBook:
            if not event.valid:
                return None
            # A book already delivered in this very state (a held-back book released after the
            # reader had taken the same state) is not delivered twice.
            version = (id(event), event.sequence, event.ts)
            if (event.sequence is not None or event.ts) and self._last.get(event.symbol) == version:
                return None
            self._last[event.symbol] = version
            if self.live:
                return event
            track = self.track
            if track is None:
                return BookView(event, self.depth)
            view = BookView(event, self.depth, shared=True)
            if not untracked:
                track(view)
            return view
        return event

    def _call_handler(self, event: Any) -> None:
        view = self._view(event, untracked=True)
        if view is None:
            self.skipped += 1
            return
        if type(view) is not BookView:  # the live book itself (live=True)
            super()._call_handler(view)
            return
        # A sync handler: the view needs a copy before the book next changes only if the
        # handler kept a reference to it (stored it, handed it to a task). Counting references
        # before and after the call, in this one frame, tells; a view dropped by the handler
        # (the usual case) is never tracked, never copied.
        before = getrefcount(view)
        super()._call_handler(view)
        if (getrefcount(view) > before or not _EXACT_REFCOUNTS) and view._live:
            track = self.track
            if track is not None:
                track(view)

    def get_nowait(self) -> Any:
        while True:
            view = self._view(super().get_nowait())
            if view is not None:
                return view
            self.stats.delivered -= 1
            self.skipped += 1

    async def get(self) -> Any:
        while True:
            view = self._view(await super().get())
            if view is not None:
                return view
            self.stats.delivered -= 1
            self.skipped += 1


# -------------------------------------------------------------------------------------- feed


class _Book:
    """One symbol's synchroniser and its resync tasks."""

    __slots__ = (
        "depth",
        "fetches",
        "limit",
        "started",
        "subscription",
        "symbol",
        "sync",
        "tasks",
    )

    def __init__(self, sync: BookSync, subscription: Subscription, depth: int | None) -> None:
        self.sync = sync
        self.symbol = sync.symbol
        self.subscription = subscription
        self.depth = depth
        self.started = False  # the subscription was confirmed (or kicked) since it was made
        # Levels a side the shared book can serve: bounded where the venue's book is truncated
        # to the subscribed depth, or where the snapshot is a depth-limited REST answer.
        self.limit = sync.depth if sync.truncates or sync.snapshot_via is SnapshotVia.REST else None
        self.tasks: set[asyncio.Task[None]] = set()  # resubscriptions: run to their end
        self.fetches: set[asyncio.Task[None]] = set()  # REST snapshots: cancelled on a loss


class BookFeed:
    """The books of one StreamClient (module docstring). The client calls :meth:`resolve` when
    a consumer attaches, :meth:`on_update` from the socket callback, :meth:`on_confirmed` and
    :meth:`on_lost` from its sessions, :meth:`drop` when a book subscription ends, and
    :meth:`aclose` when it closes."""

    def __init__(
        self,
        venue: str,
        *,
        sync_factory: SyncFactory,
        routes: dict[Hashable, tuple[Consumer, ...]],
        raw_routes: dict[Hashable, tuple[Consumer, ...]] | None = None,
        publish: Callable[[BookInvalid | BookValid], None],
        resubscribe: Callable[[Subscription], Coroutine[Any, Any, None]],
        source: Callable[[], BookSource],
        snapshot_retries: int = 8,
        snapshot_wait: float = 0.05,
        snapshot_max_wait: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        Backoff(base_wait=snapshot_wait, max_wait=snapshot_max_wait, max_retries=snapshot_retries)
        self.venue = venue
        self._snapshot_wait = snapshot_wait
        self._snapshot_max_wait = snapshot_max_wait
        self._sleep = sleep
        self._factory = sync_factory
        self._routes = routes
        self._raw_routes: dict[Hashable, tuple[Consumer, ...]] = (
            raw_routes if raw_routes is not None else {}
        )
        self._publish = publish
        self._resubscribe = resubscribe
        self._source = source
        self._snapshot_retries = snapshot_retries
        self._books: dict[str, _Book] = {}
        #: symbol -> state of each local book kept: the same dict, read-only for others (the
        #: client's frame path tests membership before calling :meth:`on_update`).
        self.kept: Mapping[str, object] = self._books
        #: The upstream book subscription of each symbol while any consumer wants it, books or
        #: raw (``feed.book_deltas``): both kinds share it, whichever came first.
        self._upstream: dict[str, Subscription] = {}
        #: Every snapshot fetch and resubscription task, awaited on close (including those of
        #: books no consumer wants any more, which still put the subscription back for the raw
        #: consumers). Each book's ``tasks`` / ``fetches`` are the ones it may cancel.
        self._tasks = TaskOwner(f"book feed {venue}")
        #: Views still sharing each symbol's live book: copied before it changes.
        self._shared: dict[str, list[weakref.ref[BookView]]] = {}
        self._closed = False
        self.counters: dict[str, int] = {
            "book_invalid": 0,
            "book_valid": 0,
            "book_rest_snapshots": 0,
            "book_resubscribes": 0,
            "book_snapshot_failures": 0,  # REST snapshot requests that failed
            "book_snapshots_unusable": 0,  # snapshots that did not bridge the buffered deltas
            "book_snapshot_retries": 0,  # re-requests, each after a backoff wait
        }

    # ------------------------------------------------------------------------- shared views
    def track(self, view: BookView) -> None:
        """``view`` reads ``view.symbol``'s live book: copy it before that book next changes.
        Held weakly: a view that user code dropped is never copied."""
        refs = self._shared.get(view.symbol)
        if refs is None:
            self._shared[view.symbol] = [weakref.ref(view)]
        else:
            refs.append(weakref.ref(view))

    def _freeze(self, symbol: str) -> None:
        """Called before anything that may change ``symbol``'s book (every call into its
        synchroniser): the views still alive take their copies now."""
        refs = self._shared.pop(symbol, None)
        if refs:
            for ref in refs:
                view = ref()
                if view is not None:
                    view._freeze()

    # -------------------------------------------------------------------------------- control
    def book(self, symbol: str) -> OrderBook | None:
        state = self._books.get(symbol.upper())
        return state.sync.book if state is not None else None

    def resolve(self, sub: Subscription, depth: int | None) -> Subscription:
        """The upstream subscription a consumer of ``sub.symbol`` at ``depth`` levels shares,
        creating the symbol's synchroniser on first use. ConfigError when the shared book
        cannot serve ``depth`` levels."""
        symbol = sub.symbol
        if symbol is None:
            raise ConfigError("a book needs a symbol", field="symbols")
        state = self._books.get(symbol)
        if state is None:
            shared = self._upstream.get(symbol)
            if shared is not None and shared.depth is not None:
                # Raw consumers hold the venue's book at that depth: keep the book at it.
                if depth is not None and depth > shared.depth:
                    raise ConfigError(
                        f"the {symbol} book is subscribed at {shared.depth} levels a side for "
                        f"another consumer; cannot serve depth={depth}",
                        field="depth",
                        venue=self.venue,
                    )
                sync = self._factory(self.venue, symbol, depth=shared.depth)
            else:
                sync = self._factory(self.venue, symbol, depth=depth)
            upstream = Subscription(
                Channel.BOOK, symbol, depth=sync.depth if sync.truncates else None
            )
            if shared is not None and upstream != shared:
                raise ConfigError(
                    f"the {symbol} book subscription is shared with another consumer and "
                    f"cannot serve depth={depth}",
                    field="depth",
                    venue=self.venue,
                )
            state = self._books[symbol] = _Book(sync, upstream, depth)
            self._upstream[symbol] = upstream
            return upstream
        limit = state.limit
        if limit is not None and (depth is None or depth > limit):
            raise ConfigError(
                f"the {symbol} book is kept at {limit} levels a side for another consumer; "
                f"cannot serve depth={depth}",
                field="depth",
                venue=self.venue,
            )
        return state.subscription

    def resolve_raw(self, sub: Subscription) -> Subscription:
        """The upstream subscription a raw consumer (``feed.book_deltas``) of ``sub.symbol``
        shares: the one books consumers hold, else the one a books consumer with no depth would
        make (the venue's default depth where its book is depth-limited). No synchroniser is
        made: raw consumers need no local book."""
        symbol = sub.symbol
        if symbol is None:
            raise ConfigError("a book needs a symbol", field="symbols")
        upstream = self._upstream.get(symbol)
        if upstream is None:
            try:
                probe = self._factory(self.venue, symbol, depth=None)
            except ConfigError:  # no synchroniser for this venue: raw consumers need none
                upstream = Subscription(Channel.BOOK, symbol)
            else:
                upstream = Subscription(
                    Channel.BOOK, symbol, depth=probe.depth if probe.truncates else None
                )
            self._upstream[symbol] = upstream
        return upstream

    def kick(self, sub: Subscription) -> None:
        """A synchroniser was made for a subscription the venue had already confirmed (for raw
        consumers): the snapshot that comes with subscribing is past, so ask for one now (REST
        where the venue's book starts from one, else by resubscribing this symbol, which also
        gives the raw consumers a fresh snapshot)."""
        state = self._books.get(sub.symbol or "")
        if state is None or state.subscription != sub or state.started or self._closed:
            return
        state.started = True
        self._freeze(state.symbol)
        sync = state.sync
        if sync.initial_snapshot:
            self._run(state, sync.start())
        else:
            self._need(state, NeedSnapshot(state.symbol, "joined", sync.snapshot_via, sync.depth))

    def _idle(self, state: _Book) -> None:
        """No books consumer wants ``state``'s symbol any more, but raw consumers keep its
        subscription: stop maintaining the book (a later books consumer starts afresh)."""
        del self._books[state.symbol]
        self._freeze(state.symbol)
        current = asyncio.current_task()
        for task in state.fetches:
            if task is not current:  # the fetch giving up ends by itself
                task.cancel()
        # A resubscription runs on: it must still put the subscription back (owned by _tasks).
        state.sync.book.valid = False

    def drop(self, sub: Subscription) -> None:
        """The book subscription ``sub`` ended: forget its synchroniser, cancel its tasks. The
        book is no longer maintained, so it is marked invalid for whoever still holds it."""
        if self._upstream.get(sub.symbol or "") == sub:
            del self._upstream[sub.symbol or ""]
        state = self._books.get(sub.symbol or "")
        if state is None or state.subscription != sub:
            return
        del self._books[state.symbol]
        self._freeze(state.symbol)
        for task in [*state.tasks, *state.fetches]:
            task.cancel()
        state.sync.book.valid = False

    def unused(self, sub: Subscription) -> None:
        """A consumer resolved ``sub`` but never attached (it failed first)."""
        state = self._books.get(sub.symbol or "")
        if state is not None and state.subscription == sub and not self._routes.get(state.symbol):
            if self._raw_routes.get(state.symbol):
                self._idle(state)  # the subscription stays, for the raw consumers
            else:
                self.drop(sub)

    async def aclose(self) -> None:
        self._closed = True
        for state in list(self._books.values()):
            self.drop(state.subscription)  # cancels its fetches and resubscriptions
        # The resubscriptions of idle books are left to finish, as they were before the close.
        await self._tasks.aclose(cancel=False)

    # ------------------------------------------------------------------------ session events
    def on_update(self, event: BookSnapshot | BookDelta) -> None:
        """The hot path: a book message from the stream (a sink of the sessions)."""
        state = self._books.get(event.symbol)
        if state is None:
            return
        consumers = self._routes.get(event.symbol)
        if not consumers and self._raw_routes.get(event.symbol):
            # Every books consumer left; raw consumers keep the subscription alive.
            self._idle(state)
            return
        if event.symbol in self._shared:
            self._freeze(event.symbol)
        for action in state.sync.on_update(event):
            if type(action) is Apply:
                if consumers:
                    book = action.book
                    for consumer in consumers:
                        consumer.offer(book)
            else:
                self._act(state, action)

    def on_confirmed(self, sub: Subscription) -> None:
        state = self._books.get(sub.symbol or "")
        if state is not None and state.subscription == sub:
            state.started = True
            self._freeze(state.symbol)
            self._run(state, state.sync.start())

    def on_malformed(self, symbol: str, ts: int) -> None:
        """A message of ``symbol``'s book could not be decoded: the book is invalid (resync)."""
        state = self._books.get(symbol)
        if state is None:
            return
        self._freeze(state.symbol)
        self._run(state, state.sync.on_malformed(ts))

    def on_lost(self, sub: Subscription, ts: int) -> None:
        state = self._books.get(sub.symbol or "")
        if state is None or state.subscription != sub:
            return
        for task in state.fetches:
            task.cancel()  # an answer to a request made before the loss must not be used
        self._freeze(state.symbol)
        self._run(state, state.sync.on_disconnect(ts))

    # ---------------------------------------------------------------------------- actions
    def _run(self, state: _Book, actions: tuple[Any, ...]) -> None:
        for action in actions:
            self._act(state, action)

    def _act(self, state: _Book, action: Any) -> None:
        if type(action) is Apply:
            book = action.book
            for consumer in self._routes.get(state.symbol, ()):
                consumer.offer(book)
        elif type(action) is Emit:
            self._emit(state, action.event)
        elif type(action) is NeedSnapshot:
            self._need(state, action)

    def _emit(self, state: _Book, event: BookInvalid | BookValid) -> None:
        if isinstance(event, BookInvalid):
            self.counters["book_invalid"] += 1
            for consumer in self._routes.get(state.symbol, ()):
                consumer.discard(state.symbol)
        else:
            self.counters["book_valid"] += 1
        self._publish(event)

    def _need(self, state: _Book, need: NeedSnapshot) -> None:
        if self._closed:
            return
        if need.via is SnapshotVia.REST:
            self._spawn(state.fetches, self._fetch(state, need), "snapshot", state.symbol)
        else:
            # Not cancelled when the connection drops: it must put the subscription back.
            self.counters["book_resubscribes"] += 1
            coro = self._resubscribe(state.subscription)
            self._spawn(state.tasks, coro, "resubscribe", state.symbol)

    def _spawn(
        self,
        owner: set[asyncio.Task[None]],
        coro: Coroutine[Any, Any, None],
        what: str,
        symbol: str,
    ) -> None:
        name = f"tickloop-book-{what}-{symbol}"
        task = self._tasks.spawn(self._guard(coro, what, symbol), name=name)
        owner.add(task)
        task.add_done_callback(owner.discard)

    async def _guard(self, coro: Coroutine[Any, Any, None], what: str, symbol: str) -> None:
        try:
            await coro
        except TickloopError as exc:
            log.warning("%s: book %s of %s failed: %s", self.venue, what, symbol, exc)

    async def _fetch(self, state: _Book, need: NeedSnapshot | None) -> None:
        """Get REST snapshots until the synchroniser stops asking (owned by ``state``).

        Every re-request, whether the last request failed or its snapshot was unusable (too old
        to bridge the buffered deltas, or not checking out), waits first: exponential backoff
        with full jitter, ``snapshot_retries`` consecutive re-requests at most, after which the
        symbol's book consumers end with BookError. A snapshot that makes the book valid resets
        the count. Without the wait, a venue whose snapshots lag its stream would be asked
        many times a second for as long as the lag lasts."""
        backoff = Backoff(
            base_wait=self._snapshot_wait,
            max_wait=self._snapshot_max_wait,
            max_retries=self._snapshot_retries,
        )
        sync = state.sync
        counters = self.counters
        while need is not None and self._books.get(state.symbol) is state:
            try:
                snapshot = await self._source().book(need.symbol, depth=need.depth)
            except (TickloopError, OSError) as exc:
                counters["book_snapshot_failures"] += 1
                wait = backoff.next_wait()
                if wait is None:
                    self._give_up(state, exc)
                    return
                self._freeze(state.symbol)
                again = sync.on_snapshot_failed()
                counters["book_snapshot_retries"] += 1
                await self._sleep(wait)
                need = self._next_need(state, again)
                continue
            counters["book_rest_snapshots"] += 1
            self._freeze(state.symbol)
            need = self._next_need(state, sync.on_snapshot(snapshot))
            if need is None:
                backoff.succeeded()
                continue
            counters["book_snapshots_unusable"] += 1
            wait = backoff.next_wait()
            if wait is None:
                self._give_up(
                    state,
                    BookError(
                        f"{self._snapshot_retries} snapshots in a row could not be used "
                        f"(last: {need.reason})",
                        symbol=state.symbol,
                        venue=self.venue,
                    ),
                )
                return
            counters["book_snapshot_retries"] += 1
            await self._sleep(wait)

    def _next_need(self, state: _Book, actions: tuple[Any, ...]) -> NeedSnapshot | None:
        """Carry out ``actions``; a REST NeedSnapshot among them is returned to the running
        fetch loop instead of starting another task."""
        need: NeedSnapshot | None = None
        for action in actions:
            if type(action) is NeedSnapshot and action.via is SnapshotVia.REST:
                need = action
            else:
                self._act(state, action)
        return need

    def _give_up(self, state: _Book, cause: BaseException) -> None:
        error = BookError(
            f"the {state.symbol} book could not be resynchronised: {cause}",
            symbol=state.symbol,
            venue=self.venue,
        )
        log.error("%s", error)
        for consumer in self._routes.get(state.symbol, ()):
            consumer.close(error)
        if self._books.get(state.symbol) is state and self._raw_routes.get(state.symbol):
            # Raw consumers keep the subscription: a later books consumer starts afresh.
            self._idle(state)

    # -------------------------------------------------------------------------------- insight
    def stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for symbol, state in self._books.items():
            sync = state.sync
            out[symbol] = {
                "state": sync.state.value,
                "valid": sync.valid,
                "sequence": sync.book.sequence,
                "applied": sync.applied,
                "stale": sync.stale,
                "buffered": sync.buffered,
                "overflowed": sync.overflowed,
                "invalidations": dict(sync.invalidations),
                "resyncs": sync.resyncs,
            }
        return out
