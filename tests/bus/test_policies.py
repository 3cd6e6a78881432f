"""Property tests of the four overflow policies against a reference model.

A random program of publishes (single and batched, over a few topics) and reads (by ``async
for`` and ``get_nowait``) runs against several subscriptions at once, one per policy, plus one
that never reads. Each subscription must deliver exactly what its model says, in order: that is
"order preserved", "drop counts exact", "lossless never loses" and "conflate keeps the latest
per key", and that a subscriber that never reads changes nothing for the others.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.bus import Bus, Event, Policy, Subscription

from .helpers import trade

TOPICS = ["trade.sim.A", "trade.sim.B", "trade.sim.C"]


@dataclass
class Model:
    policy: Policy
    maxsize: int
    buffer: list[tuple[str, int]] = field(default_factory=list)
    latest: OrderedDict[str, int] = field(default_factory=OrderedDict)
    dropped: int = 0
    conflated: int = 0

    def push(self, topic: str, n: int) -> None:
        if self.policy is Policy.DROP_NEWEST:
            if len(self.buffer) >= self.maxsize:
                self.dropped += 1
            else:
                self.buffer.append((topic, n))
        elif self.policy is Policy.DROP_OLDEST:
            if len(self.buffer) >= self.maxsize:
                self.buffer.pop(0)
                self.dropped += 1
            self.buffer.append((topic, n))
        elif self.policy is Policy.LOSSLESS:
            self.buffer.append((topic, n))
        else:
            if topic in self.latest:
                del self.latest[topic]
                self.conflated += 1
            elif len(self.latest) >= self.maxsize:
                self.latest.popitem(last=False)
                self.dropped += 1
            self.latest[topic] = n

    def take(self, k: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for _ in range(k):
            if self.buffer:
                out.append(self.buffer.pop(0))
            elif self.latest:
                topic, n = self.latest.popitem(last=False)
                out.append((topic, n))
            else:
                break
        return out


publish_op = st.tuples(st.just("pub"), st.sampled_from(TOPICS), st.integers(1, 12))
batch_op = st.tuples(st.just("many"), st.sampled_from(TOPICS), st.integers(0, 30))
read_op = st.tuples(st.just("read"), st.sampled_from(["anext", "nowait"]), st.integers(0, 15))
programs = st.lists(st.one_of(publish_op, batch_op, read_op), min_size=1, max_size=40)


async def _take(sub: Subscription, how: str, k: int, model_len: int) -> list[Event]:
    out: list[Event] = []
    for _ in range(min(k, model_len)):
        if how == "anext":
            out.append(await anext(sub))
        else:
            event = sub.get_nowait()
            assert event is not None
            out.append(event)
    return out


async def _run(program: list[tuple[str, str, int]], maxsize: int) -> None:
    async with Bus() as bus:
        subs = {p: bus.subscribe("trade.*", maxsize=maxsize, policy=p) for p in Policy}
        never = bus.subscribe("*", maxsize=1, policy="drop_newest")  # never reads
        models = {p: Model(p, maxsize) for p in Policy}
        seq = 0
        for op, arg, n in program:
            if op == "pub":
                for _ in range(n):
                    bus.publish(arg, trade(seq))
                    for m in models.values():
                        m.push(arg, seq)
                    seq += 1
            elif op == "many":
                bus.publish_many(arg, [trade(seq + i) for i in range(n)])
                for i in range(n):
                    for m in models.values():
                        m.push(arg, seq + i)
                seq += n
            else:
                for p, sub in subs.items():
                    model = models[p]
                    pending = len(model.buffer) + len(model.latest)
                    got = await _take(sub, arg, n, pending)
                    want = model.take(n)
                    assert [(e.topic, e.payload.id) for e in got] == want, p
        for p, sub in subs.items():
            model = models[p]
            assert len(sub) == len(model.buffer) + len(model.latest), p
            rest = await _take(sub, "nowait", 10**9, len(sub))
            assert [(e.topic, e.payload.id) for e in rest] == model.take(10**9), p
            assert sub.dropped == model.dropped, p
            assert sub.conflated == model.conflated, p
            assert sub.get_nowait() is None
        assert subs[Policy.LOSSLESS].dropped == 0
        assert never.dropped == max(0, seq - 1)


@settings(max_examples=150, deadline=None)
@given(programs, st.integers(1, 8))
def test_every_policy_delivers_exactly_what_its_model_says(
    program: list[tuple[str, str, int]], maxsize: int
) -> None:
    asyncio.run(asyncio.wait_for(_run(program, maxsize), 5))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=200), st.integers(1, 6))
def test_conflate_keeps_the_latest_per_key(keys: list[int], maxsize: int) -> None:
    async def run() -> None:
        async with Bus() as bus:
            sub = bus.subscribe("*", policy="conflate", maxsize=maxsize,
                                key=lambda e: e.payload.id % 6)
            for i, k in enumerate(keys):
                bus.publish("t", trade(i * 6 + k))
            got = [e.payload.id for e in await _take(sub, "nowait", 10**9, len(sub))]
            latest: dict[int, int] = {}
            for i, k in enumerate(keys):
                latest.pop(k, None)
                latest[k] = i * 6 + k
            want = list(latest.values())[-maxsize:]
            assert got == want
            assert sub.dropped + sub.conflated + len(got) == len(keys)

    asyncio.run(run())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=20), st.integers(1, 16))
def test_lossless_loses_nothing_and_presses_only_above_its_mark(
    bursts: list[int], maxsize: int
) -> None:
    async def run() -> None:
        async with Bus() as bus:
            sub = bus.subscribe("*", policy="lossless", maxsize=maxsize)
            seq = 0
            got: list[int] = []
            for burst in bursts:
                for _ in range(burst):
                    bus.publish("t", trade(seq))
                    seq += 1
                assert bus.writable is (len(sub) < maxsize and not sub.paused)
                # drain half, by async for
                for _ in range(len(sub) // 2):
                    got.append((await anext(sub)).payload.id)
                if not sub.paused:
                    assert bus.writable
            while len(sub):
                got.append((await anext(sub)).payload.id)
            assert got == list(range(seq)) and sub.dropped == 0 and bus.writable

    asyncio.run(run())
