"""The venue-call timeout (``Engine._timed``): an eager executor's call that waits goes on in
the caller's task (``_TimedRest``), not a task of its own, and must be cut at the timeout as a
task would be: the future it waits on cancelled (the call sees CancelledError, its cleanup
runs), TimeoutError to the caller; a cancelled caller still gets CancelledError; a call that
ends in time leaves no timer behind. The other path (a task per call) must behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any

import pytest

from tickloop.exceptions import TimeoutError as VenueTimeout
from tickloop.runtime.clock import SimClock
from tickloop.runtime.engine import Engine


def _timed(eager: bool, clock: SimClock, aw: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    # Engine._timed reads only these attributes of its engine
    engine = SimpleNamespace(_eager=eager, clock=clock, call_timeout=5.0, venue="paper")
    return asyncio.ensure_future(Engine._timed(engine, aw, "place"))  # type: ignore[arg-type]


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("eager", [True, False])
async def test_a_call_waiting_on_a_future_is_cut_at_the_timeout(eager: bool) -> None:
    clock = SimClock()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def call() -> int:
        try:
            return await future
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("cleanup")

    task = _timed(eager, clock, call())
    await _turns()
    clock.advance(4.9)
    await _turns()
    assert not task.done()
    clock.advance(0.1)
    with pytest.raises(VenueTimeout, match=r"place took longer than 5\.0 s"):
        await task
    assert seen == ["cancelled", "cleanup"]
    assert future.cancelled()
    assert clock.pending == 0


@pytest.mark.parametrize("eager", [True, False])
async def test_a_call_that_only_yields_is_cut_at_its_next_step(eager: bool) -> None:
    clock = SimClock()
    steps = 0

    async def call() -> None:
        nonlocal steps
        while True:
            steps += 1
            await asyncio.sleep(0)  # a bare yield: no future to cancel

    task = _timed(eager, clock, call())
    await _turns()
    clock.advance(5.0)
    with pytest.raises(VenueTimeout):
        await task
    assert steps > 1
    assert clock.pending == 0


@pytest.mark.parametrize("eager", [True, False])
async def test_a_cancelled_caller_gets_cancelled_error_not_a_timeout(eager: bool) -> None:
    clock = SimClock()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    cleaned: list[bool] = []

    async def call() -> int:
        try:
            return await future
        finally:
            cleaned.append(True)

    task = _timed(eager, clock, call())
    await _turns()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True] and future.cancelled()
    assert clock.pending == 0
    clock.advance(10.0)  # the timer was dropped: nothing fires
    assert clock.fired == 0


@pytest.mark.parametrize("eager", [True, False])
async def test_a_call_ending_in_time_returns_and_leaves_no_timer(eager: bool) -> None:
    clock = SimClock()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def call() -> int:
        return await future + 1

    task = _timed(eager, clock, call())
    await _turns()
    clock.advance(1.0)
    future.set_result(41)
    assert await task == 42
    assert clock.pending == 0
    clock.advance(10.0)
    assert clock.fired == 0


async def test_an_eager_call_that_never_waits_returns_at_once() -> None:
    clock = SimClock()

    async def call() -> str:
        return "filled"

    engine = SimpleNamespace(_eager=True, clock=clock, call_timeout=5.0, venue="paper")
    coro = Engine._timed(engine, call(), "place")  # type: ignore[arg-type]
    with pytest.raises(StopIteration) as stop:
        coro.send(None)  # one step: no wait, no timer
    assert stop.value.value == "filled"
    assert clock.pending == 0


async def test_an_error_in_the_rest_of_an_eager_call_reaches_the_caller() -> None:
    clock = SimClock()
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def call() -> int:
        await future
        raise ValueError("rejected by the venue")

    task = _timed(True, clock, call())
    await _turns()
    future.set_result(0)
    with pytest.raises(ValueError, match="rejected by the venue"):
        await task
    assert clock.pending == 0
