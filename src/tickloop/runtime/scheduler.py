"""When each bot's ``tick()`` runs: interval and cron schedules on an injected clock.

Two parts. :class:`Scheduler` is a sans-I/O core: jobs go in with the current time, and
:meth:`Scheduler.pop_due` gives back, for a given time, the jobs that are due, in a fixed order
(deadline, then the order the jobs were added), and moves each to its next deadline. It reads no
clock, has no randomness (no jitter) and never touches asyncio, so under a
:class:`~tickloop.runtime.clock.SimClock` the same schedule gives the same sequence of runs
every time. :class:`ScheduleRunner` is the thin shell that arms one timer on a
:class:`~tickloop.runtime.clock.Clock` for the earliest deadline and hands the due jobs to a
callback.

Semantics:

* An :class:`Interval` job is fixed-rate: deadlines are ``first, first + every, ...`` where
  ``first`` is when it was added plus its start offset; they never drift with handler time. A
  job found late by whole intervals runs once (the missed runs are coalesced and counted in
  :attr:`Due.missed`), then resumes on its grid.
* A :class:`Cron` job runs at the wall-clock instants of a cron expression (UTC, via croniter;
  a sixth field is seconds). Each next instant is computed from the previous *scheduled*
  instant, so a late run does not shift the ones after it; instants already past when the job
  is found late are coalesced the same way.
* Staggered start: :func:`stagger` spreads the first runs of ``n`` jobs evenly over a span, so
  hundreds of bots with one interval do not all tick in the same loop iteration.
* A paused job keeps its grid: its due runs are skipped (counted in :attr:`Job.skipped`) and it
  resumes on the next deadline.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from croniter import croniter

from ..exceptions import ConfigError
from .clock import Clock, TimerHandle

__all__ = ["Cron", "Due", "Interval", "Job", "Schedule", "ScheduleRunner", "Scheduler", "stagger"]


@dataclass(frozen=True, slots=True)
class Interval:
    """Every ``every`` seconds (> 0)."""

    every: float

    def __post_init__(self) -> None:
        if not (isinstance(self.every, int | float) and math.isfinite(self.every)
                and self.every > 0):
            raise ConfigError(f"every must be a number of seconds > 0, got {self.every!r}",
                              field="every")


@dataclass(frozen=True, slots=True)
class Cron:
    """A cron expression (five fields, or six with seconds last), evaluated in UTC."""

    expr: str

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str) or not croniter.is_valid(self.expr):
            raise ConfigError(f"cron {self.expr!r} is not a valid cron expression", field="cron")

    def next_after(self, wall: float) -> float:
        """The first instant of the expression strictly after ``wall`` (epoch seconds)."""
        start = datetime.fromtimestamp(wall, tz=UTC)
        return float(croniter(self.expr, start).get_next(float))


Schedule = Interval | Cron


def stagger(n: int, spread: float) -> list[float]:
    """Start offsets for ``n`` jobs spread evenly over ``spread`` seconds: ``i * spread / n``."""
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n!r}", field="n")
    if not (math.isfinite(spread) and spread >= 0):
        raise ConfigError(f"spread must be >= 0 seconds, got {spread!r}", field="spread")
    return [i * spread / n for i in range(n)] if n else []


@dataclass(slots=True)
class Job:
    """One scheduled job. ``runs``/``missed``/``skipped`` count what happened to it."""

    key: Hashable
    schedule: Schedule
    deadline: float  # monotonic seconds of the next run
    wall: float  # for cron: the wall instant of the next run (epoch seconds); else 0
    order: int
    paused: bool = False
    runs: int = 0
    missed: int = 0
    skipped: int = 0
    removed: bool = field(default=False, repr=False)


class Due(NamedTuple):
    """A job that is due: ``scheduled`` is its deadline (monotonic), ``missed`` how many earlier
    runs were coalesced into this one because it was found late. (A named tuple: one is made
    per run of every job, and a tuple is the cheapest immutable record to make.)"""

    key: Hashable
    scheduled: float
    missed: int


_new_tuple = tuple.__new__


class Scheduler:
    """The sans-I/O schedule of many jobs (see the module docstring)."""

    __slots__ = ("_heap", "_jobs", "_order")

    def __init__(self) -> None:
        self._jobs: dict[Hashable, Job] = {}
        self._heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, key: object) -> bool:
        return key in self._jobs

    def job(self, key: Hashable) -> Job:
        try:
            return self._jobs[key]
        except KeyError:
            raise KeyError(f"no job {key!r}") from None

    def add(self, key: Hashable, schedule: Schedule, *, now: float, wall: float,
            offset: float = 0.0) -> Job:
        """Add a job at monotonic time ``now`` (wall clock ``wall``). An interval job first
        runs at ``now + offset``; a cron job at its first instant after ``wall + offset``."""
        if key in self._jobs:
            raise ConfigError(f"job {key!r} is already scheduled", field="key")
        if not (math.isfinite(offset) and offset >= 0):
            raise ConfigError(f"offset must be >= 0 seconds, got {offset!r}", field="offset")
        if isinstance(schedule, Interval):
            job = Job(key, schedule, now + offset, 0.0, next(self._order))
        else:
            nxt = schedule.next_after(wall + offset)
            job = Job(key, schedule, now + (nxt - wall), nxt, next(self._order))
        self._jobs[key] = job
        heapq.heappush(self._heap, (job.deadline, job.order, job))
        return job

    def remove(self, key: Hashable) -> None:
        job = self._jobs.pop(key, None)
        if job is not None:
            job.removed = True  # its heap entry is dropped lazily

    def pause(self, key: Hashable) -> None:
        self.job(key).paused = True

    def resume(self, key: Hashable) -> None:
        self.job(key).paused = False

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and (heap[0][2].removed or heap[0][0] != heap[0][2].deadline):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float, wall: float) -> list[Due]:
        """The jobs due at monotonic time ``now`` (wall clock ``wall``), earliest deadline
        first (ties: the order they were added); each moves to its next deadline. Paused jobs
        are moved on without being returned."""
        out: list[Due] = []
        heap = self._heap
        while heap:
            deadline, _, job = heap[0]
            if job.removed or deadline != job.deadline:
                heapq.heappop(heap)  # a stale entry (see next_deadline)
                continue
            if deadline > now:
                break
            schedule = job.schedule
            if type(schedule) is Interval:  # the common case, inline
                every = schedule.every
                late = now - deadline
                if late < every:  # on time (a backtest's every tick): (late // every) is 0
                    missed = 0
                    job.deadline = deadline + every
                else:
                    missed = int(late // every)  # whole intervals past it
                    job.deadline = deadline + (missed + 1) * every
            else:
                missed = self._advance(job, now, wall)
            if job.paused:
                job.skipped += 1 + missed
            else:
                job.runs += 1
                if missed:
                    job.missed += missed
                # tuple.__new__: a named tuple's own __new__ is a Python function
                out.append(_new_tuple(Due, (job.key, deadline, missed)))
            heapq.heapreplace(heap, (job.deadline, job.order, job))
        return out

    def _advance(self, job: Job, now: float, wall: float) -> int:
        """Move ``job`` past ``now``; return how many runs besides this one were skipped."""
        schedule = job.schedule
        if isinstance(schedule, Interval):
            every = schedule.every
            late = int((now - job.deadline) // every)  # whole intervals past this deadline
            job.deadline += (late + 1) * every
            return late
        # Cron: next instant after the scheduled one; coalesce instants already past.
        missed = -1
        nxt = job.wall
        limit = wall
        while True:
            nxt = schedule.next_after(nxt)
            missed += 1
            if nxt > limit:
                break
        job.wall = nxt
        job.deadline = now + (nxt - wall)
        return missed


class ScheduleRunner:
    """Drives a :class:`Scheduler` on a :class:`Clock`: one timer, armed for the earliest
    deadline, calls ``fire(due)`` for each due job in order and re-arms.

    ``fire`` runs inside the timer callback: it must not block (the engine's starts the bot's
    tick as a task, or skips it when the previous one still runs). Adding, removing, pausing or
    resuming jobs through the runner re-arms the timer when needed.
    """

    __slots__ = ("_armed_at", "_clock", "_fire", "_handle", "_rearming", "_running",
                 "scheduler")

    def __init__(self, scheduler: Scheduler, clock: Clock, fire: Callable[[Due], None]) -> None:
        self.scheduler = scheduler
        self._clock = clock
        self._fire = fire
        self._handle: TimerHandle | None = None
        self._armed_at: float | None = None
        self._running = False
        # A clock with timers that re-arm in place (SimClock.call_rearming) gets one timer for
        # the runner's life: no timer made and no clock read per wake-up.
        self._rearming: Callable[[float, Callable[[float, float], float | None]],
                                 TimerHandle] | None = getattr(clock, "call_rearming", None)

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        self._running = True
        self._arm()

    def stop(self) -> None:
        self._running = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._armed_at = None

    def add(self, key: Hashable, schedule: Schedule, *, offset: float = 0.0) -> Job:
        clock = self._clock
        job = self.scheduler.add(key, schedule, now=clock.monotonic(), wall=clock.now(),
                                 offset=offset)
        self._arm()
        return job

    def remove(self, key: Hashable) -> None:
        self.scheduler.remove(key)

    def _arm(self) -> None:
        if not self._running:
            return
        deadline = self.scheduler.next_deadline()
        if deadline is None or deadline == self._armed_at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = deadline
        if self._rearming is not None:
            self._handle = self._rearming(deadline, self._wake_in_place)
        else:
            self._handle = self._clock.call_at(deadline, self._wake)

    def _wake(self) -> None:
        armed = self._armed_at
        self._handle = None
        self._armed_at = None
        if not self._running:
            return
        clock = self._clock
        now = clock.monotonic()
        wall = clock.now()
        if armed is not None and now < armed:
            # asyncio fires a timer up to its clock resolution early: it fired for ``armed``
            wall += armed - now
            now = armed
        fire = self._fire
        for due in self.scheduler.pop_due(now, wall):
            fire(due)
        if not self._running:
            return
        # _arm, inline (a backtest wakes here on every simulated tick): no timer is armed now
        # (annotated: mypy takes the rest for unreachable after the second _running check)
        deadline: float | None = self.scheduler.next_deadline()
        if deadline is not None and self._handle is None:
            self._armed_at = deadline
            self._handle = clock.call_at(deadline, self._wake)
        elif deadline is not None:
            self._arm()

    def _wake_in_place(self, now: float, wall: float) -> float | None:
        """:meth:`_wake` for a timer that re-arms in place (``call_rearming``): the clock hands
        over the time, and the next deadline returned re-arms the same timer, where
        :meth:`_wake` would arm a new one (None: the runner armed another, or none)."""
        timer = self._handle
        self._handle = None
        self._armed_at = None
        if not self._running:
            return None
        fire = self._fire
        scheduler = self.scheduler
        for due in scheduler.pop_due(now, wall):
            fire(due)
        if not self._running:
            return None
        if self._handle is not None:  # a job added meanwhile armed a new timer
            self._arm()
            return None
        # Scheduler.next_deadline, inline: pop_due leaves a live entry at the heap's head,
        # unless a fired job changed the schedule (then the call drops the stale entries)
        heap = scheduler._heap
        if not heap:
            return None
        deadline: float | None
        deadline, _, job = heap[0]
        if job.removed or deadline != job.deadline:
            deadline = scheduler.next_deadline()
            if deadline is None:
                return None
        self._armed_at = deadline
        self._handle = timer
        return deadline
