"""The one WebSocket session class: every venue's connections go through it.

A :class:`WsSession` is one logical connection to a venue. It keeps the set of subscriptions it
should carry and makes the socket match it, whatever happens to the socket: it connects (picows),
logs in when private channels need it, subscribes within the codec's declared limits (streams per
message, messages per second), reconnects with exponential backoff and jitter, restores every
subscription after a reconnect, and replaces a connection that goes silent without closing (the
heartbeat watchdog). Everything venue-specific is in the :class:`~tickloop.venues.base.Codec`;
this module has no venue branch.

Hot path: picows calls :meth:`_Listener.on_ws_frame` for each frame of a socket read; the frame
is decoded there and each event is dispatched synchronously by its type through one dict lookup
(data sinks supplied by the owner, control messages handled here). No task, no queue and no log
line per message. A frame that cannot be decoded is counted and skipped, never fatal.

Status is data: the owner (:class:`SessionOwner`, the StreamClient) is told about connects,
reconnects with their downtime, stale connections, refused subscriptions and final failure, and
turns them into status events. picows and OS errors are translated to :mod:`tickloop.exceptions`
here and never leak.
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from time import time_ns
from typing import Any, Protocol

import picows

from ..exceptions import (
    AuthError,
    LimitExceeded,
    NetworkError,
    ProtocolError,
    StreamError,
    SubscriptionError,
    TickloopError,
    TimeoutError,
)
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

__all__ = ["LOOPBACK_RECV_BUFFER", "SessionOwner", "SessionState", "SessionStats", "WsSession"]

log = logging.getLogger("tickloop.client.session")

#: The kernel receive buffer of a connection to a loopback address (bytes; Linux doubles it).
#: picows doubles its read buffer whenever a read fills it, so a full-speed local stream (the
#: embedded exchange, a replay, the benchmark server) would otherwise be read megabytes at a
#: time: tens of thousands of frames handled in one event-loop turn, during which no other task
#: runs (an ``async for`` consumer woke 5 times a second). A loopback round trip is microseconds,
#: so a small window costs no throughput there; remote venues keep the kernel's autotuning.
LOOPBACK_RECV_BUFFER = 256 * 1024

_TEXT = picows.WSMsgType.TEXT
_BINARY = picows.WSMsgType.BINARY
_CONTINUATION = picows.WSMsgType.CONTINUATION
_CLOSE = picows.WSMsgType.CLOSE


class SessionState(Enum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"
    OPEN = "open"  # connected; subscriptions restored or being restored
    WAITING = "waiting"  # between attempts (backoff)
    CLOSED = "closed"  # closed by its owner
    FAILED = "failed"  # gave up (retries exhausted, or a non-retryable error)


@dataclass
class SessionStats:
    malformed: int = 0  # frames that could not be decoded (counted, skipped)
    connects: int = 0
    reconnects: int = 0
    stale: int = 0  # connections replaced by the watchdog
    venue_errors: int = 0
    subscribe_messages: int = 0
    pauses: int = 0  # times reading was paused for flow control (a consumer's high water mark)
    limit_breaches: int = 0  # messages or frames beyond a bound of tickloop.limits
    unconfirmed: int = 0  # subscriptions not confirmed within subscribe_timeout (per connection)


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


class _Conn:
    """State of one physical connection, kept off the picows listener: attribute access on a
    subclass of picows' extension type costs about twice a plain slotted object's, and the frame
    path reads this state for every frame."""

    __slots__ = (
        "closed",
        "decode",
        "dispatch",
        "events",
        "fragments",
        "malformed",
        "max_message",
        "max_pending",
        "pending",
        "rx",
        "session",
        "skipping",
    )

    def __init__(self, session: WsSession, codec: Codec) -> None:
        self.session = session
        self.decode = codec.decode
        self.dispatch = session._dispatch
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.fragments: bytearray | None = None
        self.pending = 0  # frames of the fragmented message being reassembled
        self.skipping = False  # the rest of an oversized fragmented message is being dropped
        self.max_message = session.limits.max_message_size
        self.max_pending = session.limits.max_pending_frames
        self.rx = 0  # frames received (read by the watchdog)
        self.events = 0
        self.malformed = 0  # messages skipped on this connection


class _Listener(picows.WSListener):
    """picows callbacks of one physical connection: decode and dispatch inline."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        conn = self.conn
        conn.rx += 1
        msg_type = frame.msg_type
        if msg_type is _TEXT or msg_type is _BINARY:
            if not frame.fin:
                # The first frame of a fragmented message: reassembled here, bounded in bytes
                # and frames (limits.max_message_size, max_pending_frames), across fragments.
                conn.skipping = False
                conn.pending = 1
                conn.fragments = bytearray(frame.get_payload_as_memoryview())
                if len(conn.fragments) > conn.max_message:
                    conn.session._oversized(conn, "max_message_size", len(conn.fragments))
                return
            payload = frame.get_payload_as_memoryview()
        elif msg_type is _CONTINUATION:
            fragments = conn.fragments
            if fragments is None:
                if conn.skipping and frame.fin:
                    conn.skipping = False  # the oversized message is over
                return
            fragments += frame.get_payload_as_memoryview()
            conn.pending += 1
            if len(fragments) > conn.max_message:
                conn.session._oversized(conn, "max_message_size", len(fragments), frame.fin)
                return
            if conn.pending > conn.max_pending:
                conn.session._oversized(conn, "max_pending_frames", conn.pending, frame.fin)
                return
            if not frame.fin:
                return
            payload, conn.fragments = bytes(fragments), None
        elif msg_type is _CLOSE:
            conn.session._close_reason = f"closed by the venue ({frame.get_close_code()})"
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        else:
            return
        try:
            events = conn.decode(payload, time_ns())
        except Exception as exc:  # ProtocolError, or a codec bug: never fatal to the connection
            conn.session._malformed(conn, exc, len(payload))
            return
        conn.events += len(events)
        dispatch = conn.dispatch
        try:
            for event in events:
                sink = dispatch.get(type(event))
                if sink is not None:
                    sink(event)
        except Exception:
            log.exception("%s: error while dispatching an event", conn.session.name)

    def on_ws_disconnected(self, transport: Any) -> None:
        conn = self.conn
        if not conn.closed.done():
            conn.closed.set_result(None)
        conn.session._abort_login()


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
    ) -> None:
        self._codec_factory = codec_factory
        self._codec_cls = type(codec_factory())
        self.venue = self._codec_cls.venue
        self.base_url = url
        self.index = index
        self.name = f"{self.venue}#{index}"
        self.owner = owner
        self.backoff = backoff if backoff is not None else Backoff()
        self.heartbeat_timeout = heartbeat_timeout
        self.ping_interval = ping_interval if ping_interval is not None else heartbeat_timeout / 3
        self.connect_timeout = connect_timeout
        self.token_provider = token_provider
        #: The bounds of tickloop.limits this session applies (message size across fragments,
        #: pending frames, malformed messages per connection).
        self.limits = limits
        self.max_frame_size = (
            max_frame_size if max_frame_size is not None else limits.max_frame_size
        )
        #: A subscription sent this long ago and not confirmed is reported (Unconfirmed).
        self.subscribe_timeout = subscribe_timeout
        #: Connections in a row that ended because the venue broke a limit (a frame too big):
        #: after MAX_LIMIT_FAILURES the session fails with LimitExceeded instead of looping.
        self._limit_failures = 0
        self._limit_failure: str | None = None
        #: When each subscription was sent on this connection (monotonic), until confirmed.
        self._sent_since: dict[Subscription, float] = {}
        #: SO_RCVBUF for connections to a loopback address (None: the kernel's default).
        self.loopback_recv_buffer = loopback_recv_buffer
        self.state = SessionState.IDLE
        self.stats = SessionStats()
        #: What this session should carry, whatever the socket's state.
        self.subscriptions: set[Subscription] = set()
        self.error: TickloopError | None = None
        self._dispatch: dict[type, Callable[[Any], None]] = dict(sinks)
        self._dispatch.update(
            {
                Subscribed: self._on_subscribed,
                Unsubscribed: self._on_unsubscribed,
                LoggedIn: self._on_logged_in,
                VenueError: self._on_venue_error,
                Pong: _ignore,
                Heartbeat: _ignore,
            }
        )
        # Per physical connection:
        self._transport: Any = None
        self._codec: Codec | None = None
        self._sent: set[Subscription] = set()
        self._confirmed: set[Subscription] = set()
        self._restoring: set[Subscription] = set()
        self._logged_in = False
        self._login_waiter: asyncio.Future[None] | None = None
        self._close_reason = ""
        self._rx_before = 0  # frames of earlier connections
        self._events_before = 0
        self._listener: _Conn | None = None
        self._rx_seen = 0
        self._last_rx_at = 0.0
        self._ping_sent = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._lost_at: float | None = None
        self._sent_at = 0.0
        self._attempts = 0
        # Per session:
        self._waiters: dict[Subscription, list[asyncio.Future[None]]] = {}
        self._send_lock = asyncio.Lock()
        self._next_send_at = 0.0
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[None]] = set()
        self._ever_connected = False
        #: Who asked to stop reading the socket (flow control: consumers above their high
        #: water mark). Reading is paused while this is not empty, on every physical connection.
        self._pausers: set[object] = set()

    def __repr__(self) -> str:
        return f"<WsSession {self.name} {self.state.value} streams={len(self.subscriptions)}>"

    @property
    def connected(self) -> bool:
        return self._transport is not None

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
            self.stats.pauses += 1
            self._set_reading(False)

    def resume_reading(self, owner: object) -> None:
        if owner not in self._pausers:
            return
        self._pausers.discard(owner)
        if not self._pausers:
            self._set_reading(True)

    def _set_reading(self, reading: bool) -> None:
        transport = self._transport
        if transport is None:
            return  # applied to the next connection when it is made
        raw = transport.underlying_transport
        try:
            if reading:
                raw.resume_reading()
            else:
                raw.pause_reading()
        except (AttributeError, RuntimeError) as exc:  # a closing transport
            log.debug("%s: cannot %s reading: %s", self.name, "resume" if reading else "pause", exc)
        if reading:
            # Silence while paused was ours, not the venue's: the watchdog starts afresh.
            self._last_rx_at = asyncio.get_running_loop().time()
            self._ping_sent = False

    @property
    def confirmed(self) -> frozenset[Subscription]:
        return frozenset(self._confirmed)

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

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._task is None and self.state is SessionState.IDLE:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"tickloop-session-{self.name}"
            )

    async def close(self) -> None:
        """Close the socket and stop reconnecting; waits for the session's task to end."""
        if self.state is not SessionState.FAILED:
            self.state = SessionState.CLOSED
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        helpers = list(self._helpers)
        for helper in helpers:
            helper.cancel()
        for pending in [task, *helpers]:
            if pending is None:
                continue
            try:
                await pending
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:
                log.exception("%s: session task failed", self.name)
        self._drop_transport()
        self._resolve_all(StreamError("the stream client was closed", venue=self.venue))

    # ---------------------------------------------------------------------- subscription API
    async def add(self, subscriptions: Iterable[Subscription]) -> None:
        """Carry ``subscriptions`` from now on (subscribes at once when connected)."""
        new = [s for s in subscriptions if s not in self.subscriptions]
        if not new:
            return
        self.subscriptions.update(new)
        if self.state is SessionState.IDLE:
            self.start()
            return
        if self._transport is not None and self.state is SessionState.OPEN:
            try:
                if any(s.channel.private for s in new) and not self._logged_in:
                    try:
                        await self._login()
                    except AuthError as exc:
                        self._refuse_private(exc)
                        new = [s for s in new if not s.channel.private]
                await self._send_subscribe(new)
            except NetworkError:
                self._disconnect("send failed")  # restored after the reconnect

    async def remove(self, subscriptions: Iterable[Subscription]) -> None:
        """Stop carrying ``subscriptions`` (unsubscribes at once when connected)."""
        gone = [s for s in subscriptions if s in self.subscriptions]
        if not gone:
            return
        self.subscriptions.difference_update(gone)
        sent = [s for s in gone if s in self._sent]
        self._sent.difference_update(gone)
        self._confirmed.difference_update(gone)
        restoring = bool(self._restoring)
        self._restoring.difference_update(gone)
        if restoring and not self._restoring and self._transport is not None:
            # The last stream still being restored was removed (a book resubscribing while the
            # connection was being restored): the connection is restored all the same, and
            # saying so must not wait for a confirmation that will never come.
            self._restored()
        for sub in gone:
            self._resolve(sub, StreamError("unsubscribed", venue=self.venue))
        if sent and self._transport is not None and self._codec is not None:
            try:
                await self._send_frames(sent, self._codec.unsubscribe)
            except NetworkError:
                self._disconnect("send failed")

    async def wait_confirmed(
        self,
        subscriptions: Iterable[Subscription],
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        """Wait until the venue confirmed ``subscriptions`` (or refused one: its error)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for sub in subscriptions:
            if sub in self._confirmed:
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

    # ----------------------------------------------------------------------------- run loop
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.state = SessionState.CONNECTING
                self._attempts += 1
                try:
                    listener = await self._connect()
                except AuthError as exc:
                    self._fail(exc)
                    return
                except NetworkError as exc:
                    if not self._wait_or_fail(exc):
                        return
                    await self._sleep_backoff()
                    continue
                up_at = loop.time()
                transport = self._transport
                try:
                    await self._open(listener)
                    await listener.closed
                    await self._reap(transport)
                except NetworkError as exc:
                    self._close_reason = self._close_reason or str(exc)
                finally:
                    self._connection_lost()
                await self._reap(transport)  # closed by us: picows may still hold an error
                if self._limit_failure is not None:
                    self._limit_failures += 1
                    if self._limit_failures >= self.limits.max_oversized_reconnects:
                        limit, self._limit_failure = self._limit_failure, None
                        self._fail(
                            LimitExceeded(
                                f"the venue broke limits.{limit} on {self._limit_failures} "
                                f"connections in a row: {self._close_reason}",
                                limit=limit,
                                venue=self.venue,
                            )
                        )
                        return
                    self._limit_failure = None
                else:
                    self._limit_failures = 0
                self.backoff.succeeded(lasted=loop.time() - up_at)
                if not self._wait_or_fail(NetworkError(self._close_reason, venue=self.venue)):
                    return
                await self._sleep_backoff()
        except asyncio.CancelledError:
            self._drop_transport()
            raise
        except Exception as exc:  # a bug must end the streams loudly, not hang them
            log.exception("%s: session failed", self.name)
            self._fail(NetworkError(f"session failed: {exc!r}", venue=self.venue))

    async def _reap(self, transport: Any) -> None:
        """Take picows' reason for a connection's end, so that it is the Disconnected reason and
        asyncio never logs "Future exception was never retrieved": a frame over
        ``max_frame_size`` is a limit breach (Malformed with ``limit``), counted towards
        ``limits.max_oversized_reconnects``."""
        if transport is None:
            return
        try:
            async with asyncio.timeout(1.0):
                await transport.wait_disconnected()
        except picows.WSProtocolError as exc:
            code = getattr(exc, "code", None)
            if code == picows.WSCloseCode.MESSAGE_TOO_BIG:
                reason = (
                    f"the venue sent a frame larger than limits.max_frame_size "
                    f"({self.max_frame_size} bytes)"
                )
                self._close_reason = reason
                self._limit_failure = "max_frame_size"
                self.stats.limit_breaches += 1
                self.owner.on_status(
                    Malformed(
                        venue=self.venue,
                        connection=self.index,
                        reason=reason,
                        limit="max_frame_size",
                        count=self.stats.malformed + 1,
                        ts=time.time_ns(),
                    )
                )
                self.stats.malformed += 1
            else:
                self._close_reason = self._close_reason or f"protocol error: {str(exc)[:200]}"
        except builtins.TimeoutError:
            log.debug("%s: the transport did not report its end within 1 s", self.name)
        except Exception as exc:  # an OS error on the socket: the reason, nothing more
            self._close_reason = self._close_reason or f"connection lost: {str(exc)[:200]}"

    def _wait_or_fail(self, exc: TickloopError) -> bool:
        if self.backoff.exhausted:
            self._fail(
                NetworkError(
                    f"gave up after {self._attempts} attempts: {exc.message}", venue=self.venue
                )
            )
            return False
        return True

    async def _sleep_backoff(self) -> None:
        wait = self.backoff.next_wait()
        if wait is None:
            self._fail(NetworkError("connection retries exhausted", venue=self.venue))
            raise asyncio.CancelledError  # unreachable in practice: _wait_or_fail ran first
        self.state = SessionState.WAITING
        await asyncio.sleep(wait)

    def _fail(self, error: TickloopError) -> None:
        self.state = SessionState.FAILED
        self.error = error
        self._drop_transport()
        self._resolve_all(error)
        self.owner.on_failed(self, error)

    async def _loopback_socket(self, endpoint: Any) -> socket.socket | None:
        """picows' socket factory: for a loopback peer (a loopback address, or a ``localhost``
        name resolving to loopback addresses only), an unconnected non-blocking socket with a
        bounded receive buffer (:data:`LOOPBACK_RECV_BUFFER`); None (picows' own connection
        path, no lookup here) for any other peer or when the bound is off."""
        size = self.loopback_recv_buffer
        if size is None:
            return None
        host = str(endpoint.host)
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:  # a name: only "localhost" names can be loopback without a lookup
            name = host.lower().rstrip(".")
            if name != "localhost" and not name.endswith(".localhost"):
                return None
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, endpoint.port, type=socket.SOCK_STREAM)
        if not infos or not all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos):
            return None
        # picows connects the socket to the URL's host, resolved for the socket's family: take
        # IPv4 where the name has it (a local server often listens on 127.0.0.1 only).
        family, kind, proto, _, _ = min(infos, key=lambda i: i[0] != socket.AF_INET)
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return sock

    async def _connect(self) -> _Conn:
        codec = self._codec_factory()
        url = codec.url(self.base_url, sorted(self.subscriptions, key=_sort_key))
        listener = _Conn(self, codec)

        def factory() -> _Listener:
            return _Listener(listener)

        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, _ = await picows.ws_connect(
                    factory,
                    url,
                    websocket_handshake_timeout=self.connect_timeout,
                    enable_auto_pong=True,
                    max_frame_size=self.max_frame_size,
                    logger_name="tickloop",
                    socket_factory=self._loopback_socket,
                )
        except builtins.TimeoutError as exc:
            raise TimeoutError(f"connecting to {url} timed out", venue=self.venue) from exc
        except picows.WSHandshakeError as exc:
            status = getattr(getattr(exc, "response", None), "status", None)
            if status in (401, 403):
                raise AuthError(
                    f"{url} refused the connection ({status})", venue=self.venue
                ) from exc
            raise NetworkError(
                f"WebSocket handshake with {url} failed ({status})", venue=self.venue
            ) from exc
        except (OSError, picows.WSError) as exc:
            raise NetworkError(f"cannot connect to {url}: {exc}", venue=self.venue) from exc
        self._listener = listener
        self._transport = transport
        self._codec = codec
        self._close_reason = ""
        self._sent.clear()
        self._confirmed.clear()
        self._logged_in = False
        self.stats.connects += 1
        if self._pausers:
            self._set_reading(False)
        return listener

    async def _open(self, listener: _Conn) -> None:
        loop = asyncio.get_running_loop()
        self.state = SessionState.OPEN
        self._rx_seen = -1
        self._last_rx_at = loop.time()
        self._ping_sent = False
        self._schedule_watchdog()
        wanted = sorted(self.subscriptions, key=_sort_key)
        self._restoring = set(wanted)
        if any(s.channel.private for s in wanted):
            try:
                await self._login()
            except AuthError as exc:
                self._refuse_private(exc)
                wanted = [s for s in wanted if not s.channel.private]
            except TickloopError as exc:  # the token service failed: try again later
                if isinstance(exc, NetworkError):
                    raise
                raise NetworkError(f"login failed: {exc.message}", venue=self.venue) from exc
        if wanted:
            await self._send_subscribe(wanted)
        if not self._restoring:
            self._restored()

    def _restored(self) -> None:
        loop = asyncio.get_running_loop()
        ts = time.time_ns()
        if not self._ever_connected:
            self._ever_connected = True
            self.owner.on_status(
                Connected(venue=self.venue, url=self.base_url, connection=self.index, ts=ts)
            )
        else:
            self.stats.reconnects += 1
            downtime = loop.time() - self._lost_at if self._lost_at is not None else 0.0
            self.owner.on_status(
                Reconnected(
                    venue=self.venue,
                    url=self.base_url,
                    connection=self.index,
                    downtime=downtime,
                    attempts=self._attempts,
                    ts=ts,
                )
            )
        self._attempts = 0

    def _connection_lost(self) -> None:
        loop = asyncio.get_running_loop()
        was_open = self._transport is not None
        self._drop_transport()
        listener, self._listener = self._listener, None
        if listener is not None:
            self._rx_before += listener.rx
            self._events_before += listener.events
        self._lost_at = loop.time()
        lost = [s for s in self.subscriptions if s in self._sent or s in self._confirmed]
        self._sent_since.clear()
        self._sent.clear()
        self._confirmed.clear()
        self._restoring.clear()
        self._abort_login()
        if was_open and self.state is not SessionState.CLOSED:
            ts = time.time_ns()
            self.owner.on_lost(self, lost, ts)
            self.owner.on_status(
                Disconnected(
                    venue=self.venue,
                    url=self.base_url,
                    connection=self.index,
                    reason=self._close_reason or "connection closed",
                    ts=ts,
                )
            )

    def _drop_transport(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.disconnect(graceful=False)

    def _disconnect(self, reason: str) -> None:
        if self._transport is not None:
            self._close_reason = self._close_reason or reason
            self._transport.disconnect(graceful=False)

    # ------------------------------------------------------------------------------ watchdog
    def _schedule_watchdog(self) -> None:
        tick = max(0.01, min(self.heartbeat_timeout / 4, self.ping_interval / 2))
        self._watchdog = asyncio.get_running_loop().call_later(tick, self._check_alive)

    def _check_alive(self) -> None:
        self._watchdog = None
        transport = self._transport
        if transport is None:
            return
        now = asyncio.get_running_loop().time()
        rx = self._listener.rx if self._listener is not None else 0
        if self._pausers:
            # Reading is paused on purpose (flow control): silence proves nothing.
            self._rx_seen = rx
            self._last_rx_at = now
        elif rx != self._rx_seen:
            self._rx_seen = rx
            self._last_rx_at = now
            self._ping_sent = False
        else:
            silent = now - self._last_rx_at
            if silent >= self.heartbeat_timeout:
                self.stats.stale += 1
                self._close_reason = f"stale: nothing received for {silent:.2f}s"
                self.owner.on_status(
                    Stale(
                        venue=self.venue,
                        connection=self.index,
                        silent_for=silent,
                        ts=time.time_ns(),
                    )
                )
                transport.disconnect(graceful=False)
                return
            if silent >= self.ping_interval and not self._ping_sent and self._codec is not None:
                self._ping_sent = True
                frame = self._codec.ping()
                try:
                    if frame is None:
                        transport.send_ping()
                    else:
                        transport.send(_TEXT, frame)
                except Exception as exc:  # a dying transport: the watchdog will replace it
                    log.debug("%s: ping failed: %s", self.name, exc)
        if (
            now - self._sent_at >= self.heartbeat_timeout
            and not self._helpers
            and len(self._confirmed) < len(self._sent)
        ):
            # A subscribe answer that never came (lost, or the venue ignored it): ask again;
            # subscribing twice is harmless.
            unconfirmed = [s for s in self._sent if s not in self._confirmed]
            self._sent.difference_update(unconfirmed)
            self._spawn(self._resend(sorted(unconfirmed, key=_sort_key)))
        if self._sent_since:
            self._check_unconfirmed(now)
        self._schedule_watchdog()

    def _check_unconfirmed(self, now: float) -> None:
        """Report each subscription still unconfirmed ``subscribe_timeout`` after it was sent
        (once per connection): a venue that answers only heartbeats is not silent to us."""
        for sub, since in list(self._sent_since.items()):
            if sub in self._confirmed or sub not in self.subscriptions:
                del self._sent_since[sub]
            elif now - since >= self.subscribe_timeout:
                del self._sent_since[sub]
                self.stats.unconfirmed += 1
                self.owner.on_status(
                    Unconfirmed(
                        venue=self.venue,
                        connection=self.index,
                        channel=sub.channel.value,
                        symbol=sub.symbol,
                        waited=now - since,
                        ts=time.time_ns(),
                    )
                )

    # ------------------------------------------------------------------------------ sending
    async def _send_subscribe(self, subs: list[Subscription]) -> None:
        todo = [s for s in subs if s not in self._sent]
        if todo:
            self._sent.update(todo)
            now = asyncio.get_running_loop().time()
            for sub in todo:
                self._sent_since.setdefault(sub, now)
            assert self._codec is not None
            await self._send_frames(todo, self._codec.subscribe)

    async def _send_frames(
        self,
        subs: list[Subscription],
        encode: Callable[[list[Subscription]], list[bytes]],
    ) -> None:
        """Send ``subs`` in chunks of the codec's streams-per-message limit, paced by its
        messages-per-second limit (one lock per session, so the pace holds for all callers)."""
        limit = max(1, self._codec_cls.max_streams_per_message)
        interval = 1.0 / self._codec_cls.max_messages_per_second
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            for start in range(0, len(subs), limit):
                for frame in encode(subs[start : start + limit]):
                    now = loop.time()
                    if self._next_send_at > now:
                        await asyncio.sleep(self._next_send_at - now)
                    transport = self._transport
                    if transport is None:
                        raise NetworkError("not connected", venue=self.venue)
                    try:
                        transport.send(_TEXT, frame)
                    except Exception as exc:
                        raise NetworkError(f"send failed: {exc}", venue=self.venue) from exc
                    self.stats.subscribe_messages += 1
                    self._sent_at = loop.time()
                    self._next_send_at = max(now, self._next_send_at) + interval

    async def _login(self) -> None:
        if self.token_provider is None:
            raise AuthError("private channels need credentials", venue=self.venue)
        assert self._codec is not None
        token = await self.token_provider()
        frame = self._codec.login(token)
        if frame is None:
            self._logged_in = True
            return
        transport = self._transport
        if transport is None:
            raise NetworkError("not connected", venue=self.venue)
        waiter = self._login_waiter = asyncio.get_running_loop().create_future()
        try:
            transport.send(_TEXT, frame)
        except Exception as exc:
            self._login_waiter = None
            raise NetworkError(f"send failed: {exc}", venue=self.venue) from exc
        try:
            async with asyncio.timeout(self.connect_timeout):
                await waiter
        except builtins.TimeoutError as exc:
            raise TimeoutError("login not answered", venue=self.venue) from exc
        finally:
            self._login_waiter = None
        self._logged_in = True

    def _abort_login(self) -> None:
        waiter = self._login_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(NetworkError("disconnected during login", venue=self.venue))
            waiter.exception()  # retrieved: the login coroutine may be gone already

    def _refuse_private(self, error: TickloopError) -> None:
        for sub in [s for s in self.subscriptions if s.channel.private]:
            self._refuse(
                sub,
                SubscriptionError(str(error.message), channel=sub.channel.value, venue=self.venue),
            )

    def _refuse(self, sub: Subscription, error: SubscriptionError) -> None:
        self._sent_since.pop(sub, None)
        self.subscriptions.discard(sub)
        self._sent.discard(sub)
        self._confirmed.discard(sub)
        self._restoring.discard(sub)
        self._resolve(sub, error)
        self.owner.on_refused(self, sub, error)

    # ------------------------------------------------------------------- control messages
    def _on_subscribed(self, msg: Subscribed) -> None:
        confirmed: list[Subscription] = []
        for sub in msg.subscriptions:
            matches = [sub] if sub in self.subscriptions else self._matching(sub)
            for match in matches:
                self._confirmed.add(match)
                self._sent.add(match)
                self._sent_since.pop(match, None)
                self._resolve(match)
                confirmed.append(match)
        if not confirmed:
            return
        # Connected/Reconnected first, then what the owner reports about the confirmed streams
        # (a Gap for what the outage may have cost), so status reads in the order things happened.
        if self._restoring:
            self._restoring.difference_update(confirmed)
            if not self._restoring:
                self._restored()
        self.owner.on_confirmed(self, tuple(confirmed))

    def _matching(self, sub: Subscription) -> list[Subscription]:
        # A venue may answer without the interval or depth the request carried.
        return [
            s
            for s in self.subscriptions
            if s.channel is sub.channel
            and s.symbol == sub.symbol
            and (sub.interval is None or s.interval == sub.interval)
        ]

    def _on_unsubscribed(self, msg: Unsubscribed) -> None:
        return None

    def _on_logged_in(self, msg: LoggedIn) -> None:
        waiter = self._login_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_venue_error(self, error: VenueError) -> None:
        self.stats.venue_errors += 1
        waiter = self._login_waiter
        if waiter is not None and not waiter.done() and error.code.startswith("auth"):
            waiter.set_exception(AuthError(f"login refused: {error.message}", venue=self.venue))
            return
        if not error.fatal:
            log.warning("%s: venue error %s: %s", self.name, error.code, error.message)
            return
        channel = error.channel
        refused = [
            s
            for s in self.subscriptions
            if (channel is None or s.channel is channel)
            and (error.symbol is None or s.symbol == error.symbol)
            and s not in self._confirmed
            and s in self._sent
        ]
        if error.symbol is not None or (channel is not None and channel.private):
            for sub in refused:
                self._refuse(sub, _subscription_error(error, sub, self.venue))
            return
        if len(refused) == 1:
            self._refuse(refused[0], _subscription_error(error, refused[0], self.venue))
        elif refused:
            # One request named several streams and the venue did not say which one it refused:
            # ask again one stream per message to find it (bounded: each round refuses one).
            self._sent.difference_update(refused)
            self._spawn(self._isolate(refused))
        else:
            log.warning("%s: refused request %s: %s", self.name, error.code, error.message)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"tickloop-{self.name}-control")
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _resend(self, subs: list[Subscription]) -> None:
        try:
            await self._send_subscribe([s for s in subs if s in self.subscriptions])
        except NetworkError:
            self._disconnect("send failed")

    async def _isolate(self, subs: list[Subscription]) -> None:
        assert self._codec is not None
        codec = self._codec
        try:
            for sub in subs:
                if sub in self.subscriptions and sub not in self._sent:
                    self._sent.add(sub)
                    await self._send_frames([sub], codec.subscribe)
        except NetworkError:
            self._disconnect("send failed")

    def _malformed(self, conn: _Conn, exc: Exception, size: int) -> None:
        """A message that could not be decoded: counted, skipped, reported (a Malformed status
        event; the owner invalidates the book it belonged to). A connection that sends more
        than ``limits.max_malformed_per_connection`` is replaced."""
        count = self.stats.malformed = self.stats.malformed + 1
        conn.malformed += 1
        reason = str(exc)
        if len(reason) > 200:
            reason = reason[:200] + "..."
        symbol = channel = limit = None
        if isinstance(exc, ProtocolError):
            symbol, channel, limit = exc.symbol, exc.channel, exc.limit
            if limit is not None:  # a message over a bound of Limits (levels, digits)
                self.stats.limit_breaches += 1
        elif isinstance(exc, LimitExceeded):
            limit = exc.limit
        if count & (count - 1) == 0:  # 1st, 2nd, 4th...: never a log line per frame
            log.warning(
                "%s: skipped an undecodable frame (%d so far): %s (%d bytes)",
                self.name,
                count,
                reason,
                size,
            )
        self.owner.on_status(
            Malformed(
                venue=self.venue,
                connection=self.index,
                reason=reason,
                limit=limit,
                symbol=symbol,
                channel=channel,
                count=conn.malformed,
                ts=time.time_ns(),
            )
        )
        if conn.malformed >= self.limits.max_malformed_per_connection:
            self._disconnect(
                f"{conn.malformed} malformed messages (limits.max_malformed_per_connection)"
            )

    def _oversized(self, conn: _Conn, limit: str, size: int, fin: bool = False) -> None:
        """A fragmented message grew past a bound (``limit``): what arrived is dropped at once
        and the rest of the message is skipped as it comes; the connection goes on."""
        conn.fragments = None
        conn.skipping = not fin
        self.stats.limit_breaches += 1
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


def _ignore(event: Any) -> None:
    return None


def _sort_key(sub: Subscription) -> tuple[str, str, str]:
    return (sub.channel.value, sub.symbol or "", sub.interval or "")


def _subscription_error(error: VenueError, sub: Subscription, venue: str) -> SubscriptionError:
    return SubscriptionError(
        f"{sub.channel.value} {sub.symbol or ''} refused: {error.code}: {error.message}".replace(
            "  ", " "
        ),
        channel=sub.channel.value,
        symbol=sub.symbol,
        venue=venue,
    )
