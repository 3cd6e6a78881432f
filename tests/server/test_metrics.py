"""The loop-lag monitor: samples from an injected clock, a bounded window, an owned task."""

from __future__ import annotations

import asyncio

import pytest

from tickloop.exceptions import ConfigError
from tickloop.server import LoopLagMonitor


def test_last_and_max_over_a_bounded_window() -> None:
    lag = LoopLagMonitor(window=3)
    assert (lag.last, lag.max) == (0.0, 0.0)
    for sample in (0.5, 0.1, -0.01, 0.2):  # a negative drift counts as no lag
        lag.record(sample)
    assert lag.last == 0.2 and lag.max == 0.2 and lag.samples == 4  # 0.5 left the window
    with pytest.raises(ConfigError) as err:
        LoopLagMonitor(interval=0)
    assert err.value.field == "lag_interval"


async def test_the_monitor_measures_with_its_clock_and_stops() -> None:
    ticks = [0.0, 1.25, 1.25, 2.5]  # each sleep of 0.001 "took" 1.25 s of this clock
    read = asyncio.Event()

    def clock() -> float:
        if len(ticks) == 1:
            read.set()  # two samples taken
            return ticks[0]
        return ticks.pop(0)

    lag = LoopLagMonitor(interval=0.001, clock=clock)
    lag.start()
    async with asyncio.timeout(5):
        await read.wait()
    await lag.aclose()
    assert lag.samples >= 2 and lag.max == pytest.approx(1.249)
    await lag.aclose()  # idempotent
