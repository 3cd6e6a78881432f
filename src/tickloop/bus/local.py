"""The in-process bus: publish is a plain call that pushes the event into every matching
subscription's buffer (or calls its sync handler inline), O(matching subscriptions).

Routing. The subscriptions matching a topic are computed once per topic and cached (a bounded
dict, emptied when it grows past :data:`ROUTE_CACHE` topics); any subscribe or unsubscribe empties
it. Delivery follows subscription order.

Re-entrancy. A sync handler may publish. Such a nested publish is queued and delivered once the
outer event reached every subscription (a trampoline), so every subscription sees events in
publish order and the stack never grows with the chain of handlers. ``publish`` still returns
the new Event at once. The queue is bounded (:data:`MAX_NESTED`); a handler that answers every
event on a topic with another event on that same topic keeps the outer ``publish`` busy for good,
as unbounded recursion would.

Threads: the bus belongs to its event loop's thread (sync code and handlers in it may publish);
from another thread, hand the call over with ``loop.call_soon_threadsafe(bus.publish, ...)``.

Groups. Subscriptions made with the same ``group`` share its events: for each topic, the
members matching it take turns (round-robin), so each event goes to exactly one member. An
in-process group keeps nothing for members to come: with no member, its events are not kept
(the Redis backend's groups are durable and resume).

A slow sync handler delays the publisher (it runs inside ``publish``): keep sync handlers short,
or use an async handler, which runs in its own task behind the subscription's buffer.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .._native import native_extension
from ..client.consumers import Consumer
from ..exceptions import BusError, ConfigError
from .base import Bus
from .events import _TYPE_OF, Event, event_type_of
from .subscription import Inbox

__all__ = ["MAX_NESTED", "NATIVE", "RESYNC", "ROUTE_CACHE", "LocalBus"]

#: At most this many events published by handlers wait for the event being delivered; past it
#: a nested publish raises BusError (a handler publishing without end fails, is reported, and
#: the loop stops).
MAX_NESTED = 100_000

#: How often (seconds) the offset between the wall and the monotonic clock is read again.
RESYNC = 1.0

#: At most this many topics' routes are cached (a publisher of unbounded topic names, e.g. one
#: per order id, costs a re-match per publish once past it, never unbounded memory).
ROUTE_CACHE = 8192

#: The C module with :class:`Publisher` (``publish`` for the commonest case: see its source),
#: or None (not built, stale, or ``TICKLOOP_PURE_PYTHON``).
_native = native_extension(
    "tickloop.bus._bus_native", str(Path(__file__).with_name("_bus_native.c"))
)
#: True when a LocalBus publishes through the C ``Publisher``.
NATIVE = _native is not None


class _State:
    """The bus's hot state, plain slots: Python reads and writes them at the speed of slots,
    and the C publisher (``_bus_native.Publisher``) reads ``closed``, ``depth`` and ``offset``
    in place. ``published`` counts the Python paths' events (the C publisher counts its own:
    ``LocalBus.published`` is the sum)."""

    __slots__ = ("closed", "depth", "offset", "published")

    def __init__(self) -> None:
        self.closed = False
        #: > 0 while a handler's publishes are being delivered (then they queue)
        self.depth = 0
        #: wall - monotonic clock, ns (re-read every RESYNC seconds)
        self.offset = 0
        self.published = 0


if _native is not None:
    _native.set_state_type(_State)
    _native.set_consumer_type(Consumer)


class _RoundRobin:
    """The members of one group matching one topic: each event goes to the next of them."""

    __slots__ = ("_next", "members")

    def __init__(self, first: Inbox) -> None:
        self.members: list[Inbox] = [first]
        self._next = 0

    def push(self, event: Event) -> None:
        members = self.members
        i = self._next
        self._next = (i + 1) % len(members)
        members[i].push(event)

    def push_many(self, events: Sequence[Event]) -> None:
        for event in events:
            self.push(event)


class _Route:
    """What one topic is delivered to, cached. ``calls`` are called with each event: an
    inbox's ``push``, a group's ``push``, or, for a subscription with a sync handler, the handler
    itself (no wrapper on the hot path); ``inboxes`` are the matching inboxes in the same order
    (None for a group); ``many`` the batch entry points. ``count`` is how many events went
    through this route, which is how a directly called handler's deliveries are counted.

    ``buffers`` is set when every target is a plain ``drop_newest`` reader (no handler, no
    group: the commonest subscription): then ``publish`` appends to their buffers itself,
    ``(buffer, maxsize, inbox)`` each, and calls ``inbox.push`` only for a full or closed
    one (which counts the drop, or ignores the event), saving a Python call per subscriber
    per event. An inbox's buffer and maxsize never change, and a reader's ``push`` only
    changes when it closes (checked: ``_end``)."""

    __slots__ = ("buffers", "calls", "count", "direct", "inboxes", "many")

    def __init__(self, targets: list[Inbox | _RoundRobin]) -> None:
        self.calls: tuple[Callable[[Event], Any], ...] = ()
        self.inboxes: tuple[Inbox | None, ...] = ()
        self.many: tuple[Callable[[Sequence[Event]], None], ...] = ()
        self.direct = False
        self.count = 0
        self.buffers: tuple[tuple[deque[Any], int, Inbox], ...] | None = None
        calls: list[Callable[[Event], Any]] = []
        inboxes: list[Inbox | None] = []
        for target in targets:
            if isinstance(target, _RoundRobin):
                calls.append(target.push)
                inboxes.append(None)
            else:
                handler = target.inline
                if handler is not None:
                    calls.append(handler)
                    target.live_routes.append(self)
                    self.direct = True
                else:
                    calls.append(target.push)
                inboxes.append(target)
        self.calls = tuple(calls)
        self.inboxes = tuple(inboxes)
        self.many = tuple(t.push_many for t in targets)
        if targets and all(
            isinstance(t, Inbox) and t.handler is None and t.push == t._push_drop_newest
            for t in targets
        ):
            self.buffers = tuple(
                (t._buffer, t.maxsize, t) for t in targets if isinstance(t, Inbox)
            )

    def fold(self) -> None:
        """The route is going: its direct handlers' deliveries move to their stats."""
        for inbox in self.inboxes:
            if inbox is not None and self in inbox.live_routes:
                inbox.live_routes.remove(self)
                inbox.stats.delivered += self.count


