"""The transport seam: how a WebSocket session reaches a venue's messages.

A :class:`~tickloop.client.session.WsSession` never touches a socket itself. It asks a
:class:`Transport` to ``connect(url, headers, sink, timeout=..., limits=...)`` and gets a
:class:`Connection` back; the transport then calls the session's :class:`FrameSink` with each
whole message (``on_frame``) and, exactly once, with the end of the connection
(``on_closed``). Anything that can produce messages can stand behind the seam: the live
WebSocket client (:class:`PicowsTransport`, the default), a recording played back without a
socket, or the scripted :class:`MemoryTransport` the tests drive by hand.

The contract, for whoever writes a transport:

* ``connect`` returns once the connection is open, or raises a :mod:`tickloop.exceptions`
  error: :class:`~tickloop.exceptions.AuthError` when the venue refuses the credentials (the
  session gives up), :class:`~tickloop.exceptions.TimeoutError` or
  :class:`~tickloop.exceptions.NetworkError` otherwise (the session backs off and retries).
  No other library's exception crosses the seam.
* ``sink.on_frame(data, now_ns)`` gets one whole message (fragments already reassembled, control
  frames already handled), with the receive time in Unix nanoseconds. ``data`` may be a
  ``memoryview`` valid only during the call (zero copy): a sink that keeps it copies it. Frames
  are delivered on the event loop's thread, in order, never after ``on_closed``.
* ``sink.on_oversized(limit, size, now_ns)``: a message was dropped because it grew past a bound
  of :class:`~tickloop.limits.Limits` (``"max_message_size"`` or ``"max_pending_frames"``); the
  connection goes on.
* ``sink.on_closed(reason, now_ns, limit)``: called once when the connection is over, for any
  cause (the venue closed it, the network failed, :meth:`Connection.close` was called). ``limit``
  names a bound of :class:`~tickloop.limits.Limits` the venue broke to end it
  (``"max_frame_size"``), else None.
* :attr:`Connection.received` counts every frame received, control frames included: the
  session's watchdog reads it to tell a live connection from a silent one.
* ``Connection.send(data)`` sends one text message (``str``, or ``bytes`` holding UTF-8 text:
  every venue codec encodes its requests as JSON text); it raises
  :class:`~tickloop.exceptions.NetworkError` when the connection cannot take it.
  ``send_ping()`` sends a protocol-level ping (for venues whose codec has no ping message).
* ``pause_reading()`` / ``resume_reading()`` stop and restart delivery (flow control: frames wait
  in the kernel's buffers, or the recording, instead of a consumer's queue). Idempotent.
* ``close(code, reason)`` starts closing and returns at once; ``on_closed`` follows.
  ``await wait_closed()`` returns after ``on_closed`` was called.
* Optional: a transport that delivers many messages in one event-loop callback (one socket
  read, a recording played at full speed) checks :data:`TURN` ``.wanted`` after each message
  (:mod:`tickloop.client.turns`); when a waiting reader set it, the transport clears it and
  delivers the rest on a later loop iteration, so that ``async for`` readers get turns.
  :class:`PicowsTransport` does, and also gives the loop a turn once it has spent
  :data:`READ_BUDGET` handing over one read's frames, so that a large read of a busy process
  (many bots' handlers a frame) delays no timer or task by more than about that; ignoring both
  is correct, only less fair to the rest of the loop.

This module is public and its API stable (``tickloop.client.transport``).
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping
from time import time_ns
from typing import Any, Protocol

import picows

from ..exceptions import AuthError, NetworkError, TimeoutError
from ..limits import DEFAULT_LIMITS, Limits
from .turns import TURN, Turn

__all__ = [
    "HOLD_HIGH",
    "HOLD_LOW",
    "LOOPBACK_RECV_BUFFER",
    "READ_BUDGET",
    "TURN",
    "Connection",
    "FrameSink",
    "MemoryConnection",
    "MemoryTransport",
    "PicowsTransport",
    "Transport",
    "Turn",
]

log = logging.getLogger("tickloop.client.transport")

#: The kernel receive buffer of a connection to a loopback address (bytes; Linux doubles it).
#: picows doubles its read buffer whenever a read fills it, so a full-speed local stream (the
#: embedded exchange, a replay, the benchmark server) would otherwise be read megabytes at a
#: time: tens of thousands of frames handled in one event-loop turn, during which no other task
#: runs (an ``async for`` consumer woke 5 times a second). A loopback round trip is microseconds,
#: so a small window costs no throughput there; remote venues keep the kernel's autotuning.
LOOPBACK_RECV_BUFFER = 256 * 1024

#: Frames a connection holds back for waiting readers (:data:`TURN`) before it stops reading
#: the socket, and the count it resumes at.
HOLD_HIGH = 4096
HOLD_LOW = 1024

#: The longest a connection hands frames to its sink in one event-loop callback (seconds), the
#: time of one socket read's frames included: past it, the rest wait for the next loop
#: iteration, as for a waiting reader (:data:`TURN`). A 256 KiB loopback read of small frames,
#: each a few tens of µs of handlers (500 bots), would otherwise keep every timer, tick and
#: task waiting for tens of milliseconds. 5 ms is above what a read of that size takes when
#: each frame costs a few µs (a client with light handlers never pays the hold-back's copy).
READ_BUDGET = 0.005


class FrameSink(Protocol):
    """What a transport delivers to (the session implements it; module docstring)."""

    def on_frame(self, data: bytes | memoryview, now_ns: int) -> None:
        """One whole message; ``data`` may be valid only during the call."""

    def on_oversized(self, limit: str, size: int, now_ns: int) -> None:
        """A message over ``limits.<limit>`` (``size`` bytes or frames so far) was dropped."""

    def on_closed(self, reason: str, now_ns: int, limit: str | None) -> None:
        """The connection is over (called once); ``limit``: the bound the venue broke, if any."""


class Connection(Protocol):
    """One open connection made by a :class:`Transport` (module docstring)."""

    @property
    def received(self) -> int:
        """Frames received so far, control frames included."""
        ...

    def send(self, data: bytes | str) -> None:
        """Send one text message; raises NetworkError if the connection cannot take it."""

    def send_ping(self) -> None:
        """Send a protocol-level ping."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start closing (returns at once); the sink's ``on_closed`` follows."""

    async def wait_closed(self) -> None:
        """Return once the sink's ``on_closed`` was called."""


