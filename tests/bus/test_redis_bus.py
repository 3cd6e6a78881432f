"""RedisBus in one process against a real redis-server: the fixed-name examples, groups that
resume, fan-out tails, dedupe, acknowledgements, errors at the boundary."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from tickloop.bus import Bus, Event, register_event_type
from tickloop.bus.redis import RedisBus, redact
from tickloop.exceptions import BusError, ConfigError, NetworkError
from tickloop.models import Side, Trade

from .redis_server import free_port


def trade(i: int, symbol: str = "BTC-USD") -> Trade:
    return Trade(venue="sim", symbol=symbol, id=i, price=Decimal("100.10"),
                 size=Decimal("0.500"), side=Side.BUY, ts=1_700_000_000_000_000_000 + i)


async def until(condition: Any, what: str, limit: float = 15.0) -> None:
    """Poll ``condition``; the limit only stops a broken run from hanging (not a timing goal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def take(sub: Any, n: int) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(15):
        async for ev in sub:
            out.append(ev)
            if len(out) == n:
                break
    return out


async def pending_count(url: str, stream: str, group: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.xpending(stream, group)
        return int(info["pending"])
    finally:
        await client.aclose()


async def test_fixed_names_group_and_tail(redis_url: str) -> None:
    async with Bus(redis_url, name="t1") as bus:
        assert isinstance(bus, RedisBus)
        tail = bus.subscribe("trade.*", maxsize=1000, policy="drop_newest")
        group = bus.subscribe("trade.*", group="store")
        everything = bus.subscribe("*", group="all")
        assert await bus.ready()
        sent = [bus.publish("trade.sim.BTC-USD", trade(i)) for i in range(1, 51)]
        other = bus.publish("order.sim", trade(99))
        assert isinstance(sent[0], Event) and sent[0].source.startswith("t1.")
        got = await take(group, 50)
        assert [(e.topic, e.id, e.payload) for e in got] == [
            (e.topic, e.id, e.payload) for e in sent
        ]
        assert got[0].payload.price == Decimal("100.10")  # the venue's digits survive
        seen = await take(everything, 51)
        assert {e.id for e in seen} == {e.id for e in [*sent, other]}
        live = await take(tail, 50)
        assert [e.id for e in live] == [e.id for e in sent]
        assert tail.dropped == 0
        assert await bus.flush(within=10)
        # The last event was taken (the loop broke after it): closing the subscription says
        # it was consumed, and it is acknowledged.
        group.close()
    assert await pending_count(redis_url, "tickloop:trade", "store|trade.*") == 0


async def test_group_made_again_resumes_after_last_consumed(redis_url: str) -> None:
    async with Bus(redis_url, name="resumer", claim_idle=0.2) as bus:
        sub = bus.subscribe("trade.*", group="store")
        for i in range(1, 11):
            bus.publish("trade.sim.BTC-USD", trade(i))
        first = await take(sub, 4)
        sub.close()
        for i in range(11, 21):
            bus.publish("trade.sim.BTC-USD", trade(i))
        assert await bus.flush(within=10)
        again = bus.subscribe("trade.*", group="store")
        rest = await take(again, 16)
    ids = [e.payload.id for e in first] + [e.payload.id for e in rest]
    assert ids == list(range(1, 21))


async def test_two_groups_each_see_everything_and_a_late_group_sees_the_stream(
    redis_url: str,
) -> None:
    async with Bus(redis_url) as pub:
        for i in range(1, 21):
            pub.publish("trade.sim.ETH-USD", trade(i, "ETH-USD"))
        assert await pub.flush(within=10)
    # A new group starts from what the stream holds (group_start="earliest").
    async with Bus(redis_url) as bus:
        a = bus.subscribe("trade.*", group="a")
        b = bus.subscribe("trade.sim.*", group="b")
        assert [e.payload.id for e in await take(a, 20)] == list(range(1, 21))
        assert [e.payload.id for e in await take(b, 20)] == list(range(1, 21))
    async with Bus(redis_url, group_start="latest") as bus:
        late = bus.subscribe("trade.*", group="late")
        # "latest": what was there before the group exists is not its business.
        assert await bus.ready()
        bus.publish("trade.sim.ETH-USD", trade(21, "ETH-USD"))
        assert [e.payload.id for e in await take(late, 1)] == [21]


async def test_pattern_filters_topics_within_one_stream_and_acks_the_others(
    redis_url: str,
) -> None:
    async with Bus(redis_url) as bus:
        btc = bus.subscribe("trade.sim.BTC-USD", group="btc")
        for i in range(1, 31):
            bus.publish("trade.sim.BTC-USD" if i % 3 == 0 else "trade.sim.ETH-USD", trade(i))
        got = await take(btc, 10)
        assert [e.payload.id for e in got] == list(range(3, 31, 3))
        assert bus.stats()["redis"]["readers"][btc.name]["skipped"] == 20
        btc.close()  # the last one taken is consumed
        await until(lambda: bus.stats()["redis"]["acks_pending"] == 0, "acks sent")
    assert await pending_count(redis_url, "tickloop:trade", "btc|trade.sim.BTC-USD") == 0


async def test_wildcard_group_discovers_new_streams(redis_url: str) -> None:
    async with Bus(redis_url, discover_interval=0.05) as bus:
        sub = bus.subscribe("*", group="all")
        bus.publish("trade.sim.BTC-USD", trade(1))
        first = await take(sub, 1)
        bus.publish("candle.sim.BTC-USD.1m", trade(2))  # a stream nobody read before
        bus.publish("fill.sim", trade(3))
        more = await take(sub, 2)
    assert [e.payload.id for e in first + more] == [1, 2, 3]
    assert sorted(e.topic for e in more) == ["candle.sim.BTC-USD.1m", "fill.sim"]


async def test_duplicate_entries_reach_handlers_once_and_are_acked(redis_url: str) -> None:
    async with Bus(redis_url, name="dup") as bus:
        handled: list[int] = []
        sub = bus.subscribe("trade.*", group="g", handler=lambda e: handled.append(e.id))
        event = bus.publish("trade.sim.BTC-USD", trade(1))
        await until(lambda: handled == [event.id], "first copy handled")
        # The same event written again (what a resent batch leaves behind).
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.xadd("tickloop:trade", {"e": bus.codec.encode(event)})
        finally:
            await client.aclose()
        bus.publish("trade.sim.BTC-USD", trade(2))
        await until(lambda: len(handled) == 2, "second event handled")
        await until(lambda: bus.reader_stats(sub.inbox)["duplicates"] == 1, "duplicate seen")
        assert handled == [event.id, event.id + 1]
        await until(lambda: bus.stats()["redis"]["acks_pending"] == 0, "acks sent")
    assert await pending_count(redis_url, "tickloop:trade", "g|trade.*") == 0


async def test_failing_handler_is_retried_then_given_up(redis_url: str) -> None:
    calls: list[int] = []

    def flaky(ev: Event) -> None:
        calls.append(ev.payload.id)
        if ev.payload.id == 2:
            raise ValueError("no")

    async with Bus(redis_url, claim_idle=0.1, max_deliveries=3) as bus:
        reports = bus.subscribe("bus.handler_failed.*")
        bus.subscribe("trade.*", group="g", handler=flaky, name="flaky")
        for i in (1, 2, 3):
            bus.publish("trade.sim.BTC-USD", trade(i))
        await until(lambda: calls.count(2) == 3, "three deliveries of the failing event")
        await until(lambda: bus.given_up == 1, "given up")
        await until(lambda: bus.stats()["redis"]["acks_pending"] == 0, "acks sent")
        texts = []
        while (ev := reports.get_nowait()) is not None:
            texts.append(ev.payload.handler)
        assert "<given up after 3 deliveries>" in texts
        dead = bus.dead_letters("g", "trade.*")
    assert calls.count(1) == 1 and calls.count(3) == 1
    assert await pending_count(redis_url, "tickloop:trade", "g|trade.*") == 0
    client = aioredis.Redis.from_url(redis_url)
    try:
        kept = await client.xrange(dead)
        registered = await client.smembers("tickloop:_streams")
    finally:
        await client.aclose()
    assert [bus.codec.entry(f[b"e"]).id for _, f in kept] == [2]  # the event, as published
    assert registered == {b"tickloop:trade", b"tickloop:bus"}  # dead letters are not discovered


class Note(msgspec.Struct, frozen=True):
    text: str
    n: int


async def test_user_types_and_undecodable_entries(redis_url: str) -> None:
    register_event_type("test.redis-note", Note)
    async with Bus(redis_url) as bus:
        failures = bus.subscribe("bus.handler_failed.*")
        sub = bus.subscribe("note.*", group="n", name="notes")
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.xadd("tickloop:note", {"e": b"\x93not an envelope"})
        finally:
            await client.aclose()
        bus.publish("note.x", Note(text="hi", n=1))
        got = await take(sub, 1)
        assert got[0].payload == Note(text="hi", n=1) and got[0].type == "test.redis-note"
        await until(lambda: bus.undecodable == 1, "undecodable counted")
        report = failures.get_nowait()
        assert report is not None and report.payload.handler == "<decode>"


async def test_errors_at_the_boundary() -> None:
    port = free_port()
    bus = Bus(f"redis://:secret@127.0.0.1:{port}/0", connect_timeout=1.0)
    with pytest.raises(NetworkError) as info:
        await bus.start()
    assert "secret" not in str(info.value) and "***" in str(info.value)
    assert redact("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    with pytest.raises(ConfigError) as cfg:
        Bus("redis://127.0.0.1:1/0", batch_size=10, buffer_size=5)
    assert cfg.value.field == "buffer_size"
    with pytest.raises(ConfigError) as cfg:
        Bus("redis://127.0.0.1:1/0", group_start="middle")
    assert cfg.value.field == "group_start"


async def test_closed_bus_refuses_to_publish(redis_url: str) -> None:
    bus = Bus(redis_url)
    async with bus:
        bus.publish("trade.sim.BTC-USD", trade(1))
    with pytest.raises(BusError):
        bus.publish("trade.sim.BTC-USD", trade(2))


async def test_tail_policy_applies_locally_and_a_slow_tail_slows_nobody(redis_url: str) -> None:
    async with Bus(redis_url, drop_interval=0.05) as bus:
        slow = bus.subscribe("trade.*", maxsize=5, policy="drop_oldest", name="dash")
        store = bus.subscribe("trade.*", group="store")
        notices = bus.subscribe("bus.dropped.*", group="notices")
        assert await bus.ready()
        sent = [bus.publish("trade.sim.BTC-USD", trade(i)) for i in range(1, 51)]
        assert [e.id for e in await take(store, 50)] == [e.id for e in sent]
        await until(lambda: slow.dropped == 45, "the tail dropped all but its last 5")
        kept = [slow.get_nowait() for _ in range(5)]
        assert [e.id for e in kept if e is not None] == [e.id for e in sent[-5:]]
        notice = await take(notices, 1)  # announced through Redis like any event
        assert notice[0].payload.subscription == "dash" and notice[0].payload.total == 45


async def test_writes_are_batched_by_size_and_time_and_single_when_idle(redis_url: str) -> None:
    async with Bus(redis_url, batch_size=4, buffer_size=100) as bus:
        assert isinstance(bus, RedisBus)
        # Idle: each event goes alone, at once.
        for i in range(3):
            bus.publish("trade.sim.BTC-USD", trade(i))
            assert await bus.flush(within=10)
        assert bus.stats()["redis"]["batches"] == 3
        # A burst: batches of at most batch_size.
        for i in range(10):
            bus.publish("trade.sim.BTC-USD", trade(i))
        assert await bus.flush(within=10)
        assert bus.stats()["redis"]["batches"] == 3 + 3
    async with Bus(redis_url, batch_size=50, linger=1.0) as bus:
        assert isinstance(bus, RedisBus)
        # With linger the writer waits for a batch to fill (up to 1 s): events published
        # across several loop turns still go together.
        for i in range(5):
            bus.publish("trade.sim.BTC-USD", trade(i))
            await asyncio.sleep(0)
        assert await bus.flush(within=10)
        assert bus.stats()["redis"]["batches"] == 1
        assert bus.stats()["redis"]["confirmed"] == 5
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.xlen("tickloop:trade") == 3 + 10 + 5
    finally:
        await client.aclose()


async def test_a_vanished_group_is_made_again_and_dedupe_absorbs_the_replay(
    redis_url: str,
) -> None:
    handled: list[int] = []
    async with Bus(redis_url, name="phoenix") as bus:
        sub = bus.subscribe("trade.*", group="g", handler=lambda ev: handled.append(ev.id))
        sent = [bus.publish("trade.sim.BTC-USD", trade(i)) for i in range(10)]
        await until(lambda: len(handled) == 10, "first ten handled")
        client = aioredis.Redis.from_url(redis_url)
        try:
            assert await client.xgroup_destroy("tickloop:trade", "g|trade.*") == 1
        finally:
            await client.aclose()
        # The group comes back from the stream's start: the first ten are read again, and
        # dropped as already handled.
        sent += [bus.publish("trade.sim.BTC-USD", trade(i)) for i in range(10, 15)]
        await until(lambda: len(handled) == 15, "the next five handled")
        await until(lambda: bus.reader_stats(sub.inbox)["duplicates"] == 10, "replay absorbed")
    assert handled == [e.id for e in sent]


async def test_an_unnamed_bus_leaves_no_dead_consumer_behind(redis_url: str) -> None:
    async def consumers() -> list[bytes]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return sorted(c["name"] for c in await client.xinfo_consumers("tickloop:trade",
                                                                         "g|trade.*"))
        finally:
            await client.aclose()

    for name in (None, "keeper"):
        async with Bus(redis_url, name=name) as bus:
            sub = bus.subscribe("trade.*", group="g")
            bus.publish("trade.sim.BTC-USD", trade(1))
            await take(sub, 1)
            sub.close()
            await until(lambda: bus.stats()["redis"]["acks_pending"] == 0, "acked")
    # The unnamed one's consumer name could never be used again: it is gone. A named one
    # stays, so that a restart with the same name finds its entries.
    assert await consumers() == [b"keeper"]
