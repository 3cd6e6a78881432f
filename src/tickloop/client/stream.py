"""StreamClient: typed real-time streams from any venue, as async iterators or callbacks.

.. code-block:: python

    async with StreamClient("sim", url=ex.ws_url) as feed:
        async for trade in feed.trades("BTC-USD"):
            ...
        await feed.subscribe_trades(["BTC-USD", "ETH-USD"], handler=on_trade)

Pipeline (one per client, whatever the number of consumers)::

    socket read -> WsSession (decode, dispatch by type) -> TradeFeed / BookFeed
                -> Fanout -> per-consumer bounded buffer / handler

This module wires the pieces; each concept has its own module. The channel table
(:mod:`tickloop.client.channels`) has one row per kind of stream (trades, tickers, candles,
books, book_deltas, orders, fills) and drives every ``feed.<kind>()``, ``subscribe_<kind>``
and ``unsubscribe_<kind>``; ``"*"`` (or None, or ``[]``) means every market of the venue, from
its market list. Several consumers of one stream share one upstream subscription:
:class:`Fanout` counts them, and the venue is unsubscribed when the last one leaves.
Subscriptions are spread over as many :class:`WsSession` connections as the codec's limits
require (:mod:`tickloop.client.placement`). Each session reconnects and restores its
subscriptions by itself; after any interruption the trades of each symbol are backfilled over
REST and deduplicated by id (:class:`~tickloop.client.trades.TradeFeed`), so a consumer sees
the exchange's trade log with no gap and no duplicate, or a :class:`~tickloop.models.Gap`
saying what could not be recovered. Order books (``feed.books``) are kept by one synchroniser
per symbol (:class:`~tickloop.client.books.BookFeed`), resynchronised one symbol at a time
without touching the connection. Connection and data-quality status (Connected, Disconnected,
Reconnected, Stale, Gap, BookInvalid, BookValid, ...) is data: ``feed.status()`` /
``await feed.subscribe_status(handler)``.

Ownership: the client owns its sessions, and a :class:`~tickloop.client.tasks.TaskOwner` owns
its reconciler task (which unsubscribes streams that consumers left synchronously, e.g. by
breaking out of ``async for``) and its backfill tasks; leaving ``async with`` (or
:meth:`StreamClient.aclose`) ends every consumer and awaits every task. A client started and
never closed is reported when it is collected (:mod:`tickloop.client.unclosed`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import logging
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from ..book import OrderBook, make_sync
from ..exceptions import (
    AuthError,
    ConfigError,
    ConsumerOverflow,
    LimitExceeded,
    StreamError,
    SubscriptionError,
    TickloopError,
    TimeoutError,
)
from ..limits import DEFAULT_LIMITS, Limits
from ..models import (
    BookDelta,
    BookInvalid,
    BookSnapshot,
    BookValid,
    Candle,
    ConsumerDetached,
    ConsumerFailed,
    Fill,
    Instrument,
    Malformed,
    OrderEvent,
    StatusEvent,
    Ticker,
    Trade,
)
from ..venues import rest_codec, stream_codec
from ..venues.base import Channel, Codec, Subscription
from ..venues.sim import derive_rest_url as derive_rest_url  # moved to the sim venue
from .backoff import Backoff
from .books import BookConsumer, BookFeed, BookSource, BookView, SyncFactory
from .channels import ALL, BY_ROUTE, CHANNELS, Kind, Symbols, held, kind, subscriptions
from .consumers import BOOK_DELTAS, Consumer, Fanout, Handler, Overflow, _is_async
from .placement import Placement, usable
from .reader import NATIVE as READER_NATIVE
from .reader import Reader, bind
from .session import WsSession
from .tasks import TaskOwner
from .trades import TradeFeed, TradeSource
from .transport import Transport
from .unclosed import creation_traceback, report_unclosed

__all__ = ["ALL", "Stream", "StreamClient", "Symbols", "TradeSource"]

log = logging.getLogger("tickloop.client.stream")

T = TypeVar("T")

_TRADES = CHANNELS["trades"]
_TICKERS = CHANNELS["tickers"]
_CANDLES = CHANNELS["candles"]
_BOOKS = CHANNELS["books"]
_BOOK_DELTAS = CHANNELS["book_deltas"]
_ORDERS = CHANNELS["orders"]
_FILLS = CHANNELS["fills"]


class MarketSource(Protocol):
    """What ``"*"`` needs from a REST client: the venue's market list."""

    async def instruments(self) -> list[Instrument]: ...