class LocalBus(Bus):
    """The in-process bus (``Bus()``); see the module docstring and :class:`Bus`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str | None = None,
        drop_interval: float = 1.0,
        wall_clock: Callable[[], int] | None = None,
        mono_clock: Callable[[], int] | None = None,
    ) -> None:
        options: dict[str, Any] = {}
        if wall_clock is not None:
            options["wall_clock"] = wall_clock
        if mono_clock is not None:
            options["mono_clock"] = mono_clock
        #: The routes the C publisher takes by itself: topic -> ``(buffer, maxsize, inbox,
        #: buffer.append)`` of each target when every target is a plain reader
        #: (``_Route.buffers``), ``()`` for a route with none; emptied with ``_routes``.
        self._fast: dict[str, tuple[tuple[Any, ...], ...]] = {}
        # state and publisher before Bus.__init__, which sets ``published``
        self._state = _State()
        # The C publisher, with the system clocks (the default) and ``publish`` not overridden
        publisher = None
        if _native is not None and not options and type(self).publish is LocalBus.publish:
            publisher = _native.Publisher(
                self._fast, types.MethodType(LocalBus.publish, self), _TYPE_OF, Event, self._state
            )
        self._publisher = publisher
        super().__init__(url, name=name, drop_interval=drop_interval, **options)
        if publisher is not None:
            publisher.ids = self._ids
            publisher.source = self.source
        self._c_publish = False
        #: The subscriptions that are not plain readers (while any is, publish is Python's)
        self._not_plain: set[Inbox] = set()
        self._choose_publish()
        # With the system clocks (the default), an event's wall time is its monotonic time plus
        # an offset re-read every RESYNC seconds: one clock call a publish instead of two.
        self._derived_wall = not options
        self._state.offset = time.time_ns() - time.monotonic_ns()
        self._resync_timer: asyncio.TimerHandle | None = None
        self._routes: dict[str, _Route] = {}
        self._pending: deque[tuple[_Route, Event | list[Event]]] = deque()
        self._last_class: type[Any] | None = None
        self._last_type = ""

    @property
    def _closed(self) -> bool:  # (Bus's flag, kept in the state the C publisher reads)
        return self._state.closed

    @_closed.setter
    def _closed(self, value: bool) -> None:
        self._state.closed = value

    @property
    def published(self) -> int:
        """Events published (what ``stats()`` reports): the Python paths' count and the C
        publisher's."""
        publisher = self._publisher
        return self._state.published + (publisher.fast_calls if publisher is not None else 0)

    @published.setter
    def published(self, value: int) -> None:
        publisher = self._publisher
        self._state.published = value - (publisher.fast_calls if publisher is not None else 0)

    async def _start(self) -> None:
        if self._derived_wall:
            self._resync()

    async def _stop(self) -> None:
        if self._resync_timer is not None:
            self._resync_timer.cancel()
            self._resync_timer = None

    def _resync(self) -> None:
        self._state.offset = time.time_ns() - time.monotonic_ns()
        loop = self._loop
        if loop is not None and not self._closed:
            self._resync_timer = loop.call_later(RESYNC, self._resync)

    # ----------------------------------------------------------------------------- routing
    def _attach(self, inbox: Inbox) -> None:
        self._clear_routes()
        if not (inbox.handler is None and inbox.group is None
                and inbox.push == inbox._push_drop_newest):
            self._not_plain.add(inbox)
        self._choose_publish()

    def _detach(self, inbox: Inbox) -> None:
        self._clear_routes()
        self._not_plain.discard(inbox)
        self._choose_publish()

    def _choose_publish(self) -> None:
        """``bus.publish`` is the C publisher while every subscription is a plain reader (no
        handler, no group, ``drop_newest``), whose routes it takes by itself; else the Python
        method, called directly: what the C one would hand over (a handler called inline, a
        policy's own push) runs in Python anyway, and a call from C into it costs more than
        the call from the caller's Python frame (a sync handler's route: ~35 ns an event)."""
        publisher = self._publisher
        if publisher is None:
            return
        plain = not self._not_plain
        if plain and not self._c_publish:
            # An instance attribute, found before the method: ``bus.publish`` is the C call.
            self.publish = publisher  # type: ignore[method-assign]
            self._c_publish = True
        elif not plain and self._c_publish:
            del self.publish
            self._c_publish = False

    def _clear_routes(self) -> None:
        routes = self._routes
        if routes:
            for route in routes.values():
                if route.direct:
                    route.fold()
            routes.clear()
            self._fast.clear()

    def _route(self, topic: str) -> _Route:
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty string, got {topic!r}", field="topic")
        targets: list[Inbox | _RoundRobin] = []
        groups: dict[str, _RoundRobin] = {}
        for inbox in self._inboxes:
            if not inbox.matches(topic):
                continue
            group = inbox.group
            if group is None:
                targets.append(inbox)
            elif group in groups:
                groups[group].members.append(inbox)
            else:
                rr = groups[group] = _RoundRobin(inbox)
                targets.append(rr)
        if len(self._routes) >= ROUTE_CACHE:
            self._clear_routes()
        route = self._routes[topic] = _Route(targets)
        if not route.calls:
            self._fast[topic] = ()
        elif route.buffers is not None:
            self._fast[topic] = tuple((b, m, i, b.append) for b, m, i in route.buffers)
        return route

    def matching(self, topic: str) -> list[Inbox]:
        """The subscriptions ``topic`` is delivered to now (every member of a group)."""
        out: list[Inbox] = []
        route = self._routes.get(topic) or self._route(topic)
        for call, inbox in zip(route.calls, route.inboxes, strict=True):
            if inbox is None:
                out.extend(call.__self__.members)  # type: ignore[attr-defined]
            else:
                out.append(inbox)
        return out

    # ---------------------------------------------------------------------------- publishing
    def publish(self, topic: str, payload: Any) -> Event:
        state = self._state
        if state.closed:  # (``_closed``, read without the property)
            raise BusError("this bus is closed")
        cls = type(payload)
        if cls is self._last_class:
            type_name = self._last_type
        else:
            type_name = _TYPE_OF.get(cls) or event_type_of(payload)
            self._last_class, self._last_type = cls, type_name
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        mono = self._mono()
        event = Event(
            type_name,
            topic,
            next(self._ids),
            self.source,
            mono + state.offset if self._derived_wall else self._wall(),
            mono,
            payload,
        )
        state.published += 1
        calls = route.calls
        if not calls:
            return event
        if state.depth:  # published by a handler: delivered once the outer event is
            if len(self._pending) >= MAX_NESTED:
                raise BusError(f"more than {MAX_NESTED} events published by handlers are "
                               "waiting: a handler publishing without end?")
            route.count += 1
            self._pending.append((route, event))
            return event
        buffers = route.buffers
        if buffers is not None:
            # Plain drop_newest readers (see _Route): Consumer._push_drop_newest, inlined.
            for buffer, maxsize, inbox in buffers:
                if len(buffer) >= maxsize or inbox._end is not None:
                    inbox.push(event)  # counts the drop (full), or ignores it (closed)
                    continue
                buffer.append(event)
                waiter = inbox._waiter
                if waiter is not None:
                    inbox._waiter = None
                    if not waiter.done():
                        waiter.set_result(None)
            return event
        if not route.direct:
            # Only buffers: pushing never runs user code, so nothing can publish meanwhile.
            for call in calls:
                call(event)
            return event
        route.count += 1
        state.depth = 1
        try:
            i = 0
            try:
                for call in calls:
                    call(event)
                    i += 1
            except Exception as exc:
                self._failed_at(route, event, i, exc)
            if self._pending:
                self._drain()
        finally:
            state.depth = 0
        return event

    def _failed_at(self, route: _Route, event: Event, i: int, exc: Exception) -> None:
        inbox = route.inboxes[i]
        if inbox is None:
            raise exc
        inbox.stats.delivered -= 1  # counted by the route
        inbox._failed(event, exc)
        self._call(route, event, i + 1)

    def _call(self, route: _Route, event: Event, start: int) -> None:
        """Deliver ``event`` along ``route`` from ``start``; a directly called sync handler
        that raises is counted and reported, and delivery goes on with the next."""
        calls = route.calls
        i = start
        while True:
            try:
                for call in calls[i:] if i else calls:
                    call(event)
                    i += 1
                return
            except Exception as exc:
                inbox = route.inboxes[i]
                if inbox is None:
                    raise
                inbox.stats.delivered -= 1  # counted by the route
                inbox._failed(event, exc)
                i += 1

    def publish_many(self, topic: str, payloads: Iterable[Any]) -> list[Event]:
        if self._state.closed:
            raise BusError("this bus is closed")
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        type_of = _TYPE_OF.get
        ids = self._ids
        source = self.source
        mono = self._mono()
        wall = mono + self._state.offset if self._derived_wall else self._wall()
        events: list[Event] = []
        append = events.append
        for payload in payloads:
            type_name = type_of(type(payload))
            if type_name is None:
                type_name = event_type_of(payload)
            append(Event(type_name, topic, next(ids), source, wall, mono, payload))
        self.published += len(events)
        if not route.calls or not events:
            return events
        state = self._state
        if state.depth:
            if len(self._pending) >= MAX_NESTED:
                raise BusError(f"more than {MAX_NESTED} batches published by handlers are "
                               "waiting: a handler publishing without end?")
            self._pending.append((route, events))
            return events
        state.depth = 1
        try:
            for push_many in route.many:
                push_many(events)
            if self._pending:
                self._drain()
        finally:
            state.depth = 0
        return events

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            route, item = pending.popleft()
            if isinstance(item, list):
                for push_many in route.many:
                    push_many(item)
            elif route.direct:
                self._call(route, item, 0)
            else:
                for call in route.calls:
                    call(item)
