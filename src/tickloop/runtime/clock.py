"""The runtime's one clock, injected: the event loop's clock live, a simulated one in a backtest.

Everything in the runtime that waits or timestamps (the scheduler, venue-call timeouts, the
loop-lag monitor, the paper executor's latency, equity snapshots) reads time from a
:class:`Clock` and never from :func:`time.time` or :func:`time.monotonic` directly. That is what
lets the same bot code make the same decisions live and in simulated time.

A clock has two readings: :meth:`Clock.monotonic` (seconds, only differences mean anything; what
deadlines and timers are expressed in) and :meth:`Clock.now` (seconds since the Unix epoch, for
timestamps and cron expressions). It schedules callbacks with :meth:`Clock.call_at` on its
monotonic scale and suspends a coroutine with :meth:`Clock.sleep`.

* :class:`LoopClock` is the running event loop's clock (``loop.time()``, ``loop.call_at``).
* :class:`SimClock` holds a virtual time that moves only when told to (:meth:`SimClock.advance`):
  it fires due timers in (deadline, order of scheduling) order, setting its time to each timer's
  deadline before calling it, so a callback that schedules another timer inside the advanced
  span sees it fire in the same advance. Nothing really sleeps. Its wall reading is
  ``epoch + monotonic()``, so cron schedules and timestamps are as reproducible as the rest.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..exceptions import ConfigError

__all__ = ["Clock", "LoopClock", "SimClock", "TimerHandle"]


@runtime_checkable
class TimerHandle(Protocol):
    """What :meth:`Clock.call_at` returns: cancel the callback before it runs."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The time source of the runtime (see the module docstring)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale: the scale of every deadline and timer."""
        ...

    def now(self) -> float:
        """Seconds since the Unix epoch (wall clock), for timestamps and cron."""
        ...

    def now_ns(self) -> int:
        """:meth:`now` in integer nanoseconds, the unit of every model's ``ts``."""
        ...

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` once the monotonic time reaches ``when``."""
        ...

    async def sleep(self, delay: float) -> None:
        """Suspend the calling coroutine for ``delay`` seconds of this clock's time."""
        ...


class LoopClock:
    """The running event loop's clock: ``loop.time()`` and ``loop.call_at``.

    Bound to the loop running when it is made (or ``loop``); use it from that loop only.
    """

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop if loop is not None else asyncio.get_running_loop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def monotonic(self) -> float:
        return self._loop.time()

    def now(self) -> float:
        return time.time()

    def now_ns(self) -> int:
        return time.time_ns()

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._loop.call_at(when, callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)

    def __repr__(self) -> str:
        return f"LoopClock(monotonic={self.monotonic():.3f})"


_heappush = heapq.heappush


class _SimTimer:
    __slots__ = ("args", "callback", "cancelled", "rearming", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...],
                 rearming: bool = False) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        #: Made by SimClock.call_rearming: called with the time, returns its next deadline.
        self.rearming = rearming

    def cancel(self) -> None:
        self.cancelled = True


class SimClock:
    """Virtual time for backtests and tests: moves only through :meth:`advance` /
    :meth:`advance_to` (or :meth:`run_for` from a coroutine), firing timers in order.

    ``start`` is the initial monotonic reading, ``epoch`` the wall time (seconds since the Unix
    epoch) that corresponds to monotonic 0. Timers due at the same time fire in the order they
    were scheduled. A timer scheduled in the past fires at the next advance, at the current
    time (time never goes backwards).
    """

    __slots__ = ("_epoch", "_heap", "_now", "_seq", "fired")

    def __init__(self, start: float = 0.0, *, epoch: float = 1_767_225_600.0) -> None:
        # epoch default: 2026-01-01T00:00:00Z, a fixed instant so cron runs are reproducible
        self._now = float(start)
        self._epoch = float(epoch)
        self._heap: list[tuple[float, int, _SimTimer]] = []
        self._seq = itertools.count()
        #: Timers fired so far (cancelled ones not counted).
        self.fired = 0

    def monotonic(self) -> float:
        return self._now

    def now(self) -> float:
        return self._epoch + self._now

    def now_ns(self) -> int:
        return round((self._epoch + self._now) * 1e9)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        # a backtest arms a timer or more every simulated second: names bound once
        when = float(when)
        timer = _SimTimer(when, callback, args)
        _heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def call_rearming(self, when: float,
                      callback: Callable[[float, float], float | None]) -> TimerHandle:
        """A timer that re-arms itself in place: at ``when``, with the time set as for
        :meth:`call_at`, ``callback(monotonic, wall)`` is called and returns the next deadline
        of the same timer, or None to end it. The next deadline is queued as a
        :meth:`call_at` made as the callback returns would be (the same place among the
        timers due at one time), without a new timer or a clock read per firing. The
        :class:`~tickloop.runtime.scheduler.ScheduleRunner` arms its timer so: a backtest
        fires it on every simulated tick."""
        when = float(when)
        timer = _SimTimer(when, callback, (), True)
        _heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(self._now + delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        """Resolve when virtual time has advanced by ``delay``; needs someone to advance it
        (:meth:`run_for` from another task, or :meth:`advance` between awaits)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = self.call_at(self._now + max(delay, 0.0), _resolve, future)
        try:
            await future
        finally:
            handle.cancel()

    @property
    def pending(self) -> int:
        """Timers scheduled and not yet fired or cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def next_deadline(self) -> float | None:
        """When the earliest pending timer is due (None when none is)."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, firing every timer due on the way; returns how
        many fired."""
        if seconds < 0:
            raise ConfigError(f"cannot advance by {seconds!r}: time never goes back",
                              field="seconds")
        return self.advance_to(self._now + seconds)

    def advance_to(self, when: float, *, inclusive: bool = True) -> int:
        """Move time forward to ``when`` (no-op if it is in the past), firing due timers in
        order; returns how many fired. ``inclusive=False`` leaves the timers due exactly at
        ``when`` for the next advance (a backtest delivers the data of an instant before the
        timers of that instant fire)."""
        fired = 0
        heap = self._heap
        pop = heapq.heappop
        # the heap is read inline (no next_deadline call a timer): a backtest fires one timer
        # or more on every simulated second
        while heap:
            deadline, _, timer = heap[0]
            if timer.cancelled:
                pop(heap)
                continue
            if deadline > when or (deadline == when and not inclusive):
                break
            pop(heap)
            if deadline > self._now:
                self._now = deadline
            fired += 1
            if timer.rearming:
                now = self._now
                nxt = timer.callback(now, self._epoch + now)
                if nxt is not None and not timer.cancelled:
                    timer.when = nxt = float(nxt)
                    _heappush(heap, (nxt, next(self._seq), timer))
            else:
                timer.callback(*timer.args)
        if when > self._now:
            self._now = when
        self.fired += fired
        return fired

    async def run_for(self, seconds: float, *, yields: int = 8) -> int:
        """:meth:`advance` from a coroutine: after each batch of timers due at the same time,
        yield to the event loop ``yields`` times so the coroutines those timers woke (sleepers,
        tasks they started) run and schedule their next timers before time moves on."""
        target = self._now + seconds
        fired = 0
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > target:
                break
            fired += self.advance_to(deadline)
            for _ in range(yields):
                await asyncio.sleep(0)
        self._now = max(self._now, target)
        return fired

    def __repr__(self) -> str:
        return f"SimClock(monotonic={self._now:.6f}, pending={self.pending})"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
