"""StreamClient -> bus: one call publishes a client's streams on the bus under stable topics.

======================================  ===========================================================
topic                                   payload
======================================  ===========================================================
``trade.<venue>.<symbol>``              :class:`~tickloop.models.Trade` (the exchange's trade log:
                                        deduplicated, backfilled after reconnects)
``book.<venue>.<symbol>``               :class:`~tickloop.models.BookSnapshot`, the synchronised
                                        book's top ``depth`` levels (at most one per
                                        ``book_interval`` ms when given; subscribe with
                                        ``policy="conflate"`` to keep only the latest per symbol)
``candle.<venue>.<symbol>.<interval>``  :class:`~tickloop.models.Candle`
``ticker.<venue>.<symbol>``             :class:`~tickloop.models.Ticker`
``order.<venue>``                       :class:`~tickloop.models.OrderEvent` (private)
``fill.<venue>``                        :class:`~tickloop.models.Fill` (private)
``status.<kind>``                       every model of :data:`~tickloop.models.StatusEvent`
                                        (Connected, Gap, Malformed, ConsumerFailed, ...); ``<kind>``
                                        is the model's tag (``status.reconnected``, ``status.gap``)
======================================  ===========================================================

The link uses the client's callback style: one sync handler per stream, called inline by the
client's data callback, which publishes on the bus (no task, no queue in between). It shares the
client's upstream subscriptions with the client's other consumers.

Backpressure: while any lossless subscription that some topic of this link matches is above its
high water mark, the link pauses reading every connection of the client (``pause=True``, the
default); it resumes once every such subscription has drained to its low water mark. A socket
read already under way is still delivered, so a lossless backlog can pass its mark by one read's
worth (and a trade backfill's pages): memory is bounded by how fast the socket is paused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, get_args

from ..book.sync import SYNCS
from ..exceptions import ConfigError
from ..models import (
    Candle,
    Fill,
    OrderEvent,
    StatusEvent,
    Ticker,
    Trade,
)
from .subscription import Inbox

if TYPE_CHECKING:
    from ..book.engine import OrderBook
    from ..client.session import WsSession
    from ..client.stream import StreamClient
    from .base import Bus

__all__ = ["STATUS_KINDS", "FeedLink", "attach", "status_topic"]

log = logging.getLogger("tickloop.bus.feed")

#: The status models a StreamClient publishes and their ``<kind>`` in ``status.<kind>``: the
#: model's tag, for every model of the StatusEvent union.
STATUS_KINDS: dict[type[Any], str] = {
    cls: str(cls.__struct_config__.tag)
    for cls in get_args(StatusEvent)
}


def status_topic(event: object) -> str:
    """``status.<kind>`` of a status model."""
    kind = STATUS_KINDS.get(type(event))
    return f"status.{kind if kind is not None else type(event).__name__.lower()}"


def _symbols(symbols: str | Sequence[str]) -> list[str]:
    items = [symbols] if isinstance(symbols, str) else list(symbols)
    return [s.upper() for s in dict.fromkeys(items)]


class FeedLink:
    """A StreamClient's streams published on a bus; made by ``bus.attach(feed, ...)``.

    ``topics`` lists every topic it publishes on. ``await link.aclose()`` (or leaving
    ``async with link``) unsubscribes its handlers from the client (the client unsubscribes
    upstream what no other consumer needs) and releases any pause it holds. Idempotent.
    """

    def __init__(self, bus: Bus, feed: StreamClient, *, pause: bool) -> None:
        self.bus = bus
        self.feed = feed
        self.venue = feed.venue
        self.topics: list[str] = []
        self.published = 0
        self._pause = pause
        self._undo: list[Callable[[], Awaitable[None]]] = []
        self._holding: set[Inbox] = set()
        self._paused: set[WsSession] = set()
        self._closed = False
        #: Times this link paused the client's connections.
        self.pauses = 0

    # --------------------------------------------------------------------------- lifecycle
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def paused(self) -> bool:
        """True while this link holds the client's connections paused."""
        return bool(self._paused)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.bus.remove_pressure_listener(self._on_pressure)
        self._release()
        if self in self.bus._links:
            self.bus._links.remove(self)
        undo, self._undo = self._undo, []
        if not self.feed.closed:
            for step in reversed(undo):
                try:
                    await step()
                except Exception:
                    log.exception("%s: detaching a stream from the bus failed", self.venue)

    async def __aenter__(self) -> FeedLink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.topics)} topics"
        return f"<FeedLink {self.venue} {state}>"

    # ------------------------------------------------------------------------ backpressure
    def _feeds(self, inbox: Inbox) -> bool:
        matches = inbox.matches
        return any(matches(t) for t in self.topics)

    def _on_pressure(self, inbox: Inbox, paused: bool) -> None:
        if paused:
            if self._closed or not self._feeds(inbox):
                return
            self._holding.add(inbox)
            if not self._paused:
                sessions = set(self.feed.sessions)
                if sessions:
                    self.pauses += 1
                for session in sessions:
                    session.pause_reading(self)
                self._paused = sessions
        elif inbox in self._holding:
            self._holding.discard(inbox)
            if not self._holding:
                self._release()

    def _release(self) -> None:
        self._holding.clear()
        sessions, self._paused = self._paused, set()
        for session in sessions:
            session.resume_reading(self)

    def _watch(self) -> None:
        if not self._pause:
            return
        self.bus.add_pressure_listener(self._on_pressure)
        for inbox in self.bus.pressed:  # already above its mark
            self._on_pressure(inbox, True)