class Transport(Protocol):
    """Makes connections for a session (module docstring)."""

    async def connect(
        self,
        url: str,
        headers: Mapping[str, str],
        sink: FrameSink,
        *,
        timeout: float,  # noqa: ASYNC109
        limits: Limits,
    ) -> Connection: ...


# ------------------------------------------------------------------------------ picows

_TEXT = picows.WSMsgType.TEXT
_BINARY = picows.WSMsgType.BINARY
_CONTINUATION = picows.WSMsgType.CONTINUATION
_CLOSE = picows.WSMsgType.CLOSE
_JSON_OPENERS = frozenset(b"{[")  # the first byte of a JSON object or array


class PicowsTransport:
    """The live transport: WebSocket connections made with picows (Cython; payloads handed over
    as memoryviews, no copy; many frames per socket read).

    ``max_frame_size``: picows refuses a bigger frame and ends the connection (None:
    ``limits.max_frame_size`` of each ``connect``). ``loopback_recv_buffer``: SO_RCVBUF for a
    connection to a loopback address (:data:`LOOPBACK_RECV_BUFFER`; None keeps the kernel's).
    ``read_budget``: the longest (seconds) frames are handed over in one loop iteration
    (:data:`READ_BUDGET`; None: a whole read at once, unless a reader asks for a turn).
    """

    def __init__(
        self,
        *,
        max_frame_size: int | None = None,
        loopback_recv_buffer: int | None = LOOPBACK_RECV_BUFFER,
        read_budget: float | None = READ_BUDGET,
    ) -> None:
        if read_budget is not None and not read_budget > 0:
            raise ValueError(f"read_budget must be positive seconds or None, not {read_budget!r}")
        self.max_frame_size = max_frame_size
        self.loopback_recv_buffer = loopback_recv_buffer
        self.read_budget = read_budget

    def __repr__(self) -> str:
        return f"PicowsTransport(max_frame_size={self.max_frame_size})"

    async def connect(
        self,
        url: str,
        headers: Mapping[str, str],
        sink: FrameSink,
        *,
        timeout: float,  # noqa: ASYNC109
        limits: Limits = DEFAULT_LIMITS,
    ) -> PicowsConnection:
        conn = PicowsConnection(sink, limits)
        if self.read_budget is not None:
            conn.budget_ns = int(self.read_budget * 1e9)
        max_frame_size = (
            self.max_frame_size if self.max_frame_size is not None else limits.max_frame_size
        )

        def factory() -> _Listener:
            return _Listener(conn)

        try:
            async with asyncio.timeout(timeout):
                transport, _ = await picows.ws_connect(
                    factory,
                    url,
                    websocket_handshake_timeout=timeout,
                    enable_auto_pong=True,
                    max_frame_size=max_frame_size,
                    logger_name="tickloop",
                    socket_factory=self._loopback_socket,
                    extra_headers=dict(headers) if headers else None,
                )
        except builtins.TimeoutError as exc:
            raise TimeoutError(f"connecting to {url} timed out") from exc
        except picows.WSHandshakeError as exc:
            status = getattr(getattr(exc, "response", None), "status", None)
            if status in (401, 403):
                raise AuthError(f"{url} refused the connection ({status})") from exc
            raise NetworkError(f"WebSocket handshake with {url} failed ({status})") from exc
        except (OSError, picows.WSError) as exc:
            raise NetworkError(f"cannot connect to {url}: {exc}") from exc
        conn._transport = transport
        conn._max_frame_size = max_frame_size
        return conn

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


