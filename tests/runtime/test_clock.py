"""SimClock fires timers in order without sleeping; LoopClock is the loop's clock."""

from __future__ import annotations

import asyncio

import pytest

from tickloop.exceptions import ConfigError
from tickloop.runtime.clock import Clock, LoopClock, SimClock


def test_sim_clock_fires_in_deadline_then_schedule_order() -> None:
    clock = SimClock(10.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(12.0, lambda: seen.append(("b", clock.monotonic())))
    clock.call_at(11.0, lambda: seen.append(("a", clock.monotonic())))
    clock.call_at(12.0, lambda: seen.append(("c", clock.monotonic())))
    assert clock.advance(1.5) == 1
    assert seen == [("a", 11.0)]
    assert clock.monotonic() == 11.5
    clock.advance(1.0)
    assert seen == [("a", 11.0), ("b", 12.0), ("c", 12.0)]


def test_sim_clock_timer_scheduled_by_a_timer_fires_in_the_same_advance() -> None:
    clock = SimClock()
    seen: list[float] = []

    def tick() -> None:
        seen.append(clock.monotonic())
        if len(seen) < 5:
            clock.call_at(clock.monotonic() + 1.0, tick)

    clock.call_at(1.0, tick)
    clock.advance(100.0)
    assert seen == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert clock.monotonic() == 100.0


def test_sim_clock_cancel_and_past_timers() -> None:
    clock = SimClock(5.0)
    seen: list[str] = []
    handle = clock.call_at(6.0, seen.append, "cancelled")
    clock.call_at(1.0, seen.append, "past")  # fires at the current time, never back in time
    handle.cancel()
    assert clock.pending == 1
    clock.advance(2.0)
    assert seen == ["past"]
    assert clock.next_deadline() is None
    with pytest.raises(ConfigError):
        clock.advance(-1.0)


def test_sim_clock_wall_reading_follows_virtual_time() -> None:
    clock = SimClock(epoch=1_000.0)
    clock.advance(2.5)
    assert clock.now() == 1_002.5
    assert clock.now_ns() == 1_002_500_000_000


async def test_sim_clock_sleep_and_run_for_without_real_time() -> None:
    clock = SimClock()
    loop = asyncio.get_running_loop()
    woke: list[float] = []

    async def sleeper() -> None:
        for _ in range(3):
            await clock.sleep(10.0)
            woke.append(clock.monotonic())

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    real = loop.time()
    await clock.run_for(100.0)
    await task
    assert woke == [10.0, 20.0, 30.0]
    assert loop.time() - real < 5.0  # 100 virtual seconds, no real sleeping


async def test_loop_clock_is_the_loop_clock() -> None:
    clock: Clock = LoopClock()
    loop = asyncio.get_running_loop()
    assert abs(clock.monotonic() - loop.time()) < 1.0
    fired = loop.create_future()
    clock.call_at(clock.monotonic(), fired.set_result, True)
    assert await fired is True
    await clock.sleep(0)
