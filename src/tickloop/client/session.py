"""The one WebSocket session class: every venue's connections go through it.

A :class:`WsSession` is one logical connection to a venue: a thin shell that runs a
:class:`~tickloop.client.session_core.SessionCore` (every decision: reconciliation, batching by
the codec's limits, confirmations, login, heartbeat, reconnect with backoff) on an injected
:class:`~tickloop.client.transport.Transport` (picows by default). It feeds the core what happens
(connections made and lost, decoded control messages, tokens, the clock at the deadlines the
core asks for) and carries out what the core decides (connect, send, close, fetch a token, tell
the owner). Everything venue-specific is in the :class:`~tickloop.venues.base.Codec`; this
module has no venue branch and no socket.

Hot path: the transport calls :class:`~.route.FrameRouter`'s ``on_frame`` for each message; it
is decoded there and each event is dispatched synchronously by its type through one dict lookup
(data sinks supplied by the owner; control messages go to the core). No task, no queue and no
log line per message. A message that cannot be decoded is counted and skipped, never fatal; a
sample of them is logged with its traceback (at most one line per ``LOG_EVERY`` seconds and
session). A sink that raises is counted apart (``stats.dispatch_errors``), logged the same way,
and never ends the frame's other events.

Status is data: the owner (:class:`SessionOwner`, the StreamClient) is told about connects,
reconnects with their downtime, stale connections, refused subscriptions and final failure, and
turns them into status events. Transports translate their library's errors to
:mod:`tickloop.exceptions`; none leaks.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from ..exceptions import LimitExceeded, NetworkError, StreamError, TickloopError, TimeoutError
from ..limits import DEFAULT_LIMITS, Limits
from ..models import Connected, Disconnected, Malformed, Reconnected, Stale, Unconfirmed
from ..venues.base import (
    Codec,
    Heartbeat,
    LoggedIn,
    Pong,
    Subscribed,
    Subscription,
    Unsubscribed,
    VenueError,
)
from .backoff import Backoff
from .route import FrameRouter
from .session_core import (
    Close,
    Confirmed,
    Connect,
    Failed,
    FetchToken,
    Lost,
    Notify,
    Refused,
    Send,
    SessionCore,
    SessionState,
    SessionStats,
)
from .transport import LOOPBACK_RECV_BUFFER, Connection, PicowsTransport, Transport

__all__ = [
    "LOG_EVERY",
    "LOOPBACK_RECV_BUFFER",
    "SessionOwner",
    "SessionState",
    "SessionStats",
    "WsSession",
]

log = logging.getLogger("tickloop.client.session")

#: Seconds between two log lines about skipped messages (or failing sinks) of one session: the
#: first is logged at once with its traceback, later ones are counted into the next line.
LOG_EVERY = 10.0


class SessionOwner(Protocol):
    """What a session reports to the object that owns it."""

    def on_status(
        self, event: Connected | Disconnected | Reconnected | Stale | Malformed | Unconfirmed
    ) -> None: ...

    def on_confirmed(self, session: WsSession, subscriptions: tuple[Subscription, ...]) -> None:
        """The venue confirmed these subscriptions on the current connection."""

    def on_lost(self, session: WsSession, subscriptions: list[Subscription], ts: int) -> None:
        """The connection carrying these subscriptions is gone (data may be missed from now)."""

    def on_refused(
        self, session: WsSession, subscription: Subscription, error: StreamError
    ) -> None:
        """The venue refused a subscription for good; the session no longer carries it."""

    def on_failed(self, session: WsSession, error: TickloopError) -> None:
        """The session gave up; every subscription it carried is ended with ``error``."""


class _Sampler:
    """Rate-limited logging of one kind of failure: the first at once, with its traceback; then
    at most one line per ``every`` seconds, saying how many were not logged."""

    __slots__ = ("every", "last", "quiet")

    def __init__(self, every: float) -> None:
        self.every = every
        self.last: float | None = None
        self.quiet = 0

    def due(self, now: float) -> int | None:
        """None: stay quiet; else log now (the count of failures not logged since)."""
        if self.last is not None and now - self.last < self.every:
            self.quiet += 1
            return None
        self.last = now
        quiet, self.quiet = self.quiet, 0
        return quiet


class _Conn:
    """The session's side of one physical connection: the :class:`~.transport.FrameSink` the
    transport delivers to. Each message goes to :class:`~.route.FrameRouter` (decoded, each
    event dispatched synchronously by its type through one dict lookup), whose ``on_frame``
    the transport calls directly; the rest of the sink's calls come here."""

    __slots__ = (
        "closed",
        "codec",
        "connection",
        "limit",
        "on_frame",
        "reason",
        "router",
        "session",
    )

    def __init__(self, session: WsSession, codec: Codec) -> None:
        self.session = session
        self.codec = codec
        self.router = FrameRouter(
            codec.decode, session._dispatch, self._malformed, session._sink_failed
        )
        #: The FrameSink's per-message call: the router's own (compiled where it could be).
        self.on_frame: Callable[[bytes | memoryview, int], None] = self.router.on_frame
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connection: Connection | None = None
        self.reason = ""  # the transport's reason for the end
        self.limit: str | None = None  # the bound the venue broke to end it, if any

    @property
    def rx(self) -> int:
        connection = self.connection
        return connection.received if connection is not None else 0

    @property
    def events(self) -> int:
        """Events decoded from this connection's messages."""
        return self.router.events

    def _malformed(self, exc: Exception, size: int) -> None:
        self.session._malformed(self, exc, size)

    def on_oversized(self, limit: str, size: int, now_ns: int) -> None:
        self.session._oversized(self, limit, size)

    def on_closed(self, reason: str, now_ns: int, limit: str | None) -> None:
        self.reason = reason
        self.limit = limit
        if not self.closed.done():
            self.closed.set_result(None)
        self.session._on_closed(self)


