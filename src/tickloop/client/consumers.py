"""Fan-out from one upstream stream to many consumers, each behind its own bounded buffer.

The feed calls :meth:`Fanout.publish` synchronously from the socket's data callback (no task, no
queue per message). Each consumer then gets the event through its own :class:`Consumer`:

* an **async iterator** (``async for``) reads a bounded buffer: one ``deque`` and one waiter
  future, woken once per burst rather than once per message;
* a **sync handler** is called directly, inside the data callback;
* an **async handler** is awaited by one worker task that owns the consumer's buffer (the only
  task boundary, hence the only queue).

Overflow policy, chosen per stream type (:class:`Overflow`): ``ERROR`` for streams that must not
lose data (trades, private orders and fills, status) — a consumer that falls ``maxsize`` events
behind is detached and gets :class:`~tickloop.exceptions.ConsumerOverflow`; ``CONFLATE`` for
streams where only the latest value matters (tickers, candles, books) — a new value replaces the
pending one with the same key. A slow consumer never delays the others: nothing here waits.

The event bus (:mod:`tickloop.bus`) builds its subscriptions on the same buffer and adds two
lossy policies, ``DROP_NEWEST`` and ``DROP_OLDEST``, which count every loss (``on_drop``) and
never detach; the streaming client does not offer them.

``BACKPRESSURE`` is the opt-in exception, for consumers that would rather slow the source than
fail or lose values (replay, backtests, benchmarks, bots that must see every trade): events are
queued without loss, and when the backlog reaches the high water mark (``maxsize``) the consumer
calls ``on_pressure(self, True)``, which pauses reading the connection(s) carrying its streams;
once it has drained to the low water mark (``low_water``, default a quarter of ``maxsize``) it
calls ``on_pressure(self, False)``. While paused, frames of a socket read already under way are
still queued, so the backlog may pass ``maxsize`` by one read's worth (and by a trade backfill's
pages); it is bounded by those reads, not by the venue's rate. Pausing delays every consumer of
those connections: that is the price of the policy.

Reference counting: :class:`Fanout` counts consumers per upstream
:class:`~tickloop.venues.base.Subscription`; ``attach`` returns the subscriptions that just became
needed and ``detach`` those no longer needed, which the caller subscribes and unsubscribes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from enum import StrEnum
from typing import Any

from ..exceptions import ConsumerOverflow, StreamError
from ..venues.base import Channel, Subscription
from .tasks import reap
from .turns import TURN

__all__ = [
    "BOOK_DELTAS",
    "Consumer",
    "ConsumerStats",
    "Fanout",
    "Handler",
    "Overflow",
]

log = logging.getLogger("tickloop.client.consumers")

Handler = Callable[[Any], Awaitable[None] | None]

#: The route table of raw book consumers (``feed.book_deltas``): they share the venue's book
#: subscriptions (channel ``book``) with ``feed.books`` consumers but are routed apart, since
#: they get the venue's snapshots and deltas rather than the synchronised book.
BOOK_DELTAS = "book_deltas"


class Overflow(StrEnum):
    ERROR = "error"  # never drop: detach the consumer with ConsumerOverflow
    CONFLATE = "conflate"  # keep the latest value per key
    BACKPRESSURE = "backpressure"  # never drop: pause the source above the high water mark
    # The bus's lossy policies (tickloop.bus): a full buffer loses the new event, or its oldest.
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"


class _Closed:
    """Sentinel: the consumer was closed normally (the stream or the client ended)."""


_CLOSED = _Closed()


class ConsumerStats:
    """Counters of one consumer: what it got, what it lost, how far behind it fell."""

    __slots__ = ("conflated", "delivered", "dropped", "handler_errors", "high_water", "pauses")

    def __init__(self) -> None:
        self.delivered = 0  # events handed to user code
        self.conflated = 0  # events replaced by a newer value (CONFLATE)
        self.dropped = 0  # events lost to an overflow (ERROR: then the consumer is detached)
        self.handler_errors = 0
        self.high_water = 0  # the largest backlog seen
        self.pauses = 0  # times this consumer paused its source (BACKPRESSURE)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Consumer:
    """One consumer's bounded buffer, or its direct handler (module docstring).

    ``key`` maps an event to its conflation key (CONFLATE only). ``on_detach`` is called once
    when the consumer leaves the fan-out by itself (overflow). ``low_water`` (BACKPRESSURE
    only; default ``maxsize // 4``) is the backlog at which a paused source is resumed;
    ``on_pressure(consumer, paused)`` is how the owner pauses and resumes it.
    """

    # Slots: tickloop.client._reader_native and tickloop.bus._bus_native read ``paused``,
    # ``_waiter`` and ``_end`` in place (at the offsets their set_consumer_type found), not
    # through attribute lookups, on every event; Python code reads them as fast as ever.
    __slots__ = (
        "__weakref__", "_buffer", "_end", "_handler", "_handler_is_async", "_key", "_latest",
        "_waiter", "_worker", "channel", "low_water", "maxsize", "name", "on_detach", "on_drop",
        "on_failure", "on_pressure", "paused", "policy", "push", "stats", "subscriptions",
    )

    def __init__(
        self,
        channel: Channel | str,
        *,
        policy: Overflow,
        maxsize: int,
        key: Callable[[Any], Hashable] | None = None,
        handler: Handler | None = None,
        name: str = "",
        low_water: int | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if low_water is None:
            low_water = maxsize // 4
        if not 0 <= low_water < maxsize:
            raise ValueError("low_water must be >= 0 and below maxsize")
        self.channel = channel
        self.policy = policy
        self.maxsize = maxsize
        self.low_water = low_water
        self.on_pressure: Callable[[Consumer, bool], None] | None = None
        #: True while this consumer holds its source paused (BACKPRESSURE).
        self.paused = False
        self.name = name
        self.stats = ConsumerStats()
        self.subscriptions: tuple[Subscription, ...] = ()
        self.on_detach: Callable[[Consumer], None] | None = None
        #: Called with each event a lossy policy dropped (DROP_*, and CONFLATE past its keys).
        self.on_drop: Callable[[Consumer, Any], None] | None = None
        #: Called with each exception this consumer's handler raised (after it was counted in
        #: ``stats.handler_errors``): the owner reports it (a ConsumerFailed status event).
        self.on_failure: Callable[[Consumer, Exception], None] | None = None
        self._key = key if key is not None else _identity_key
        self._buffer: deque[Any] = deque()
        self._latest: dict[Hashable, Any] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._end: BaseException | _Closed | None = None
        self._handler: Handler | None = None
        self._handler_is_async = False
        self._worker: asyncio.Task[None] | None = None
        self.push: Callable[[Any], None] = self._push_conflate
        self.set_handler(handler)

    # ---------------------------------------------------------------------------- properties
    @property
    def closed(self) -> bool:
        return self._end is not None

    @property
    def error(self) -> BaseException | None:
        return self._end if isinstance(self._end, BaseException) else None

    @property
    def handler(self) -> Handler | None:
        return self._handler

    def __len__(self) -> int:
        return len(self._buffer) + len(self._latest)

    def __repr__(self) -> str:
        return f"<Consumer {self.name or self.channel} {self.policy} backlog={len(self)}>"

    # ------------------------------------------------------------------------------ handlers
    def set_handler(self, handler: Handler | None) -> None:
        """Use ``handler`` from now on (None: an async-iterator consumer). Events already
        buffered go to the new handler."""
        self._handler = handler
        self._handler_is_async = handler is not None and _is_async(handler)
        if handler is not None and not self._handler_is_async:
            # Sync handler: called inline. Flush what an earlier async handler left behind.
            self.push = self._call_handler
            while len(self):
                self._call_handler(self._pop())
            if self.paused:
                self._relieve()  # nothing is buffered any more
            return
        self.push = self._pusher()
        if self._handler_is_async and self._worker is None and self._end is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._run_handler(), name=f"tickloop-handler-{self.name or self.channel}"
            )

    def _call_handler(self, event: Any) -> None:
        stats = self.stats
        handler = self._handler
        assert handler is not None
        try:
            handler(event)
        except Exception as exc:
            self._handler_failed(exc)
        else:
            stats.delivered += 1

    def _handler_failed(self, exc: Exception) -> None:
        errors = self.stats.handler_errors = self.stats.handler_errors + 1
        if errors & (errors - 1) == 0:  # 1st, 2nd, 4th, 8th...: never a log line per message
            log.error(
                "handler of %s failed (%d failures so far)", self.name, errors, exc_info=exc
            )
        on_failure = self.on_failure
        if on_failure is not None:
            try:
                on_failure(self, exc)
            except Exception:  # the report must not become a failure of its own
                log.exception("reporting a failure of %s's handler failed", self.name)

    async def _run_handler(self) -> None:
        try:
            while True:
                try:
                    event = await self.get()
                except StopAsyncIteration:
                    return
                except ConsumerOverflow:
                    log.error("%s: async handler fell behind; detached", self.name)
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
                    self._handler_failed(exc)
        finally:
            self._worker = None

    def _pusher(self) -> Callable[[Any], None]:
        policy = self.policy
        if policy is Overflow.ERROR:
            return self._push_error
        if policy is Overflow.BACKPRESSURE:
            return self._push_backpressure
        if policy is Overflow.DROP_NEWEST:
            return self._push_drop_newest
        if policy is Overflow.DROP_OLDEST:
            return self._push_drop_oldest
        return self._push_conflate

    # ------------------------------------------------------------------------------ producing
    def _push_backpressure(self, event: Any) -> None:
        buffer = self._buffer
        buffer.append(event)
        if len(buffer) >= self.maxsize and not self.paused:
            self.paused = True
            self.stats.pauses += 1
            if self.on_pressure is not None:
                self.on_pressure(self, True)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _relieve(self) -> None:
        """Resume the source this consumer paused (its backlog is down to ``low_water``, or it
        ended)."""
        self.paused = False
        if self.on_pressure is not None:
            self.on_pressure(self, False)

    def _push_error(self, event: Any) -> None:
        buffer = self._buffer
        if len(buffer) >= self.maxsize:
            self._overflow()
            return
        buffer.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _push_drop_newest(self, event: Any) -> None:
        buffer = self._buffer
        if len(buffer) >= self.maxsize:
            self.stats.dropped += 1
            if self.on_drop is not None:
                self.on_drop(self, event)
            return
        buffer.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _push_drop_oldest(self, event: Any) -> None:
        buffer = self._buffer
        if len(buffer) >= self.maxsize:
            lost = buffer.popleft()
            self.stats.dropped += 1
            if self.on_drop is not None:
                self.on_drop(self, lost)
        buffer.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _push_conflate(self, event: Any) -> None:
        latest = self._latest
        stats = self.stats
        key = self._key(event)
        if key in latest:
            stats.conflated += 1
        elif len(latest) >= self.maxsize:
            # More distinct keys pending than the buffer holds: the oldest value is dropped.
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
                # A reader of latest values waits: let it run before the transport delivers
                # the rest of its read (tickloop.client.turns), the values in between conflate.
                TURN.wanted = True

    def offer(self, event: Any) -> None:
        """Hand over an event that a subclass may hold back (books conflate by time); a plain
        consumer pushes it at once."""
        self.push(event)

    def discard(self, key: Hashable) -> None:
        """Forget the pending value of ``key`` (CONFLATE): it must not be delivered any more."""
        self._latest.pop(key, None)

    def _overflow(self) -> None:
        dropped = len(self._buffer) + 1
        self.stats.dropped += dropped
        self._buffer.clear()
        self.close(
            ConsumerOverflow(
                f"consumer {self.name or self.channel} fell {self.maxsize} events behind; "
                "it was detached so that the stream never drops data silently",
                dropped=dropped,
            )
        )

    def close(self, end: BaseException | None = None) -> None:
        """End this consumer: normally (``end`` None) after its backlog is read, or with an
        error raised at its next read. Idempotent; the first end wins."""
        if self._end is None:
            self._end = end if end is not None else _CLOSED
            self.push = _ignore
            if end is not None and self.policy is Overflow.CONFLATE:
                self._latest.clear()
        if self.paused:
            self._relieve()  # an ended consumer never holds the connection paused
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        callback, self.on_detach = self.on_detach, None
        if callback is not None:
            callback(self)

    async def aclose(self) -> None:
        """Close and wait for an async handler's worker to finish."""
        self.close()
        worker = self._worker
        if worker is not None and not worker.done():
            worker.cancel()
            await reap([worker], what="handler worker")

    # ------------------------------------------------------------------------------ consuming
    def _pop(self) -> Any:
        if self._buffer:
            return self._buffer.popleft()
        latest = self._latest
        return latest.pop(next(iter(latest)))

    def get_nowait(self) -> Any:
        """The next event; raises the end (StopAsyncIteration, an error) or LookupError when
        nothing is buffered yet."""
        if self._buffer or self._latest:
            self.stats.delivered += 1
            if self.paused and len(self._buffer) <= self.low_water + 1:
                self._relieve()
            return self._pop()
        end = self._end
        if end is None:
            raise LookupError("empty")
        if isinstance(end, _Closed):
            raise StopAsyncIteration
        raise end

    async def get(self) -> Any:
        """The next event, waiting for one."""
        while True:
            buffer = self._buffer
            if len(buffer) > self.stats.high_water:
                # Measured when the consumer comes back for more: it drains its whole backlog
                # before waiting again, so this is the largest backlog it had.
                self.stats.high_water = len(buffer)
            if buffer:
                self.stats.delivered += 1
                if self.paused and len(buffer) <= self.low_water + 1:
                    self._relieve()
                return buffer.popleft()
            if self._latest:
                self.stats.delivered += 1
                return self._pop()
            end = self._end
            if end is not None:
                if isinstance(end, _Closed):
                    raise StopAsyncIteration
                raise end
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter


def _ignore(event: Any) -> None:
    return None


def _identity_key(event: Any) -> Hashable:
    return (getattr(event, "symbol", None), getattr(event, "interval", None))


def _is_async(handler: Handler) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


# ------------------------------------------------------------------------------------ fan-out


def _table(consumer: Consumer, sub: Subscription) -> Channel | str:
    return BOOK_DELTAS if consumer.channel == BOOK_DELTAS else sub.channel


def route_key(sub: Subscription) -> Hashable:
    """How events of ``sub`` are routed: by symbol, by (symbol, interval) for candles, and by
    nothing for private channels."""
    if sub.channel is Channel.CANDLES:
        return (sub.symbol, sub.interval)
    return sub.symbol


class Fanout:
    """Routes events to consumers and counts consumers per upstream subscription.

    Routes are copy-on-write tuples, so a consumer may detach while an event is being delivered.
    """

    def __init__(self) -> None:
        self.routes: dict[Channel | str, dict[Hashable, tuple[Consumer, ...]]] = {
            c: {} for c in Channel
        }
        self.routes[BOOK_DELTAS] = {}
        self.refs: dict[Subscription, int] = {}
        self.consumers: set[Consumer] = set()
        self.status: tuple[Consumer, ...] = ()
        #: Called with the subscriptions no longer needed when a consumer detaches by itself.
        self.on_unneeded: Callable[[list[Subscription]], None] | None = None
        #: Called when a consumer detaches because it overflowed, after it left the routes,
        #: with its error and the subscriptions it was reading: the owner publishes it.
        self.on_overflow: (
            Callable[[Consumer, ConsumerOverflow, tuple[Subscription, ...]], None] | None
        ) = None
        #: Called when the handler of a consumer of market data raised (not of a status
        #: consumer: its report would be a status event of its own), with the exception.
        self.on_failure: Callable[[Consumer, Exception], None] | None = None

    def attach(
        self, consumer: Consumer, subscriptions: Iterable[Subscription]
    ) -> list[Subscription]:
        """Route ``subscriptions`` to ``consumer``; returns those that were not needed before."""
        new: list[Subscription] = []
        subs = tuple(dict.fromkeys(s for s in subscriptions if s not in consumer.subscriptions))
        for sub in subs:
            routes = self.routes[_table(consumer, sub)]
            key = route_key(sub)
            routes[key] = (*routes.get(key, ()), consumer)
            count = self.refs.get(sub, 0)
            self.refs[sub] = count + 1
            if count == 0:
                new.append(sub)
        consumer.subscriptions = consumer.subscriptions + subs
        self.consumers.add(consumer)
        consumer.on_detach = self._detached
        consumer.on_failure = self._failed
        return new

    def _failed(self, consumer: Consumer, exc: Exception) -> None:
        if self.on_failure is not None:
            self.on_failure(consumer, exc)

    def detach(
        self, consumer: Consumer, subscriptions: Iterable[Subscription] | None = None
    ) -> list[Subscription]:
        """Stop routing ``subscriptions`` (all when None) to ``consumer``; returns those that no
        consumer needs any more."""
        if subscriptions is None:
            drop = consumer.subscriptions
        else:
            wanted = set(subscriptions)
            drop = tuple(s for s in consumer.subscriptions if s in wanted)
        gone: list[Subscription] = []
        for sub in drop:
            routes = self.routes[_table(consumer, sub)]
            key = route_key(sub)
            remaining = tuple(c for c in routes.get(key, ()) if c is not consumer)
            if remaining:
                routes[key] = remaining
            else:
                routes.pop(key, None)
            count = self.refs.get(sub, 0) - 1
            if count <= 0:
                self.refs.pop(sub, None)
                gone.append(sub)
            else:
                self.refs[sub] = count
        consumer.subscriptions = tuple(s for s in consumer.subscriptions if s not in drop)
        if not consumer.subscriptions:
            self.consumers.discard(consumer)
            if consumer.on_detach == self._detached:
                consumer.on_detach = None
        return gone

    def _detached(self, consumer: Consumer) -> None:
        subscriptions = consumer.subscriptions
        if consumer in self.consumers:
            gone = self.detach(consumer)
            if gone and self.on_unneeded is not None:
                self.on_unneeded(gone)
        self.remove_status(consumer)
        end = consumer._end
        if isinstance(end, ConsumerOverflow) and self.on_overflow is not None:
            self.on_overflow(consumer, end, subscriptions)

    # ------------------------------------------------------------------------------- status
    def add_status(self, consumer: Consumer) -> None:
        self.status = (*self.status, consumer)
        consumer.on_detach = self._detached

    def remove_status(self, consumer: Consumer) -> None:
        if consumer in self.status:
            self.status = tuple(c for c in self.status if c is not consumer)

    def publish_status(self, event: Any) -> None:
        for consumer in self.status:
            consumer.push(event)

    # ------------------------------------------------------------------------------ control
    def fail(self, sub: Subscription, error: StreamError) -> list[Consumer]:
        """End every consumer of ``sub`` with ``error`` (a refused subscription); a book
        subscription's raw consumers too."""
        key = route_key(sub)
        failed = list(self.routes[sub.channel].get(key, ()))
        if sub.channel is Channel.BOOK:
            failed += self.routes[BOOK_DELTAS].get(key, ())
        for consumer in failed:
            consumer.close(error)
        return failed

    def close_all(self, error: BaseException | None = None) -> None:
        for consumer in [*self.consumers, *self.status]:
            consumer.on_detach = None
            consumer.close(error)
        self.consumers.clear()
        self.status = ()
        for routes in self.routes.values():
            routes.clear()
        self.refs.clear()