class Stream(Reader, Generic[T]):
    """An async iterator over one consumer of a StreamClient (``async for x in feed.trades()``).

    Subscribes on the first ``__anext__``; leaves (and lets the client unsubscribe upstream when
    it was the last consumer) on :meth:`aclose`, at the end of ``async with``, or as soon as it is
    garbage (breaking out of ``async for``, a cancelled consumer task).
    """

    def __init__(
        self, client: StreamClient, consumer: Consumer, subscriptions: tuple[Subscription, ...]
    ) -> None:
        self._client: StreamClient | None = client
        self._consumer = consumer
        self._subscriptions = subscriptions
        self._started = False
        self._get = consumer.get
        bind(self, consumer)  # the fields the C __anext__ reads (tickloop.client.reader)

    @property
    def consumer(self) -> Consumer:
        """The buffer behind this stream (its ``stats`` count lag, drops and conflations)."""
        return self._consumer

    def __aiter__(self) -> Stream[T]:
        return self

    async def _anext_slow(self) -> T:
        """``__anext__`` in Python: the whole of it in the pure build; with the C ``Reader``,
        what it hands over (nothing buffered, or the stream not started)."""
        buffer = self._buffer
        if buffer:  # the hot path: an event is waiting (no future, no await)
            self._stats.delivered += 1
            consumer = self._consumer
            if consumer.paused and len(buffer) <= self._low:
                consumer._relieve()
            item: T = buffer.popleft()
            return item
        if not self._started:
            await self._start()
            if self._client is not None:
                return await self._first()
        try:
            item = await self._get()
        except asyncio.CancelledError:
            # Like an async generator, a stream whose consumer is cancelled is finished: the
            # cancelled task's traceback may keep this object alive, so leave now.
            self._leave_now()
            raise
        return item

    if not READER_NATIVE:
        __anext__ = _anext_slow

    async def _first(self) -> T:
        """The first item: nothing may arrive before the venue confirms the subscription, so
        when nothing came within ``subscribe_timeout`` and the venue has not confirmed it either,
        this raises tickloop's TimeoutError (like ``subscribe_*``) instead of waiting for ever.
        The subscription stays registered: the next ``__anext__`` goes on waiting."""
        client = self._client
        assert client is not None
        try:
            try:
                async with asyncio.timeout(client.subscribe_timeout):
                    item: T = await self._get()
                    return item
            except builtins.TimeoutError:
                unconfirmed = client._unconfirmed(self._consumer.subscriptions)
                if unconfirmed:
                    names = ", ".join(
                        f"{s.channel.value} {s.symbol or ''}".strip() for s in unconfirmed
                    )
                    raise TimeoutError(
                        f"{names}: not confirmed by the venue within {client.subscribe_timeout:g}s",
                        venue=client.venue,
                    ) from None
            item = await self._get()
            return item
        except asyncio.CancelledError:
            self._leave_now()
            raise

    def _leave_now(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.closed:
            # Finalised after its event loop closed: there is nothing left to tell.
            with contextlib.suppress(RuntimeError):
                client._leave_soon(self._consumer)

    async def _start(self) -> None:
        self._started = True
        client = self._client
        if client is None:
            raise StopAsyncIteration
        try:
            await client._attach(self._consumer, self._subscriptions, wait=False)
        except Exception as exc:
            if not self._consumer.subscriptions:
                # Nothing was subscribed (a bad argument, no market list for "*"): the stream
                # ends with that error, raised again by every later read instead of waiting.
                self._client = None
                self._consumer.close(exc)
            raise

    async def __aenter__(self) -> Stream[T]:
        if not self._started:
            await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client._leave(self._consumer)

    def __del__(self) -> None:
        self._leave_now()


class StreamClient:
    """Typed streams of one venue over sharded, self-healing WebSocket sessions (module doc).

    Connection policy: ``base_wait``, ``max_wait``, ``max_retries`` (None: forever) and
    ``reset_retry_after`` configure the exponential backoff with jitter; ``heartbeat_timeout`` is
    how long a connection may stay silent before it is replaced (an application ping goes out
    after ``ping_interval`` of silence). ``buffer_size`` bounds each consumer. ``rest`` (or
    ``rest_url``; else the codec's ``rest_url(url)``) is used for trade backfill; ``credentials``
    (:class:`tickloop.client.auth.Credentials`) for private streams. ``book_sync`` makes each
    symbol's book synchroniser (default :func:`tickloop.book.make_sync`); a REST book snapshot
    that failed or could not be used is asked for again after an exponential backoff with
    jitter (``book_snapshot_wait`` doubling up to ``book_snapshot_max_wait`` seconds), at most
    ``book_snapshot_retries`` times in a row before the book stream ends with BookError.
    ``limits`` (:class:`tickloop.limits.Limits`) bounds what the venue may send: message size
    across fragments, numbers, levels, symbol caches, trade-id jumps (docs/reliability.md).

    ``transport`` (:class:`tickloop.client.transport.Transport`) makes the WebSocket
    connections: picows when None; a recording or a test's ``MemoryTransport`` otherwise.
    ``wall_clock`` (Unix ns; :func:`time.time_ns` when None) stamps status events and backfill
    merges: a replay (:class:`tickloop.replay.Replay`) gives the recorded time, so that the
    same recording gives the same status events on every run.
    """

    def __init__(
        self,
        venue: str = "sim",
        *,
        url: str | None = None,
        rest: TradeSource | None = None,
        rest_url: str | None = None,
        credentials: Any = None,
        token_provider: Callable[[], Awaitable[str]] | None = None,
        base_wait: float = 0.1,
        max_wait: float = 30.0,
        max_retries: int | None = None,
        reset_retry_after: float = 60.0,
        heartbeat_timeout: float = 10.0,
        ping_interval: float | None = None,
        connect_timeout: float = 10.0,
        subscribe_timeout: float = 10.0,
        buffer_size: int = 10_000,
        backfill: bool = True,
        backfill_page: int = 1000,
        codec: type[Codec] | None = None,
        codec_options: dict[str, Any] | None = None,
        book_sync: SyncFactory | None = None,
        book_snapshot_retries: int = 8,
        book_snapshot_wait: float = 0.05,
        book_snapshot_max_wait: float = 2.0,
        limits: Limits | None = None,
        transport: Transport | None = None,
        wall_clock: Callable[[], int] | None = None,
    ) -> None:
        self.venue = venue
        #: What makes the WebSocket connections (tickloop.client.transport; None: picows).
        self.transport = transport
        #: The bounds applied to what the venue sends (tickloop.limits, docs/reliability.md).
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        self._codec_cls = codec if codec is not None else stream_codec(venue)
        self.url = url if url is not None else self._codec_cls.default_url
        if buffer_size < 1:
            raise ConfigError("buffer_size must be >= 1", field="buffer_size")
        Backoff(base_wait=base_wait, max_wait=max_wait, max_retries=max_retries)  # validates
        self._backoff_args = {
            "base_wait": base_wait,
            "max_wait": max_wait,
            "max_retries": max_retries,
            "reset_retry_after": reset_retry_after,
        }
        self.heartbeat_timeout = heartbeat_timeout
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self.subscribe_timeout = subscribe_timeout
        #: Stamps status events and backfill merges (Unix ns): the wall clock live, the
        #: recorded time in a replay (tickloop.replay), so that a replay is the same every run.
        self.wall_clock: Callable[[], int] = wall_clock if wall_clock is not None else time.time_ns
        self.buffer_size = buffer_size
        self.backfill_page = backfill_page
        self._codec_options = dict(codec_options or {})
        self._credentials = credentials
        self._token_provider = token_provider
        self._rest: Any = rest
        self._own_rest = False
        self._rest_url = rest_url
        if rest is None and rest_url is None:
            self._rest_url = self._codec_cls.rest_url(self.url)
        # Ids are tracked (dedupe, gap detection, backfill) only where the venue's trade ids are
        # contiguous; elsewhere an interruption is reported as a Gap with its time range.
        self._backfill_enabled = backfill and self._codec_cls.contiguous_trade_ids
        self._fanout = Fanout()
        self._fanout.on_unneeded = self._unneeded_soon
        self._fanout.on_overflow = self._consumer_overflowed
        self._fanout.on_failure = self._consumer_failed
        self._trade_routes = self._fanout.routes[Channel.TRADES]
        self._ticker_routes = self._fanout.routes[Channel.TICKER]
        self._candle_routes = self._fanout.routes[Channel.CANDLES]
        self._book_routes = self._fanout.routes[Channel.BOOK]
        self._raw_book_routes = self._fanout.routes[BOOK_DELTAS]
        self._order_routes = self._fanout.routes[Channel.ORDERS]
        self._book_rest: Any = None
        self._all_markets: list[str] | None = None  # what "*" stands for (markets())
        self._direct: frozenset[Channel] | None = None  # channels with an all-market stream
        self._markets_lock: asyncio.Lock | None = None
        self._books = BookFeed(
            venue,
            sync_factory=book_sync if book_sync is not None else make_sync,
            routes=self._book_routes,
            raw_routes=self._raw_book_routes,
            publish=self._book_status,
            resubscribe=self._resubscribe,
            source=self._book_source,
            snapshot_retries=book_snapshot_retries,
            snapshot_wait=book_snapshot_wait,
            snapshot_max_wait=book_snapshot_max_wait,
        )
        #: symbol -> state of each local book kept (BookFeed's own dict, read on the hot path)
        self._book_states = self._books.kept
        self._fill_routes = self._fanout.routes[Channel.FILLS]
        #: Which connection carries each upstream subscription (shard placement).
        self._placement = Placement(self._codec_cls.max_streams_per_connection, self._new_session)
        #: Every connection made, in order.
        self.sessions: list[WsSession] = self._placement.sessions
        #: The reconciler and the trade backfills: cancelled and awaited by aclose().
        self._tasks = TaskOwner(f"StreamClient({venue!r})")
        #: Handler consumers per route table (a row of the channel table each).
        self._handlers: dict[Channel | str, list[Consumer]] = {r: [] for r in BY_ROUTE}
        self._status_handlers: list[Consumer] = []
        self._unneeded: set[Subscription] = set()
        self._paused_by: dict[Consumer, set[WsSession]] = {}  # BACKPRESSURE consumers holding
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None  # for the unclosed report
        self._created_at: Any = None
        self.counters: dict[str, int] = {
            "connected": 0,
            "disconnected": 0,
            "reconnected": 0,
            "stale": 0,
            "gaps": 0,
            "gaps_recovered": 0,
            "backfilled": 0,
            "refused": 0,
            "consumers_detached": 0,
            "handler_errors": 0,  # a consumer's own handler raised (ConsumerFailed)
            "malformed": 0,
            "unconfirmed": 0,
            "bogus_trade_ids": 0,
        }
        self._trades = TradeFeed(
            venue,
            routes=self._trade_routes,
            track_ids=self._codec_cls.contiguous_trade_ids,
            source=self._trade_source,
            publish=self._fanout.publish_status,
            report=self.on_status,
            counters=self.counters,
            tasks=self._tasks,
            page=backfill_page,
            max_jump=self.limits.max_trade_id_jump,
            clock=self.wall_clock,
        )
        self._sinks: dict[type, Callable[[Any], None]] = {
            Trade: self._trades.on_trade,
            Ticker: self._on_ticker,
            Candle: self._on_candle,
            BookSnapshot: self._on_book,
            BookDelta: self._on_book,
            OrderEvent: self._on_order,
            Fill: self._on_fill,
        }

    # ------------------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> StreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._started:
            return
        if self._closed:
            raise StreamError("this StreamClient is closed", venue=self.venue)
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._created_at = creation_traceback(self._loop)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks.spawn(self._reconcile(), name=f"tickloop-stream-{self.venue}-reconciler")

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._started else "not started"
        return f"<StreamClient {self.venue} {self.url} {state}>"

    def __del__(self) -> None:
        # Started and never closed: say so where users look (module tickloop.client.unclosed).
        if getattr(self, "_started", False) and not self._closed:
            report_unclosed(
                self,
                f"StreamClient({self.venue!r})",
                self._loop,
                key="stream_client",
                source_traceback=self._created_at,
            )

    async def aclose(self) -> None:
        """End every consumer (their iterators stop), close every connection, await every task.
        Idempotent; leaving ``async with`` does it."""
        if self._closed:
            return
        self._closed = True
        self._fanout.close_all()
        for handlers in [*self._handlers.values(), self._status_handlers]:
            for consumer in handlers:
                await consumer.aclose()
            handlers.clear()
        await self._tasks.aclose()
        await self._books.aclose()
        for session in self.sessions:
            await session.close()
        if self._book_rest is not None:
            await self._book_rest.aclose()
            self._book_rest = None
        if self._own_rest and self._rest is not None:
            closer = getattr(self._rest, "aclose", None) or getattr(self._rest, "close", None)
            if closer is not None:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
        self._rest = None

    async def close(self) -> None:
        """Deprecated name of :meth:`aclose` (the async close of every tickloop stream object)."""
        warnings.warn(
            "StreamClient.close() is deprecated: use aclose()", DeprecationWarning, stacklevel=2
        )
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise StreamError("this StreamClient is closed", venue=self.venue)
        if not self._started:
            raise StreamError(
                "use `async with StreamClient(...)` (or await start()) first", venue=self.venue
            )

    # ------------------------------------------------------------------ async-iterator streams
    def trades(
        self,
        symbols: Symbols,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> Stream[Trade]:
        """Trades of one or several symbols (``"*"``, None or ``[]``: every market of the venue,
        from its market list; see :meth:`markets`), in trade-id order per symbol, none missed.

        ``overflow``: ``"error"`` (default) detaches a consumer that falls ``buffer`` trades
        behind with ConsumerOverflow, so it never delays the others; ``"backpressure"`` pauses
        reading the connection(s) carrying these trades while this consumer is ``buffer`` behind
        and resumes at a quarter of it: nothing is lost, but every consumer of those
        connections is slowed to this one's pace (for replay, backtests, benchmarks, and bots
        that must see every trade at full speed)."""
        return self._stream(_TRADES, subscriptions(_TRADES, symbols), buffer, overflow)

    def tickers(
        self,
        symbols: Symbols,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> Stream[Ticker]:
        """Tickers; a slow consumer gets the latest ticker of each symbol (``overflow``
        ``"conflate"``, the default; ``"error"`` and ``"backpressure"`` as for trades)."""
        return self._stream(_TICKERS, subscriptions(_TICKERS, symbols), buffer, overflow)

    def candles(
        self,
        symbols: Symbols,
        interval: str = "1m",
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> Stream[Candle]:
        """Candle updates; conflated per candle (a closed candle is never conflated away);
        ``overflow`` as for tickers."""
        subs = subscriptions(_CANDLES, symbols, interval)
        return self._stream(_CANDLES, subs, buffer, overflow)

    def orders(
        self, *, buffer: int | None = None, overflow: Overflow | str | None = None
    ) -> Stream[OrderEvent]:
        """The account's order events (private: needs ``credentials``). Never dropped;
        ``overflow`` as for trades."""
        return self._stream(_ORDERS, subscriptions(_ORDERS), buffer, overflow)

    def fills(
        self, *, buffer: int | None = None, overflow: Overflow | str | None = None
    ) -> Stream[Fill]:
        """The account's fills (private: needs ``credentials``). Never dropped; ``overflow``
        as for trades."""
        return self._stream(_FILLS, subscriptions(_FILLS), buffer, overflow)

    def books(
        self,
        symbols: Symbols,
        *,
        depth: int | None = None,
        conflate: float | None = None,
        buffer: int | None = None,
    ) -> Stream[BookView]:
        """Local order books, kept in sync (snapshots, deltas, sequence rules, checksums, resync).

        Yields a :class:`~tickloop.client.books.BookView` per delivery: an immutable copy of the
        top ``depth`` levels a side (all when None) taken at delivery, so it is the latest state
        then and never changes under you; a book known to be wrong is never delivered, and
        ``view.valid`` turns False if its book is found wrong later. ``conflate`` (milliseconds,
        event-loop clock): at most one book per symbol per interval, the latest, and the final
        state after a burst; None or 0: every update (a slow reader still gets only the latest
        pending book, never a queue of stale ones). ``depth`` is also the depth subscribed where
        the venue takes one (Kraken) and of REST snapshots (Binance): consumers of one symbol
        share one book, and asking for more levels than it is kept at raises ConfigError.
        BookInvalid / BookValid go to :meth:`status`."""
        self._check_open()
        subs = subscriptions(_BOOKS, symbols)
        consumer = self._book_consumer(subs, buffer, None, depth, conflate)
        return Stream(self, consumer, subs)

    def book_deltas(
        self,
        symbols: Symbols,
        *,
        overflow: Overflow | str | None = None,
        buffer: int | None = None,
    ) -> Stream[BookSnapshot | BookDelta]:
        """The venue's book messages of ``symbols`` as they arrive, typed, in order: the
        :class:`~tickloop.models.BookSnapshot` s the venue sends on the stream (on subscribe,
        and after a resubscription) and every :class:`~tickloop.models.BookDelta`. No local
        book is kept and nothing is checked: sequence gaps are visible through the models'
        ``sequence`` / ``first_sequence`` / ``prev_sequence`` fields, and a venue whose book
        starts from a REST snapshot (Binance) sends only deltas here. Shares the venue's book
        subscription with :meth:`books` consumers. Never dropped: ``overflow`` ``"error"``
        (default) or ``"backpressure"``, as for :meth:`trades`."""
        subs = subscriptions(_BOOK_DELTAS, symbols)
        return self._stream(_BOOK_DELTAS, subs, buffer, overflow)

    def book(self, symbol: str) -> OrderBook | None:
        """The live synchronised book of ``symbol`` while some consumer wants it (else None).
        It changes with every update and is replaced after a resync: check ``valid``, and take
        ``snapshot(n)`` to keep a copy."""
        return self._books.book(symbol)

    def status(self, *, buffer: int = 1000) -> AsyncIterator[StatusEvent]:
        """Connection and data-quality events: Connected, Disconnected, Reconnected, Stale, Gap,
        BookInvalid, BookValid, ConsumerDetached (a consumer that fell too far behind on a
        stream that never drops silently was detached), ConsumerFailed (a consumer's handler
        raised), Malformed (a message was skipped) and Unconfirmed."""
        self._check_open()
        consumer = Consumer("status", policy=Overflow.ERROR, maxsize=buffer, name="status")
        self._fanout.add_status(consumer)
        return _StatusStream(self, consumer)

    def _stream(
        self,
        row: Kind,
        subs: tuple[Subscription, ...],
        buffer: int | None,
        overflow: Overflow | str | None = None,
    ) -> Stream[Any]:
        self._check_open()
        consumer = self._consumer(row, buffer, None, subs, overflow)
        return Stream(self, consumer, subs)

    def _consumer(
        self,
        row: Kind,
        buffer: int | None,
        handler: Handler | None,
        subs: Iterable[Subscription],
        overflow: Overflow | str | None = None,
    ) -> Consumer:
        channel = row.route
        policy = row.policy(overflow)
        if buffer is not None and buffer < 1:
            raise ConfigError("buffer must be >= 1", field="buffer")
        symbols = [s.symbol for s in subs if s.symbol is not None]
        shown = ",".join(symbols[:3]) + (f",+{len(symbols) - 3}" if len(symbols) > 3 else "")
        kind = "iterator" if handler is None else getattr(handler, "__qualname__", "handler")
        consumer = Consumer(
            channel,
            policy=policy,
            maxsize=buffer if buffer is not None else self.buffer_size,
            key=row.key,
            handler=handler,
            name=f"{self.venue}:{channel}:{shown or '-'}:{kind}",
        )
        if policy is Overflow.BACKPRESSURE:
            consumer.on_pressure = self._pressure
        return consumer

    def _pressure(self, consumer: Consumer, paused: bool) -> None:
        """A BACKPRESSURE consumer crossed a water mark: pause (or resume) reading every
        connection carrying its streams."""
        if paused:
            sessions = {self._placement[s] for s in consumer.subscriptions if s in self._placement}
            self._paused_by[consumer] = sessions
            for session in sessions:
                session.pause_reading(consumer)
        else:
            for session in self._paused_by.pop(consumer, ()):
                session.resume_reading(consumer)

    def _book_consumer(
        self,
        subs: Iterable[Subscription],
        buffer: int | None,
        handler: Handler | None,
        depth: int | None,
        conflate: float | None,
        live: bool = False,
    ) -> BookConsumer:
        if depth is not None and (isinstance(depth, bool) or depth < 1):
            raise ConfigError("depth must be >= 1 or None", field="depth", venue=self.venue)
        if conflate is not None and not conflate >= 0:  # also refuses NaN
            raise ConfigError("conflate must be >= 0 ms or None", field="conflate")
        symbols = [s.symbol for s in subs if s.symbol is not None]
        shown = ",".join(symbols[:3]) + (f",+{len(symbols) - 3}" if len(symbols) > 3 else "")
        kind = "iterator" if handler is None else getattr(handler, "__qualname__", "handler")
        consumer = BookConsumer(
            loop=asyncio.get_running_loop(),
            depth=depth,
            conflate=conflate / 1000.0 if conflate else None,
            maxsize=buffer if buffer is not None else self.buffer_size,
            handler=handler,
            name=f"{self.venue}:book:{shown or '-'}:{kind}",
            live=live,
        )
        consumer.track = self._books.track
        return consumer

    # ------------------------------------------------------------------------ callback streams
    # Each subscribe_<kind> / unsubscribe_<kind> pair is one row of the channel table
    # (tickloop.client.channels): the bodies differ only by the row and their arguments.
    async def subscribe_trades(
        self,
        symbols: Symbols,
        handler: Handler,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> None:
        """Call ``handler(trade)`` (sync or async) for every trade of ``symbols`` (``"*"``:
        every market of the venue).

        Every ``subscribe_*`` returns once the venue confirmed the streams. It raises
        SubscriptionError when the venue refuses one (the handler is then not subscribed), and
        tickloop's TimeoutError when no confirmation came within ``subscribe_timeout`` (the
        venue may be unreachable: the subscription stays registered and is made as soon as it
        is back). ``overflow`` is as for :meth:`trades`; it matters for async handlers (a sync
        handler is called inline and never falls behind)."""
        await self._subscribe_handler(
            _TRADES, subscriptions(_TRADES, symbols), handler, buffer, overflow=overflow
        )

    async def unsubscribe_trades(self, symbols: Symbols, handler: Handler | None = None) -> None:
        """Stop calling ``handler`` (every trades handler when None) for ``symbols`` (``"*"``:
        all of them). Every ``unsubscribe_*`` works the same way."""
        await self._unsubscribe_handler(_TRADES, symbols, handler)

    async def subscribe_tickers(
        self,
        symbols: Symbols,
        handler: Handler,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> None:
        """Call ``handler(ticker)`` for the tickers of ``symbols`` (``overflow`` as for
        :meth:`tickers`)."""
        await self._subscribe_handler(
            _TICKERS, subscriptions(_TICKERS, symbols), handler, buffer, overflow=overflow
        )

    async def unsubscribe_tickers(self, symbols: Symbols, handler: Handler | None = None) -> None:
        await self._unsubscribe_handler(_TICKERS, symbols, handler)

    async def subscribe_candles(
        self,
        symbols: Symbols,
        interval: str,
        handler: Handler,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> None:
        """Call ``handler(candle)`` for the ``interval`` candles of ``symbols``."""
        subs = subscriptions(_CANDLES, symbols, interval)
        await self._subscribe_handler(_CANDLES, subs, handler, buffer, overflow=overflow)

    async def unsubscribe_candles(
        self, symbols: Symbols, interval: str, handler: Handler | None = None
    ) -> None:
        await self._unsubscribe_handler(_CANDLES, symbols, handler, interval=interval)

    async def subscribe_orders(
        self,
        handler: Handler,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> None:
        """Call ``handler(event)`` for the account's order events (needs ``credentials``)."""
        await self._subscribe_handler(
            _ORDERS, subscriptions(_ORDERS), handler, buffer, overflow=overflow
        )

    async def unsubscribe_orders(self, handler: Handler | None = None) -> None:
        await self._unsubscribe_handler(_ORDERS, None, handler)

    async def subscribe_fills(
        self,
        handler: Handler,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> None:
        """Call ``handler(fill)`` for the account's fills (needs ``credentials``)."""
        await self._subscribe_handler(
            _FILLS, subscriptions(_FILLS), handler, buffer, overflow=overflow
        )

    async def unsubscribe_fills(self, handler: Handler | None = None) -> None:
        await self._unsubscribe_handler(_FILLS, None, handler)

    async def subscribe_books(
        self,
        symbols: Symbols,
        handler: Handler,
        *,
        depth: int | None = None,
        conflate: float | None = None,
        buffer: int | None = None,
        live: bool = False,
    ) -> None:
        """Call ``handler(view)`` (sync or async) with the book of ``symbols`` as :meth:`books`
        yields it (same ``depth`` and ``conflate``). A sync handler is called inline with a view
        taken then; an async one gets the latest book each time it is ready for the next.

        ``live=True`` (sync handlers only): the handler is called inline with the live, valid
        :class:`~tickloop.book.OrderBook` itself, no copy (what cryptofeed's book callback
        does); it must read what it needs during the call and not keep the object, which
        changes with the next update. ``depth`` then only bounds the upstream subscription and
        REST snapshots; the live book holds what the synchroniser keeps."""
        subs = subscriptions(_BOOKS, symbols)
        interval = conflate / 1000.0 if conflate else None
        if live and _is_async(handler):
            raise ConfigError(
                "live=True hands over the live book inline: it needs a sync handler",
                field="live",
            )

        def same(c: Consumer) -> bool:
            return (
                isinstance(c, BookConsumer)
                and c.handler == handler
                and c.depth == depth
                and c.conflate == interval
                and c.live == live
            )

        await self._subscribe_handler(
            _BOOKS,
            subs,
            handler,
            buffer,
            same=same,
            make=lambda: self._book_consumer(subs, buffer, handler, depth, conflate, live),
        )

    async def unsubscribe_books(self, symbols: Symbols, handler: Handler | None = None) -> None:
        """Stop calling ``handler`` (every book handler when None) for ``symbols``."""
        await self._unsubscribe_handler(_BOOKS, symbols, handler)

    async def subscribe_book_deltas(
        self,
        symbols: Symbols,
        handler: Handler,
        *,
        buffer: int | None = None,
        overflow: Overflow | str | None = None,
    ) -> None:
        """Call ``handler(message)`` (sync or async) with every book snapshot and delta of
        ``symbols`` as :meth:`book_deltas` yields them (same ``overflow``; a sync handler is
        called inline and never falls behind)."""
        subs = subscriptions(_BOOK_DELTAS, symbols)
        await self._subscribe_handler(_BOOK_DELTAS, subs, handler, buffer, overflow=overflow)

    async def unsubscribe_book_deltas(
        self, symbols: Symbols, handler: Handler | None = None
    ) -> None:
        """Stop calling ``handler`` (every raw book handler when None) for ``symbols``."""
        await self._unsubscribe_handler(_BOOK_DELTAS, symbols, handler)

    async def subscribe_status(self, handler: Handler, *, buffer: int = 1000) -> None:
        """Call ``handler(event)`` for every status event (see :meth:`status`). Async like
        every ``subscribe_*``; it has nothing to wait for, so it is subscribed on return."""
        self._check_open()
        consumer = Consumer(
            "status", policy=Overflow.ERROR, maxsize=buffer, handler=handler, name="status"
        )
        self._fanout.add_status(consumer)
        self._status_handlers.append(consumer)

    async def unsubscribe_status(self, handler: Handler) -> None:
        """Stop calling ``handler`` with status events (every subscription of it)."""
        for consumer in [c for c in self._status_handlers if c.handler == handler]:
            self._status_handlers.remove(consumer)
            self._fanout.remove_status(consumer)
            consumer.on_detach = None
            await consumer.aclose()

    def change_handler(
        self, channel: str | Channel, new_handler: Handler, old_handler: Handler | None = None
    ) -> int:
        """Send ``channel``'s events to ``new_handler`` instead of ``old_handler`` (every handler
        of the channel when None), keeping the subscriptions. Returns how many were changed.
        Takes effect at once (nothing to await): the next event goes to ``new_handler``."""
        self._check_open()
        row = kind(channel)
        changed = 0
        for consumer in self._handlers[row.route]:
            if consumer.closed:
                continue
            if old_handler is None or consumer.handler == old_handler:
                consumer.set_handler(new_handler)
                changed += 1
        return changed

    async def _subscribe_handler(
        self,
        row: Kind,
        subs: tuple[Subscription, ...],
        handler: Handler,
        buffer: int | None,
        *,
        same: Callable[[Consumer], bool] | None = None,
        make: Callable[[], Consumer] | None = None,
        overflow: Overflow | str | None = None,
    ) -> None:
        self._check_open()
        row.policy(overflow)  # a bad policy fails before anything is registered
        handlers = self._handlers[row.route]
        handlers[:] = [c for c in handlers if not c.closed]  # overflowed or refused ones
        if same is None:
            consumer = next((c for c in handlers if c.handler == handler), None)
        else:
            consumer = next((c for c in handlers if same(c)), None)
        if consumer is None:
            if make is not None:
                consumer = make()
            else:
                consumer = self._consumer(row, buffer, handler, subs, overflow)
            handlers.append(consumer)
        try:
            await self._attach(consumer, subs, wait=True)
        except BaseException:
            if not consumer.subscriptions and consumer in handlers:
                handlers.remove(consumer)
                await consumer.aclose()
            raise

    async def _unsubscribe_handler(
        self,
        row: Kind,
        symbols: Symbols,
        handler: Handler | None,
        *,
        interval: str | None = None,
    ) -> None:
        self._check_open()
        handlers = self._handlers[row.route]
        for consumer in list(handlers):
            if handler is not None and consumer.handler != handler:
                continue
            gone = self._fanout.detach(consumer, held(consumer.subscriptions, symbols, interval))
            if not consumer.subscriptions:
                handlers.remove(consumer)
                await consumer.aclose()
            if gone:
                await self._unsubscribe_upstream(gone)

    # ------------------------------------------------------------------ subscription plumbing
    async def _attach(
        self, consumer: Consumer, subs: tuple[Subscription, ...], *, wait: bool
    ) -> None:
        self._check_open()
        if any(s.symbol == ALL for s in subs):
            subs = await self._expand(subs)
        if isinstance(consumer, BookConsumer):
            subs = self._resolve_books(consumer, subs)
        elif consumer.channel == BOOK_DELTAS:
            subs = tuple(
                s if s in consumer.subscriptions else self._books.resolve_raw(s) for s in subs
            )
        new = self._fanout.attach(consumer, subs)
        if isinstance(consumer, BookConsumer):
            # A book whose subscription raw consumers already hold: its snapshot is past.
            for sub in subs:
                session = self._placement.get(sub)
                if sub not in new and session is not None and sub in session.confirmed:
                    self._books.kick(sub)
        if not new:
            return
        for sub in new:
            if sub.channel is Channel.TRADES and sub.symbol is not None:
                self._trades.watch(sub.symbol)
        assert self._lock is not None
        async with self._lock:
            by_session = self._placement.plan(new)
        for session, session_subs in by_session.items():
            await session.add(session_subs)
        if wait:
            try:
                for session in by_session:
                    await session.wait_confirmed(
                        [s for s in new if self._placement.get(s) is session],
                        self.subscribe_timeout,
                    )
            except StreamError as exc:
                # One refused stream ends the consumer, which releases its other streams: the
                # refusal is the error that matters.
                refusal = consumer.error
                if isinstance(refusal, SubscriptionError) and refusal is not exc:
                    raise refusal from None
                raise

    async def _expand(self, subs: tuple[Subscription, ...]) -> tuple[Subscription, ...]:
        """Replace each every-market subscription (symbol ``"*"``) by one per market, unless the
        venue streams that channel for every market at once (``Codec.all_markets``): then the
        ``"*"`` subscription is that one stream."""
        direct = self._all_market_channels()
        out: dict[Subscription, None] = {}
        for sub in subs:
            if sub.symbol == ALL and sub.channel not in direct:
                for symbol in await self.markets():
                    out[msgspec.structs.replace(sub, symbol=symbol)] = None
            else:
                out[sub] = None
        return tuple(out)

    def _all_market_channels(self) -> frozenset[Channel]:
        if self._direct is None:
            self._direct = self._codec_cls.create(**self._session_codec_options()).all_markets()
        return self._direct

    async def markets(self, *, refresh: bool = False) -> list[str]:
        """The symbols ``"*"`` stands for: every market of the venue that is open for trading,
        from its market list (REST), asked once per client (``refresh=True`` asks again).
        A subscription to ``"*"`` covers the markets listed when it was made."""
        self._check_open()
        lock = self._markets_lock
        if lock is None:
            lock = self._markets_lock = asyncio.Lock()
        async with lock:
            if self._all_markets is None or refresh:
                rest = self._market_source()
                try:
                    instruments = await rest.instruments()
                except (TickloopError, OSError) as exc:
                    reason = exc.message if isinstance(exc, TickloopError) else str(exc)
                    raise StreamError(
                        f"'*' needs the venue's market list, which failed: {reason}",
                        venue=self.venue,
                    ) from exc
                listed = list(dict.fromkeys(i.symbol for i in instruments if i.status == "open"))
                if not listed:
                    raise StreamError("'*': the venue lists no open market", venue=self.venue)
                self._all_markets = listed
            return list(self._all_markets)

    def _market_source(self) -> MarketSource:
        rest = self._rest
        if rest is not None and hasattr(rest, "instruments"):
            source: MarketSource = rest
            return source
        public: MarketSource = self._public_rest()
        return public

    def _public_rest(self) -> Any:
        """A REST client for the public calls (books, markets) a user-given ``rest`` lacks."""
        if self._rest is None:
            from .rest import AsyncClient

            self._rest = AsyncClient(self.venue, url=self._rest_url, credentials=self._credentials)
            self._own_rest = True
            return self._rest
        if self._book_rest is None:
            from .rest import AsyncClient

            self._book_rest = AsyncClient(self.venue, url=self._rest_url)
        return self._book_rest

    def _resolve_books(
        self, consumer: BookConsumer, subs: tuple[Subscription, ...]
    ) -> tuple[Subscription, ...]:
        """The shared upstream subscription of each book (one synchroniser per symbol)."""
        resolved: list[Subscription] = []
        try:
            for sub in subs:
                if sub.channel is Channel.BOOK and sub not in consumer.subscriptions:
                    sub = self._books.resolve(sub, consumer.depth)
                resolved.append(sub)
        except BaseException:
            for sub in resolved:
                if sub.channel is Channel.BOOK:
                    self._books.unused(sub)
            raise
        return tuple(resolved)

    async def _resubscribe(self, sub: Subscription) -> None:
        """Send ``sub`` again on its connection (unsubscribe, subscribe): the venue answers with
        a fresh snapshot. The connection and its other streams are not touched."""
        session = self._placement.get(sub)
        if session is None or not usable(session):
            return
        try:
            await session.remove([sub])
        finally:
            # Put it back even if the removal's send failed (the session reconnects and
            # restores it), unless every consumer left meanwhile.
            if (
                not self._closed
                and self._fanout.refs.get(sub, 0) > 0
                and self._placement.get(sub) is session
            ):
                await session.add([sub])

    def _book_source(self) -> BookSource:
        rest = self._rest
        if rest is not None and hasattr(rest, "book"):
            source: BookSource = rest
            return source
        public: BookSource = self._public_rest()
        return public

    def _book_status(self, event: BookInvalid | BookValid) -> None:
        self._fanout.publish_status(event)

    def _session_codec_options(self) -> dict[str, Any]:
        options = self._codec_options
        if "limits" not in options and _takes_limits(self._codec_cls):
            options = {**options, "limits": self.limits}
        return options

    def _new_session(self, index: int) -> WsSession:
        """A new connection (the placement's factory: it decides when one is needed)."""
        options = self._session_codec_options()
        codec_cls = self._codec_cls
        return WsSession(
            lambda: codec_cls.create(**options),
            self.url,
            owner=self,
            sinks=self._sinks,
            index=index,
            backoff=Backoff(**self._backoff_args),  # type: ignore[arg-type]
            heartbeat_timeout=self.heartbeat_timeout,
            ping_interval=self.ping_interval,
            connect_timeout=self.connect_timeout,
            token_provider=self._token,
            limits=self.limits,
            subscribe_timeout=self.subscribe_timeout,
            transport=self.transport,
            wall_clock=self.wall_clock,
        )

    async def _leave(self, consumer: Consumer) -> None:
        consumer.on_detach = None
        gone = self._fanout.detach(consumer)
        consumer.close()
        if gone and not self._closed:
            await self._unsubscribe_upstream(gone)

    def _leave_soon(self, consumer: Consumer) -> None:
        """From a finaliser (no await possible): detach now, unsubscribe upstream in the
        reconciler task."""
        consumer.on_detach = None
        gone = self._fanout.detach(consumer)
        consumer.close()
        if gone:
            self._unneeded_soon(gone)

    def _consumer_overflowed(
        self, consumer: Consumer, error: ConsumerOverflow, subs: tuple[Subscription, ...]
    ) -> None:
        self.counters["consumers_detached"] += 1
        self._fanout.publish_status(
            ConsumerDetached(
                venue=self.venue,
                channel=str(consumer.channel),
                consumer=consumer.name or str(consumer.channel),
                symbols=tuple(dict.fromkeys(s.symbol for s in subs if s.symbol is not None)),
                dropped=error.dropped,
                ts=self.wall_clock(),
            )
        )

    def _consumer_failed(self, consumer: Consumer, exc: Exception) -> None:
        """A consumer's handler raised: counted, and reported as a ConsumerFailed status event
        on its 1st, 2nd, 4th... failure (the consumer logs it with its traceback)."""
        self.counters["handler_errors"] += 1
        count = consumer.stats.handler_errors
        if count & (count - 1):
            return
        error = f"{type(exc).__name__}: {exc}"
        self._fanout.publish_status(
            ConsumerFailed(
                venue=self.venue,
                channel=str(consumer.channel),
                consumer=consumer.name or str(consumer.channel),
                symbols=tuple(
                    dict.fromkeys(s.symbol for s in consumer.subscriptions if s.symbol is not None)
                ),
                error=error if len(error) <= 200 else error[:200] + "...",
                count=count,
                ts=self.wall_clock(),
            )
        )

    def _unneeded_soon(self, subs: list[Subscription]) -> None:
        self._unneeded.update(subs)
        if self._wake is not None:
            self._wake.set()

    async def _reconcile(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            subs, self._unneeded = list(self._unneeded), set()
            if subs:
                try:
                    await self._unsubscribe_upstream(subs)
                except TickloopError as exc:
                    log.warning("%s: unsubscribe failed: %s", self.venue, exc)

    async def _unsubscribe_upstream(self, subs: list[Subscription]) -> None:
        subs = [s for s in subs if self._fanout.refs.get(s, 0) == 0]  # none joined meanwhile
        by_session = self._placement.by_session(subs)
        for sub in subs:
            if sub.channel is Channel.TRADES and sub.symbol is not None:
                self._trades.forget(sub.symbol)
            elif sub.channel is Channel.BOOK:
                self._books.drop(sub)
        for session, session_subs in by_session.items():
            await session.remove(session_subs)

    async def _token(self) -> str:
        if self._token_provider is not None:
            return await self._token_provider()
        if self._credentials is None:
            raise AuthError("private channels need credentials=", venue=self.venue)
        via: Any = self._rest if self._rest is not None and hasattr(self._rest, "http") else None
        if via is None:
            via = self._rest_url or rest_codec(self.venue).default_url
        token: str = await self._credentials.token(via, venue=self.venue)
        return token

    # ------------------------------------------------------------------------ SessionOwner API
    def on_status(self, event: Any) -> None:
        name = type(event).__name__.lower()
        if name in self.counters:
            self.counters[name] += 1
        self._fanout.publish_status(event)
        if (
            type(event) is Malformed
            and event.symbol is not None
            and event.channel == Channel.BOOK.value
        ):
            # The book missed a message it cannot do without: invalid until resynced.
            self._books.on_malformed(event.symbol, event.ts)

    def _unconfirmed(self, subscriptions: Iterable[Subscription]) -> list[Subscription]:
        """Which of ``subscriptions`` the venue has not confirmed on their connection."""
        out = []
        for sub in subscriptions:
            session = self._placement.get(sub)
            if session is None or sub not in session.confirmed:
                out.append(sub)
        return out

    def on_confirmed(self, session: WsSession, subscriptions: tuple[Subscription, ...]) -> None:
        for sub in subscriptions:
            if sub.channel is Channel.BOOK:
                self._books.on_confirmed(sub)
            elif sub.channel is Channel.TRADES and sub.symbol is not None:
                self._trades.on_confirmed(sub.symbol)

    def on_lost(self, session: WsSession, subscriptions: list[Subscription], ts: int) -> None:
        for sub in subscriptions:
            if sub.channel is Channel.BOOK:
                self._books.on_lost(sub, ts)
            elif sub.channel is Channel.TRADES and sub.symbol is not None:
                self._trades.on_lost(sub.symbol, ts)

    def on_refused(
        self, session: WsSession, subscription: Subscription, error: StreamError
    ) -> None:
        self.counters["refused"] += 1
        self._placement.pop(subscription, None)
        self._fanout.fail(subscription, error)
        if subscription.channel is Channel.TRADES and subscription.symbol is not None:
            self._trades.on_refused(subscription.symbol)
        elif subscription.channel is Channel.BOOK:
            self._books.drop(subscription)

    def on_failed(self, session: WsSession, error: TickloopError) -> None:
        for sub in list(session.subscriptions):
            self._placement.pop(sub, None)
            ended = (
                error
                if isinstance(error, LimitExceeded)
                else StreamError(f"stream ended: {error.message}", venue=self.venue)
            )
            self._fanout.fail(sub, ended)
            if sub.channel is Channel.BOOK:
                self._books.drop(sub)
        for consumer in self._handlers_all():
            if consumer.closed and consumer.error is not None:
                log.error("%s: %s", consumer.name, consumer.error)

    def _handlers_all(self) -> list[Consumer]:
        return [c for handlers in self._handlers.values() for c in handlers]

    # ------------------------------------------------------------------------------- hot path
    def _on_book(self, event: BookSnapshot | BookDelta) -> None:
        symbol = event.symbol
        consumers = self._raw_book_routes.get(symbol)
        if consumers:
            for consumer in consumers:
                consumer.push(event)
        if symbol in self._book_states:  # a local book is kept for this symbol
            self._books.on_update(event)

    def _on_ticker(self, ticker: Ticker) -> None:
        routes = self._ticker_routes
        consumers = routes.get(ticker.symbol)
        if consumers:
            for consumer in consumers:
                consumer.push(ticker)
        every = routes.get(ALL)  # an all-market ticker stream's consumers (Codec.all_markets)
        if every:
            for consumer in every:
                consumer.push(ticker)

    def _on_candle(self, candle: Candle) -> None:
        consumers = self._candle_routes.get((candle.symbol, candle.interval))
        if consumers:
            for consumer in consumers:
                consumer.push(candle)

    def _on_order(self, event: OrderEvent) -> None:
        for consumer in self._order_routes.get(None, ()):
            consumer.push(event)

    def _on_fill(self, fill: Fill) -> None:
        for consumer in self._fill_routes.get(None, ()):
            consumer.push(fill)

    # ---------------------------------------------------------------------------- REST
    def _trade_source(self) -> TradeSource | None:
        if not self._backfill_enabled:
            return None
        if self._rest is None:
            from .rest import AsyncClient

            self._rest = AsyncClient(self.venue, url=self._rest_url, credentials=self._credentials)
            self._own_rest = True
        source: TradeSource | None = self._rest
        return source

    # -------------------------------------------------------------------------------- insight
    def upstream(self) -> dict[Subscription, int]:
        """Every upstream subscription and how many consumers share it."""
        return dict(self._fanout.refs)

    def stats(self) -> dict[str, Any]:
        """Counters: messages, malformed and unknown frames, reconnects, gaps, consumers' lag."""
        sessions = self.sessions
        return {
            "venue": self.venue,
            "connections": len(sessions),
            "connections_open": sum(1 for s in sessions if s.connected),
            "frames": sum(s.frames for s in sessions),
            "events": sum(s.events for s in sessions),
            "malformed": sum(s.stats.malformed for s in sessions),
            "unknown": sum(s.unknown for s in sessions),
            "uncached_symbols": sum(s.uncached_symbols for s in sessions),
            "reconnects": sum(s.stats.reconnects for s in sessions),
            "stale": sum(s.stats.stale for s in sessions),
            "duplicates": self._trades.duplicates,
            **self.counters,
            **self._books.counters,
            "books": self._books.stats(),
            "consumers": [
                {"name": c.name, "backlog": len(c), **c.stats.as_dict()}
                for c in [*self._fanout.consumers, *self._fanout.status]
            ],
        }


class _StatusStream:
    def __init__(self, client: StreamClient, consumer: Consumer) -> None:
        self._client = weakref.ref(client)
        self._consumer = consumer

    def __aiter__(self) -> _StatusStream:
        return self

    async def __anext__(self) -> StatusEvent:
        try:
            event: StatusEvent = await self._consumer.get()
        except asyncio.CancelledError:
            self._remove()
            raise
        return event

    def _remove(self) -> None:
        client = self._client()
        if client is not None:
            client._fanout.remove_status(self._consumer)

    async def aclose(self) -> None:
        self._consumer.on_detach = None
        self._consumer.close()
        client = self._client()
        if client is not None:
            client._fanout.remove_status(self._consumer)

    def __del__(self) -> None:
        self._remove()


def _takes_limits(codec_cls: type[Codec]) -> bool:
    """Whether a codec's constructor takes ``limits=`` (every built-in one does; a plug-in
    codec may not)."""
    try:
        parameters = inspect.signature(codec_cls).parameters
    except (TypeError, ValueError):
        return False
    return "limits" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
