"""A bus subscription: topic patterns, one bounded buffer with an explicit overflow policy, and
the two ways of consuming it (``async for`` and a sync or async handler).

Two objects make one subscription. The :class:`Inbox` is what a backend delivers into: a
:class:`~tickloop.client.consumers.Consumer` (the streaming client's buffer: one ``deque`` and
one waiter future woken once per burst, sync handlers called inline, one worker task per async
handler, conflation per key, high/low water marks) with the bus's policies and hooks. The
:class:`Subscription` is the handle user code holds; it is what ``bus.subscribe`` returns. The
bus keeps the inbox, never the handle, so an iterator subscription nobody holds any more (the
loop broke out of ``async for bus.subscribe(...)``) is detached as soon as it is garbage. A
subscription with a handler stays until it is closed or the bus closes.

Invariants, whatever the policy: the events a subscription delivers are a subsequence of the
events published to its topics, in publish order; every event not delivered is counted in
``dropped`` (or ``conflated``, for an event replaced by a newer one of the same key); ``lossless``
never drops. A handler that raises is counted, logged (1st, 2nd, 4th, 8th... failure) and
reported through ``on_failed``; the subscription goes on.

The backend seam (used by :mod:`tickloop.bus.local` and the Redis Streams backend):

* ``inbox.push(event)`` delivers one event, ``inbox.push_many(events)`` a batch, both plain calls;
* ``inbox.matches(topic)`` tells whether the subscription's patterns match a topic;
* ``inbox.set_on_done(fn)`` (in the backend's ``_attach``, before any event is pushed):
  ``fn(event)`` is then called exactly once per event after it was
  *handled* (a handler returned without raising) or *consumed* (an ``async for`` consumer took it
  and asked for the next one, or closed the subscription after taking it). It is never called
  for an event that was dropped, conflated away, left in the buffer at close, or whose handler
  raised. The Redis backend acknowledges group entries there.
* ``on_pressure(inbox, paused)``, ``on_drop(inbox, event)`` and ``on_failed(inbox, event, exc)``
  are set by the bus (water marks of ``lossless``, drop notices, handler failures).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..client.consumers import Consumer, Handler, Overflow
from ..client.reader import NATIVE as READER_NATIVE
from ..client.reader import Reader, bind, register_inbox
from ..exceptions import ConfigError
from .events import Event, topic_matcher

if TYPE_CHECKING:
    from .base import Bus

__all__ = ["Handler", "Inbox", "Policy", "Subscription"]

log = logging.getLogger("tickloop.bus")


class Policy(StrEnum):
    """What a subscription does when its buffer is full (``maxsize`` events pending)."""

    #: Lose the new event (the asyncio.Queue ``put_nowait`` platform's behaviour).
    DROP_NEWEST = "drop_newest"
    #: Lose the oldest pending event: a reader that catches up sees the most recent ones.
    DROP_OLDEST = "drop_oldest"
    #: Keep only the latest pending event per key (default key: the topic); ``maxsize`` bounds
    #: the number of keys pending (past it the oldest key's value is dropped).
    CONFLATE = "conflate"
    #: Never drop. Past ``maxsize`` the subscription raises backpressure (publishers that can
    #: wait slow down until it drains to ``low_water``); publishers that cannot still enqueue.
    LOSSLESS = "lossless"


_OVERFLOW = {
    Policy.DROP_NEWEST: Overflow.DROP_NEWEST,
    Policy.DROP_OLDEST: Overflow.DROP_OLDEST,
    Policy.CONFLATE: Overflow.CONFLATE,
    Policy.LOSSLESS: Overflow.BACKPRESSURE,
}


def parse_policy(policy: Policy | str) -> Policy:
    try:
        return Policy(policy)
    except ValueError:
        raise ConfigError(
            f"unknown policy {policy!r}: one of " + ", ".join(repr(p.value) for p in Policy),
            field="policy",
        ) from None


def _topic_key(event: Any) -> Hashable:
    topic: str = event.topic
    return topic


def _handler_name(handler: object) -> str:
    name = getattr(handler, "__qualname__", None)
    return name if isinstance(name, str) else type(handler).__qualname__


class Inbox(Consumer):
    """The delivery end of one subscription (module docstring: the backend seam)."""

    # ``on_done`` is read in place by tickloop.client._reader_native (Consumer's comment).
    __slots__ = (
        "announced", "bus_policy", "group", "live_routes", "matches", "on_done", "on_failed",
        "patterns",
    )

    def __init__(
        self,
        patterns: Sequence[str],
        *,
        policy: Policy,
        maxsize: int,
        name: str,
        key: Callable[[Event], Hashable] | None = None,
        low_water: int | None = None,
        group: str | None = None,
    ) -> None:
        super().__init__(
            "bus",
            policy=_OVERFLOW[policy],
            maxsize=maxsize,
            key=key if key is not None else _topic_key,
            name=name,
            low_water=low_water,
        )
        self.patterns = tuple(patterns)
        self.bus_policy = policy
        self.group = group
        self.on_failed: Callable[[Inbox, Event, BaseException], None] | None = None
        #: How many of ``stats.dropped`` were announced in BusDropped events (by the bus).
        self.announced = 0
        self.on_done: Callable[[Event], None] | None = None
        #: Routes (of the in-process bus) that call this inbox's sync handler directly; each
        #: counts what it delivered, folded into ``stats.delivered`` when the route goes.
        self.live_routes: list[Any] = []
        matchers = [topic_matcher(p) for p in self.patterns]
        if len(matchers) == 1:
            self.matches: Callable[[str], bool] = matchers[0]
        else:
            self.matches = lambda topic: any(m(topic) for m in matchers)

    @property
    def inline(self) -> Callable[[Event], Any] | None:
        """The sync handler a router may call directly in place of :meth:`push` (then it
        counts the deliveries in ``live_routes`` and reports failures to :meth:`_failed`),
        or None when events must go through :meth:`push`."""
        if self.push == self._call_handler and self.group is None:
            return self._handler
        return None

    def delivered_now(self) -> int:
        """Events delivered so far (``stats.delivered`` plus what live routes counted)."""
        live: int = sum(route.count for route in self.live_routes)
        return self.stats.delivered + live

    def set_on_done(self, on_done: Callable[[Event], None] | None) -> None:
        """Call ``on_done(event)`` once per event handled or consumed (module docstring)."""
        self.on_done = on_done
        self.set_handler(self.handler)

    def set_handler(self, handler: Handler | None) -> None:
        super().set_handler(handler)
        if self.push == self._call_handler and self.on_done is not None:
            self.push = self._call_handler_done

    # -------------------------------------------------------------------------------- batches
    def push_many(self, events: Sequence[Event]) -> None:
        """Deliver a batch: as ``for e in events: push(e)``, with the buffer extended at once
        where the policy allows."""
        policy = self.policy
        if self._end is not None or not events:
            return
        buffer = self._buffer
        if policy is Overflow.DROP_NEWEST and self._handler is None:
            room = self.maxsize - len(buffer)
            if room >= len(events):
                buffer.extend(events)
            else:
                if room > 0:
                    buffer.extend(events[:room])
                    lost = events[room:]
                else:
                    lost = events
                self.stats.dropped += len(lost)
                for event in lost:
                    on_drop = self.on_drop  # (the bus clears it until its next notice)
                    if on_drop is None:
                        break
                    on_drop(self, event)
            self._wake()
        elif policy is Overflow.BACKPRESSURE and self._handler is None:
            buffer.extend(events)
            if len(buffer) >= self.maxsize and not self.paused:
                self.paused = True
                self.stats.pauses += 1
                if self.on_pressure is not None:
                    self.on_pressure(self, True)
            self._wake()
        elif self.push == self._call_handler:
            handler = self._handler
            assert handler is not None
            failed = 0
            for event in events:
                try:
                    handler(event)
                except Exception as exc:
                    failed += 1
                    self._failed(event, exc)
            self.stats.delivered += len(events) - failed
        else:
            push = self.push
            for event in events:
                push(event)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _push_conflate(self, event: Any) -> None:
        # Unlike the streaming client's books, a replaced value moves to the end, so what a
        # subscription delivers is always a subsequence of what was published, in order.
        latest = self._latest
        stats = self.stats
        key = self._key(event)
        if latest.pop(key, None) is not None:
            stats.conflated += 1
        elif len(latest) >= self.maxsize:
            lost = latest.pop(next(iter(latest)))
            stats.dropped += 1
            if self.on_drop is not None:
                self.on_drop(self, lost)
        latest[key] = event
        if len(latest) > stats.high_water:
            stats.high_water = len(latest)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------------------ handlers
    def _call_handler(self, event: Any) -> None:
        handler = self._handler
        assert handler is not None
        try:
            handler(event)
        except Exception as exc:
            self._failed(event, exc)
        else:
            self.stats.delivered += 1

    def _call_handler_done(self, event: Any) -> None:
        handler = self._handler
        assert handler is not None
        try:
            handler(event)
        except Exception as exc:
            self._failed(event, exc)
        else:
            self.stats.delivered += 1
            on_done = self.on_done
            if on_done is not None:
                on_done(event)

    def _failed(self, event: Event, exc: BaseException) -> None:
        errors = self.stats.handler_errors = self.stats.handler_errors + 1
        if errors & (errors - 1) == 0:  # 1st, 2nd, 4th, 8th...: never a log line per event
            log.error(
                "handler %s of subscription %s failed on %s (%d failures so far)",
                _handler_name(self._handler),
                self.name,
                getattr(event, "topic", "?"),
                errors,
                exc_info=exc,
            )
        if self.on_failed is not None:
            self.on_failed(self, event, exc)

    async def _run_handler(self) -> None:
        try:
            while True:
                try:
                    event = await self.get()
                except StopAsyncIteration:
                    return
                handler = self._handler
                if handler is None or not self._handler_is_async:
                    self.push(event)  # the handler was changed to a sync one meanwhile
                    continue
                try:
                    result = handler(event)
                    if result is not None:
                        await result
                except Exception as exc:
                    self.stats.delivered -= 1
                    self._failed(event, exc)
                else:
                    on_done = self.on_done
                    if on_done is not None:
                        on_done(event)
        finally:
            self._worker = None

    async def drain(self, grace: float | None) -> None:
        """Close, and let an async handler finish the events already buffered; past
        ``grace`` seconds (None: no limit) its worker is cancelled."""
        self.close()
        worker = self._worker
        if worker is None or worker.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(worker), grace)
        except TimeoutError:
            log.warning("subscription %s: handler still busy after %ss; cancelled", self.name,
                        grace)
            await self.aclose()

    def failure_text(self, exc: BaseException) -> tuple[str, str]:
        """The ``error`` and ``traceback`` fields of a HandlerFailed for ``exc``."""
        text = f"{type(exc).__name__}: {exc}"
        tb = "".join(traceback.format_exception(exc, limit=8))
        return text, tb[-4000:]


register_inbox(Inbox)  # (the C reader reads its on_done in place)


class Subscription(Reader):
    """A subscription to the bus: ``async for event in sub``, or a handler (``handler=``).

    Made by ``bus.subscribe(...)``; never constructed by hand. ``close()`` (or ``await
    sub.aclose()``, or leaving ``async with sub``) detaches it: an iterator then yields what is
    still buffered and stops; an async handler finishes the buffered events (``aclose``). An
    iterator subscription that becomes garbage is detached by itself.
    """

    __slots__ = ("__weakref__", "_bus", "_taken")

    _inbox: Inbox
    _buffer: deque[Event]
    _taken: list[Event]

    def __init__(self, bus: Bus, inbox: Inbox) -> None:
        self._bus: Bus | None = bus
        bind(self, inbox)  # the fields the C __anext__ reads
        self._taken = []  # events taken but not yet known consumed (on_done backends only)

    # ----------------------------------------------------------------------------- insight
    @property
    def inbox(self) -> Inbox:
        """The delivery end (what backends push into)."""
        return self._inbox

    @property
    def name(self) -> str:
        return self._inbox.name

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._inbox.patterns

    @property
    def policy(self) -> Policy:
        return self._inbox.bus_policy

    @property
    def maxsize(self) -> int:
        return self._inbox.maxsize

    @property
    def low_water(self) -> int:
        return self._inbox.low_water

    @property
    def group(self) -> str | None:
        return self._inbox.group

    @property
    def handler(self) -> Handler | None:
        return self._inbox.handler

    @property
    def dropped(self) -> int:
        """How many events this subscription dropped (conflated ones are counted apart)."""
        return self._stats.dropped

    @property
    def delivered(self) -> int:
        """Events handed to user code (handled without raising, or taken by ``async for``)."""
        return self._inbox.delivered_now()

    @property
    def conflated(self) -> int:
        return self._stats.conflated

    @property
    def handler_errors(self) -> int:
        return self._stats.handler_errors

    @property
    def max_depth(self) -> int:
        """The deepest backlog seen (measured when the reader comes back for more)."""
        return self._stats.high_water

    @property
    def paused(self) -> bool:
        """True while this (lossless) subscription is above its high water mark."""
        return self._inbox.paused

    @property
    def closed(self) -> bool:
        return self._inbox.closed

    def __len__(self) -> int:
        return len(self._inbox)

    def stats(self) -> dict[str, Any]:
        """A snapshot of this subscription's counters (what /metrics exports)."""
        return inbox_stats(self._inbox)

    def __repr__(self) -> str:
        inbox = self._inbox
        return (
            f"<Subscription {inbox.name} {','.join(inbox.patterns)} {inbox.bus_policy} "
            f"backlog={len(inbox)} dropped={inbox.stats.dropped}>"
        )

    # ---------------------------------------------------------------------------- consuming
    def __aiter__(self) -> Subscription:
        if self._inbox.handler is not None:
            raise ConfigError(
                f"subscription {self.name} has a handler: it cannot also be iterated",
                field="handler",
            )
        return self

    async def _anext_slow(self) -> Event:
        """``__anext__`` in Python: the whole of it in the pure build; with the C ``Reader``,
        what it hands over (nothing buffered, or an ``on_done`` backend)."""
        inbox = self._inbox
        if inbox.on_done is not None:
            return await self._anext_done()
        buffer = self._buffer
        if buffer:  # the hot path: an event is waiting (no future, no await)
            stats = self._stats
            stats.delivered += 1
            depth = len(buffer)
            if depth > stats.high_water:
                stats.high_water = depth
            if inbox.paused and depth <= self._low:
                inbox._relieve()
            event: Event = buffer.popleft()
            return event
        event = await inbox.get()
        return event

    if not READER_NATIVE:
        __anext__ = _anext_slow

    def _consumed(self) -> None:
        """What was taken before is consumed (the reader came back for more, or closed)."""
        taken = self._taken
        if taken:
            self._taken = []
            on_done = self._inbox.on_done
            if on_done is not None:
                for event in taken:
                    on_done(event)

    async def _anext_done(self) -> Event:
        self._consumed()
        event: Event = await self._inbox.get()
        self._taken = [event]
        return event

    def get_nowait(self) -> Event | None:
        """The next buffered event, or None when nothing is buffered; raises
        StopAsyncIteration once the subscription is closed and drained."""
        inbox = self._inbox
        self._consumed()
        try:
            event: Event = inbox.get_nowait()
        except LookupError:
            return None
        if inbox.on_done is not None:
            self._taken = [event]
        return event

    async def get_batch(self, limit: int = 1000) -> list[Event]:
        """Wait for at least one event, then take every buffered event, at most ``limit``, in
        order (the cheapest way to read a busy subscription: one await per batch). Raises
        StopAsyncIteration once the subscription is closed and drained."""
        if limit < 1:
            raise ConfigError("limit must be >= 1", field="limit")
        inbox = self._inbox
        self._consumed()
        first: Event = await inbox.get()
        buffer = self._buffer
        stats = self._stats
        n = len(buffer)
        if n + 1 > stats.high_water:
            stats.high_water = n + 1
        if n < limit:
            batch = [first, *buffer]
            buffer.clear()
        else:
            batch = [first]
            popleft = buffer.popleft
            batch.extend(popleft() for _ in range(limit - 1))
        latest = inbox._latest
        while latest and len(batch) < limit:
            batch.append(latest.pop(next(iter(latest))))
        stats.delivered += len(batch) - 1  # get() counted the first
        if inbox.paused and len(buffer) <= self._low:
            inbox._relieve()
        if inbox.on_done is not None:
            self._taken = batch
        return batch

    async def batches(self, limit: int = 1000) -> AsyncIterator[list[Event]]:
        """``async for events in sub.batches()``: :meth:`get_batch` until the end."""
        while True:
            try:
                batch = await self.get_batch(limit)
            except StopAsyncIteration:
                return
            yield batch

    # ----------------------------------------------------------------------------- closing
    def close(self) -> None:
        """Detach now (a plain call). Idempotent."""
        bus, self._bus = self._bus, None
        inbox = self._inbox
        self._consumed()  # closed after taking them: consumed
        if bus is not None:
            bus._remove(inbox)
        inbox.close()

    async def aclose(self, *, grace: float | None = 10.0) -> None:
        """Detach, and wait for an async handler to finish the events already buffered (at
        most ``grace`` seconds, then it is cancelled)."""
        self.close()
        await self._inbox.drain(grace)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        bus = self._bus
        if bus is not None and self._inbox.handler is None:
            try:
                bus._remove(self._inbox)
                self._inbox.close()
            except Exception:  # a finaliser must never raise (e.g. its loop is gone)
                log.debug("subscription %s: detach at garbage collection failed", self.name)


def inbox_stats(inbox: Inbox) -> dict[str, Any]:
    """The counters of one subscription, as ``Subscription.stats()`` and ``bus.stats()`` give."""
    stats = inbox.stats
    return {
        "name": inbox.name,
        "patterns": list(inbox.patterns),
        "policy": str(inbox.bus_policy),
        "group": inbox.group,
        "maxsize": inbox.maxsize,
        "backlog": len(inbox),
        "delivered": inbox.delivered_now(),
        "dropped": stats.dropped,
        "conflated": stats.conflated,
        "handler_errors": stats.handler_errors,
        "max_depth": stats.high_water,
        "pauses": stats.pauses,
        "paused": inbox.paused,
        "closed": inbox.closed,
    }


def normalise_patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    if not items:
        raise ConfigError("subscribe needs at least one topic pattern", field="patterns")
    for p in items:
        if not isinstance(p, str) or not p:
            raise ConfigError(f"topic pattern {p!r}: a non-empty string", field="patterns")
    return tuple(dict.fromkeys(items))
