"""``Bus``: the interface both backends share, and everything about it that is not transport.

``Bus()`` is the in-process bus (:class:`tickloop.bus.local.LocalBus`); ``Bus("redis://...")``
the Redis Streams backend (``tickloop.bus.redis.RedisBus``, imported only when asked for). Both
are subclasses of :class:`Bus`, so ``isinstance(bus, Bus)`` holds for either.

What lives here, shared by the backends: making events (per-bus ids 1, 2, 3..., the bus's
``source`` name, wall and monotonic timestamps from injectable clocks), building subscriptions
(:mod:`tickloop.bus.subscription`), the drop notices (one :class:`~tickloop.models.BusDropped`
per subscription per ``drop_interval`` seconds of the loop clock, on ``bus.dropped.<name>``), the
handler-failure events (:class:`~tickloop.models.HandlerFailed` on
``bus.handler_failed.<name>``), backpressure bookkeeping (``wait_writable``), the
``StreamClient`` wiring (:meth:`Bus.attach`), statistics and the lifecycle.

Neither notice can feed itself: a BusDropped that a full subscription drops is counted but does
not schedule another notice, and a handler failing on a HandlerFailed event is counted and logged
but not reported again.

A backend implements :meth:`publish`, :meth:`publish_many`, :meth:`_attach` and
:meth:`_detach` (plain calls), and may extend :meth:`_start` and :meth:`_stop`.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..client.consumers import _is_async
from ..exceptions import BusError, ConfigError
from ..models import BusDropped, HandlerFailed
from .events import _TYPE_OF, Event, EventType, event_type_of
from .subscription import (
    Handler,
    Inbox,
    Policy,
    Subscription,
    inbox_stats,
    normalise_patterns,
    parse_policy,
)

if TYPE_CHECKING:
    from ..client.stream import StreamClient
    from .feed import FeedLink

__all__ = ["DEFAULT_MAXSIZE", "Bus", "default_source"]

log = logging.getLogger("tickloop.bus")

#: The buffer size the asyncio.Queue platform found right.
DEFAULT_MAXSIZE = 1000

_BUS_DROPPED = str(EventType.BUS_DROPPED)
_HANDLER_FAILED = str(EventType.HANDLER_FAILED)


def default_source() -> str:
    """``host-pid-random``: unique per process sharing a bus."""
    host = socket.gethostname().split(".", 1)[0] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class Bus:
    """One pub/sub for everything in the process (or, over Redis Streams, beyond it).

    .. code-block:: python

        async with Bus() as bus:
            sub = bus.subscribe("trade.*", maxsize=1000, policy="drop_newest")
            bus.publish("trade.sim.BTC-USD", trade)    # a plain call; returns the Event
            async for event in sub:
                ...

    ``name`` is the ``source`` of every event this bus publishes (default ``host-pid-random``);
    ``drop_interval`` (seconds) how often at most a subscription's drops are announced;
    ``wall_clock`` / ``mono_clock`` give the events' ``ts`` / ``mono`` in nanoseconds
    (a backtest passes its simulated clock).
    """

    def __new__(cls, url: str | None = None, *args: Any, **kwargs: Any) -> Bus:
        if cls is not Bus:
            return super().__new__(cls)
        if url is None or url in ("", "memory://", "local://"):
            from .local import LocalBus

            return super().__new__(LocalBus)
        scheme = url.partition("://")[0].lower()
        if scheme in ("redis", "rediss", "unix"):
            try:
                # Imported by name: the backend and redis-py load only when a URL asks for them.
                backend: type[Bus] = importlib.import_module("tickloop.bus.redis").RedisBus
            except ImportError as exc:
                raise ConfigError(
                    f"the Redis Streams bus backend cannot be loaded ({exc}): "
                    "reinstall tickloop with its dependencies (redis, hiredis)",
                    field="url",
                ) from None
            bus: Bus = super().__new__(backend)
            return bus
        raise ConfigError(
            f"unknown bus URL {url!r}: none for in-process, or redis://host:port/db",
            field="url",
        )

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str | None = None,
        drop_interval: float = 1.0,
        wall_clock: Callable[[], int] = time.time_ns,
        mono_clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("name must be a non-empty string", field="name")
        if not drop_interval > 0:
            raise ConfigError(f"drop_interval must be > 0, got {drop_interval!r}",
                              field="drop_interval")
        self.url = url
        self.source = name if name is not None else default_source()
        self.drop_interval = float(drop_interval)
        self._wall = wall_clock
        self._mono = mono_clock
        self._ids = itertools.count(1)
        self._subscribed = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False
        self._inboxes: dict[Inbox, None] = {}  # insertion ordered: delivery order
        self._names: set[str] = set()
        self.published = 0
        # drop notices
        self._drops_due: dict[Inbox, None] = {}
        self._notice_timer: asyncio.TimerHandle | None = None
        self.notices = 0
        # backpressure
        self._pressed: dict[Inbox, None] = {}
        self._writable: asyncio.Future[None] | None = None
        self._pressure_listeners: list[Callable[[Inbox, bool], None]] = []
        self._links: list[FeedLink] = []

    # ------------------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bind to the running loop and start the backend (``async with`` does it)."""
        if self._closed:
            raise BusError("this bus is closed")
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._started = True
        await self._start()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self, *, grace: float | None = 10.0) -> None:
        """Detach every StreamClient link, announce pending drops, end every subscription
        (iterators stop after their backlog; async handlers finish theirs, at most ``grace``
        seconds each) and stop the backend. Idempotent."""
        if self._closed:
            return
        for link in list(self._links):
            await link.aclose()
        if self._notice_timer is not None:
            self._notice_timer.cancel()
        self._announce()
        self._closed = True
        inboxes = list(self._inboxes)
        for inbox in inboxes:
            self._remove(inbox)
            inbox.close()
        for inbox in inboxes:
            await inbox.drain(grace)
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        await self._stop()

    close = aclose

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("this bus is closed")

    # ---------------------------------------------------------------------------- subscribing
    def subscribe(
        self,
        patterns: str | Iterable[str],
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        policy: Policy | str = Policy.DROP_NEWEST,
        handler: Handler | None = None,
        key: Callable[[Event], Hashable] | None = None,
        low_water: int | None = None,
        group: str | None = None,
        name: str | None = None,
    ) -> Subscription:
        """Subscribe to topics (exact names or patterns: ``trade.*.BTC-USD``, ``order.*``, ``*``).

        ``maxsize`` bounds the buffer; ``policy`` says what happens when it is full
        (:class:`~tickloop.bus.Policy`: ``drop_newest``, ``drop_oldest``, ``conflate``,
        ``lossless``); ``key`` is the conflation key (default: the topic); ``low_water``
        (lossless) is where backpressure is released (default ``maxsize // 4``). ``handler``
        (sync: called inline by ``publish``; async: awaited by one worker task, in order) instead
        of ``async for``. ``group``: subscriptions of one group share its events, each event
        going to one of them (in-process: round-robin; Redis: a consumer group that resumes).
        ``name`` (unique on this bus; default derived) names the subscription in notices,
        topics ``bus.dropped.<name>`` / ``bus.handler_failed.<name>`` and stats.
        """
        self._check_open()
        pats = normalise_patterns(patterns)
        pol = parse_policy(policy)
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(f"maxsize must be an int >= 1, got {maxsize!r}", field="maxsize")
        if low_water is not None:
            if pol is not Policy.LOSSLESS:
                raise ConfigError("low_water applies to policy='lossless' only",
                                  field="low_water")
            if not 0 <= low_water < maxsize:
                raise ConfigError(
                    f"low_water must be >= 0 and below maxsize ({maxsize}), got {low_water!r}",
                    field="low_water",
                )
        if key is not None and pol is not Policy.CONFLATE:
            raise ConfigError("key applies to policy='conflate' only", field="key")
        if handler is not None and not callable(handler):
            raise ConfigError("handler must be callable", field="handler")
        if group is not None and (not isinstance(group, str) or not group):
            raise ConfigError("group must be a non-empty string", field="group")
        n = next(self._subscribed)
        if name is None:
            label = getattr(handler, "__name__", None) if handler is not None else "sub"
            base = group or (label if isinstance(label, str) else type(handler).__name__)
            name = f"{base}-{n}"
        elif not isinstance(name, str) or not name:
            raise ConfigError("name must be a non-empty string", field="name")
        if name in self._names:
            raise ConfigError(f"a subscription named {name!r} is already on this bus",
                              field="name")
        if handler is not None and _is_async(handler):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise ConfigError("an async handler needs a running event loop (subscribe "
                                  "inside async code)", field="handler") from None
            if self._loop is None:
                self._loop = loop
        inbox = Inbox(pats, policy=pol, maxsize=maxsize, name=name, key=key,
                      low_water=low_water, group=group)
        inbox.on_drop = self._on_drop
        inbox.on_failed = self._on_failed
        if pol is Policy.LOSSLESS:
            inbox.on_pressure = self._on_pressure
        inbox.set_handler(handler)
        self._inboxes[inbox] = None
        self._names.add(name)
        try:
            self._attach(inbox)
        except BaseException:
            self._remove(inbox)
            inbox.close()
            raise
        return Subscription(self, inbox)

    def _remove(self, inbox: Inbox) -> None:
        """Detach ``inbox`` (idempotent); its buffer stays readable."""
        if inbox not in self._inboxes:
            return
        del self._inboxes[inbox]
        self._names.discard(inbox.name)
        self._detach(inbox)
        if inbox.paused:
            inbox._relieve()

    @property
    def subscriptions(self) -> list[Inbox]:
        """The inboxes attached now, in delivery order."""
        return list(self._inboxes)

    # ------------------------------------------------------------------------------ publishing
    def event(self, topic: str, payload: Any) -> Event:
        """A new event from this bus (the next id) for ``topic``; not published."""
        type_name = _TYPE_OF.get(type(payload))
        if type_name is None:
            type_name = event_type_of(payload)  # raises ConfigError naming the way out
        if not isinstance(topic, str) or not topic:
            raise ConfigError(f"topic must be a non-empty string, got {topic!r}", field="topic")
        return Event(
            type=type_name,
            topic=topic,
            id=next(self._ids),
            source=self.source,
            ts=self._wall(),
            mono=self._mono(),
            payload=payload,
        )

    def publish(self, topic: str, payload: Any) -> Event:
        """Publish ``payload`` on ``topic``: a plain call that never blocks and never awaits,
        O(matching subscriptions). Returns the Event."""
        raise NotImplementedError

    def publish_many(self, topic: str, payloads: Iterable[Any]) -> list[Event]:
        """Publish several payloads on one topic, in order (cheaper than one call each)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- backpressure
    @property
    def writable(self) -> bool:
        """False while some lossless subscription is above its high water mark."""
        return not self._pressed

    async def wait_writable(self, topic: str | None = None) -> None:
        """Return at once unless a lossless subscription (one matching ``topic``, if given) is
        above its high water mark; then wait until it drained to its low water mark."""
        while self._pressed and not self._closed:
            if topic is not None and not any(i.matches(topic) for i in self._pressed):
                return
            waiter = self._writable
            if waiter is None or waiter.done():
                waiter = self._writable = asyncio.get_running_loop().create_future()
            await waiter

    def add_pressure_listener(self, listener: Callable[[Inbox, bool], None]) -> None:
        """Call ``listener(inbox, paused)`` whenever a lossless subscription crosses a mark."""
        self._pressure_listeners.append(listener)

    def remove_pressure_listener(self, listener: Callable[[Inbox, bool], None]) -> None:
        if listener in self._pressure_listeners:
            self._pressure_listeners.remove(listener)

    @property
    def pressed(self) -> list[Inbox]:
        """The lossless subscriptions above their high water mark now."""
        return list(self._pressed)

    def _on_pressure(self, consumer: Any, paused: bool) -> None:
        inbox: Inbox = consumer
        if paused:
            self._pressed[inbox] = None
        else:
            self._pressed.pop(inbox, None)
            if not self._pressed or self._writable is not None:
                waiter, self._writable = self._writable, None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)  # waiters re-check their condition
        for listener in list(self._pressure_listeners):
            try:
                listener(inbox, paused)
            except Exception:
                log.exception("pressure listener %r failed", listener)

    # ---------------------------------------------------------------------------- notices
    def _on_drop(self, consumer: Any, event: Any) -> None:
        inbox: Inbox = consumer
        if inbox in self._drops_due:
            return
        if type(event) is Event and event.type == _BUS_DROPPED:
            return  # counted; a lost notice never schedules another one
        self._drops_due[inbox] = None
        # Until the notice goes out, further drops need no call at all (the drop path of a
        # stalled subscriber stays as cheap as its append path).
        inbox.on_drop = None
        if self._notice_timer is None and not self._closed:
            loop = self._loop
            if loop is None:
                try:
                    loop = self._loop = asyncio.get_running_loop()
                except RuntimeError:
                    return  # no loop (yet): announced by the next notice or at close
            self._notice_timer = loop.call_later(self.drop_interval, self._announce)

    def _announce(self) -> None:
        """Publish one BusDropped per subscription that dropped since its last notice."""
        self._notice_timer = None
        due, self._drops_due = self._drops_due, {}
        for inbox in due:
            inbox.on_drop = self._on_drop
            total = inbox.stats.dropped
            delta = total - inbox.announced
            if delta <= 0:
                continue
            inbox.announced = total
            self.notices += 1
            notice = BusDropped(
                subscription=inbox.name,
                pattern=",".join(inbox.patterns),
                policy=str(inbox.bus_policy),
                dropped=delta,
                total=total,
                ts=self._wall(),
            )
            if self._closed:
                continue
            try:
                self.publish(f"bus.dropped.{inbox.name}", notice)
            except Exception:
                log.exception("could not publish the drop notice of %s", inbox.name)

    def _on_failed(self, inbox: Inbox, event: Event, exc: BaseException) -> None:
        if getattr(event, "type", None) == _HANDLER_FAILED or self._closed:
            return  # counted and logged; never a failure report about a failure report
        error, tb = inbox.failure_text(exc)
        report = HandlerFailed(
            subscription=inbox.name,
            handler=_handler_label(inbox.handler),
            topic=getattr(event, "topic", ""),
            error=error,
            traceback=tb,
            ts=self._wall(),
        )
        try:
            self.publish(f"bus.handler_failed.{inbox.name}", report)
        except Exception:
            log.exception("could not publish the failure report of %s", inbox.name)

    # ---------------------------------------------------------------------- StreamClient wiring
    async def attach(
        self,
        feed: StreamClient,
        *,
        trades: str | Sequence[str] = (),
        books: str | Sequence[str] = (),
        depth: int = 10,
        book_interval: float | None = None,
        full_books: bool = False,
        candles: str | Sequence[str] = (),
        interval: str = "1m",
        tickers: str | Sequence[str] = (),
        orders: bool = False,
        fills: bool = False,
        status: bool = True,
        pause: bool = True,
    ) -> FeedLink:
        """Publish a StreamClient's streams on this bus under stable topics; see
        :func:`tickloop.bus.feed.attach`. Returns the link; ``await link.aclose()`` detaches."""
        from .feed import attach

        return await attach(
            self,
            feed,
            trades=trades,
            books=books,
            depth=depth,
            book_interval=book_interval,
            full_books=full_books,
            candles=candles,
            interval=interval,
            tickers=tickers,
            orders=orders,
            fills=fills,
            status=status,
            pause=pause,
        )

    # -------------------------------------------------------------------------------- insight
    def stats(self) -> dict[str, Any]:
        """A snapshot of the bus's counters (the metrics issue exports it on /metrics)."""
        return {
            "backend": type(self).__name__,
            "source": self.source,
            "published": self.published,
            "notices": self.notices,
            "writable": not self._pressed,
            "pressed": [i.name for i in self._pressed],
            "subscriptions": [inbox_stats(i) for i in self._inboxes],
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._inboxes)} subscriptions"
        return f"<{type(self).__name__} {self.source} {state}>"

    # ------------------------------------------------------------------------ backend hooks
    def _attach(self, inbox: Inbox) -> None:
        """Start delivering to ``inbox`` (a backend's hook; a plain call)."""
        raise NotImplementedError

    def _detach(self, inbox: Inbox) -> None:
        """Stop delivering to ``inbox`` (a backend's hook; a plain call, idempotent)."""
        raise NotImplementedError

    async def _start(self) -> None:
        """Backend start-up (connections, reader tasks)."""

    async def _stop(self) -> None:
        """Backend shutdown: every task it started is awaited here."""


def _handler_label(handler: object) -> str:
    if handler is None:
        return "iterator"
    name = getattr(handler, "__qualname__", None)
    return name if isinstance(name, str) else type(handler).__qualname__
