"""Recording hooks: wrappers around the live path's two transports, and the record command's API.

:class:`Recorder` owns a :class:`~tickloop.record.writer.RecordWriter` and hands out

* :meth:`Recorder.transport`: a WebSocket :class:`~tickloop.client.transport.Transport` that
  wraps the live one (picows by default): each connection it opens is a ``CONNECT`` record, each
  whole message received a ``RECEIVED`` record (the exact bytes, stamped with the receive time
  the session itself uses, and the monotonic clock), each message sent a ``SENT`` record and the
  end of the connection a ``DISCONNECT`` record. The session above it is unchanged.
* :meth:`Recorder.attach_http`: wraps an :class:`~tickloop.client.http.HttpSession`'s
  :data:`~tickloop.client.http.HttpTransport` (and its ``wall_clock``): each REST exchange
  (book snapshots, trade backfill) is a ``REST`` record with the answer's status, headers and
  body, written where the session handed the answer over, with the ``recv_ts`` it stamped.
* credentials never reach the file: the values of credential keys (:data:`SECRET_KEYS`: a
  login frame's token, a signed request's signature, a login answer's token) are written as
  ``"***"`` (:func:`redact`); request headers are not recorded at all.
* :meth:`Recorder.on_status`: a status handler
  (``await feed.subscribe_status(recorder.on_status)``):
  Connected, Disconnected, Reconnected, Stale, Gap, ... as ``STATUS`` records.

What the wrappers add per message is one record append (a header pack and a buffer copy);
compression happens in blocks of 256 KiB (``bench/bench_replay.py`` measures the cost).

:func:`record` is the whole ``tickloop record`` command as a coroutine: a StreamClient of
``venue`` on the recording transports, subscribed to ``channels`` of ``symbols``, for
``seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from ..client.http import HttpSession, HttpTransport
from ..exceptions import ConfigError, NetworkError, TimeoutError
from ..limits import DEFAULT_LIMITS, Limits
from ..models import StatusEvent
from .format import RecordKind, RestExchange
from .writer import RecordWriter

if TYPE_CHECKING:
    from ..client.transport import Connection, FrameSink, Transport

__all__ = ["CHANNELS", "SECRET_KEYS", "RecordStats", "Recorder", "record", "redact"]

_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns
_RECEIVED = RecordKind.RECEIVED
_SENT = RecordKind.SENT
_status_encoder = msgspec.json.Encoder()

#: JSON keys (and query parameters) whose values are credentials: never written to a recording.
SECRET_KEYS = frozenset(
    {"token", "signature", "secret", "api_key", "apikey", "apiKey", "passphrase", "password"}
)
_SECRET_MARKS = tuple(f'"{k}"'.encode() for k in SECRET_KEYS)


def redact(data: bytes) -> bytes:
    """``data`` with the value of every credential key (:data:`SECRET_KEYS`) replaced by
    ``"***"`` when it is JSON holding one; else ``data`` unchanged (the common case costs one
    substring search per key)."""
    if not any(mark in data for mark in _SECRET_MARKS):
        return data
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data
    return msgspec.json.encode(_redacted(doc))


def _redacted(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: "***" if k in SECRET_KEYS else _redacted(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_redacted(v) for v in doc]
    return doc


def _redact_target(target: str) -> str:
    path, sep, query = target.partition("?")
    if not sep:
        return target
    params = [p.partition("=") for p in query.split("&")]
    return path + "?" + "&".join(
        f"{k}=***" if k in SECRET_KEYS and eq else f"{k}{eq}{v}" for k, eq, v in params
    )


#: What ``tickloop record --channels`` accepts.
CHANNELS = ("trades", "book", "tickers", "candles")


class Recorder:
    """Records what a StreamClient (and its REST client) sees into ``out`` (module docstring).

    ``writer_options`` go to :class:`RecordWriter` (``max_segment_bytes``,
    ``max_segment_seconds``, ...). Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self, out: str | Path, *, meta: dict[str, Any] | None = None, **writer_options: Any
    ) -> None:
        self.writer = RecordWriter(out, meta=meta, **writer_options)
        self._write = self.writer.write
        self._connections = 0
        self._pending_rest: RestExchange | None = None
        self.status_events = 0

    def __repr__(self) -> str:
        return f"<Recorder {self.writer.path} records={self.writer.records}>"

    @property
    def path(self) -> Path:
        return self.writer.path

    # ------------------------------------------------------------------------ WebSocket
    def transport(self, inner: Transport | None = None) -> Transport:
        """A Transport recording everything that passes through ``inner`` (default: picows)."""
        if inner is None:
            from ..client.transport import PicowsTransport

            inner = PicowsTransport()
        return _RecordingTransport(self, inner)

    def _next_connection(self) -> int:
        self._connections += 1
        return self._connections

    # ----------------------------------------------------------------------------- REST
    def http(
        self, inner: HttpTransport, clock: Callable[[], int] = _time_ns, *, defer: bool = False
    ) -> HttpTransport:
        """An HttpTransport recording each exchange of ``inner``, stamped with ``clock``.

        ``defer``: a 2xx answer is recorded only when :meth:`_rest_stamp` is called (the
        session stamping it, just before it hands the answer over), not when it was read: so
        the record sits where the answer reached the client among the stream's frames."""
        write = self._write

        async def recording(
            method: str, url: str, body: bytes | None, headers: Mapping[str, str]
        ) -> tuple[int, bytes, Mapping[str, str]]:
            sent_mono, sent_wall = _monotonic_ns(), clock()
            status, answer, answer_headers = await inner(method, url, body, headers)
            parts = urlsplit(url)
            target = _redact_target(parts.path + (f"?{parts.query}" if parts.query else ""))
            exchange = RestExchange(
                method, target, status, redact(answer), dict(answer_headers), sent_mono, sent_wall
            )
            if defer and 200 <= status < 300:
                self._flush_rest(clock)  # never left pending: the session stamps at once
                self._pending_rest = exchange
            else:
                write(RecordKind.REST, 0, msgspec.msgpack.encode(exchange))
            return status, answer, answer_headers

        return recording

    def _flush_rest(self, clock: Callable[[], int]) -> int | None:
        exchange, self._pending_rest = self._pending_rest, None
        if exchange is None:
            return None
        wall = clock()
        self._write(RecordKind.REST, 0, msgspec.msgpack.encode(exchange), _monotonic_ns(), wall)
        return wall

    def attach_http(self, session: HttpSession) -> None:
        """Record every exchange of ``session`` (an AsyncClient's ``http``). A 2xx answer is
        recorded when the session stamps its ``recv_ts``, with that very time: a replay hands
        it over at the same point of the stream, with the same ``recv_ts``."""
        clock = session.wall_clock
        session.transport = self.http(session.transport, clock, defer=True)

        def stamp() -> int:
            wall = self._flush_rest(clock)
            return wall if wall is not None else clock()

        session.wall_clock = stamp

    # --------------------------------------------------------------------------- status
    def on_status(self, event: StatusEvent) -> None:
        self.status_events += 1
        self._write(RecordKind.STATUS, 0, _status_encoder.encode(event))

    def close(self) -> None:
        """End the recording (idempotent). Close it before the client, so that the client's
        own shutdown (unsubscribes, closing frames) is not part of it; what comes after is
        counted in ``writer.late``, never written."""
        self._flush_rest(_time_ns)
        self.writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _RecordingTransport:
    def __init__(self, recorder: Recorder, inner: Transport) -> None:
        self._recorder = recorder
        self._inner = inner

    async def connect(
        self,
        url: str,
        headers: Mapping[str, str],
        sink: FrameSink,
        *,
        timeout: float,  # noqa: ASYNC109
        limits: Limits = DEFAULT_LIMITS,
    ) -> Connection:
        tap = _Tap(sink, self._recorder, url)
        connection = await self._inner.connect(url, headers, tap, timeout=timeout, limits=limits)
        # A connection that failed to open is no connection of the recording: CONNECT is written
        # once it is open (or at its first frame, should one come before connect returns).
        if not tap.conn:
            tap.opened()
        return _RecordingConnection(connection, self._recorder._write, tap)