class PicowsConnection:
    """One picows connection (a :class:`Connection`). Its state is kept here, off the picows
    listener: attribute access on a subclass of picows' extension type costs about twice a
    plain slotted object's, and the frame path reads this state for every frame."""

    __slots__ = (
        "_closed",
        "_flow_paused",
        "_held_paused",
        "_max_frame_size",
        "_reaper",
        "_resume_when_drained",
        "_transport",
        "backlog",
        "budget_ns",
        "fragments",
        "max_message",
        "max_pending",
        "on_frame",
        "pending",
        "reason",
        "received",
        "sink",
        "skipping",
        "turn_end",
    )

    def __init__(self, sink: FrameSink, limits: Limits) -> None:
        self.sink = sink
        self.on_frame = sink.on_frame  # bound once: one call per message on the hot path
        self.received = 0
        self.fragments: bytearray | None = None
        self.pending = 0  # frames of the fragmented message being reassembled
        self.skipping = False  # the rest of an oversized fragmented message is being dropped
        self.max_message = limits.max_message_size
        self.max_pending = limits.max_pending_frames
        self.reason = ""
        self._transport: Any = None
        self._max_frame_size = limits.max_frame_size
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reaper: asyncio.Task[None] | None = None
        self._flow_paused = False  # pause_reading() by the session (flow control)
        self._held_paused = False  # reading stopped: too many frames held back
        self._resume_when_drained = False  # ... or a read used up the budget: until all are in
        #: Frames of the current read held back for a later loop iteration (a waiting reader
        #: asked for a turn: tickloop.client.turns), as (type, fin, payload, close code, ts).
        self.backlog: deque[tuple[Any, bool, bytes, int, int]] | None = None
        #: The read budget in ns (PicowsTransport.read_budget; 1 << 62: none), and when this
        #: loop iteration's frames have used it up: its first frame's time plus the budget (0: no
        #: frame yet; reset by a callback of the next iteration).
        self.budget_ns = 1 << 62
        self.turn_end = 0

    def __repr__(self) -> str:
        return f"<PicowsConnection received={self.received} closed={self._closed.done()}>"

    def send(self, data: bytes | str) -> None:
        transport = self._transport
        if transport is None or self._closed.done():
            raise NetworkError("not connected")
        if isinstance(data, str):
            data = data.encode()
        try:
            transport.send(_TEXT, data)
        except Exception as exc:
            raise NetworkError(f"send failed: {exc}") from exc

    def send_ping(self) -> None:
        transport = self._transport
        if transport is None or self._closed.done():
            raise NetworkError("not connected")
        try:
            transport.send_ping()
        except Exception as exc:
            raise NetworkError(f"ping failed: {exc}") from exc

    def pause_reading(self) -> None:
        self._flow_paused = True
        self._set_reading(False)

    def resume_reading(self) -> None:
        self._flow_paused = False
        if not self._held_paused:  # else resumed once the held-back frames are delivered
            self._set_reading(True)

    def _set_reading(self, reading: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        raw = transport.underlying_transport
        try:
            if reading:
                raw.resume_reading()
            else:
                raw.pause_reading()
        except (AttributeError, RuntimeError) as exc:  # a closing transport
            log.debug("cannot %s reading: %s", "resume" if reading else "pause", exc)

    def close(self, code: int = 1000, reason: str = "") -> None:
        transport = self._transport
        if transport is None or self._closed.done():
            return
        self.reason = self.reason or reason
        if code != 1000:
            try:
                transport.send_close(code, reason.encode()[:120])
            except Exception as exc:  # a dying transport: disconnecting is all that is left
                log.debug("close frame not sent: %s", exc)
        transport.disconnect(graceful=False)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # -- called by the listener
    def _yield(self) -> None:
        """A reader asked for a turn: hold back what follows (the rest of this read, and later
        reads) until the event loop has run it, then deliver on (:meth:`_drain`), one turn at a
        time. Reading goes on unless :data:`HOLD_HIGH` frames are held back (then it stops
        until they are down to :data:`HOLD_LOW`): no system call per turn."""
        TURN.wanted = False
        if self.backlog is None:
            self.backlog = deque()
            asyncio.get_running_loop().call_soon(self._drain)

    def _yield_budget(self) -> None:
        """This read used up the budget: the rest of it waits for the next loop iteration, and
        the socket is not read again until it has been delivered (later frames wait in the
        kernel, and the venue's sending slows, rather than pile up here)."""
        self._yield()
        if not self._held_paused:
            self._held_paused = True
            self._resume_when_drained = True
            self._set_reading(False)

    def _begin_turn(self, now_ns: int) -> None:
        """The first frame of this loop iteration: the budget's clock starts, and stops at the
        next iteration (one callback a read, not one a frame)."""
        self.turn_end = now_ns + self.budget_ns
        asyncio.get_running_loop().call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self.turn_end = 0

    def _hold(self, item: tuple[Any, bool, bytes, int, int]) -> None:
        backlog = self.backlog
        assert backlog is not None
        backlog.append(item)
        if len(backlog) >= HOLD_HIGH and not self._held_paused:
            self._held_paused = True
            self._set_reading(False)

    def _drain(self) -> None:
        backlog = self.backlog
        if backlog is None:
            return
        turn = TURN
        deadline = time_ns() + self.budget_ns
        while backlog:
            self._frame(*backlog.popleft())
            if backlog and (turn.wanted or time_ns() > deadline):
                turn.wanted = False
                if self._held_paused and len(backlog) <= HOLD_LOW and not self._resume_when_drained:
                    self._unhold()
                asyncio.get_running_loop().call_soon(self._drain)
                return
        self.backlog = None
        if self._held_paused:
            self._unhold()

    def _unhold(self) -> None:
        self._held_paused = False
        self._resume_when_drained = False
        if not self._flow_paused and not self._closed.done():
            self._set_reading(True)

    def _frame(self, msg_type: Any, fin: bool, payload: Any, code: int, now_ns: int) -> None:
        """Every frame but a whole data message delivered at once (the listener's fast path):
        fragments, control frames, frames held back."""
        if msg_type is _TEXT or msg_type is _BINARY:
            if fin:
                self.on_frame(payload, now_ns)
                return
            # The first frame of a fragmented message: reassembled here, bounded in bytes and
            # frames (limits.max_message_size, max_pending_frames), across fragments.
            self.skipping = False
            self.pending = 1
            self.fragments = bytearray(payload)
            if len(self.fragments) > self.max_message:
                self._oversized("max_message_size", len(self.fragments))
        elif msg_type is _CONTINUATION:
            fragments = self.fragments
            if fragments is None:
                if self.skipping and fin:
                    self.skipping = False  # the oversized message is over
                return
            fragments += payload
            self.pending += 1
            if len(fragments) > self.max_message:
                self._oversized("max_message_size", len(fragments), fin)
                return
            if self.pending > self.max_pending:
                self._oversized("max_pending_frames", self.pending, fin)
                return
            if fin:
                self.fragments = None
                self.on_frame(bytes(fragments), now_ns)
        elif msg_type is _CLOSE:
            self.reason = f"closed by the venue ({code})"
            transport = self._transport
            if transport is not None:
                transport.send_close(code)
                transport.disconnect()

    def _oversized(self, limit: str, size: int, fin: bool = False) -> None:
        self.fragments = None
        self.skipping = not fin
        self.sink.on_oversized(limit, size, time_ns())

    def _disconnected(self, transport: Any) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(transport), name="tickloop-transport-closed"
            )

    async def _reap(self, transport: Any) -> None:
        """Take picows' reason for the connection's end (so asyncio never logs "Future
        exception was never retrieved"), then tell the sink: a frame over ``max_frame_size``
        is a limit breach."""
        reason, limit = self.reason, None
        try:
            async with asyncio.timeout(1.0):
                await transport.wait_disconnected()
        except picows.WSProtocolError as exc:
            if getattr(exc, "code", None) == picows.WSCloseCode.MESSAGE_TOO_BIG:
                reason = (
                    f"the venue sent a frame larger than limits.max_frame_size "
                    f"({self._max_frame_size} bytes)"
                )
                limit = "max_frame_size"
            else:
                reason = reason or f"protocol error: {str(exc)[:200]}"
        except builtins.TimeoutError:
            log.debug("the transport did not report its end within 1 s")
        except Exception as exc:  # an OS error on the socket: the reason, nothing more
            reason = reason or f"connection lost: {str(exc)[:200]}"
        finally:
            backlog, self.backlog = self.backlog, None
            while backlog:  # what was read is delivered, before the end
                self._frame(*backlog.popleft())
            if not self._closed.done():
                self._closed.set_result(None)
                self.sink.on_closed(reason or "connection closed", time_ns(), limit)


