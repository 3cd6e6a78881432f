"""A ScheduleRunner on a SimClock re-arms one timer in place (``SimClock.call_rearming``); on
any other clock it arms a new timer per wake-up (``call_at``). Both must give the same runs, in
the same order among the clock's other timers, whatever the jobs do meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.runtime.clock import SimClock, TimerHandle
from tickloop.runtime.scheduler import Due, Interval, Scheduler, ScheduleRunner


class _PlainClock:
    """A SimClock seen through the Clock protocol only: no ``call_rearming``."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def now(self) -> float:
        return self._clock.now()

    def now_ns(self) -> int:
        return self._clock.now_ns()

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._clock.call_at(when, callback, *args)

    async def sleep(self, delay: float) -> None:
        await self._clock.sleep(delay)


#: What a job does when it runs: nothing, remove a job, add a job, pause or resume one.
_ACTION = st.tuples(
    st.sampled_from(["none", "remove", "add", "pause", "resume"]), st.integers(0, 3)
)
_JOBS = st.lists(
    st.tuples(st.sampled_from([0.5, 1.0, 1, 2.0, 3.0]), st.sampled_from([0.0, 0.25, 1.0]), _ACTION),
    min_size=1,
    max_size=4,
)
#: How far each advance goes (some jump several intervals: late runs are coalesced).
_STEPS = st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.5, 7.0]), min_size=1, max_size=12)


def _trace(
    jobs: list[tuple[float, float, tuple[str, int]]], steps: list[float], rearming: bool
) -> list[tuple[Any, ...]]:
    sim = SimClock()
    clock: Any = sim if rearming else _PlainClock(sim)
    out: list[tuple[Any, ...]] = []
    runner: ScheduleRunner

    def fire(due: Due) -> None:
        out.append(("run", due.key, due.scheduled, due.missed, sim.monotonic()))
        if not isinstance(due.key, int):
            return
        action, target = jobs[due.key][2]
        scheduler = runner.scheduler
        if action == "remove" and target in scheduler:
            runner.remove(target)
        elif action == "add" and f"x{target}" not in scheduler:
            runner.add(f"x{target}", Interval(1.5), offset=0.0)
        elif action == "pause" and target in scheduler:
            scheduler.pause(target)
        elif action == "resume" and target in scheduler:
            scheduler.resume(target)

    runner = ScheduleRunner(Scheduler(), clock, fire)
    runner.start()
    for key, (every, offset, _) in enumerate(jobs):
        runner.add(key, Interval(every), offset=offset)

    def other(label: float) -> None:  # a plain timer among the runner's
        out.append(("timer", label, sim.monotonic()))
        sim.call_at(sim.monotonic() + 1.0, other, label + 1.0)

    sim.call_at(1.0, other, 1.0)
    for step in steps:
        sim.advance(step)
        # the timers fired and pending too: a stale deadline re-armed would be an extra wake-up
        out.append(("at", sim.monotonic(), sim.fired, sim.pending))
    runner.stop()
    sim.advance(5.0)
    out.append(("stopped", sim.monotonic()))
    return out


@settings(max_examples=150, deadline=None)
@given(_JOBS, _STEPS)
def test_rearming_timer_runs_as_new_timers_do(
    jobs: list[tuple[float, float, tuple[str, int]]], steps: list[float]
) -> None:
    assert _trace(jobs, steps, rearming=True) == _trace(jobs, steps, rearming=False)


def test_rearming_keeps_one_timer() -> None:
    clock = SimClock()
    runs: list[float] = []
    runner = ScheduleRunner(Scheduler(), clock, lambda d: runs.append(d.scheduled))
    runner.start()
    runner.add("a", Interval(1.0))
    clock.advance(100.0)
    assert runs == [float(i) for i in range(101)]
    assert clock.pending == 1  # the same timer, re-armed: none left behind


def test_a_rearming_timer_cancelled_by_its_callback_ends() -> None:
    clock = SimClock()
    calls: list[float] = []
    handle: TimerHandle | None = None

    def wake(now: float, wall: float) -> float | None:
        calls.append(now)
        if len(calls) == 3:
            assert handle is not None
            handle.cancel()
        return now + 1.0

    handle = clock.call_rearming(1.0, wake)
    clock.advance(10.0)
    assert calls == [1.0, 2.0, 3.0]
    assert clock.pending == 0


def test_a_rearming_timer_keeps_its_place_among_timers_due_with_it() -> None:
    clock = SimClock()
    order: list[str] = []
    clock.call_rearming(1.0, lambda now, wall: (order.append(f"r{now:g}"), now + 1.0)[1])
    clock.call_at(2.0, order.append, "a2")  # armed before the re-arm for 2.0: runs first
    clock.advance(3.0)
    assert order == ["r1", "a2", "r2", "r3"]
