"""The replay transport: a recording played back into the live code path, with no socket.

:class:`Replay` stands behind both seams of the live path: it is a WebSocket
:class:`~tickloop.client.transport.Transport` (``StreamClient(..., transport=replay)``) and, through
:attr:`Replay.http`, an :data:`~tickloop.client.http.HttpTransport` (``HttpSession.transport``).
Everything above them (the session, codecs, trade continuity, book synchronisers, the bus, bots)
is the code that runs live, unchanged.

One pump task walks the recording's records in their recorded order (tickloop's format or
cryptofeed's, :func:`tickloop.record.open_recording`) and keeps the replayed client in step
with what the recorded one did:

* ``CONNECT``: waits for the client's next ``connect`` and binds that connection to the
  recorded one (connections are matched in the order they are opened). In a cryptofeed
  recording (a connection per channel) a recorded connection the client has opened none for
  is played on the client's open connection;
* ``RECEIVED``: hands the exact recorded bytes to the session's sink, stamped with the recorded
  receive time (so every model's ``recv_ts`` is the recorded one);
* ``SENT``: waits until the client has sent as many messages on that connection as the recorded
  one had by then (its subscriptions), so answers and data never overtake the request that
  asked for them; a client that sends less is waited for ``wait_timeout`` seconds, then the
  replay goes on (counted in :attr:`Replay.stats`). Pings (the venue codec's ``ping()``
  frame) are neither waited for nor counted: the watchdog sends them on its own clock; nor is
  a send after which the venue said nothing more on that connection (an unsubscribe while the
  recorded client closed). Cryptofeed's recordings come from another
  client, so there only the first message of a connection is waited for; their recorded
  subscription answers (Coinbase's ``subscriptions``, Kraken's ``subscriptionStatus``) are
  handed over at the client's first request on the connection, each once and skipped where
  the recording has them, and again at each later request (a client that subscribes one
  stream at a time, waiting for each answer, as the Engine does, is answered as the venue
  answers every request); a Binance ``SUBSCRIBE`` is answered as Binance answers it;
* ``DISCONNECT``: ends the bound connection as the venue or the network did (one the recorded
  client closed itself is left to the replayed client); the session reconnects by itself and
  the next ``CONNECT`` binds its new connection;
* ``REST``: makes the recorded answer available: a request whose answer is in the recording
  waits for the pump to reach it (as live, the book snapshot arrives after the diffs that came
  meanwhile), then gets it; one that is not is answered 404. In a tickloop recording the pump
  also waits (``wait_timeout`` at most) for the client to have made the request first.
  Requests match on method, path and query (in any parameter order; ``limit`` may differ),
  answers of one request in turn.

Pace: ``speed=None`` as fast as possible; ``speed=1.0`` the recorded pace; ``speed=10.0`` ten
times faster. At any pace the client catches up with each message before the next one comes,
as a live client keeps up with a venue: after a message, the pump waits until no task it woke
is still ready to run (on asyncio's default loop, read from its ready queue; at most
``SETTLE_TURNS`` turns), and in any case lets the loop run every ``batch`` messages. So what a
consumer sees does not depend on how fast the machine is, and a replay is the same run after
run.
``await replay.wait()`` returns when the recording is played out; the connections then stay
open and silent until the client closes.

    async with Replay(open_recording(path)) as replay, replay.client() as feed:
        await feed.subscribe_trades(["BTC-USD"], on_trade)
        await replay.wait()
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from ..exceptions import ConfigError, NetworkError
from ..limits import DEFAULT_LIMITS, Limits
from ..record.format import Record, RecordKind, RestExchange
from ..record.reader import Recording, open_recording
from ..venues import stream_codec
from ..venues.base import Subscribed

if TYPE_CHECKING:
    from ..client.stream import StreamClient
    from ..client.transport import FrameSink

__all__ = ["Replay", "ReplayConnection", "ReplayStats"]

log = logging.getLogger("tickloop.replay")

_RECEIVED = RecordKind.RECEIVED
_rest_decoder = msgspec.msgpack.Decoder(RestExchange)
#: How far the pump reads ahead to see whether the venue answered a send.
LOOKAHEAD = 10_000
#: Loop turns the pump gives a client to catch up with one message, at most.
SETTLE_TURNS = 64

RequestKey = tuple[str, str, tuple[tuple[str, str], ...]]


def _request_key(method: str, target: str) -> RequestKey:
    parts = urlsplit(target)
    return method.upper(), parts.path, tuple(sorted(parse_qsl(parts.query, True)))


def _binance_ack(frame: bytes) -> bytes | None:
    """Binance's answer to a SUBSCRIBE / UNSUBSCRIBE request: ``{"result":null,"id":n}``."""
    if b'SUBSCRIBE"' not in frame:
        return None
    try:
        request = msgspec.json.decode(frame)
    except msgspec.DecodeError:
        return None
    if not isinstance(request, dict) or request.get("method") not in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return None
    return msgspec.json.encode({"result": None, "id": request.get("id")})


