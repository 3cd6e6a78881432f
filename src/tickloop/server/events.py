"""The live event stream: bus -> replay rings -> Server-Sent Events, resumable by ``Last-Event-ID``.

Intake. Two bus subscriptions feed the :class:`EventHub`:

* ``sse-market-*`` takes market data (:data:`MARKET_PATTERNS`: trades, books, candles, tickers,
  quotes) with ``policy="conflate"``, read by the hub's one task. Snapshots (books, tickers,
  candles, quotes) are keyed by topic: when the hub falls behind, only the latest of each waits,
  so the dashboard gets the newest book rather than an old queue of them. Trades are the
  market's log, not a state: each is its own key, so none is conflated away and a price chart
  built from them keeps every high and low; past ``market_maxsize`` pending keys the oldest is
  dropped (and counted), which bounds memory when the hub cannot keep up at all;
* ``sse-events-*`` takes everything else (orders, fills, status, drop notices, handler
  failures, and whatever the runtime publishes) through a sync handler called by ``publish``
  itself: nothing is buffered between the bus and the ring, so none of these is ever dropped.
  Before appending one, the handler takes what the market subscription holds, so when nothing
  was conflated the stream keeps the bus's publish order exactly.

Rings. Every event gets the next number of a server-side sequence (1, 2, 3...) and goes, already
encoded as one SSE frame, into one of two bounded rings: market data in one, everything else in
the other, so a burst of trades never pushes a fill out of the replay history. The SSE id is
``<epoch>-<seq>``, where the epoch is random per hub start: a server-side sequence rather than
the bus's ``(source, id)`` because a stream merges events of many sources (the Redis bus) and a
resume needs one total order; the epoch tells a resume after a server restart from one within
this run.

Resume. A client sending ``Last-Event-ID: <epoch>-<n>`` gets every retained event with a
sequence number above ``n``, in order, with nothing repeated. When some events after ``n`` are
no longer retained (a ring evicted them, or ``n`` is from another epoch: the server restarted),
it first gets an ``event: lost`` frame (JSON: ``reason``, ``after``, ``streams``) and then what
is retained. A client too slow to keep up with a ring gets the same frame, then continues from
the oldest retained event. Frames without an id (``lost``, keep-alive comments) leave the
browser's last event id alone.

Keep-alive. A comment line (``: ping``) goes out whenever a client was sent nothing for
``ping_interval`` seconds of the loop clock; the first chunk carries ``retry:`` (the browser's
reconnect delay). Filters (event types, topic patterns) apply per client when frames are read.

Why not sse-starlette: frames here are encoded once per event and shared by every client, and a
client's backlog goes out as one chunk per wake-up, not one send per event; and its shutdown
hook relies on uvicorn's signal handlers, which a server in the platform's loop disables.
:class:`EventStreamResponse` is the small ASGI response that streams the chunks and stops as
soon as the client disconnects, whatever the ASGI spec version.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Hashable,
    Iterable,
    Sequence,
)
from typing import Any

import msgspec
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..bus import Bus, Event, Subscription, topic_matcher
from ..exceptions import ConfigError

__all__ = [
    "MARKET_PATTERNS",
    "EventFilter",
    "EventHub",
    "EventStreamResponse",
    "ReplayRing",
]

log = logging.getLogger("tickloop.server")

#: Topics of market data: conflated per topic on the way in, kept in their own ring.
MARKET_PATTERNS: tuple[str, ...] = ("trade.*", "book.*", "candle.*", "ticker.*", "quote.*")

_encode = msgspec.json.Encoder().encode
_LOG_TYPES = frozenset({"trade"})


def _market_key(event: Event) -> Hashable:
    """Conflation key: one per topic for snapshots, one per event for trades."""
    if event.type in _LOG_TYPES:
        return (event.source, event.id)
    return event.topic
_PING = b": ping\n\n"


class _Entry:
    """One retained event: its sequence number, what filters look at, and its SSE frame."""

    __slots__ = ("frame", "seq", "topic", "type")

    def __init__(self, seq: int, type_: str, topic: str, frame: bytes) -> None:
        self.seq = seq
        self.type = type_
        self.topic = topic
        self.frame = frame


def _seq(entry: _Entry) -> int:
    return entry.seq


class ReplayRing:
    """The last ``size`` entries of one class of events, in sequence order.

    ``evicted_seq`` is the sequence number of the newest entry evicted so far (0: none): a
    reader whose cursor is below it has missed something.
    """

    def __init__(self, name: str, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"replay ring size must be an int >= 1, got {size!r}",
                              field="replay")
        self.name = name
        self.size = size
        self.entries: deque[_Entry] = deque()
        self.evicted_seq = 0
        self.evicted = 0
        self.appended = 0

    def append(self, entry: _Entry) -> None:
        entries = self.entries
        if len(entries) >= self.size:
            self.evicted_seq = entries.popleft().seq
            self.evicted += 1
        entries.append(entry)
        self.appended += 1

    def after(self, seq: int) -> list[_Entry]:
        """The retained entries numbered above ``seq``, oldest first (O(what is returned))."""
        entries = self.entries
        if not entries or entries[-1].seq <= seq:
            return []
        if entries[0].seq > seq:
            return list(entries)
        out = []
        for entry in reversed(entries):
            if entry.seq <= seq:
                break
            out.append(entry)
        out.reverse()
        return out

    def missed(self, seq: int) -> bool:
        """True when some entry numbered above ``seq`` was evicted."""
        return self.evicted_seq > seq

    def __len__(self) -> int:
        return len(self.entries)


class EventFilter:
    """Which events one client wants: event types and topic patterns (empty: all)."""

    __slots__ = ("_match", "topics", "types")

    def __init__(self, types: Iterable[str] = (), topics: Iterable[str] = ()) -> None:
        self.types = frozenset(t for t in types if t)
        self.topics = tuple(dict.fromkeys(p for p in topics if p))
        matchers = [topic_matcher(p) for p in self.topics]
        self._match: Callable[[str], bool] | None = (
            None if not matchers else lambda topic: any(m(topic) for m in matchers)
        )

    @classmethod
    def parse(cls, types: str | None, topics: str | None) -> EventFilter:
        """From query parameters: comma-separated types and topic patterns."""
        return cls((types or "").split(","), (topics or "").split(","))

    @property
    def everything(self) -> bool:
        return not self.types and self._match is None

    def __call__(self, entry: _Entry) -> bool:
        if self.types and entry.type not in self.types:
            return False
        match = self._match
        return match is None or match(entry.topic)


class EventHub:
    """Bus events in, SSE frames out to any number of clients (module docstring).

    ``replay`` is the size of each ring (market data, everything else); ``market_patterns`` the
    topics conflated on intake (``market_maxsize`` topics pending at most); ``ping_interval``
    seconds of silence before a keep-alive comment; ``retry`` the browser's reconnect delay in
    seconds; ``clock`` the loop clock by default; ``max_clients`` how many streams may be open
    at once (:meth:`open` refuses more).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        replay: int = 10_000,
        market_patterns: Sequence[str] = MARKET_PATTERNS,
        market_maxsize: int = 4096,
        ping_interval: float = 15.0,
        retry: float = 1.0,
        clock: Callable[[], float] | None = None,
        max_clients: int = 256,
    ) -> None:
        if not ping_interval > 0:
            raise ConfigError(f"ping_interval must be > 0, got {ping_interval!r}",
                              field="ping_interval")
        if not retry >= 0:
            raise ConfigError(f"retry must be >= 0, got {retry!r}", field="retry")
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ConfigError(f"max_clients must be an int >= 1, got {max_clients!r}",
                              field="max_clients")
        self.bus = bus
        self.max_clients = max_clients
        self.market = ReplayRing("market", replay)
        self.events = ReplayRing("events", replay)
        self.market_patterns = tuple(market_patterns)
        self.market_maxsize = market_maxsize
        self.ping_interval = float(ping_interval)
        self.retry_ms = round(retry * 1000)
        self._clock = clock
        self.epoch = ""
        self.seq = 0
        self._market_sub: Subscription | None = None
        self._events_sub: Subscription | None = None
        self._is_market: Callable[[str], bool] = lambda topic: False
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self._closed = False
        self.clients = 0
        self.lost_notices = 0
        self.frames_sent = 0

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> None:
        """Subscribe to the bus and start reading (the bus must be open)."""
        if self._started:
            return
        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = loop.time
        self.epoch = secrets.token_hex(4)
        self._market_sub = self.bus.subscribe(
            self.market_patterns, maxsize=self.market_maxsize, policy="conflate",
            key=_market_key, name=f"sse-market-{self.epoch}",
        )
        self._is_market = self._market_sub.inbox.matches
        self._events_sub = self.bus.subscribe(
            "*", policy="lossless", handler=self._on_event, name=f"sse-events-{self.epoch}"
        )
        self._started = True
        self._task = loop.create_task(self._read_market(), name="tickloop-sse-market")

    async def aclose(self) -> None:
        """End every client's stream and leave the bus. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        for sub in (self._events_sub, self._market_sub):
            if sub is not None:
                sub.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -------------------------------------------------------------------------------- intake
    def _append(self, ring: ReplayRing, event: Event) -> None:
        self.seq = seq = self.seq + 1
        frame = b"id: %s-%d\ndata: %s\n\n" % (self.epoch.encode(), seq, _encode(event))
        ring.append(_Entry(seq, event.type, event.topic, frame))

    def _take_market(self) -> int:
        sub = self._market_sub
        if sub is None:
            return 0
        taken = 0
        try:
            while (event := sub.get_nowait()) is not None:
                self._append(self.market, event)
                taken += 1
        except StopAsyncIteration:
            pass
        return taken

    def _on_event(self, event: Event) -> None:
        if self._closed or self._is_market(event.topic):
            return  # market data comes through the conflating subscription
        self._take_market()  # what was published before this event goes before it
        self._append(self.events, event)
        self._wake()

    async def _read_market(self) -> None:
        sub = self._market_sub
        assert sub is not None
        try:
            async for event in sub:
                self._append(self.market, event)
                self._take_market()
                self._wake()
        except Exception:
            log.exception("the SSE market intake failed")
            raise

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------------------- reading
    def _id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def _lost(self, reason: str, after: str | None, streams: Sequence[str]) -> bytes:
        self.lost_notices += 1
        body = _encode({"reason": reason, "after": after, "streams": list(streams)})
        return b"event: lost\ndata: %s\n\n" % body

    def resume_point(self, last_event_id: str | None, backlog: bool) -> tuple[int, bytes]:
        """Where a new client starts (a sequence number) and the ``lost`` frame it gets first
        (empty when nothing it asked for is missing)."""
        self._take_market()
        if last_event_id is None:
            return (0 if backlog else self.seq), b""
        epoch, _, number = last_event_id.strip().rpartition("-")
        seq = int(number) if number.isdigit() else -1
        if epoch != self.epoch or not 0 <= seq <= self.seq:
            reason = "restarted" if epoch and seq >= 0 and epoch != self.epoch else "unknown"
            return 0, self._lost(reason, last_event_id, ["market", "events"])
        missed = [r.name for r in (self.market, self.events) if r.missed(seq)]
        notice = self._lost("evicted", last_event_id, missed) if missed else b""
        return seq, notice

    def read(self, cursor: int, told: dict[str, int]) -> tuple[list[_Entry], list[str]]:
        """Retained entries after ``cursor`` in sequence order, and the rings that evicted
        some entry after it that the reader was not yet told of (``told``: ring name -> the
        eviction point already reported; updated)."""
        self._take_market()  # a reader sees everything published before it reads
        missed = []
        for ring in (self.market, self.events):
            if ring.missed(max(cursor, told.get(ring.name, 0))):
                missed.append(ring.name)
                told[ring.name] = ring.evicted_seq
        market = self.market.after(cursor)
        events = self.events.after(cursor)
        if not market:
            return events, missed
        if not events:
            return market, missed
        return list(heapq.merge(market, events, key=_seq)), missed

    async def _wait(self, seconds: float) -> None:
        """Until the next append (or close), at most ``seconds``."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.wait((waiter,), timeout=seconds)

    def open(
        self,
        *,
        last_event_id: str | None = None,
        backlog: bool = False,
        filter: EventFilter | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[bytes] | None:
        """One client's event stream (the chunks to send; module docstring), or None when
        ``max_clients`` streams are open. It ends after ``limit`` events when given, or when the
        hub closes; its slot is freed when it ends or is closed (``aclose``)."""
        if self.clients >= self.max_clients:
            return None
        return _ClientStream(self, self._stream(last_event_id, backlog, filter, limit))

    async def _stream(
        self,
        last_event_id: str | None,
        backlog: bool,
        filter: EventFilter | None,
        limit: int | None,
    ) -> AsyncGenerator[bytes, None]:
        if not self.running:
            return
        clock = self._clock
        assert clock is not None
        wanted = filter if filter is not None and not filter.everything else None
        cursor, notice = self.resume_point(last_event_id, backlog)
        # Evictions before this point are covered by the resume notice (or were asked about by
        # nobody: a live start, a backlog): reads report only later ones.
        told = {r.name: r.evicted_seq for r in (self.market, self.events)}
        yield b"retry: %d\n: tickloop %s\n\n%s" % (self.retry_ms, self.epoch.encode(), notice)
        last_sent = clock()
        sent = 0
        while not self._closed:
            entries, missed = self.read(cursor, told)
            chunk: list[bytes] = []
            if missed:
                chunk.append(self._lost("behind", self._id(cursor), missed))
            if entries:
                cursor = entries[-1].seq
                if wanted is not None:
                    entries = [e for e in entries if wanted(e)]
                if limit is not None and sent + len(entries) >= limit:
                    entries = entries[: limit - sent]
                sent += len(entries)
                chunk.extend(e.frame for e in entries)
            if chunk:
                self.frames_sent += len(entries)
                yield b"".join(chunk)
                last_sent = clock()
                if limit is not None and sent >= limit:
                    return
                continue
            idle = clock() - last_sent
            if idle >= self.ping_interval:
                yield _PING
                last_sent = clock()
                continue
            await self._wait(self.ping_interval - idle)

    # -------------------------------------------------------------------------------- insight
    def stats(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seq": self.seq,
            "clients": self.clients,
            "frames_sent": self.frames_sent,
            "lost_notices": self.lost_notices,
            "rings": {
                r.name: {"size": r.size, "retained": len(r), "appended": r.appended,
                         "evicted": r.evicted}
                for r in (self.market, self.events)
            },
        }


class _ClientStream:
    """An open stream holding one of the hub's client slots until it ends or is closed."""

    def __init__(self, hub: EventHub, chunks: AsyncGenerator[bytes, None]) -> None:
        self._hub = hub
        self._chunks = chunks
        self._open = True
        hub.clients += 1

    def __aiter__(self) -> _ClientStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._open:
            self._open = False
            self._hub.clients -= 1

    async def aclose(self) -> None:
        self._release()
        await self._chunks.aclose()


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` from an async iterator of chunks; stops the iterator as soon as
    the client disconnects (whatever the server's ASGI spec version)."""

    media_type = "text/event-stream"

    def __init__(self, chunks: AsyncIterator[bytes], status_code: int = 200) -> None:
        super().__init__(
            chunks,
            status_code=status_code,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})

        async def body() -> None:
            async for chunk in self.body_iterator:
                data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(body()), loop.create_task(disconnected())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                await closer()
