"""``RedisBus``: the bus over Redis Streams, so processes on several machines share events.

``Bus("redis://host:port/db")`` makes one. The interface is the in-process bus's
(:class:`tickloop.bus.Bus`): ``publish`` is a plain call, subscriptions have the same policies
and the same ``async for`` / handler styles. What differs is where events travel:

* **Publish** encodes the event (msgpack) and puts it in a bounded buffer; a writer task sends
  it with ``XADD ... MAXLEN ~ maxlen`` to the stream of the topic's first segment
  (``trade.sim.BTC-USD`` -> ``tickloop:trade``). One waiting event is sent alone at once;
  several go in one batch call of at most ``batch_size`` (a Lua script that XADDs them all;
  ``linger`` seconds, when set, waits for a batch to fill). Local subscribers get their own
  events back through Redis, like everyone.
* **Group subscriptions** (``group="store"``) are Redis consumer groups: each event of the
  group's streams goes to one consumer, which acknowledges it (``XACK``, batched) once its
  handler returned or its ``async for`` consumer asked for the next one. A consumer's name is
  the bus's ``name`` (suffixed ``-2``, ``-3``... for more subscriptions of one group in one
  process), so a restarted process with the same name first re-reads the entries it had been
  given and never acknowledged, then new ones. Entries pending longer than ``claim_idle``
  seconds (a dead consumer's) are taken over by the live ones (``XAUTOCLAIM``). A handler that
  raised leaves its entry pending: it is delivered again after ``claim_idle``, up to
  ``max_deliveries`` times in one process, then acknowledged, kept in the group's dead-letter
  stream (``tickloop:_dead:<group>|<patterns>``, :meth:`RedisBus.dead_letters`; written like
  any event, never registered for discovery) and reported (``HandlerFailed`` with handler
  ``<given up after N deliveries>``). A group reads no more
  than its subscription has room for, so it never drops: Redis holds the backlog.
* **Plain subscriptions** (no group) are fan-out readers of the live tail (``XREAD`` from the
  moment they started); their policy applies locally.
* **Dedupe.** ``(source, id)`` names an event everywhere; each reader remembers the last
  ``dedupe_window`` handled keys, so an entry written twice (a resent batch), re-read or
  reclaimed reaches its handlers once. Delivery is at least once across a crash: events a
  consumer handled but had not acknowledged when it died are delivered again.
* **Redis going away**: the writer keeps events in its buffer (``buffer_size``; when full the
  oldest unsent event is dropped, counted in ``stats()["redis"]["publish_dropped"]`` and
  announced by a ``BusDropped`` of subscription ``redis-publisher`` on
  ``bus.dropped.redis-publisher``); every piece reconnects with backoff; the bus delivers
  ``Disconnected`` / ``Reconnected`` (``venue="redis"``) on ``status.disconnected`` /
  ``status.reconnected`` to its local subscribers (not through Redis, which is away). An event
  Redis confirmed is never lost by tickloop, and an acknowledgement is resent until Redis took
  it; what Redis itself keeps across its restart is its persistence setting
  (``appendonly yes``).

A group is identified by its name and its patterns (the Redis group is ``<group>|<patterns>``):
subscriptions with the same group and patterns share its events; another set of patterns makes
another group, which sees every event its patterns match (a group reader acknowledges the
topics its patterns do not match, so two pattern sets can never share one Redis group).

A new group sees what its streams still hold (``group_start="earliest"``, the default) or only
what comes after it was made (``"latest"``); streams a wildcard group discovers later are read
from their start. ``name`` should be stable across restarts for a group consumer to resume its
own entries; ``source`` is then ``name`` plus a random suffix, because event ids start at 1 in
every process.

redis-py's exceptions never reach the caller: ``start`` raises :class:`~tickloop.exceptions.
NetworkError` when Redis cannot be reached at all, and afterwards outages are status events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError

from ..exceptions import AuthError, BusError, ConfigError, NetworkError
from ..models import BusDropped, HandlerFailed
from ._redis_io import (
    Acker,
    GroupReader,
    Link,
    Retrying,
    TailReader,
    Writer,
    command,
    describe,
)
from ._redis_wire import EntryCodec, StreamLayout
from .base import Bus
from .events import _TYPE_OF, Event, event_type_of
from .subscription import Inbox

__all__ = ["PUBLISHER", "RedisBus", "redact"]

log = logging.getLogger("tickloop.bus.redis")

#: The subscription name the publisher's own drop notices carry.
PUBLISHER = "redis-publisher"


def redact(url: str) -> str:
    """``url`` without its password (for logs, reprs and status events)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "redis://?"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a number {bound}, got {value!r}", field=name)
    return float(value)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}", field=name)
    return value