def _depth_limited(venue: str) -> bool:
    """Whether ``venue``'s book is kept at the subscribed depth (its synchroniser truncates):
    there, a book subscribed with no depth is the venue's default depth, not a full book."""
    sync = SYNCS.get(venue)
    return sync is not None and sync.truncates


async def attach(
    bus: Bus,
    feed: StreamClient,
    *,
    trades: str | Sequence[str] = (),
    books: str | Sequence[str] = (),
    depth: int = 10,
    book_interval: float | None = None,
    full_books: bool = False,
    candles: str | Sequence[str] = (),
    interval: str = "1m",
    tickers: str | Sequence[str] = (),
    orders: bool = False,
    fills: bool = False,
    status: bool = True,
    pause: bool = True,
) -> FeedLink:
    """Publish ``feed``'s streams on ``bus`` (module docstring for the topics).

    ``trades``, ``books``, ``candles`` (at ``interval``) and ``tickers`` name symbols;
    ``depth`` is the number of levels a side in each book snapshot, ``book_interval`` (ms) at
    most one book per symbol per interval (None: every update); ``full_books`` keeps each
    book whole where the venue's book is not depth-limited (Binance: the snapshot is the full
    REST answer, not its top ``depth`` levels), so that the same subscription also serves the
    live book at any depth (the runtime's paper executor walks it); the published snapshots are
    still its top ``depth`` levels, and a depth-limited venue (Kraken) is subscribed at
    ``depth``, as without it. ``orders`` / ``fills`` need the
    client's credentials; ``status`` publishes the client's status events. Returns once the
    venue confirmed every stream; on a refusal, what was already wired is undone and the
    client's error is raised.
    """
    bus._check_open()
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"depth must be an int >= 1, got {depth!r}", field="depth")
    venue = feed.venue
    link = FeedLink(bus, feed, pause=pause)
    publish = bus.publish

    try:
        trade_syms = _symbols(trades)
        if trade_syms:
            trade_topics = {s: f"trade.{venue}.{s}" for s in trade_syms}
            link.topics.extend(trade_topics.values())

            def on_trade(trade: Trade) -> None:
                publish(trade_topics[trade.symbol], trade)
                link.published += 1

            await feed.subscribe_trades(trade_syms, on_trade)
            link._undo.append(lambda: feed.unsubscribe_trades(trade_syms, on_trade))

        book_syms = _symbols(books)
        if book_syms:
            book_topics = {s: f"book.{venue}.{s}" for s in book_syms}
            link.topics.extend(book_topics.values())

            # The live book, inline (``live=True``): the snapshot is made from it during the
            # call, so no BookView is made or tracked per update, and the book's own level
            # memo hands back the BookLevels of unchanged top levels instead of new tuples.
            def on_book(book: OrderBook) -> None:
                publish(book_topics[book.symbol], book.snapshot(depth))
                link.published += 1

            await feed.subscribe_books(
                book_syms,
                on_book,
                depth=None if full_books and not _depth_limited(venue) else depth,
                conflate=book_interval,
                live=True,
            )
            link._undo.append(lambda: feed.unsubscribe_books(book_syms, on_book))

        candle_syms = _symbols(candles)
        if candle_syms:
            candle_topics = {s: f"candle.{venue}.{s}.{interval}" for s in candle_syms}
            link.topics.extend(candle_topics.values())

            def on_candle(candle: Candle) -> None:
                publish(candle_topics[candle.symbol], candle)
                link.published += 1

            await feed.subscribe_candles(candle_syms, interval, on_candle)
            link._undo.append(lambda: feed.unsubscribe_candles(candle_syms, interval, on_candle))

        ticker_syms = _symbols(tickers)
        if ticker_syms:
            ticker_topics = {s: f"ticker.{venue}.{s}" for s in ticker_syms}
            link.topics.extend(ticker_topics.values())

            def on_ticker(ticker: Ticker) -> None:
                publish(ticker_topics[ticker.symbol], ticker)
                link.published += 1

            await feed.subscribe_tickers(ticker_syms, on_ticker)
            link._undo.append(lambda: feed.unsubscribe_tickers(ticker_syms, on_ticker))

        if orders:
            order_topic = f"order.{venue}"
            link.topics.append(order_topic)

            def on_order(event: OrderEvent) -> None:
                publish(order_topic, event)
                link.published += 1

            await feed.subscribe_orders(on_order)
            link._undo.append(lambda: feed.unsubscribe_orders(on_order))

        if fills:
            fill_topic = f"fill.{venue}"
            link.topics.append(fill_topic)

            def on_fill(fill: Fill) -> None:
                publish(fill_topic, fill)
                link.published += 1

            await feed.subscribe_fills(on_fill)
            link._undo.append(lambda: feed.unsubscribe_fills(on_fill))

        if status:
            link.topics.extend(f"status.{kind}" for kind in STATUS_KINDS.values())

            def on_status(event: Any) -> None:
                publish(status_topic(event), event)
                link.published += 1

            await feed.subscribe_status(on_status)

            async def unsubscribe_status() -> None:
                await feed.unsubscribe_status(on_status)

            link._undo.append(unsubscribe_status)
    except BaseException:
        await link.aclose()
        raise
    link._watch()
    bus._links.append(link)
    return link