class _Tap:
    """The session's FrameSink, seen through the recorder."""

    __slots__ = (
        "_on_frame", "_received", "_recorder", "_sink", "_url", "_write", "by_client", "conn"
    )

    def __init__(self, sink: FrameSink, recorder: Recorder, url: str) -> None:
        self._sink = sink
        self._on_frame = sink.on_frame
        self._recorder = recorder
        self._write = recorder._write
        self._received = recorder.writer._append
        self._url = url
        self.conn = 0
        self.by_client = False  # the session closed it (not the venue, not the network)

    def opened(self) -> None:
        self.conn = self._recorder._next_connection()
        self._write(RecordKind.CONNECT, self.conn, msgspec.json.encode({"url": self._url}))

    def on_frame(self, data: bytes | memoryview, now_ns: int) -> None:
        if not self.conn:
            self.opened()
        # written (copied) first: a memoryview payload is valid only during this call
        self._received(_RECEIVED, self.conn, data, _monotonic_ns(), now_ns)
        self._on_frame(data, now_ns)

    def on_oversized(self, limit: str, size: int, now_ns: int) -> None:
        self._sink.on_oversized(limit, size, now_ns)

    def on_closed(self, reason: str, now_ns: int, limit: str | None) -> None:
        self._write(
            RecordKind.DISCONNECT,
            self.conn,
            msgspec.json.encode({"reason": reason, "limit": limit, "by_client": self.by_client}),
            _monotonic_ns(),
            now_ns,
        )
        self._sink.on_closed(reason, now_ns, limit)


