"""``tickloop.client.reader.Reader``, the base of ``Stream`` and the bus's ``Subscription``: its
``__anext__`` (C in the compiled build) takes a buffered event exactly as the Python path does,
and hands everything else to the class's ``_anext_slow``. Both builds run this file."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tickloop.client.consumers import Consumer, Overflow
from tickloop.client.reader import NATIVE, PureReader, Reader, bind


class Probe(Reader):
    """A reader whose Python path says so (and, in the pure build, is its ``__anext__``)."""

    slow_calls: int

    def __init__(self, consumer: Consumer) -> None:
        bind(self, consumer)
        self.slow_calls = 0

    async def _anext_slow(self) -> Any:
        self.slow_calls += 1
        buffer = self._buffer
        if not buffer:
            return "slow"
        stats = self._stats
        stats.delivered += 1
        stats.high_water = max(stats.high_water, len(buffer))
        if self._inbox.paused and len(buffer) <= self._low:
            self._inbox._relieve()
        return self._popleft()

    if not NATIVE:
        __anext__ = _anext_slow


def consumer(policy: Overflow, maxsize: int = 8, low_water: int = 2) -> Consumer:
    return Consumer("test", policy=policy, maxsize=maxsize, low_water=low_water)


def test_the_build_has_its_reader() -> None:
    assert (Reader is PureReader) is not NATIVE


async def test_a_buffered_event_counts_and_backpressure_is_relieved_at_the_mark() -> None:
    c = consumer(Overflow.BACKPRESSURE)
    pressure: list[bool] = []
    c.on_pressure = lambda _c, paused: pressure.append(paused)
    probe = Probe(c)
    for i in range(12):
        c.push(i)
    assert c.paused and pressure == [True]
    taken = []
    while c.paused:
        taken.append(await anext(probe))
    assert len(c) == 2 and pressure == [True, False]  # relieved at low_water (2), not before
    taken += [await anext(probe), await anext(probe)]
    assert taken == list(range(12))
    assert c.stats.delivered == 12 and c.stats.high_water == 12
    assert await anext(probe) == "slow"  # nothing buffered: the Python path
    assert probe.slow_calls == (1 if NATIVE else 13)


async def test_the_ready_awaitable_behaves_as_an_awaitable() -> None:
    c = consumer(Overflow.CONFLATE)
    c._buffer.extend([(1, 2), ValueError("a value, not raised")])  # odd values come back as is
    probe = Probe(c)
    assert await probe.__anext__() == (1, 2)
    value = await asyncio.ensure_future(_await(probe.__anext__()))
    assert isinstance(value, ValueError)
    c._buffer.append("x")
    it = probe.__anext__().__await__()
    try:
        next(it)
    except StopIteration as stop:
        assert stop.value == "x"
    else:  # pragma: no cover - the awaitable must finish at once
        raise AssertionError("a buffered event's awaitable did not finish at once")


async def _await(awaitable: Any) -> Any:
    return await awaitable


class _DuckInbox:
    """Not a Consumer: the C reader looks its ``paused`` up instead of reading a slot."""

    def __init__(self) -> None:
        self.paused = True
        self.relieved = 0

    def _relieve(self) -> None:
        self.relieved += 1
        self.paused = False


async def test_paused_is_read_in_place_or_looked_up_and_an_unset_slot_is_an_error() -> None:
    c = consumer(Overflow.BACKPRESSURE)
    assert not hasattr(c, "__dict__")  # the fields the C paths read are slots
    probe = Probe(c)
    duck = _DuckInbox()
    probe._inbox = duck  # type: ignore[assignment]
    c._buffer.extend([1, 2])
    assert await anext(probe) == 1
    assert duck.relieved == 1 and not duck.paused  # looked up, and relieved at the mark
    probe._inbox = c
    del c.paused  # an unset slot: the lookup's AttributeError, not a crash
    with pytest.raises(AttributeError):
        await anext(probe)