class _Listener(picows.WSListener):
    """picows callbacks of one connection: reassemble, hand each whole message to the sink."""

    def __init__(self, conn: PicowsConnection) -> None:
        self.conn = conn

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        conn = self.conn
        conn.received += 1
        if frame.fin and conn.backlog is None:
            data = frame.get_payload_as_memoryview()
            # A whole data message is the commonest frame. One whose payload opens a JSON object
            # or array, with no fragmented message under way, is taken as one without reading
            # its ``msg_type`` (picows hands that over as an Enum member, looked up by name on
            # its class for every frame: ~600 instructions, 2-3% of a small message's whole
            # cost): no control frame opens so. A CLOSE payload opens with its 2-byte code
            # (1000-4999: 0x03-0x13), picows answers PINGs itself (enable_auto_pong), and a
            # PONG echoes our pings, which carry no payload; an unsolicited PONG whose payload
            # opens ``{`` (RFC 6455 allows one) would be read as a message, which no venue we
            # know sends. Any other frame is told by its type.
            msg_type = (
                None
                if conn.fragments is None and data and data[0] in _JSON_OPENERS
                else frame.msg_type
            )
            if msg_type is None or msg_type is _TEXT or msg_type is _BINARY:
                now = time_ns()
                conn.on_frame(data, now)
                if TURN.wanted:
                    conn._yield()
                elif not conn.turn_end:
                    conn._begin_turn(now)
                elif now > conn.turn_end:  # this read took its time: a turn
                    conn._yield_budget()
                return
        else:
            msg_type = frame.msg_type
        code = frame.get_close_code() if msg_type is _CLOSE else 0
        if conn.backlog is not None:  # held back, in order, until the loop had its turn
            conn._hold((msg_type, frame.fin, frame.get_payload_as_bytes(), code, time_ns()))
            return
        conn._frame(msg_type, frame.fin, frame.get_payload_as_memoryview(), code, time_ns())

    def on_ws_connected(self, transport: Any) -> None:
        self.conn._transport = transport

    def on_ws_disconnected(self, transport: Any) -> None:
        self.conn._disconnected(transport)