class _RecordingConnection:
    def __init__(self, inner: Connection, write: Callable[..., None], tap: _Tap) -> None:
        self._inner = inner
        self._write = write
        self._tap = tap
        self._conn = tap.conn

    @property
    def received(self) -> int:
        return self._inner.received

    def send(self, data: bytes | str) -> None:
        self._inner.send(data)
        self._write(_SENT, self._conn, redact(data.encode() if isinstance(data, str) else data))

    def send_ping(self) -> None:
        self._inner.send_ping()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._tap.by_client = True
        self._inner.close(code, reason)

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()


class RecordStats(msgspec.Struct):
    records: int = 0
    frames: int = 0
    events: int = 0
    raw_bytes: int = 0
    compressed_bytes: int = 0
    segments: int = 0
    status_events: int = 0


def _parse_channels(channels: Sequence[str]) -> list[str]:
    out = []
    for channel in channels:
        name = channel.strip().lower()
        if not name:
            continue
        if name not in CHANNELS:
            raise ConfigError(
                f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}", field="channels"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("no channel to record", field="channels")
    return out


async def record(
    out: str | Path,
    *,
    seconds: float,
    venue: str = "sim",
    url: str | None = None,
    rest_url: str | None = None,
    symbols: Sequence[str] = ("BTC-USD",),
    channels: Sequence[str] = ("trades", "book"),
    progress: Callable[[RecordStats, float], None] | None = None,
    **writer_options: Any,
) -> RecordStats:
    """Record ``channels`` of ``symbols`` on ``venue`` at ``url`` for ``seconds`` into ``out``.

    With ``venue="sim"`` and no ``url`` the embedded exchange is started in-process (seed 1)
    and stopped at the end. ``progress(stats, elapsed)`` is called about 5 times a second.
    """
    from contextlib import AsyncExitStack

    from ..client.rest import AsyncClient
    from ..client.stream import StreamClient
    from ..venues.registry import stream_codec

    if not seconds > 0:
        raise ConfigError("seconds must be > 0", field="seconds")
    names = _parse_channels(channels)
    wanted = [s.strip() for s in symbols if s.strip()]
    if not wanted:
        raise ConfigError("no symbol to record", field="symbols")
    async with AsyncExitStack() as stack:
        if url is None and venue == "sim":
            from ..sim import SimExchange

            ex = await stack.enter_async_context(SimExchange(seed=1, symbols=wanted))
            url, rest_url = ex.ws_url, ex.rest_url
        if rest_url is None and url is not None:
            # a venue that serves REST beside its stream says where (the sim: /api/v1)
            rest_url = stream_codec(venue).rest_url(url)
        meta = {
            "venue": venue,
            "url": url,
            "rest_url": rest_url,
            "symbols": wanted,
            "channels": names,
            "started_wall_ns": _time_ns(),
            "source": "tickloop",
        }
        recorder = stack.enter_context(Recorder(out, meta=meta, **writer_options))
        rest = AsyncClient(venue, url=rest_url)
        await stack.enter_async_context(rest)
        recorder.attach_http(rest.http)
        feed = StreamClient(
            venue,
            url=url,
            rest=rest,
            transport=recorder.transport(),
            subscribe_timeout=min(10.0, max(1.0, seconds)),
        )
        await stack.enter_async_context(feed)
        await feed.subscribe_status(recorder.on_status)
        events = 0

        def count(_: Any) -> None:
            nonlocal events
            events += 1

        try:
            for name in names:
                if name == "trades":
                    await feed.subscribe_trades(wanted, count)
                elif name == "tickers":
                    await feed.subscribe_tickers(wanted, count)
                elif name == "candles":
                    await feed.subscribe_candles(wanted, "1m", count)
                else:
                    await feed.subscribe_books(wanted, count)
        except TimeoutError:
            if recorder._connections:
                raise
            raise NetworkError(
                f"never connected to {feed.url} (the recording in {out} is empty)", venue=venue
            ) from None
        loop = asyncio.get_running_loop()
        started = loop.time()

        def stats() -> RecordStats:
            writer = recorder.writer
            return RecordStats(
                records=writer.records,
                frames=int(feed.stats().get("frames", 0)),
                events=events,
                raw_bytes=writer.raw_bytes,
                compressed_bytes=writer.compressed_bytes,
                segments=writer.segments,
                status_events=recorder.status_events,
            )

        while (elapsed := loop.time() - started) < seconds:
            if progress is not None:
                progress(stats(), elapsed)
            await asyncio.sleep(min(0.2, seconds - elapsed))
        result = stats()
        # the recording ends before the client's own shutdown (its unsubscribes, its close):
        # a replay then never waits for a shutdown the replayed client has not begun
        recorder.close()
        await feed.aclose()
        if not recorder._connections:
            raise NetworkError(
                f"never connected to {feed.url} (the recording in {out} is empty)",
                venue=venue,
            )
        if progress is not None:
            progress(result, seconds)
    final = recorder.writer
    result.records, result.raw_bytes = final.records, final.raw_bytes
    result.compressed_bytes, result.segments = final.compressed_bytes, final.segments
    return result
