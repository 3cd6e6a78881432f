"""The Redis backend's I/O: the publisher's writer, the acknowledger and the stream readers.

Every piece is a task owned by :class:`tickloop.bus.redis.RedisBus`, which starts them and
awaits them on close. Each survives Redis going away the same way: the failing command raises a
redis-py connection error, the piece tells the shared :class:`Link` (which emits one
``Disconnected`` status event per outage, and one ``Reconnected`` when a command succeeds
again), waits a backoff (:class:`tickloop.client.backoff.Backoff`, full jitter) and retries.
Nothing is given up while it waits:

* the writer keeps unsent events in its bounded buffer (past the bound the oldest unsent event
  is dropped, counted and announced) and resends a batch whose reply was lost; a resent entry
  may land twice, which the readers' dedupe absorbs;
* the acknowledger keeps unsent acknowledgements and resends them (XACK is idempotent);
* a group reader re-reads its own pending entries after every reconnect (``XREADGROUP`` from
  ``0``) before new ones (``>``), since a reply lost in transit left entries pending for it that
  it never saw; a tail reader resumes from the last entry id it saw.

redis-py's own errors end here: callers see counters, status events and tickloop's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from .. import models
from ..client.backoff import Backoff
from ..exceptions import ProtocolError
from ._redis_wire import FIELD, DedupeWindow, EntryCodec, StreamLayout
from .events import Event
from .subscription import Inbox

__all__ = [
    "XADD_BATCH",
    "Acker",
    "GroupReader",
    "Link",
    "Retrying",
    "TailReader",
    "Writer",
    "command",
    "describe",
    "entries_of",
    "streams_of",
]

log = logging.getLogger("tickloop.bus.redis")

Emit = Callable[[str, Any], None]
Clock = Callable[[], float]


async def command(client: Redis, *args: Any) -> Any:
    """One Redis command, its reply parsed by redis-py's callbacks. Keys, groups and
    consumers are bytes here, which redis-py's annotations do not all admit."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def pipe_command(pipe: Any, *args: Any) -> None:
    pipe.execute_command(*args)


# Commands are sent with bytes names, which redis-py's reply callbacks (keyed by str names,
# and shaped differently across its versions and RESP2/RESP3) leave alone: the raw replies are
# read here, in either protocol's shape.

Entries = list[tuple[bytes, bytes | None]]


def entries_of(raw: Any) -> Entries:
    """``[[id, [field, value, ...]], ...]`` -> ``[(id, value of FIELD or None), ...]``."""
    out: Entries = []
    for item in raw or ():
        entry_id, fields = item[0], item[1]
        value = None
        if isinstance(fields, dict):
            value = fields.get(FIELD)
        elif fields:
            for i in range(0, len(fields) - 1, 2):
                if fields[i] == FIELD:
                    value = fields[i + 1]
                    break
        out.append((entry_id, value))
    return out


def streams_of(raw: Any) -> list[tuple[bytes, Entries]]:
    """An XREAD/XREADGROUP reply (RESP2 list of pairs, RESP3 map, or nil)."""
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else ((r[0], r[1]) for r in raw)
    return [(key, entries_of(entries)) for key, entries in pairs]