def _loose(key: RequestKey) -> RequestKey:
    return key[0], key[1], tuple(p for p in key[2] if p[0] != "limit")


@dataclass
class ReplayStats:
    records: int = 0  # records of the recording walked so far
    frames: int = 0  # messages handed to the client
    dropped: int = 0  # messages of a connection the client had already closed
    rest_answers: int = 0  # REST requests answered from the recording
    rest_missing: int = 0  # REST requests with no recorded answer (404)
    send_timeouts: int = 0  # recorded sends the client did not make within wait_timeout
    connect_timeouts: int = 0  # recorded connections the client did not open in time
    acks_repeated: int = 0  # recorded subscription answers handed over again (later requests)


class ReplayConnection:
    """One replayed connection (a :class:`~tickloop.client.transport.Connection`): what the
    session sends is kept in :attr:`sent`; frames come from the replay's pump."""

    def __init__(self, replay: Replay, url: str, sink: FrameSink) -> None:
        self.replay = replay
        self.url = url
        self.sink = sink
        self.on_frame = sink.on_frame
        self.received = 0
        self.sent: list[bytes] = []
        self.requests = 0  # messages sent, pings aside
        self.recorded: int | None = None  # the recorded connection it stands for
        #: every recorded connection it stands for (a foreign recording's may be several)
        self.recorded_all: list[int] = []
        self.acks: list[bytes] = []  # the recorded subscription answers handed to it
        self.closed = False
        self.paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ReplayConnection {self.url} recorded={self.recorded} closed={self.closed}>"

    # -- Connection
    def send(self, data: bytes | str) -> None:
        if self.closed:
            raise NetworkError("not connected")
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self.sent.append(raw)
        if raw != self.replay._ping:
            self.requests += 1
        replay = self.replay
        if replay._answer_requests:
            ack = _binance_ack(raw)
            if ack is not None:
                asyncio.get_running_loop().call_soon(self._deliver, ack)
        elif replay._early_acks and raw != replay._ping:
            replay._answer_early(self)
        replay._wake()

    def _deliver(self, frame: bytes) -> None:
        if not self.closed:
            self.received += 1
            self.on_frame(frame, self.replay._now_ns)

    def send_ping(self) -> None:
        if self.closed:
            raise NetworkError("not connected")

    def pause_reading(self) -> None:
        self.paused = True
        self._resumed.clear()

    def resume_reading(self) -> None:
        self.paused = False
        self._resumed.set()

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        # never reported inside the caller's own call, as a socket's end never is
        asyncio.get_running_loop().call_soon(self._end, reason or "closed by the client", None)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- the pump's side
    def _end(self, reason: str, now_ns: int | None, limit: str | None = None) -> None:
        if self._closed.is_set():
            return
        self.closed = True
        self._closed.set()
        self._resumed.set()
        ts = now_ns if now_ns is not None else self.replay._now_ns
        self.sink.on_closed(reason, ts, limit)