class WsSession:
    """One logical WebSocket connection to a venue (module docstring)."""

    def __init__(
        self,
        codec_factory: Callable[[], Codec],
        url: str,
        *,
        owner: SessionOwner,
        sinks: Mapping[type, Callable[[Any], None]],
        index: int = 0,
        backoff: Backoff | None = None,
        heartbeat_timeout: float = 10.0,
        ping_interval: float | None = None,
        connect_timeout: float = 10.0,
        token_provider: Callable[[], Awaitable[str]] | None = None,
        max_frame_size: int | None = None,
        loopback_recv_buffer: int | None = LOOPBACK_RECV_BUFFER,
        limits: Limits = DEFAULT_LIMITS,
        subscribe_timeout: float = 10.0,
        transport: Transport | None = None,
        wall_clock: Callable[[], int] | None = None,
    ) -> None:
        self._codec_factory = codec_factory
        self._codec_cls = type(codec_factory())
        self.venue = self._codec_cls.venue
        self.base_url = url
        self.index = index
        self.name = f"{self.venue}#{index}"
        self.owner = owner
        self.token_provider = token_provider
        #: The bounds of tickloop.limits this session applies (message size across fragments,
        #: pending frames, malformed messages per connection).
        self.limits = limits
        self.max_frame_size = (
            max_frame_size if max_frame_size is not None else limits.max_frame_size
        )
        #: What makes the connections (tickloop.client.transport): picows by default, with
        #: ``max_frame_size`` and ``loopback_recv_buffer``; those two apply to that default only.
        self.transport: Transport = (
            transport
            if transport is not None
            else PicowsTransport(
                max_frame_size=self.max_frame_size, loopback_recv_buffer=loopback_recv_buffer
            )
        )
        #: Every decision (tickloop.client.session_core); this class only carries them out.
        self.core = SessionCore(
            self._codec_cls,
            url=url,
            index=index,
            backoff=backoff,
            heartbeat_timeout=heartbeat_timeout,
            ping_interval=ping_interval,
            connect_timeout=connect_timeout,
            subscribe_timeout=subscribe_timeout,
            limits=limits,
            can_login=token_provider is not None,
            # stamps status events: the wall clock live, the recorded time in a replay
            clock_ns=wall_clock if wall_clock is not None else time.time_ns,
        )
        self._dispatch: dict[type, Callable[[Any], None]] = dict(sinks)
        self._dispatch.update(
            {
                Subscribed: self._on_control,
                Unsubscribed: self._on_control,
                LoggedIn: self._on_control,
                VenueError: self._on_venue_error,
                Pong: _ignore,
                Heartbeat: _ignore,
            }
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Connection | None = None
        self._listener: _Conn | None = None
        self._codec: Codec | None = None
        self._rx_before = 0  # frames of earlier connections
        self._events_before = 0
        self._waiters: dict[Subscription, list[asyncio.Future[None]]] = {}
        self._helpers: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._applying = False
        self._malformed_log = _Sampler(LOG_EVERY)
        self._sink_log = _Sampler(LOG_EVERY)
        #: Who asked to stop reading the socket (flow control: consumers above their high
        #: water mark). Reading is paused while this is not empty, on every physical connection.
        self._pausers: set[object] = set()

    def __repr__(self) -> str:
        return f"<WsSession {self.name} {self.state.value} streams={len(self.subscriptions)}>"

    # ------------------------------------------------------------------------ what it carries
    @property
    def state(self) -> SessionState:
        return self.core.state

    @property
    def stats(self) -> SessionStats:
        return self.core.stats

    @property
    def subscriptions(self) -> set[Subscription]:
        """What this session should carry, whatever the connection's state (read only)."""
        return self.core.subscriptions

    @property
    def error(self) -> TickloopError | None:
        return self.core.error

    @property
    def backoff(self) -> Backoff:
        return self.core.backoff

    @property
    def heartbeat_timeout(self) -> float:
        return self.core.heartbeat_timeout

    @property
    def subscribe_timeout(self) -> float:
        return self.core.subscribe_timeout

    @property
    def ping_interval(self) -> float:
        return self.core.ping_interval

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def connection(self) -> Connection | None:
        """The current physical connection (None between connections)."""
        return self._connection

    @property
    def confirmed(self) -> frozenset[Subscription]:
        return self.core.confirmed

    @property
    def frames(self) -> int:
        """Frames received over every connection of this session."""
        listener = self._listener
        return self._rx_before + (listener.rx if listener is not None else 0)

    @property
    def events(self) -> int:
        """Events decoded over every connection of this session."""
        listener = self._listener
        return self._events_before + (listener.events if listener is not None else 0)

    @property
    def malformed(self) -> int:
        return self.stats.malformed

    @property
    def unknown(self) -> int:
        return self._codec.unknown if self._codec is not None else 0

    @property
    def uncached_symbols(self) -> int:
        """Symbol names the current connection's codec decoded past limits.max_symbols."""
        return self._codec.uncached_symbols if self._codec is not None else 0

    # --------------------------------------------------------------------------- flow control
    @property
    def paused(self) -> bool:
        """Whether reading the socket is paused for flow control (:meth:`pause_reading`)."""
        return bool(self._pausers)

    def pause_reading(self, owner: object) -> None:
        """Stop reading the socket until every ``owner`` that asked has called
        :meth:`resume_reading`: the venue's frames wait in the kernel's buffers (and then the
        venue's) instead of in a consumer's. Frames of a socket read already under way are
        still delivered. Delays every stream of this connection."""
        first = not self._pausers
        self._pausers.add(owner)
        if first:
            self.core.set_paused(True, self._now())
            if self._connection is not None:
                self._connection.pause_reading()

    def resume_reading(self, owner: object) -> None:
        if owner not in self._pausers:
            return
        self._pausers.discard(owner)
        if not self._pausers:
            self.core.set_paused(False, self._now())
            if self._connection is not None:
                self._connection.resume_reading()

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.core.start(self._now())
        self._apply()

    async def close(self) -> None:
        """Close the connection and stop reconnecting; waits for what the session started."""
        listener = self._listener
        self.core.close(self._now())
        self._apply()
        self._cancel_timer()
        helpers = list(self._helpers)
        for helper in helpers:
            helper.cancel()
        for helper in helpers:
            try:
                await helper
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:
                log.exception("%s: session task failed", self.name)
        if listener is not None:
            await self._reap(listener)  # the transport's own end, so that nothing is left behind
        if self._connection is not None:  # a transport that never said it ended
            self._forget_connection()
        self._resolve_all(StreamError("the stream client was closed", venue=self.venue))

    # ---------------------------------------------------------------------- subscription API
    async def add(self, subscriptions: Iterable[Subscription]) -> None:
        """Carry ``subscriptions`` from now on (subscribes at once when connected)."""
        self.core.add(subscriptions, self._now())
        self._apply()

    async def remove(self, subscriptions: Iterable[Subscription]) -> None:
        """Stop carrying ``subscriptions`` (unsubscribes at once when connected)."""
        gone = self.core.remove(subscriptions, self._now())
        for sub in gone:
            self._resolve(sub, StreamError("unsubscribed", venue=self.venue))
        self._apply()

    async def wait_confirmed(
        self,
        subscriptions: Iterable[Subscription],
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """Wait until the venue confirmed ``subscriptions`` (or refused one: its error)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        confirmed = self.core.confirmed
        for sub in subscriptions:
            if sub in confirmed:
                continue
            if self.error is not None:
                raise self.error
            if sub not in self.subscriptions:  # refused (or removed) before we came to wait
                raise StreamError(
                    f"{sub.channel.value} {sub.symbol or ''} is not subscribed", venue=self.venue
                )
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(sub, []).append(future)
            futures.append(future)
        if not futures:
            return
        try:
            async with asyncio.timeout(timeout):
                for future in futures:
                    await future
        except builtins.TimeoutError as exc:
            raise TimeoutError(
                f"subscription not confirmed within {timeout:g}s", venue=self.venue
            ) from exc
        finally:
            for sub_futures in self._waiters.values():
                for future in futures:
                    if future in sub_futures:
                        sub_futures.remove(future)

    def _resolve(self, sub: Subscription, error: BaseException | None = None) -> None:
        for future in self._waiters.pop(sub, ()):
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
                    future.exception()  # retrieved: nobody may be waiting any more

    def _resolve_all(self, error: BaseException) -> None:
        for sub in list(self._waiters):
            self._resolve(sub, error)

    # -------------------------------------------------------------- carrying out the actions
    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def _apply(self) -> None:
        """Carry out what the core decided (re-entrant calls leave it to the outer one: a
        transport may deliver an answer from inside a send)."""
        if self._applying:
            return
        self._applying = True
        try:
            core = self.core
            while True:
                actions = core.actions()
                if not actions:
                    break
                for action in actions:
                    self._do(action)
        finally:
            self._applying = False
        self._schedule()

    def _do(self, action: Any) -> None:
        match action:
            case Send():
                self._send(action)
            case Notify():
                self.owner.on_status(action.event)
            case Confirmed():
                for sub in action.subscriptions:
                    self._resolve(sub)
                self.owner.on_confirmed(self, action.subscriptions)
            case Connect():
                self._spawn(self._connect(), "connect")
            case Close():
                connection = self._connection
                if connection is not None:
                    connection.close()
            case FetchToken():
                self._spawn(self._fetch_token(), "login")
            case Lost():
                self.owner.on_lost(self, list(action.subscriptions), action.ts)
            case Refused():
                self._resolve(action.subscription, action.error)
                self.owner.on_refused(self, action.subscription, action.error)
            case Failed():
                self._resolve_all(action.error)
                self.owner.on_failed(self, action.error)

    def _send(self, action: Send) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            if action.frame is None:
                connection.send_ping()
            else:
                connection.send(action.frame)
        except Exception as exc:
            if action.ping:  # a dying connection: the watchdog replaces it
                log.debug("%s: ping failed: %s", self.name, exc)
            else:
                self.core.send_failed(exc, self._now())

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"tickloop-{self.name}-{what}")
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def _schedule(self) -> None:
        """Wake the core at its deadline (one timer per session)."""
        when = self.core.deadline()
        if when == self._timer_at:
            return
        self._cancel_timer()
        if when is not None:
            self._timer_at = when
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        connection = self._connection
        self.core.tick(self._now(), connection.received if connection is not None else 0)
        self._apply()

    async def _connect(self) -> None:
        codec = self._codec_factory()
        url = codec.url(self.base_url, sorted(self.subscriptions, key=_sort_key))
        listener = _Conn(self, codec)
        try:
            connection = await self.transport.connect(
                url, {}, listener, timeout=self.connect_timeout, limits=self.limits
            )
        except TickloopError as exc:
            if exc.venue is None:
                exc.venue = self.venue
            self.core.connect_failed(exc, self._now())
            self._apply()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a transport's bug must end the streams loudly, not hang them
            log.exception("%s: the transport failed to connect", self.name)
            self.core.connect_failed(
                NetworkError(f"session failed: {exc!r}", venue=self.venue), self._now()
            )
            self._apply()
            return
        listener.connection = connection
        self._listener = listener
        self._connection = connection
        self._codec = codec
        if self._pausers:
            connection.pause_reading()
        self.core.connected_with(codec, self._now())
        if listener.closed.done():  # it ended before we came to use it
            self._on_closed(listener)
        self._apply()

    @property
    def connect_timeout(self) -> float:
        return self.core.connect_timeout

    async def _fetch_token(self) -> None:
        assert self.token_provider is not None
        try:
            token = await self.token_provider()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.core.token_failed(exc, self._now())
        else:
            self.core.token(token, self._now())
        self._apply()

    def _on_closed(self, listener: _Conn) -> None:
        if listener is not self._listener:
            return  # not the current connection (or not adopted yet: _connect sees to it)
        self._forget_connection()
        self.core.closed(listener.reason, listener.limit, self._now())
        self._apply()

    def _forget_connection(self) -> None:
        listener, self._listener = self._listener, None
        self._connection = None
        if listener is not None:
            self._rx_before += listener.rx
            self._events_before += listener.events

    async def _reap(self, listener: _Conn) -> None:
        """Wait (bounded) for the transport to report the end of a connection closed by us."""
        if listener.closed.done():
            return
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(listener.closed)
        except builtins.TimeoutError:
            log.debug("%s: the transport did not report its end within 2 s", self.name)

    # ------------------------------------------------------------------- control messages
    def _on_control(self, message: Any) -> None:
        self.core.control(message, self._now())
        self._apply()

    def _on_venue_error(self, error: VenueError) -> None:
        if not error.fatal and not error.code.startswith("auth"):
            log.warning("%s: venue error %s: %s", self.name, error.code, error.message)
        self._on_control(error)

    # ------------------------------------------------------------------------- bad input
    def _malformed(self, conn: _Conn, exc: Exception, size: int) -> None:
        """A message that could not be decoded: counted and reported by the core, skipped; a
        sample is logged with its traceback (:data:`LOG_EVERY`)."""
        now = self._now()
        quiet = self._malformed_log.due(now)
        if quiet is not None:
            log.warning(
                "%s: skipped an undecodable message (%d so far, %d not logged since the last "
                "line): %s (%d bytes)",
                self.name,
                self.stats.malformed + 1,
                quiet,
                _short(exc),
                size,
                exc_info=exc if not isinstance(exc, LimitExceeded) else None,
            )
        if conn is self._listener:
            self.core.malformed(exc, size, now)
            self._apply()

    def _oversized(self, conn: _Conn, limit: str, size: int) -> None:
        """The transport dropped a fragmented message that grew past a bound (``limit``); the
        connection goes on."""
        bound = getattr(self.limits, limit)
        unit = "bytes" if limit == "max_message_size" else "frames"
        self._malformed(
            conn,
            LimitExceeded(
                f"a fragmented message over limits.{limit} ({size} > {bound} {unit}) was skipped",
                limit=limit,
                venue=self.venue,
            ),
            size,
        )

    def _sink_failed(self, exc: Exception, event: Any) -> None:
        """A sink raised on a decoded event (a bug in tickloop or a consumer that does not
        catch its own errors): counted in ``stats.dispatch_errors``, logged (sampled)."""
        count = self.stats.dispatch_errors = self.stats.dispatch_errors + 1
        quiet = self._sink_log.due(self._now())
        if quiet is not None:
            log.error(
                "%s: a %s could not be delivered (%d so far, %d not logged since the last line)",
                self.name,
                type(event).__name__,
                count,
                quiet,
                exc_info=exc,
            )


def _ignore(event: Any) -> None:
    return None


def _short(exc: Exception) -> str:
    reason = str(exc)
    return reason if len(reason) <= 200 else reason[:200] + "..."


def _sort_key(sub: Subscription) -> tuple[str, str, str]:
    return (sub.channel.value, sub.symbol or "", sub.interval or "")