# ------------------------------------------------------------------------------ memory


class MemoryConnection:
    """A connection of :class:`MemoryTransport`: the test plays the venue. :meth:`push` delivers
    a message (queued while reading is paused), :attr:`sent` holds what the session sent,
    :meth:`drop` ends the connection as a network failure would."""

    def __init__(
        self,
        transport: MemoryTransport,
        url: str,
        headers: Mapping[str, str],
        sink: FrameSink,
        limits: Limits,
    ) -> None:
        self.transport = transport
        self.url = url
        self.headers = dict(headers)
        self.sink = sink
        self.limits = limits
        #: Every message sent by the session, as bytes, in order.
        self.sent: list[bytes] = []
        self.pings = 0
        self.received = 0
        self.paused = False
        self.closed = False
        #: (code, reason) of a close() by the session.
        self.close_code: tuple[int, str] | None = None
        self._queue: deque[bytes] = deque()
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<MemoryConnection {self.url} sent={len(self.sent)} closed={self.closed}>"

    # -- the venue's side (the test)
    def push(self, data: bytes | str, now_ns: int | None = None) -> None:
        """Deliver one message to the session (at once, or on resume when paused)."""
        if self.closed:
            raise NetworkError("the connection is closed")
        raw = data.encode() if isinstance(data, str) else data
        if self.paused:
            self._queue.append(raw)
            return
        self.received += 1
        self.sink.on_frame(raw, time_ns() if now_ns is None else now_ns)

    def push_control(self) -> None:
        """A control frame (a pong, a ping): counts as received, delivers no message."""
        self.received += 1

    def drop(self, reason: str = "connection lost", limit: str | None = None) -> None:
        """End the connection from the venue's side (``limit``: a bound it broke)."""
        self._end(reason, limit)

    def _end(self, reason: str, limit: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._closed.set()
        self.sink.on_closed(reason, time_ns(), limit)

    # -- the session's side (Connection)
    def send(self, data: bytes | str) -> None:
        if self.closed:
            raise NetworkError("not connected")
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self.sent.append(raw)
        if self.transport.on_send is not None:
            self.transport.on_send(self, raw)

    def send_ping(self) -> None:
        if self.closed:
            raise NetworkError("not connected")
        self.pings += 1

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        while self._queue and not self.paused and not self.closed:
            self.received += 1
            self.sink.on_frame(self._queue.popleft(), time_ns())

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.close_code = (code, reason)
        # on_closed is never called from inside the caller's own call (as a socket's end is
        # never reported inside close()): the next loop turn.
        asyncio.get_running_loop().call_soon(self._end, reason or "closed by the client")

    async def wait_closed(self) -> None:
        await self._closed.wait()


class MemoryTransport:
    """A transport with no socket, for tests: each ``connect`` makes a :class:`MemoryConnection`
    the test drives (await :meth:`next_connection`). ``on_send(connection, data)`` is called for
    each message the session sends (a scripted venue answers there); ``refuse`` makes the next
    connects fail with that error (one per ``connect``, in order)."""

    def __init__(self, on_send: Callable[[MemoryConnection, bytes], None] | None = None) -> None:
        self.on_send = on_send
        self.connections: list[MemoryConnection] = []
        self.refuse: deque[Exception] = deque()
        self.attempts = 0
        self._new: asyncio.Queue[MemoryConnection] | None = None

    def __repr__(self) -> str:
        return f"<MemoryTransport connections={len(self.connections)}>"

    def _queue(self) -> asyncio.Queue[MemoryConnection]:
        if self._new is None:
            self._new = asyncio.Queue()
        return self._new

    async def connect(
        self,
        url: str,
        headers: Mapping[str, str],
        sink: FrameSink,
        *,
        timeout: float,  # noqa: ASYNC109
        limits: Limits = DEFAULT_LIMITS,
    ) -> MemoryConnection:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.refuse:
            raise self.refuse.popleft()
        conn = MemoryConnection(self, url, headers, sink, limits)
        self.connections.append(conn)
        self._queue().put_nowait(conn)
        return conn

    async def next_connection(self, timeout: float = 5.0) -> MemoryConnection:  # noqa: ASYNC109
        """The next connection made (waits up to ``timeout`` seconds for it)."""
        async with asyncio.timeout(timeout):
            return await self._queue().get()