class Replay:
    """Plays ``recording`` back through the live path (module docstring).

    ``recording``: a :class:`~tickloop.record.reader.Recording`, or what
    :func:`~tickloop.record.open_recording` takes (a directory, cryptofeed files).
    """

    def __init__(
        self,
        recording: Recording | str | Path | list[str | Path],
        *,
        speed: float | None = None,
        batch: int = 64,
        wait_timeout: float = 5.0,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError("speed must be > 0, or None for as fast as possible", field="speed")
        if batch < 1:
            raise ConfigError("batch must be >= 1", field="batch")
        if not isinstance(recording, Recording):
            recording = open_recording(recording)
        self.recording = recording
        self.speed = speed
        self.batch = batch
        self.wait_timeout = wait_timeout
        self.stats = ReplayStats()
        #: Every connection the client opened, in order.
        self.connections: list[ReplayConnection] = []
        foreign = recording.source != "tickloop"
        #: A tickloop recording holds what this client sends: sends are matched one for one. A
        #: cryptofeed one was made by another client: only the first send of a connection is
        #: waited for, and requests the recorded client never made (a Binance SUBSCRIBE, where
        #: cryptofeed put the streams in the URL) are answered as the venue answers them.
        self._exact_sends = not foreign
        self._answer_requests = foreign and recording.venue == "binance"
        #: A cryptofeed recording's subscription answers (Coinbase's ``subscriptions``,
        #: Kraken's ``subscriptionStatus``) are handed over when the client asks, not when the
        #: recorded client got them: a client that subscribes one stream at a time, waiting for
        #: each answer (the Engine does), gets them all before the data they announce.
        self._early_acks = foreign and not self._answer_requests
        self._ack_codec: Any = None
        #: the recorded answers already handed over early (by identity), skipped in the stream
        self._moved: set[int] = set()
        #: Set by a driver (ReplayBacktest): the first received frame waits until it is true
        #: (woken by connects, sends and requests; wait_timeout at most).
        self._gate: Callable[[], bool] | None = None
        self._pending: deque[ReplayConnection] = deque()
        self._bound: dict[int, ReplayConnection] = {}
        self._sends_seen: dict[int, int] = {}
        #: released answers, by request without ``limit``
        self._answers: dict[RequestKey, deque[tuple[RestExchange, int]]] = {}
        self._rest_waiters: list[asyncio.Future[None]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._now_ns = 0
        self._answer_wall: int | None = None
        self._requested: dict[RequestKey, int] = {}  # requests made, by request without limit
        self._released: dict[RequestKey, int] = {}  # answers the pump has reached
        self._closed = False
        self._ahead: deque[Record] = deque()  # records read ahead (_answered)
        self._source: Iterator[Record] | None = None
        try:
            #: The venue's application ping (never waited for, never counted as a request).
            self._ping: bytes | None = stream_codec(recording.venue)().ping()
        except Exception:  # an unknown venue or a codec that needs options: no ping to skip
            self._ping = None
        # the pace's clock and sleep (the loop's; a test gives fakes)
        self._clock: Callable[[], float] | None = None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __repr__(self) -> str:
        return f"<Replay {self.recording.venue} speed={self.speed} records={self.stats.records}>"

    @property
    def venue(self) -> str:
        return self.recording.venue

    @property
    def done(self) -> bool:
        """Whether the whole recording was played."""
        return self._done is not None and self._done.done()

    # ------------------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Replay:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the pump (if still running) and end every connection. Idempotent."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in self.connections:
            conn._end("the replay was closed", None)
        for waiter in self._rest_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _start(self) -> None:
        if self._task is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
            self._done = loop.create_future()
            self._task = loop.create_task(self._pump(), name="tickloop-replay-pump")

    async def wait(self) -> None:
        """Return once the recording has been played out (starting it if nobody connected)."""
        self._start()
        task, done = self._task, self._done
        if task is None or done is None:
            return  # closed
        await asyncio.wait([done, task], return_when=asyncio.FIRST_COMPLETED)
        if task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                raise exc

    def client(self, **options: Any) -> StreamClient:
        """A StreamClient of the recording's venue on this replay (its REST too): ``options``
        go to :class:`~tickloop.client.stream.StreamClient` (``codec_options``, ...)."""
        from ..client.rest import AsyncClient
        from ..client.stream import StreamClient

        meta = self.recording.meta
        venue = self.recording.venue
        rest = AsyncClient(venue, url=self.rest_url(), max_retries=0)
        rest.http.transport = self.http
        rest.http.wall_clock = self._http_clock
        options.setdefault("url", meta.get("url") or None)
        options.setdefault("transport", self)
        return StreamClient(venue, rest=rest, wall_clock=self.now_ns, **options)

    def _http_clock(self) -> int:
        # an answer's recv_ts: the recorded one, right after http() returned it
        wall, self._answer_wall = self._answer_wall, None
        return wall if wall is not None else self._now_ns

    def now_ns(self) -> int:
        """The recorded wall time of the replay's position (Unix ns): the clock that stamps the
        replayed client's status events and REST answers, so that they are the same every run."""
        return self._now_ns

    def rest_url(self) -> str:
        """The recorded REST root (requests are matched on their path, whatever the host)."""
        url = self.recording.meta.get("rest_url")
        if url:
            return str(url)
        return "http://replay.invalid" + ("/api/v1" if self.venue == "sim" else "")

    # ------------------------------------------------------------------------- transports
    async def connect(
        self,
        url: str,
        headers: Mapping[str, str],
        sink: FrameSink,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        limits: Limits = DEFAULT_LIMITS,
    ) -> ReplayConnection:
        if self._closed:
            raise NetworkError("the replay is closed")
        conn = ReplayConnection(self, url, sink)
        self.connections.append(conn)
        self._pending.append(conn)
        self._start()
        self._wake()
        return conn

    async def http(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """The REST side (an HttpTransport): the recorded answer to this request (docstring)."""
        key = _request_key(method, url)
        loose = _loose(key)
        self._requested[loose] = self._requested.get(loose, 0) + 1
        self._wake()
        while True:
            taken = self._take(key)
            if taken is not None:
                answer, self._answer_wall = taken
                self.stats.rest_answers += 1
                return answer.status, answer.body, answer.headers
            if self._closed or self.done or self._task is None:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._rest_waiters.append(waiter)
            await waiter
        self.stats.rest_missing += 1
        return 404, b'{"error":"not in the recording"}', {"Content-Type": "application/json"}

    def _take(self, key: RequestKey) -> tuple[RestExchange, int] | None:
        """The first released answer to ``key`` and its recorded time: an exact match first,
        else one that differs only in ``limit``."""
        queue = self._answers.get(_loose(key))
        if not queue:
            return None
        for i, (answer, wall) in enumerate(queue):
            if _request_key(answer.method, answer.target) == key:
                del queue[i]
                return answer, wall
        return queue.popleft()

    # ----------------------------------------------------------------------------- pump
    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _until(self, ready: Callable[[], bool], what: str) -> bool:
        """Wait until ``ready()`` (woken by connects and sends); False after wait_timeout."""
        assert self._wakeup is not None
        if ready():
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while not ready():
            self._wakeup.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("replay: %s did not happen within %gs", what, self.wait_timeout)
                return False
            with contextlib.suppress(builtins.TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
        return True

    async def _pump(self) -> None:
        assert self._done is not None
        loop = asyncio.get_running_loop()
        speed = self.speed
        clock = self._clock if self._clock is not None else loop.time
        sleep = self._sleep
        batch = self.batch
        # the default asyncio loop's queue of ready callbacks (None on another loop: there the
        # pump only lets other tasks run every ``batch`` messages)
        ready: Any = getattr(loop, "_ready", None)
        stats = self.stats
        bound = self._bound
        moved = self._moved
        start_at: float | None = None
        first_ns = 0
        count = 0
        try:
            for record in self._records():
                kind, conn_id, mono_ns, wall_ns, data = record
                stats.records += 1
                self._now_ns = wall_ns
                if speed is not None:
                    if start_at is None:
                        start_at, first_ns = clock(), mono_ns
                    due = start_at + (mono_ns - first_ns) / 1e9 / speed
                    delay = due - clock()
                    if delay > 0:
                        await sleep(delay)
                if kind is _RECEIVED:
                    if moved and id(record) in moved:
                        moved.discard(id(record))  # handed over at the request
                        continue
                    if self._gate is not None:
                        # the first data waits until the client says it is ready for it
                        if not await self._until(self._gate, "the client's start"):
                            self.stats.send_timeouts += 1
                        self._gate = None
                    conn = bound.get(conn_id)
                    if conn is None or conn.closed:
                        stats.dropped += 1
                        continue
                    if conn.paused:
                        await conn._resumed.wait()
                        if conn.closed:
                            stats.dropped += 1
                            continue
                    conn.received += 1
                    stats.frames += 1
                    try:
                        conn.on_frame(data, wall_ns)
                    except Exception:  # the session never raises; a bug must not stop the replay
                        log.exception("replay: the session's sink failed")
                    count += 1
                    if ready:
                        # the client catches up with each message before the next, as a live
                        # client does with a venue's pace: every task it woke runs first
                        count = 0
                        await self._settle(ready)
                    elif count >= batch:
                        # and timers (watchdogs, the loop-lag monitor) get a turn as often
                        count = 0
                        await asyncio.sleep(0)
                elif kind is RecordKind.SENT:
                    await self._on_sent(conn_id, data)
                elif kind is RecordKind.CONNECT:
                    await self._on_connect(conn_id)
                elif kind is RecordKind.DISCONNECT:
                    conn = bound.get(conn_id)
                    end = msgspec.json.decode(data)
                    # a connection the recorded client closed itself is the replayed client's
                    # to close: only what the venue or the network did is replayed
                    if conn is not None and not conn.closed and not end.get("by_client"):
                        conn._end(str(end.get("reason") or "connection closed"), wall_ns)
                        await asyncio.sleep(0)
                elif kind is RecordKind.REST:
                    answer = _rest_decoder.decode(data)
                    if self._exact_sends:
                        await self._on_request(answer)
                    self._on_rest(answer, wall_ns)
                    if self._rest_waiters:
                        # let the waiting request take its answer before the next frame, as live
                        self._release_waiters()
                        for _ in range(4):
                            await asyncio.sleep(0)
        finally:
            self._release_waiters()
        if not self._done.done():
            self._done.set_result(None)

    async def _settle(self, ready: Any) -> None:
        """Let every task the last message woke run until none is ready (bounded: a client
        that never rests gets SETTLE_TURNS turns, then the replay goes on)."""
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
            if not ready:
                return

    def _records(self) -> Iterator[Record]:
        source = iter(self.recording.records())
        ahead = self._ahead
        while True:
            if ahead:
                yield ahead.popleft()
                continue
            record = next(source, None)
            if record is None:
                return
            self._source = source
            yield record

    def _answered(self, conn_id: int) -> bool:
        """Whether the recording shows the venue answering on ``conn_id`` after the send just
        read: its next record there is a received message (looked for among the next
        LOOKAHEAD records). A send with nothing after it (an unsubscribe while the recorded
        client was closing) is not waited for: nothing the client sees depends on it."""
        ahead = self._ahead
        for record in ahead:
            if record.conn == conn_id and record.kind in (_RECEIVED, RecordKind.DISCONNECT):
                return record.kind is _RECEIVED
        source = self._source
        while source is not None and len(ahead) < LOOKAHEAD:
            following = next(source, None)
            if following is None:
                self._source = None
                break
            ahead.append(following)
            if following.conn == conn_id and following.kind in (_RECEIVED, RecordKind.DISCONNECT):
                return following.kind is _RECEIVED
        return len(ahead) >= LOOKAHEAD  # not found within reach: wait, to be safe

    async def _on_connect(self, conn_id: int) -> None:
        if self._early_acks and not self._pending:
            # cryptofeed opens a connection per channel where tickloop's session puts every
            # stream on one: a recorded connection the client has not opened one for is
            # played on the client's open one
            open_ = [c for c in self.connections if c.recorded is not None and not c.closed]
            if open_:
                conn = open_[-1]
                conn.recorded_all.append(conn_id)
                self._bound[conn_id] = conn
                self._sends_seen[conn_id] = 0
                if conn.requests:
                    self._answer_early(conn)
                return
        if not await self._until(lambda: bool(self._pending), "the client's connect"):
            self.stats.connect_timeouts += 1
            return
        conn = self._pending.popleft()
        conn.recorded = conn_id
        conn.recorded_all.append(conn_id)
        self._bound[conn_id] = conn
        self._sends_seen[conn_id] = 0
        if not self._exact_sends and not await self._until(
            lambda: conn.requests > 0 or conn.closed, "the client's first message"
        ):
            self.stats.send_timeouts += 1
        if self._early_acks and conn.requests and not conn.closed:
            self._answer_early(conn)  # what it sent before the pump got here

    def rest_pending(self) -> bool:
        """Whether the client is waiting for a REST answer the pump has not reached yet."""
        return any(n > self._released.get(k, 0) for k, n in self._requested.items())

    def _is_ack(self, data: bytes) -> bool:
        """Whether a received frame is the venue's answer to a subscription (Coinbase's
        ``subscriptions``, Kraken's ``subscriptionStatus``), as the venue's codec reads it."""
        if b"subscri" not in data:
            return False
        if self._ack_codec is None:
            self._ack_codec = stream_codec(self.venue)()
        try:
            decoded = self._ack_codec.decode(data, 0)
        except Exception:  # a malformed frame is the session's to report, in its turn
            return False
        return any(isinstance(m, Subscribed) for m in decoded)

    def _answer_early(self, conn: ReplayConnection) -> None:
        """Hand ``conn`` the recorded subscription answers of every recorded connection it
        stands for, the ones not handed over yet (looked for among the next LOOKAHEAD
        records), now: as live, the answer follows the request. Each is then skipped where
        the recording has it, so every recorded frame reaches the client once."""
        wanted = set(conn.recorded_all)
        ahead = self._ahead
        source = self._source
        while source is not None and len(ahead) < LOOKAHEAD:
            following = next(source, None)
            if following is None:
                self._source = source = None
                break
            ahead.append(following)
        moved = self._moved
        found: list[bytes] = []
        for record in ahead:
            if record.kind is _RECEIVED and record.conn in wanted and id(record) not in moved \
                    and self._is_ack(record.data):
                moved.add(id(record))
                found.append(record.data)
        if found:
            self.stats.frames += len(found)
            conn.acks.extend(found)
        else:
            # a later request (the next stream of a client that subscribes one at a time): the
            # venue answers it as it answered the recorded ones, so those answers come again
            found = conn.acks
            self.stats.acks_repeated += len(found)
        loop = asyncio.get_running_loop()
        for data in found:
            loop.call_soon(conn._deliver, data)

    async def _on_sent(self, conn_id: int, data: bytes) -> None:
        conn = self._bound.get(conn_id)
        if conn is None or conn.closed or data == self._ping:
            return  # a ping is the watchdog's, on the clock of the process that sent it
        seen = self._sends_seen[conn_id] = self._sends_seen.get(conn_id, 0) + 1
        want = seen if self._exact_sends else min(seen, 1)
        if conn.requests >= want or not self._answered(conn_id):
            return
        if not await self._until(
            lambda: conn.requests >= want or conn.closed, "a message the recorded client sent"
        ):
            self.stats.send_timeouts += 1

    async def _on_request(self, answer: RestExchange) -> None:
        """Wait until the client has asked what this answer answers (as live, the answer came
        after the request), for wait_timeout at most."""
        key = _loose(_request_key(answer.method, answer.target))
        released = self._released.get(key, 0)
        if not await self._until(
            lambda: self._requested.get(key, 0) > released, f"the request {answer.target}"
        ):
            self.stats.send_timeouts += 1

    def _on_rest(self, answer: RestExchange, wall_ns: int) -> None:
        key = _loose(_request_key(answer.method, answer.target))
        self._released[key] = self._released.get(key, 0) + 1
        self._answers.setdefault(key, deque()).append((answer, wall_ns))

    def _release_waiters(self) -> None:
        waiters, self._rest_waiters = self._rest_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
