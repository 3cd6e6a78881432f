"""The in-process bus: publish is a plain call that pushes the event into every matching
subscription's buffer (or calls its sync handler inline), O(matching subscriptions).

Routing. The subscriptions matching a topic are computed once per topic and cached (a bounded
dict, emptied when it grows past :data:`ROUTE_CACHE` topics); any subscribe or unsubscribe empties
it. Delivery follows subscription order.

Re-entrancy. A sync handler may publish. Such a nested publish is queued and delivered once the
outer event reached every subscription (a trampoline), so every subscription sees events in
publish order and the stack never grows with the chain of handlers. ``publish`` still returns
the new Event at once.

Groups. Subscriptions made with the same ``group`` share its events: for each topic, the
members matching it take turns (round-robin), so each event goes to exactly one member. An
in-process group keeps nothing for members to come: with no member, its events are not kept
(the Redis backend's groups are durable and resume).

A slow sync handler delays the publisher (it runs inside ``publish``): keep sync handlers short,
or use an async handler, which runs in its own task behind the subscription's buffer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..exceptions import BusError, ConfigError
from .base import Bus
from .events import _TYPE_OF, Event, event_type_of
from .subscription import Inbox

__all__ = ["ROUTE_CACHE", "LocalBus"]

#: At most this many topics' routes are cached (a publisher of unbounded topic names, e.g. one
#: per order id, costs a re-match per publish once past it, never unbounded memory).
ROUTE_CACHE = 8192


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


_Target = Inbox | _RoundRobin


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
        super().__init__(url, name=name, drop_interval=drop_interval, **options)
        self._routes: dict[str, tuple[_Target, ...]] = {}
        self._depth = 0
        self._pending: deque[tuple[tuple[_Target, ...], Event | list[Event]]] = deque()

    # ----------------------------------------------------------------------------- routing
    def _attach(self, inbox: Inbox) -> None:
        self._routes.clear()

    def _detach(self, inbox: Inbox) -> None:
        self._routes.clear()

    def _route(self, topic: str) -> tuple[_Target, ...]:
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty string, got {topic!r}", field="topic")
        targets: list[_Target] = []
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
        routes = self._routes
        if len(routes) >= ROUTE_CACHE:
            routes.clear()
        route = routes[topic] = tuple(targets)
        return route

    def matching(self, topic: str) -> list[Inbox]:
        """The subscriptions ``topic`` is delivered to now (every member of a group)."""
        out: list[Inbox] = []
        for target in self._routes.get(topic) or self._route(topic):
            if isinstance(target, _RoundRobin):
                out.extend(target.members)
            else:
                out.append(target)
        return out

    # ---------------------------------------------------------------------------- publishing
    def publish(self, topic: str, payload: Any) -> Event:
        if self._closed:
            raise BusError("this bus is closed")
        type_name = _TYPE_OF.get(type(payload))
        if type_name is None:
            type_name = event_type_of(payload)
        targets = self._routes.get(topic)
        if targets is None:
            targets = self._route(topic)
        event = Event(
            type=type_name,
            topic=topic,
            id=next(self._ids),
            source=self.source,
            ts=self._wall(),
            mono=self._mono(),
            payload=payload,
        )
        self.published += 1
        if not targets:
            return event
        if self._depth:
            self._pending.append((targets, event))
            return event
        self._depth = 1
        try:
            for target in targets:
                target.push(event)
            if self._pending:
                self._drain()
        finally:
            self._depth = 0
        return event

    def publish_many(self, topic: str, payloads: Iterable[Any]) -> list[Event]:
        if self._closed:
            raise BusError("this bus is closed")
        targets = self._routes.get(topic)
        if targets is None:
            targets = self._route(topic)
        type_of = _TYPE_OF.get
        ids = self._ids
        source = self.source
        wall = self._wall()
        mono = self._mono()
        events: list[Event] = []
        append = events.append
        for payload in payloads:
            type_name = type_of(type(payload))
            if type_name is None:
                type_name = event_type_of(payload)
            append(
                Event(
                    type=type_name,
                    topic=topic,
                    id=next(ids),
                    source=source,
                    ts=wall,
                    mono=mono,
                    payload=payload,
                )
            )
        self.published += len(events)
        if not targets or not events:
            return events
        if self._depth:
            self._pending.append((targets, events))
            return events
        self._depth = 1
        try:
            for target in targets:
                target.push_many(events)
            if self._pending:
                self._drain()
        finally:
            self._depth = 0
        return events

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            targets, item = pending.popleft()
            if type(item) is list:
                for target in targets:
                    target.push_many(item)
            else:
                for target in targets:
                    target.push(item)  # type: ignore[arg-type]
