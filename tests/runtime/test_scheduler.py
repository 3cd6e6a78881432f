"""The scheduler: fixed-rate intervals, cron on the wall clock, staggering, coalescing, all
deterministic under SimClock."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.exceptions import ConfigError
from tickloop.runtime.clock import SimClock
from tickloop.runtime.scheduler import (
    Cron,
    Due,
    Interval,
    Scheduler,
    ScheduleRunner,
    stagger,
)


def _run(jobs: list[tuple[str, float, float]], until: float) -> list[tuple[Hashable, float]]:
    clock = SimClock()
    runs: list[tuple[Hashable, float]] = []
    runner = ScheduleRunner(Scheduler(), clock, lambda d: runs.append((d.key, clock.monotonic())))
    runner.start()
    for key, every, offset in jobs:
        runner.add(key, Interval(every), offset=offset)
    clock.advance(until)
    return runs


def test_interval_fixed_rate_with_offsets() -> None:
    runs = _run([("a", 1.0, 0.0), ("b", 2.0, 0.5)], 4.0)
    assert runs == [("a", 0.0), ("b", 0.5), ("a", 1.0), ("a", 2.0), ("b", 2.5), ("a", 3.0),
                    ("a", 4.0)]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.25, 0.5, 1.0, 3.0]),
                          st.sampled_from([0.0, 0.1, 0.7])), min_size=1, max_size=6),
       st.floats(min_value=1.0, max_value=20.0))
def test_same_schedule_same_runs(jobs: list[tuple[float, float]], until: float) -> None:
    spec = [(f"j{i}", every, offset) for i, (every, offset) in enumerate(jobs)]
    first = _run(spec, until)
    assert first == _run(spec, until)
    times = [t for _, t in first]
    assert times == sorted(times)
    for key, every, offset in spec:
        mine = [t for k, t in first if k == key]
        expected = []
        t = offset
        while t <= until:  # the same additions the scheduler makes: exact comparison
            expected.append(t)
            t += every
        assert mine == pytest.approx(expected)


def test_late_interval_is_coalesced_and_counted() -> None:
    sched = Scheduler()
    sched.add("a", Interval(1.0), now=0.0, wall=0.0)
    assert sched.pop_due(0.0, 0.0) == [Due("a", 0.0, 0)]
    # found 3.5 s late: one run, two coalesced, back on the grid at 4.0
    assert sched.pop_due(3.5, 3.5) == [Due("a", 1.0, 2)]
    assert sched.next_deadline() == 4.0
    assert sched.job("a").missed == 2
    assert sched.pop_due(3.9, 3.9) == []


def test_paused_job_keeps_its_grid() -> None:
    sched = Scheduler()
    sched.add("a", Interval(1.0), now=0.0, wall=0.0)
    sched.pause("a")
    assert sched.pop_due(2.0, 2.0) == []
    assert sched.job("a").skipped == 3
    sched.resume("a")
    assert sched.pop_due(3.0, 3.0) == [Due("a", 3.0, 0)]


def test_cron_runs_on_wall_clock_instants() -> None:
    clock = SimClock(epoch=1_767_225_600.0)  # 2026-01-01T00:00:00Z
    walls: list[float] = []
    runner = ScheduleRunner(Scheduler(), clock, lambda d: walls.append(clock.now()))
    runner.start()
    runner.add("c", Cron("*/15 * * * * */10"))  # seconds field: every 10 s, minutes */15
    clock.advance(35.0)
    assert [w - 1_767_225_600.0 for w in walls] == [10.0, 20.0, 30.0]
    runner.add("m", Cron("* * * * *"))
    clock.advance(60.0)
    assert 1_767_225_660.0 in walls


def test_late_cron_is_coalesced() -> None:
    sched = Scheduler()
    cron = Cron("* * * * *")
    sched.add("c", cron, now=0.0, wall=0.0)
    assert sched.next_deadline() == 60.0
    assert sched.pop_due(300.5, 300.5) == [Due("c", 60.0, 4)]
    assert sched.next_deadline() == pytest.approx(360.0)


def test_removed_job_does_not_run_and_stop_disarms() -> None:
    clock = SimClock()
    runs: list[Hashable] = []
    runner = ScheduleRunner(Scheduler(), clock, lambda d: runs.append(d.key))
    runner.start()
    runner.add("a", Interval(1.0), offset=1.0)
    runner.add("b", Interval(1.0), offset=1.0)
    runner.remove("a")
    clock.advance(1.0)
    assert runs == ["b"]
    runner.stop()
    clock.advance(5.0)
    assert runs == ["b"]


def test_stagger_spreads_evenly() -> None:
    assert stagger(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert stagger(0, 2.0) == []
    with pytest.raises(ConfigError):
        stagger(3, -1.0)


def test_bad_schedules_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        Interval(0)
    assert err.value.field == "every"
    with pytest.raises(ConfigError) as err:
        Cron("every minute")
    assert err.value.field == "cron"
    sched = Scheduler()
    sched.add("a", Interval(1.0), now=0.0, wall=0.0)
    with pytest.raises(ConfigError):
        sched.add("a", Interval(1.0), now=0.0, wall=0.0)
