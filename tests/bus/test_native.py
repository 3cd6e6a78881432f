"""The in-process bus's C paths: ``tickloop.bus._bus_native.Publisher`` (``bus.publish`` while
every subscription is a plain reader) and ``tickloop.client._reader_native.Reader`` (``async
for`` over a subscription) deliver exactly what the Python paths deliver, count the same, and
hand every other case over.

Both builds run this file: the pure leg checks the same model with the Python paths. Every
program also runs on a bus that cannot use the C publisher (custom clocks), and the two must
agree on everything but the timestamps.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop._native import pure_requested
from tickloop.bus import Bus, Event, Policy, Subscription, local
from tickloop.client import reader
from tickloop.exceptions import BusError, ConfigError

from .helpers import trade

TOPICS = ["trade.sim.A", "trade.sim.B", "quote.sim.A"]
PATTERNS = ["trade.*", "*.sim.A", "*", "trade.sim.B"]


def test_this_build_has_its_paths() -> None:
    if pure_requested():
        assert not local.NATIVE and not reader.NATIVE
        assert reader.Reader is reader.PureReader and Subscription.__anext__ is not None
        return
    if not (local.NATIVE and reader.NATIVE):
        if os.environ.get("CI") == "true":
            pytest.fail(
                "the install did not build tickloop.bus._bus_native and "
                "tickloop.client._reader_native"
            )
        pytest.skip("no C modules _bus_native, _reader_native in this checkout")
    publish = Bus().publish
    assert type(publish).__name__ == "Publisher"
    # introspection sees the Python method's signature
    assert str(inspect.signature(publish)) == "(topic: 'str', payload: 'Any') -> 'Event'"
    assert Subscription.__mro__[1].__module__ == "tickloop.client._reader_native"


def python_bus() -> Bus:
    """A bus that never takes the C publisher (given clocks), the reference."""
    return Bus(wall_clock=time.time_ns, mono_clock=time.monotonic_ns)


publish_op = st.tuples(st.just("pub"), st.sampled_from(TOPICS), st.integers(1, 9))
many_op = st.tuples(st.just("many"), st.sampled_from(TOPICS), st.integers(0, 12))
read_op = st.tuples(st.just("read"), st.integers(0, 3), st.integers(0, 12))
close_op = st.tuples(st.just("close"), st.integers(0, 3), st.just(0))
programs = st.lists(st.one_of(publish_op, many_op, read_op, close_op), min_size=1, max_size=40)


async def run(bus: Bus, program: list[tuple[str, Any, int]], maxsize: int) -> dict[str, Any]:
    """Runs ``program`` on plain readers; returns everything observable but the clocks."""
    out: dict[str, Any] = {"reads": [], "published": []}
    async with bus:
        subs = [bus.subscribe(p, maxsize=maxsize) for p in PATTERNS]
        seq = 0
        for op, arg, n in program:
            if op == "pub":
                for _ in range(n):
                    event = bus.publish(arg, trade(seq))
                    out["published"].append(
                        (event.type, event.topic, event.id, event.source, event.payload.id)
                    )
                    seq += 1
            elif op == "many":
                events = bus.publish_many(arg, [trade(seq + i) for i in range(n)])
                out["published"].extend(
                    (e.type, e.topic, e.id, e.source, e.payload.id) for e in events
                )
                seq += n
            elif op == "read":
                sub = subs[arg]
                got = []
                for _ in range(min(n, len(sub))):
                    event = await anext(sub)  # what ``async for`` calls
                    got.append((event.topic, event.id, event.payload.id))
                out["reads"].append((arg, got))
            else:
                subs[arg].close()
        out["final"] = [
            (
                len(s),
                s.dropped,
                s.delivered,
                s.max_depth,
                s.closed,
                [(e.topic, e.id) for e in [s.get_nowait() for _ in range(len(s))] if e],
            )
            for s in subs
        ]
        out["bus_published"] = bus.published
        out["c_publish"] = type(bus.publish).__name__ == "Publisher"
        fast = getattr(bus.publish, "fast_calls", 0)
    out["fast_calls"] = fast
    return out


@settings(max_examples=120, deadline=None)
@given(programs, st.integers(1, 6))
def test_c_paths_deliver_and_count_what_the_python_paths_do(
    program: list[tuple[str, Any, int]], maxsize: int
) -> None:
    name = "same-source"
    c = asyncio.run(asyncio.wait_for(run(Bus(name=name), program, maxsize), 10))
    py = asyncio.run(asyncio.wait_for(run(python_bus_named(name), program, maxsize), 10))
    assert not py["c_publish"]
    assert c["c_publish"] is local.NATIVE
    fast = c.pop("fast_calls")
    py.pop("fast_calls")
    c.pop("c_publish")
    py.pop("c_publish")
    assert c == py
    # the C publisher took every publish but each topic's first (which builds the route) and
    # those after a close (which rebuilds them): never vacuous
    singles = sum(n for op, _, n in program if op == "pub")
    if local.NATIVE and singles > len(TOPICS) + sum(op == "close" for op, _, _ in program):
        assert fast > 0


def python_bus_named(name: str) -> Bus:
    return Bus(name=name, wall_clock=time.time_ns, mono_clock=time.monotonic_ns)


async def test_the_c_publisher_is_used_only_while_every_subscription_is_a_plain_reader() -> None:
    async with Bus() as bus:
        reader = bus.subscribe("trade.*")
        assert (type(bus.publish).__name__ == "Publisher") is local.NATIVE
        seen: list[Event] = []
        handler = bus.subscribe("trade.*", handler=seen.append)
        assert type(bus.publish).__name__ == "method"  # a handler: the Python method
        bus.publish("trade.sim.A", trade(1))
        handler.close()
        assert (type(bus.publish).__name__ == "Publisher") is local.NATIVE
        lossless = bus.subscribe("trade.*", policy=Policy.LOSSLESS)
        assert type(bus.publish).__name__ == "method"
        lossless.close()
        bus.publish("trade.sim.A", trade(2))
        bus.publish("trade.sim.A", trade(3))
        assert [e.payload.id for e in seen] == [1]
        assert [(await anext(reader)).payload.id for _ in range(3)] == [1, 2, 3]
        assert reader.delivered == 3 and reader.max_depth == 3
        assert bus.published == 3
        assert bus.stats()["published"] == 3


async def test_the_c_publisher_hands_over_what_it_does_not_take() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("*", maxsize=2)
        with pytest.raises(ConfigError, match="not an event payload"):
            bus.publish("x.y", object())  # an unregistered payload: the Python path's error
        with pytest.raises(ConfigError, match="topic"):
            bus.publish("", trade(0))
        with pytest.raises(TypeError):
            bus.publish("x.y")  # type: ignore[call-arg]
        bus.publish(topic="x.y", payload=trade(1))  # keywords: the Python path
        for i in range(2, 6):
            bus.publish("x.y", trade(i))
        assert len(sub) == 2 and sub.dropped == 3  # a full buffer counts every drop
        assert [e.payload.id for e in [sub.get_nowait(), sub.get_nowait()] if e] == [1, 2]
        ids = [bus.publish("x.y", trade(9)).id, bus.publish("x.z", trade(9)).id]
        assert ids[1] == ids[0] + 1  # one id counter, whichever path
    with pytest.raises(BusError, match="closed"):
        bus.publish("x.y", trade(10))


async def test_a_waiting_reader_is_woken_by_the_c_publisher() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("trade.*")
        got: list[int] = []

        async def read() -> None:
            async for event in sub:
                got.append(event.payload.id)
                if len(got) == 250:
                    return

        task = asyncio.ensure_future(read())
        for burst in range(5):
            await asyncio.sleep(0)  # the reader waits on an empty buffer
            for i in range(50):
                bus.publish("trade.sim.A", trade(burst * 50 + i))
        await asyncio.wait_for(task, 10)
        assert got == list(range(250))
        assert sub.delivered == 250 and sub.dropped == 0


async def test_the_c_reader_relieves_a_lossless_subscription_at_its_low_mark() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("trade.*", policy=Policy.LOSSLESS, maxsize=8, low_water=2)
        for i in range(12):
            bus.publish("trade.sim.A", trade(i))
        assert sub.paused
        taken = []
        while sub.paused:
            taken.append((await anext(sub)).payload.id)
        assert len(sub) == 2  # resumed at the low mark (low_water), not before
        taken += [(await anext(sub)).payload.id for _ in range(2)]
        assert taken == list(range(12)) and sub.delivered == 12 and sub.dropped == 0


async def test_the_awaitable_of_a_buffered_event_is_an_ordinary_one() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("trade.*")
        bus.publish("trade.sim.A", trade(1))
        bus.publish("trade.sim.A", trade(2))
        bus.publish("trade.sim.A", trade(3))
        step = sub.__anext__()
        assert (await step).payload.id == 1
        assert (await asyncio.ensure_future(_await(sub.__anext__()))).payload.id == 2
        it = sub.__anext__().__await__()  # driven by hand, as a generator-based runner would
        with pytest.raises(StopIteration) as stop:
            next(it)
        assert stop.value.value.payload.id == 3
        sub.close()
        with pytest.raises(StopAsyncIteration):
            await anext(sub)


async def _await(awaitable: Any) -> Any:
    return await awaitable