def describe(exc: BaseException) -> str:
    """A one-line reason for a redis-py error (never the URL: it may carry a password)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class Link:
    """The state of the connection to Redis, shared by every piece (module docstring)."""

    def __init__(self, url: str, emit: Emit, clock: Clock) -> None:
        self.url = url
        self._emit = emit
        self._clock = clock
        self.up = True
        self.disconnects = 0
        self.reconnects = 0
        self.attempts = 0
        self.reason = ""
        self._down_since = 0.0

    def failed(self, exc: BaseException) -> None:
        self.attempts += 1
        if not self.up:
            return
        self.up = False
        self.disconnects += 1
        self._down_since = self._clock()
        self.reason = describe(exc)
        log.warning("redis at %s unreachable (%s); retrying with backoff", self.url, self.reason)
        self._emit(
            "status.redis.disconnected",
            models.Disconnected(
                venue="redis", url=self.url, connection=0, reason=self.reason, ts=time.time_ns()
            ),
        )

    def ok(self) -> None:
        if self.up:
            return
        self.up = True
        self.reconnects += 1
        downtime = max(0.0, self._clock() - self._down_since)
        attempts, self.attempts = self.attempts, 0
        log.warning("redis at %s reachable again after %.2fs", self.url, downtime)
        self._emit(
            "status.redis.reconnected",
            models.Reconnected(
                venue="redis",
                url=self.url,
                connection=0,
                downtime=downtime,
                attempts=attempts,
                ts=time.time_ns(),
            ),
        )


class Retrying:
    """Backoff waits of one piece: ``await wait(exc)`` after a failure, ``ok()`` after a
    success."""

    def __init__(self, link: Link, base_wait: float, max_wait: float) -> None:
        self.link = link
        self.backoff = Backoff(base_wait=base_wait, max_wait=max_wait)

    async def wait(self, exc: BaseException) -> None:
        self.link.failed(exc)
        delay = self.backoff.next_wait()
        await asyncio.sleep(delay if delay is not None else self.backoff.max_wait)

    def ok(self) -> None:
        self.backoff.succeeded()
        self.link.ok()


# --------------------------------------------------------------------------------- writer


#: One call adds a whole batch: KEYS are the entries' streams, ARGV[1] the MAXLEN (0: none),
#: ARGV[2..] the values. A pipeline of XADDs costs redis-py ~20 us a command to pack and parse
#: (~50k/s at best); one script call with the same entries runs at ~200k/s. A script is also
#: atomic: a batch lands whole or not at all.
XADD_BATCH = """
local m = tonumber(ARGV[1])
for i = 1, #KEYS do
  if m > 0 then
    redis.call('XADD', KEYS[i], 'MAXLEN', '~', m, '*', 'e', ARGV[i + 1])
  else
    redis.call('XADD', KEYS[i], '*', 'e', ARGV[i + 1])
  end