class RedisBus(Bus):
    """The Redis Streams bus (``Bus("redis://...")``); see the module docstring.

    Options (seconds for times): ``prefix`` of stream keys; ``maxlen`` entries kept per stream
    (approximate trimming; None keeps all); ``batch_size`` entries per batch call at most and
    ``linger`` to wait for a batch to fill (0: send at once); ``buffer_size`` unsent events
    kept while Redis is slow or away; ``read_count`` entries per read; ``block`` the longest
    blocking read; ``claim_idle`` after which another consumer takes over a pending entry;
    ``max_deliveries`` of an entry whose handler raises; ``dedupe_window`` handled keys
    remembered per reader; ``group_start`` ``"earliest"`` or ``"latest"``;
    ``discover_interval`` between looks for new streams (wildcard patterns); ``connect_timeout``
    and ``timeout`` of connections and commands; ``base_wait``/``max_wait`` of the reconnect
    backoff; ``close_timeout`` to send what is buffered at close; ``clock`` a monotonic clock
    in seconds (default: the loop's).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str | None = None,
        drop_interval: float = 1.0,
        wall_clock: Callable[[], int] | None = None,
        mono_clock: Callable[[], int] | None = None,
        prefix: str = "tickloop",
        maxlen: int | None = 100_000,
        batch_size: int = 500,
        linger: float = 0.0,
        buffer_size: int = 100_000,
        read_count: int = 500,
        block: float = 1.0,
        claim_idle: float = 5.0,
        max_deliveries: int = 3,
        dedupe_window: int = 100_000,
        group_start: str = "earliest",
        discover_interval: float = 1.0,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        base_wait: float = 0.05,
        max_wait: float = 2.0,
        close_timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if wall_clock is not None:
            options["wall_clock"] = wall_clock
        if mono_clock is not None:
            options["mono_clock"] = mono_clock
        super().__init__(url, name=name, drop_interval=drop_interval, **options)
        if not isinstance(url, str) or not url:
            raise ConfigError("RedisBus needs a redis:// URL", field="url")
        if name is not None:
            # Ids start at 1 in every process: the name alone would repeat (source, id) keys
            # after a restart, and consumers would drop the new events as duplicates.
            self.source = f"{name}.{secrets.token_hex(3)}"
        self.consumer_name = name if name is not None else self.source
        self._named = name is not None
        # (stream, group, consumer) of every group reader this bus ran, for the clean-up
        self._joined: set[tuple[bytes, bytes, bytes]] = set()
        self.url_shown = redact(url)
        if maxlen is not None:
            _count("maxlen", maxlen)
        self.maxlen = maxlen
        self.batch_size = _count("batch_size", batch_size)
        self.linger = _positive("linger", linger, allow_zero=True)
        self.buffer_size = _count("buffer_size", buffer_size)
        if self.buffer_size < self.batch_size:
            raise ConfigError("buffer_size must be >= batch_size", field="buffer_size")
        self.read_count = _count("read_count", read_count)
        self.block = _positive("block", block)
        self.claim_idle = _positive("claim_idle", claim_idle)
        self.max_deliveries = _count("max_deliveries", max_deliveries)
        self.dedupe_window = _count("dedupe_window", dedupe_window)
        if group_start not in ("earliest", "latest"):
            raise ConfigError(
                f"group_start must be 'earliest' or 'latest', got {group_start!r}",
                field="group_start",
            )
        self.group_start = group_start
        self.discover_interval = _positive("discover_interval", discover_interval)
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.timeout = _positive("timeout", timeout)
        self.base_wait = _positive("base_wait", base_wait, allow_zero=True)
        self.max_wait = _positive("max_wait", max_wait)
        if self.max_wait < self.base_wait:
            raise ConfigError("max_wait must be >= base_wait", field="max_wait")
        self.close_timeout = _positive("close_timeout", close_timeout, allow_zero=True)
        self._clock = clock
        self.layout = StreamLayout(prefix)
        self.codec = EntryCodec()
        self._url = url
        self._client: Redis | None = None
        self._link = Link(self.url_shown, self._emit_local, self._now)
        self._writer: Writer | None = None
        self._acker: Acker | None = None
        self._readers: dict[Inbox, GroupReader | TailReader] = {}
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._unstarted: list[Inbox] = []
        self._consumers: dict[str, set[int]] = {}
        self._numbers: dict[Inbox, tuple[str, int]] = {}
        self._publish_dropped = 0
        self._publish_announced = 0
        self._publish_notice: asyncio.TimerHandle | None = None
        self.undecodable = 0
        self.given_up = 0
        # Events published before start() wait here (bounded like the writer's buffer).
        self._early: list[tuple[bytes, bytes]] = []

    # ------------------------------------------------------------------------------ clocks
    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        loop = self._loop
        return loop.time() if loop is not None else 0.0

    # ---------------------------------------------------------------------------- lifecycle
    async def _start(self) -> None:
        client = Redis.from_url(
            self._url,
            socket_connect_timeout=self.connect_timeout,
            # A blocking read waits up to `block` on the socket: its timeout must exceed it.
            socket_timeout=self.timeout + self.block,
            retry=Retry(NoBackoff(), 0),  # tickloop's backoff does the retrying
        )
        try:
            info = await client.info("server")
        except AuthenticationError as exc:
            await client.aclose()
            self._started = False
            raise AuthError(f"redis at {self.url_shown} refused the credentials") from exc
        except (RedisError, OSError) as exc:
            await client.aclose()
            self._started = False
            raise NetworkError(
                f"redis at {self.url_shown} unreachable: {describe(exc)}"
            ) from exc
        version = str(info.get("redis_version", "0"))
        if tuple(int(x) for x in version.split(".")[:2] if x.isdigit()) < (6, 2):
            await client.aclose()
            self._started = False
            raise BusError(f"redis at {self.url_shown} is {version}; the bus needs 6.2 or later "
                           "(XAUTOCLAIM)")
        self._client = client
        retry = Retrying(self._link, self.base_wait, self.max_wait)
        self._writer = Writer(
            client,
            self.layout,
            retry,
            maxlen=self.maxlen,
            batch_size=self.batch_size,
            linger=self.linger,
            buffer_size=self.buffer_size,
            on_drop=self._on_publish_drop,
        )
        for key, value in self._early:
            self._writer.put(key, value)
        self._early = []
        self._acker = Acker(client, Retrying(self._link, self.base_wait, self.max_wait))
        self._spawn(self._writer.run(), "writer")
        self._spawn(self._acker.run(), "acker")
        unstarted, self._unstarted = self._unstarted, []
        for inbox in unstarted:
            if inbox in self._inboxes:
                self._start_reader(inbox)

    async def _stop(self) -> None:
        # Readers first: nothing new comes in. Then the acknowledgements of what the
        # subscriptions finished while draining, then every published event, within
        # close_timeout.
        for reader in self._readers.values():
            reader.stopping = True
        await self._end_tasks(lambda role: role.startswith("reader"))
        writer, acker = self._writer, self._acker
        if acker is not None and not await acker.drained(self.close_timeout):
            log.warning("bus %s closed with %d acknowledgements unsent (their entries will be "
                        "delivered again)", self.source, len(acker))
        if not self._named:
            await self._leave_groups()
        if writer is not None and not await writer.flush(self.close_timeout):
            log.warning("bus %s closed with %d events unsent to %s", self.source, len(writer),
                        self.url_shown)
        if self._publish_notice is not None:
            self._publish_notice.cancel()
            self._publish_notice = None
        if writer is not None:
            writer.stopping = True
        if acker is not None:
            acker.stopping = True
        await self._end_tasks(lambda role: True)
        if writer is not None:
            writer.fail_waiters()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _leave_groups(self) -> None:
        """An unnamed bus's consumer names are never used again: remove the ones that hold
        no pending entry, so groups do not collect dead consumers. A consumer that still holds
        entries stays (they are taken over after ``claim_idle``)."""
        client = self._client
        for reader in self._readers.values():
            if isinstance(reader, GroupReader):
                for key in reader.keys:
                    self._joined.add((key, reader.group, reader.consumer))
        if client is None:
            return
        for key, group, consumer in sorted(self._joined):
            try:
                held = await command(client, b"XPENDING", key, group, b"-", b"+", 1, consumer)
                if not held:
                    await command(client, b"XGROUP", b"DELCONSUMER", key, group, consumer)
            except (RedisError, OSError) as exc:
                log.debug("bus %s: consumer %r not removed from %r: %s", self.source,
                          consumer, group, describe(exc))

    async def _end_tasks(self, which: Callable[[str], bool]) -> None:
        """Cancel and await the tasks ``which`` selects. A cancel that redis-py swallowed
        is repeated; the pieces' ``stopping`` flags end their loops at the next turn anyway."""
        tasks = [t for t, role in self._tasks.items() if which(role)]
        while tasks:
            for task in tasks:
                task.cancel()
            done, pending = await asyncio.wait(tasks, timeout=0.5)
            for task in done:
                self._tasks.pop(task, None)
            tasks = list(pending)

    def _spawn(self, coro: Any, role: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"tickloop-redis-{role}")
        self._tasks[task] = role
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("bus %s: %s task failed", self.source, self._tasks.get(task, "?"),
                      exc_info=exc)

    async def flush(self, *, within: float | None = 10.0) -> bool:
        """Wait until Redis confirmed every event published so far (or the buffer dropped it);
        False when ``within`` seconds passed first."""
        writer = self._writer
        if writer is None:
            raise BusError("the bus is not started")
        return await writer.flush(within)

    async def ready(self, *, within: float | None = 10.0) -> bool:
        """Wait until every subscription's reader is reading (a tail reader has fixed where
        its live tail starts, a group reader has made its groups): an event published after
        this returns reaches them. False when ``within`` seconds passed first."""
        waits = [reader.ready.wait() for reader in self._readers.values()]
        if not waits:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*waits), within)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------------------ readers
    def _attach(self, inbox: Inbox) -> None:
        if self._writer is None:  # not started yet: readers start with the bus
            self._unstarted.append(inbox)
            return
        self._start_reader(inbox)

    def _detach(self, inbox: Inbox) -> None:
        reader = self._readers.pop(inbox, None)
        if reader is None:
            if inbox in self._unstarted:
                self._unstarted.remove(inbox)
            return
        reader.stopping = True
        if isinstance(reader, GroupReader):
            for key in reader.keys:
                self._joined.add((key, reader.group, reader.consumer))
        group, n = self._numbers.pop(inbox, ("", 0))
        self._consumers.get(group, set()).discard(n)
        for task, role in self._tasks.items():
            if role == f"reader:{id(inbox)}":
                task.cancel()  # awaited by _stop

    def _start_reader(self, inbox: Inbox) -> None:
        client, acker = self._client, self._acker
        assert client is not None and acker is not None
        common: dict[str, Any] = {
            "clock": self._now,
            "block": self.block,
            "read_count": self.read_count,
            "discover_interval": self.discover_interval,
            "dedupe_window": self.dedupe_window,
            "on_undecodable": self._on_undecodable,
        }
        retry = Retrying(self._link, self.base_wait, self.max_wait)
        reader: GroupReader | TailReader
        if inbox.group is not None:
            # The lowest number no live subscription of this group holds: a subscription made
            # again takes its predecessor's consumer name, and with it the entries that one
            # was given and never finished.
            taken = self._consumers.setdefault(inbox.group, set())
            n = 1
            while n in taken:
                n += 1
            taken.add(n)
            self._numbers[inbox] = (inbox.group, n)
            consumer = self.consumer_name if n == 1 else f"{self.consumer_name}-{n}"
            group = f"{inbox.group}|{','.join(sorted(inbox.patterns))}"
            group_reader = reader = GroupReader(
                client,
                self.layout,
                self.codec,
                retry,
                inbox,
                group=group.encode(),
                consumer=consumer.encode(),
                start=b"0" if self.group_start == "earliest" else b"$",
                acker=acker,
                claim_idle=self.claim_idle,
                max_deliveries=self.max_deliveries,
                on_given_up=self._on_given_up,
                **common,
            )
            bus_failed = inbox.on_failed

            def on_failed(ib: Inbox, event: Event, exc: BaseException) -> None:
                if bus_failed is not None:
                    bus_failed(ib, event, exc)
                group_reader.failed(event)

            inbox.on_failed = on_failed
        else:
            reader = TailReader(client, self.layout, self.codec, retry, inbox, **common)
        self._readers[inbox] = reader
        self._spawn(reader.run(), f"reader:{id(inbox)}")

    def reader_stats(self, inbox: Inbox) -> dict[str, Any]:
        """The Redis side of one subscription: streams read, entries delivered, skipped
        (other topics), duplicates, reclaimed, re-read pending, trimmed, undecodable."""
        reader = self._readers.get(inbox)
        if reader is None:
            return {}
        out: dict[str, Any] = {
            "streams": [k.decode() for k in reader.keys],
            "delivered": reader.delivered,
            "skipped": reader.skipped,
            "duplicates": reader.dedupe.duplicates,
            "undecodable": reader.undecodable,
            "trimmed": reader.trimmed,
        }
        if isinstance(reader, GroupReader):
            out.update(
                group=reader.group.decode(),
                consumer=reader.consumer.decode(),
                claimed=reader.claimed,
                pending_reread=reader.pending_reread,
                given_up=reader.given_up,
                in_flight=reader.dedupe.in_flight,
            )
        return out

    # ---------------------------------------------------------------------------- publishing
    def publish(self, topic: str, payload: Any) -> Event:
        if self._closed:
            raise BusError("this bus is closed")
        type_name = _TYPE_OF.get(type(payload))
        if type_name is None:
            type_name = event_type_of(payload)
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty string, got {topic!r}", field="topic")
        event = Event(
            type=type_name,
            topic=topic,
            id=next(self._ids),
            source=self.source,
            ts=self._wall(),
            mono=self._mono(),
            payload=payload,
        )
        self._put(self.layout.key(topic), self._encode(event))
        self.published += 1
        return event

    @property
    def writable(self) -> bool:
        """False while a lossless subscription is above its high water mark, or the publish
        buffer is above three quarters of ``buffer_size`` (Redis slower than the publisher)."""
        writer = self._writer
        return super().writable and not (writer is not None and writer.above_high)

    async def wait_writable(self, topic: str | None = None) -> None:
        """As :meth:`Bus.wait_writable`, and also wait while the publish buffer is above three
        quarters of ``buffer_size``, until it drained to a quarter: a publisher that can wait
        (a replay, a backfill) never makes the buffer drop."""
        await super().wait_writable(topic)
        writer = self._writer
        if writer is not None and writer.above_high and not self._closed:
            await writer.below_low()

    def publish_many(self, topic: str, payloads: Iterable[Any]) -> list[Event]:
        return [self.publish(topic, payload) for payload in payloads]

    def _encode(self, event: Event) -> bytes:
        try:
            return self.codec.encode(event)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ConfigError(f"payload of {event.topic!r} cannot be encoded: {exc}",
                              field="payload") from None

    def _put(self, key: bytes, value: bytes) -> None:
        writer = self._writer
        if writer is not None:
            writer.put(key, value)
            return
        early = self._early
        if len(early) >= self.buffer_size:
            early.pop(0)
            self._on_publish_drop(1)
        early.append((key, value))

    # ---------------------------------------------------------------------- local delivery
    def _emit_local(self, topic: str, payload: Any) -> None:
        """Deliver a status event to this process's matching subscriptions only (it is about
        this process's link to Redis, which may be away)."""
        if self._closed:
            return
        event = self.event(topic, payload)
        for inbox in list(self._inboxes):
            if inbox.matches(topic):
                inbox.push(event)

    def _on_publish_drop(self, n: int) -> None:
        self._publish_dropped += n
        if self._publish_notice is None and not self._closed and self._loop is not None:
            self._publish_notice = self._loop.call_later(self.drop_interval,
                                                         self._announce_publish_drops)

    def _announce_publish_drops(self) -> None:
        self._publish_notice = None
        total = self._publish_dropped
        delta = total - self._publish_announced
        if delta <= 0:
            return
        self._publish_announced = total
        log.warning("bus %s: %d events dropped from the publish buffer (Redis slow or away; "
                    "%d in all)", self.source, delta, total)
        self._emit_local(
            f"bus.dropped.{PUBLISHER}",
            BusDropped(
                subscription=PUBLISHER,
                pattern="*",
                policy="drop_oldest",
                dropped=delta,
                total=total,
                ts=self._wall(),
            ),
        )

    def _on_undecodable(self, inbox: Inbox, topic: str, exc: BaseException) -> None:
        self.undecodable += 1
        self._report(inbox, topic, "<decode>", f"{type(exc).__name__}: {exc}")

    def dead_letters(self, group: str, patterns: str | Iterable[str]) -> bytes:
        """The stream key where the events a group gave up on are kept (see the module doc)."""
        pats = [patterns] if isinstance(patterns, str) else list(patterns)
        return self.layout.dead_key(f"{group}|{','.join(sorted(pats))}".encode())

    def _on_given_up(self, inbox: Inbox, event: Event, attempts: int) -> None:
        self.given_up += 1
        reader = self._readers.get(inbox)
        if isinstance(reader, GroupReader):
            # Kept for inspection and replay, in a stream no wildcard reader discovers.
            self._put(self.layout.dead_key(reader.group), self.codec.encode(event))
        self._report(inbox, event.topic, f"<given up after {attempts} deliveries>",
                     f"event {event.source}#{event.id} acknowledged without being handled "
                     "and kept in the dead-letter stream")

    def _report(self, inbox: Inbox, topic: str, handler: str, error: str) -> None:
        log.error("subscription %s: %s on %s: %s", inbox.name, handler, topic, error)
        with contextlib.suppress(Exception):
            self._emit_local(
                f"bus.handler_failed.{inbox.name}",
                HandlerFailed(subscription=inbox.name, handler=handler, topic=topic,
                              error=error, ts=self._wall()),
            )

    # ------------------------------------------------------------------------------ insight
    @property
    def connected(self) -> bool:
        """False from a failed command until one succeeds again."""
        return self._link.up

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        writer, acker = self._writer, self._acker
        out["redis"] = {
            "url": self.url_shown,
            "connected": self._link.up,
            "disconnects": self._link.disconnects,
            "reconnects": self._link.reconnects,
            "buffered": len(writer) if writer is not None else len(self._early),
            "confirmed": writer.confirmed if writer is not None else 0,
            "batches": writer.batches if writer is not None else 0,
            "resent": writer.resent if writer is not None else 0,
            "publish_dropped": self._publish_dropped,
            "acked": acker.acked if acker is not None else 0,
            "acks_pending": len(acker) if acker is not None else 0,
            "undecodable": self.undecodable,
            "given_up": self.given_up,
            "readers": {inbox.name: self.reader_stats(inbox) for inbox in self._readers},
        }
        return out

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._inboxes)} subscriptions"
        return f"<RedisBus {self.source} {self.url_shown} {state}>"