end
return #KEYS
"""


class Writer:
    """The publisher's bounded buffer and the task that drains it into XADDs.

    ``put`` is a plain call. The task sends whatever is buffered as soon as it is free: one
    XADD when one event waits (no added delay at low rates), one batch of up to ``batch_size``
    entries otherwise (one call of :data:`XADD_BATCH`); ``linger`` > 0 waits up to that many
    seconds for a batch to fill (a time bound for fewer, larger writes). An event is
    *confirmed* once Redis answered the command that carried it.
    """

    def __init__(
        self,
        client: Redis,
        layout: StreamLayout,
        retry: Retrying,
        *,
        maxlen: int | None,
        batch_size: int,
        linger: float,
        buffer_size: int,
        on_drop: Callable[[int], None],
    ) -> None:
        self._client = client
        self._layout = layout
        self._retry = retry
        self._maxlen = maxlen
        self.batch_size = batch_size
        self.linger = linger
        self.buffer_size = buffer_size
        self._on_drop = on_drop
        self._buffer: deque[tuple[bytes, bytes]] = deque()
        self._inflight = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._registered: set[bytes] = set()
        # redis-py sends EVALSHA and loads the script again when Redis lost it (a restart)
        self._script = client.register_script(XADD_BATCH) if client is not None else None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: set by the owner at shutdown: redis-py can swallow a task's cancellation (a cancel
        #: landing inside a fast command is lost), so every loop also checks this flag
        self.stopping = False
        self.enqueued = 0
        self.confirmed = 0
        self.dropped = 0
        self.batches = 0
        self.resent = 0
        # Water marks of the buffer for publishers that can wait (bus.wait_writable): above
        # `high` they wait until it drained to `low`.
        self.high = max(1, buffer_size * 3 // 4)
        self.low = buffer_size // 4
        self._drained: asyncio.Future[None] | None = None
        if maxlen is None:
            self._trim: tuple[Any, ...] = ()
        else:
            self._trim = (b"MAXLEN", b"~", maxlen)

    def __len__(self) -> int:
        return len(self._buffer) + self._inflight

    def put(self, key: bytes, value: bytes) -> None:
        buffer = self._buffer
        self.enqueued += 1
        if len(buffer) + self._inflight >= self.buffer_size:
            # Full (Redis slow or away): the oldest unsent event goes, so what reaches Redis
            # after an outage is the most recent stretch, with one gap before it.
            self.dropped += 1
            if buffer:
                buffer.popleft()
                buffer.append((key, value))
            self._on_drop(1)
            self._settle()
        else:
            buffer.append((key, value))
        if not self._wake.is_set():
            self._wake.set()
        if len(buffer) >= self.batch_size and not self._full.is_set():
            self._full.set()

    async def flush(self, within: float | None) -> bool:
        """Wait until every event put so far is confirmed (or dropped); False when ``within``
        seconds passed first."""
        target = self.enqueued
        if self.confirmed + self.dropped >= target:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), within)
        except TimeoutError:
            return False
        return True

    @property
    def above_high(self) -> bool:
        return len(self._buffer) + self._inflight >= self.high

    async def below_low(self) -> None:
        """Return once the buffer is at or below its low water mark."""
        while len(self._buffer) + self._inflight > self.low and not self.stopping:
            waiter = self._drained
            if waiter is None or waiter.done():
                waiter = self._drained = asyncio.get_running_loop().create_future()
            await waiter

    def _settle(self) -> None:
        drained = self._drained
        if drained is not None and len(self._buffer) + self._inflight <= self.low:
            self._drained = None
            if not drained.done():
                drained.set_result(None)
        if not self._waiters:
            return
        done = self.confirmed + self.dropped
        keep = []
        for target, future in self._waiters:
            if done >= target:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep

    async def run(self) -> None:
        buffer = self._buffer
        while not self.stopping:
            if not buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger > 0 and len(buffer) < self.batch_size:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.linger)
            n = min(len(buffer), self.batch_size)
            batch = [buffer.popleft() for _ in range(n)]
            self._inflight = n
            try:
                await self._send(batch)
            except (RedisError, OSError) as exc:
                # Back to the front, in order; the entries that did land will be seen twice
                # and dropped by the readers' dedupe.
                self._inflight = 0
                buffer.extendleft(reversed(batch))
                self.resent += n
                self._registered.clear()
                if len(buffer) >= self.batch_size:
                    self._full.set()
                await self._retry.wait(exc)
                continue
            self._inflight = 0
            self.confirmed += n
            self.batches += 1
            self._retry.ok()
            self._settle()

    async def _send(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        dead = self._layout.dead_prefix
        new_keys = {key for key, _ in batch
                    if key not in self._registered and not key.startswith(dead)}
        if new_keys:
            await command(self._client, b"SADD", self._layout.registry, *sorted(new_keys))
            self._registered.update(new_keys)
        if len(batch) == 1:
            key, value = batch[0]
            await command(self._client, b"XADD", key, *self._trim, b"*", FIELD, value)
            return
        assert self._script is not None
        await self._script(keys=[key for key, _ in batch],
                           args=[self._maxlen or 0, *[value for _, value in batch]])

    def fail_waiters(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        for _, future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters = []


# --------------------------------------------------------------------------- acknowledger


class Acker:
    """Batches XACKs of every group reader: one pipeline per flush, resent after a failure."""

    def __init__(self, client: Redis, retry: Retrying) -> None:
        self._client = client
        self._retry = retry
        self._pending: dict[tuple[bytes, bytes], list[bytes]] = {}
        self._count = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopping = False  # as Writer.stopping
        self.acked = 0

    def __len__(self) -> int:
        return self._count

    def ack(self, key: bytes, group: bytes, entry_id: bytes) -> None:
        ids = self._pending.get((key, group))
        if ids is None:
            self._pending[(key, group)] = [entry_id]
        else:
            ids.append(entry_id)
        self._count += 1
        if self._count == 1:  # the first of a batch: the task may be asleep
            self._idle.clear()
            if not self._wake.is_set():
                self._wake.set()

    async def drained(self, within: float | None) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        while not self.stopping:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            taken, self._pending = self._pending, {}
            count, self._count = self._count, 0
            try:
                if len(taken) == 1:
                    ((key, group), ids), = taken.items()
                    await command(self._client, b"XACK", key, group, *ids)
                else:
                    pipe = self._client.pipeline(transaction=False)
                    for (key, group), ids in taken.items():
                        pipe_command(pipe, b"XACK", key, group, *ids)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                for slot, ids in taken.items():
                    self._pending.setdefault(slot, [])[:0] = ids
                self._count += count
                await self._retry.wait(exc)
                continue
            self.acked += count
            self._retry.ok()


# -------------------------------------------------------------------------------- readers


class _Reader:
    """What group and tail readers share: stream discovery, decoding, dedupe."""

    def __init__(
        self,
        client: Redis,
        layout: StreamLayout,
        codec: EntryCodec,
        retry: Retrying,
        inbox: Inbox,
        *,
        clock: Clock,
        block: float,
        read_count: int,
        discover_interval: float,
        dedupe_window: int,
        on_undecodable: Callable[[Inbox, str, BaseException], None],
    ) -> None:
        self._client = client
        self._layout = layout
        self._codec = codec
        self._retry = retry
        self.inbox = inbox
        self._clock = clock
        self._block_ms = max(1, int(block * 1000))
        self._read_count = read_count
        self._discover_interval = discover_interval
        self.dedupe = DedupeWindow(dedupe_window)
        self._on_undecodable = on_undecodable
        fixed = [layout.fixed_key(p) for p in inbox.patterns]
        self._fixed = sorted({k for k in fixed if k is not None})
        self._wild = [p for p, k in zip(inbox.patterns, fixed, strict=True) if k is None]
        self._next_discover = 0.0
        self.keys: list[bytes] = []
        self.delivered = 0
        self.skipped = 0  # entries of this reader's streams whose topic it does not match
        self.undecodable = 0
        self.trimmed = 0  # pending entries trimmed away (MAXLEN) before anyone handled them
        #: set once the reader is reading: an event published after it is seen
        self.ready = asyncio.Event()
        self.stopping = False  # as Writer.stopping

    async def _discover(self, force: bool = False) -> list[bytes]:
        """Stream keys not seen before; reads the registry only for wildcard patterns."""
        known = set(self.keys)
        found = set(self._fixed)
        now = self._clock()
        if self._wild and (force or now >= self._next_discover):
            self._next_discover = now + self._discover_interval
            registered = list(await command(self._client, b"SMEMBERS", self._layout.registry))
            for pattern in self._wild:
                found.update(self._layout.candidates(pattern, registered))
        new = sorted(found - known)
        if new:
            self.keys = sorted(known | set(new))
        return new

    def _decode(self, value: bytes) -> tuple[Any, bool]:
        """(wire, matched) for an entry value: wire None when the envelope is malformed,
        matched False when its topic is not this subscription's."""
        codec = self._codec
        try:
            wire = codec.entry(value)
        except ProtocolError as exc:
            self.undecodable += 1
            self._on_undecodable(self.inbox, "?", exc)
            return None, False
        if not self.inbox.matches(wire.topic):
            self.skipped += 1
            return wire, False
        return wire, True


class GroupReader(_Reader):
    """One consumer of one consumer group, delivering into one subscription's inbox.

    It reads no more than the inbox has room for, so a group subscription never drops: Redis
    holds the backlog. An entry is acknowledged once the inbox reports it handled or consumed,
    or at once when its topic is not the subscription's or it was handled already (dedupe).
    """

    def __init__(
        self,
        *args: Any,
        group: bytes,
        consumer: bytes,
        start: bytes,
        acker: Acker,
        claim_idle: float,
        max_deliveries: int,
        on_given_up: Callable[[Inbox, Event, int], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.group = group
        self.consumer = consumer
        self._start = start
        self._acker = acker
        self._claim_idle_ms = max(1, int(claim_idle * 1000))
        self._claim_interval = max(0.05, claim_idle / 2)
        self._max_deliveries = max_deliveries
        self._on_given_up = on_given_up
        self._made: set[bytes] = set()
        self._room = asyncio.Event()
        self._waiting_room = False
        self._failures: dict[tuple[str, int], int] = {}
        self.claimed = 0
        self.given_up = 0
        self.pending_reread = 0
        self._initial: set[bytes] | None = None
        inbox = self.inbox
        inbox.set_on_done(self._done)

    # ---------------------------------------------------------------- inbox callbacks
    def _done(self, event: Event) -> None:
        # Called once per event handled: kept lean (it is most of a consumer's own cost).
        key = (event.source, event.id)
        if self._failures:
            self._failures.pop(key, None)
        ack = self._acker.ack
        group = self.group
        for stream, entry_id in self.dedupe.done(key):
            ack(stream, group, entry_id)
        if self._waiting_room:
            self._waiting_room = False
            self._room.set()

    def failed(self, event: Event) -> None:
        """The handler raised: the entry stays pending and is delivered again after
        ``claim_idle`` (to this or another consumer), up to ``max_deliveries`` times."""
        key = (event.source, event.id)
        attempts = self._failures.get(key, 0) + 1
        if attempts >= self._max_deliveries:
            self._failures.pop(key, None)
            self.given_up += 1
            self._on_given_up(self.inbox, event, attempts)
            self._done(event)
            return
        if len(self._failures) >= 10_000:
            self._failures.clear()
        self._failures[key] = attempts
        self.dedupe.forget(key)
        if self._waiting_room:
            self._waiting_room = False
            self._room.set()

    async def _wait_room(self) -> None:
        self._room.clear()
        self._waiting_room = True
        await self._room.wait()

    # ----------------------------------------------------------------------- loop
    async def run(self) -> None:
        while not self.stopping and not self.inbox.closed:
            try:
                await self._session()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    await self._retry.wait(exc)
                # The group (or its stream) is gone: Redis lost its data or someone deleted
                # it. Make it again (from the start of what is there) and go on.
                self._made.clear()
            except (RedisError, OSError) as exc:
                await self._retry.wait(exc)

    async def _ensure_groups(self, keys: Sequence[bytes]) -> None:
        for key in keys:
            if key in self._made:
                continue
            # The configured start applies to the streams known when the subscription was
            # made; a stream found later, or made again, is read from its beginning.
            start = self._start if key in (self._initial or ()) else b"0"
            try:
                await command(self._client, b"XGROUP", b"CREATE", key, self.group, start,
                              b"MKSTREAM")
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._made.add(key)

    async def _session(self) -> None:
        await self._discover(force=True)
        if self._initial is None:
            self._initial = set(self.keys)
        await self._ensure_groups(self.keys)
        self._initial = set()
        self.ready.set()
        await self._reread_pending(self.keys)
        self._retry.ok()
        next_claim = self._clock() + self._claim_interval
        client = self._client
        inbox = self.inbox
        while not inbox.closed and not self.stopping:
            # In flight = delivered and not yet handled: the inbox's backlog plus what its
            # handler holds. Reading no more than the rest keeps the inbox from overflowing.
            room = min(self._read_count, inbox.maxsize - self.dedupe.in_flight)
            if room <= 0:
                await self._wait_room()
                continue
            new = await self._discover()
            if new:
                await self._ensure_groups(new)
            if self._clock() >= next_claim:
                await self._autoclaim()
                next_claim = self._clock() + self._claim_interval
                continue
            if not self.keys:
                await asyncio.sleep(self._discover_interval)
                continue
            keys = self.keys
            reply = await command(
                client, b"XREADGROUP", b"GROUP", self.group, self.consumer, b"COUNT", room,
                b"BLOCK", self._wait_ms, b"STREAMS", *keys, *([b">"] * len(keys)),
            )
            for stream, entries in streams_of(reply):
                self._deliver(stream, entries)

    @property
    def _wait_ms(self) -> int:
        # Return often enough to run the reclaim pass and, for wildcard patterns, discovery.
        wait = min(self._block_ms / 1000, self._claim_interval)
        if self._wild:
            wait = min(wait, self._discover_interval)
        return max(1, int(wait * 1000))

    async def _reread_pending(self, keys: Sequence[bytes]) -> None:
        """Entries delivered to this consumer name and never acknowledged (a restart, or a
        reply lost in transit), before any new one."""
        inbox = self.inbox
        for key in keys:
            cursor = b"0"
            while not inbox.closed and not self.stopping:
                room = min(self._read_count, inbox.maxsize - self.dedupe.in_flight)
                if room <= 0:
                    await self._wait_room()
                    continue
                reply = await command(
                    self._client, b"XREADGROUP", b"GROUP", self.group, self.consumer,
                    b"COUNT", room, b"STREAMS", key, cursor,
                )
                got = streams_of(reply)
                entries = got[0][1] if got else []
                if not entries:
                    break
                self.pending_reread += len(entries)
                self._deliver(key, entries)
                cursor = entries[-1][0]

    async def _autoclaim(self) -> None:
        """Take over entries pending longer than ``claim_idle`` (a dead consumer's, or a failed
        handler's), a bounded number per pass."""
        inbox = self.inbox
        for key in list(self.keys):
            cursor: bytes = b"0-0"
            for _ in range(8):
                room = min(self._read_count, inbox.maxsize - self.dedupe.in_flight)
                if room <= 0:
                    return
                reply = await command(
                    self._client, b"XAUTOCLAIM", key, self.group, self.consumer,
                    self._claim_idle_ms, cursor, b"COUNT", room,
                )
                cursor, entries = reply[0], entries_of(reply[1])
                if len(reply) > 2 and reply[2]:
                    self.trimmed += len(reply[2])  # Redis dropped them from the PEL itself
                if entries:
                    self.claimed += len(entries)
                    self._deliver(key, entries)
                if cursor == b"0-0":
                    break

    def _deliver(self, stream: bytes, entries: Entries) -> None:
        ack = self._acker.ack
        group = self.group
        dedupe = self.dedupe
        batch: list[Event] = []
        push = batch.append
        for entry_id, value in entries:
            if value is None:  # trimmed (MAXLEN) while pending: nothing left to deliver
                self.trimmed += 1
                ack(stream, group, entry_id)
                continue
            wire, matched = self._decode(value)
            if not matched:
                ack(stream, group, entry_id)
                continue
            verdict = dedupe.arrive((wire.source, wire.id), (stream, entry_id))
            if verdict == DedupeWindow.HANDLED:
                ack(stream, group, entry_id)
                continue
            if verdict == DedupeWindow.IN_FLIGHT:
                continue
            try:
                event = self._codec.event(wire)
            except ProtocolError as exc:
                self.undecodable += 1
                dedupe.done((wire.source, wire.id))
                ack(stream, group, entry_id)
                self._on_undecodable(self.inbox, wire.topic, exc)
                continue
            self.delivered += 1
            push(event)
        if batch:
            self.inbox.push_many(batch)


class TailReader(_Reader):
    """A plain fan-out reader (no group): XREAD from the moment it started, the live tail.

    The subscription's own policy applies locally (a slow dashboard drops, it never slows
    anyone). After a reconnect it resumes from the last entry id it saw.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start: bytes | None = None
        self._ids: dict[bytes, bytes] = {}

    async def run(self) -> None:
        while not self.stopping and not self.inbox.closed:
            try:
                await self._session()
            except (RedisError, OSError) as exc:
                await self._retry.wait(exc)

    async def _session(self) -> None:
        client = self._client
        if self._start is None:
            # Redis's clock, not ours: entry ids are its milliseconds.
            seconds, micros = await command(client, b"TIME")
            # XREAD returns ids above the one given: the last possible id of the millisecond
            # before now, so an entry added this very millisecond is included.
            ms = int(seconds) * 1000 + int(micros) // 1000 - 1
            self._start = f"{ms}-18446744073709551615".encode()
        for key in await self._discover(force=True):
            self._ids.setdefault(key, self._start)
        self.ready.set()
        self._retry.ok()
        inbox = self.inbox
        while not inbox.closed and not self.stopping:
            for key in await self._discover():
                self._ids.setdefault(key, self._start)
            if not self._ids:
                await asyncio.sleep(self._discover_interval)
                continue
            block = self._block_ms
            if self._wild:
                block = min(block, max(1, int(self._discover_interval * 1000)))
            ids = self._ids
            reply = await command(
                client, b"XREAD", b"COUNT", self._read_count, b"BLOCK", block, b"STREAMS",
                *ids.keys(), *ids.values(),
            )
            for stream, entries in streams_of(reply):
                self._deliver(stream, entries)

    def _deliver(self, stream: bytes, entries: Entries) -> None:
        dedupe = self.dedupe
        batch: list[Event] = []
        push = batch.append
        for entry_id, value in entries:
            self._ids[stream] = entry_id
            if value is None:
                continue
            wire, matched = self._decode(value)
            if not matched:
                continue
            key = (wire.source, wire.id)
            if dedupe.arrive(key, None) != DedupeWindow.DELIVER:
                continue
            dedupe.done(key)
            try:
                event = self._codec.event(wire)
            except ProtocolError as exc:
                self.undecodable += 1
                self._on_undecodable(self.inbox, wire.topic, exc)
                continue
            self.delivered += 1
            push(event)
        if batch:
            self.inbox.push_many(batch)
