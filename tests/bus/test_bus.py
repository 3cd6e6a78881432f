"""The in-process bus: envelopes, routing, the four policies, both consumption styles, notices,
backpressure, groups, the backend seam (on_done) and the lifecycle (no task left behind)."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import msgspec
import pytest

import tickloop
from tickloop import models
from tickloop.bus import Bus, Event, EventType, LocalBus, Policy, Subscription
from tickloop.exceptions import BusError, ConfigError

from .helpers import other_tasks, trade, until

T = "trade.sim.BTC-USD"


async def test_publish_is_a_plain_call_returning_the_event() -> None:
    async with Bus(name="proc-a", wall_clock=lambda: 111, mono_clock=lambda: 222) as bus:
        assert isinstance(bus, LocalBus) and isinstance(bus, Bus)
        sub = bus.subscribe("trade.*")
        first = bus.publish(T, trade(1))
        second = bus.publish(T, trade(2))
        assert (first.id, second.id) == (1, 2)
        assert first.type == EventType.TRADE and first.topic == T
        assert first.source == "proc-a" and first.ts == 111 and first.mono == 222
        assert first.payload == trade(1)
        assert [await anext(sub), await anext(sub)] == [first, second]
        assert bus.stats()["published"] == 2


async def test_default_source_is_unique_per_bus() -> None:
    a, b = Bus(), Bus()
    assert a.source != b.source and str(os.getpid()) in a.source


async def test_payloads_must_be_models_or_registered_and_topics_strings() -> None:
    class Note(msgspec.Struct, frozen=True):
        text: str

    async with Bus() as bus:
        with pytest.raises(ConfigError, match="register_event_type"):
            bus.publish("x", Note("a"))
        with pytest.raises(ConfigError) as info:
            bus.publish("", trade(1))
        assert info.value.field == "topic"
        tickloop.bus.register_event_type("test.note", Note)
        sub = bus.subscribe("note.*")
        event = bus.publish("note.1", Note("hi"))
        assert event.type == "test.note" and (await anext(sub)).payload == Note("hi")


async def test_patterns_route_and_the_cache_follows_subscriptions() -> None:
    async with Bus() as bus:
        btc = bus.subscribe("trade.*.BTC-USD")
        both = bus.subscribe(["order.*", "fill.*"])
        everything = bus.subscribe("*")
        bus.publish(T, trade(1))
        bus.publish("trade.sim.ETH-USD", trade(2, "ETH-USD"))
        bus.publish("order.bot-7", trade(3))
        late = bus.subscribe("trade.sim.ETH-USD")  # empties the route cache
        bus.publish("trade.sim.ETH-USD", trade(4, "ETH-USD"))
        btc.close()
        bus.publish(T, trade(5))
        assert [e.payload.id for e in _drain(btc)] == [1]
        assert [e.payload.id for e in _drain(both)] == [3]
        assert [e.payload.id for e in _drain(late)] == [4]
        assert [e.payload.id for e in _drain(everything)] == [1, 2, 3, 4, 5]
        assert isinstance(bus, LocalBus)
        assert [i.name for i in bus.matching(T)] == [everything.name]


def _drain(sub: Subscription) -> list[Event]:
    out = []
    try:
        while (event := sub.get_nowait()) is not None:
            out.append(event)
    except StopAsyncIteration:
        pass
    return out


async def test_arguments_are_checked_naming_the_field() -> None:
    async with Bus() as bus:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"policy": "later"}, "policy"),
            ({"maxsize": 0}, "maxsize"),
            ({"maxsize": True}, "maxsize"),
            ({"policy": "lossless", "maxsize": 4, "low_water": 4}, "low_water"),
            ({"low_water": 1}, "low_water"),
            ({"key": lambda e: e.topic}, "key"),
            ({"handler": 3}, "handler"),
            ({"group": ""}, "group"),
        ]
        for kwargs, field in cases:
            with pytest.raises(ConfigError) as info:
                bus.subscribe("x", **kwargs)
            assert info.value.field == field, kwargs
        with pytest.raises(ConfigError):
            bus.subscribe([])
        held = bus.subscribe("x", name="store")
        with pytest.raises(ConfigError, match="already"):
            bus.subscribe("y", name="store")
        assert Policy("conflate") is Policy.CONFLATE
        held.close()
        bus.subscribe("y", name="store")  # a closed subscription's name is free again
    with pytest.raises(ConfigError) as info:
        Bus("kafka://x")
    assert info.value.field == "url"


def test_redis_url_without_the_backend_is_a_clear_config_error() -> None:
    try:
        import tickloop.bus.redis  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="not installed") as info:
            Bus("redis://127.0.0.1:6379/0")
        assert info.value.field == "url"
    else:
        assert type(Bus("redis://127.0.0.1:6379/0")).__name__ == "RedisBus"


async def test_a_closed_bus_refuses_work_and_ends_iterators() -> None:
    bus = Bus()
    async with bus:
        sub = bus.subscribe("*")
        bus.publish(T, trade(1))
    assert bus.closed
    assert (await anext(sub)).payload.id == 1  # the backlog is still read...
    with pytest.raises(StopAsyncIteration):
        await anext(sub)  # ...then it ends
    with pytest.raises(BusError):
        bus.publish(T, trade(2))
    with pytest.raises(BusError):
        bus.subscribe("*")
    await bus.aclose()  # idempotent


# ------------------------------------------------------------------------------- policies


async def test_drop_newest_keeps_the_first_and_counts_the_rest() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("*", maxsize=3, policy="drop_newest")
        for i in range(10):
            bus.publish(T, trade(i))
        assert [e.payload.id for e in _drain(sub)] == [0, 1, 2] and sub.dropped == 7


async def test_drop_oldest_keeps_the_latest_and_counts_the_rest() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("*", maxsize=3, policy="drop_oldest")
        for i in range(10):
            bus.publish(T, trade(i))
        assert [e.payload.id for e in _drain(sub)] == [7, 8, 9] and sub.dropped == 7


async def test_conflate_keeps_the_latest_per_topic_or_key() -> None:
    async with Bus() as bus:
        per_topic = bus.subscribe("*", policy="conflate")
        per_side = bus.subscribe("*", policy="conflate", key=lambda e: e.payload.id % 2)
        for i in range(6):
            bus.publish(f"trade.sim.S{i % 3}", trade(i, f"S{i % 3}"))
        # the latest per topic, in the order of their latest publish
        assert [e.payload.id for e in _drain(per_topic)] == [3, 4, 5]
        assert per_topic.conflated == 3 and per_topic.dropped == 0
        assert [e.payload.id for e in _drain(per_side)] == [4, 5]


async def test_conflate_past_maxsize_keys_drops_the_oldest_key() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("*", policy="conflate", maxsize=2)
        for i in range(4):
            bus.publish(f"t.{i}", trade(i))
        assert [e.payload.id for e in _drain(sub)] == [2, 3] and sub.dropped == 2


async def test_lossless_never_drops_and_raises_backpressure_between_marks() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("trade.*", maxsize=8, low_water=2, policy="lossless")
        marks: list[bool] = []
        bus.add_pressure_listener(lambda inbox, paused: marks.append(paused))
        for i in range(7):
            bus.publish(T, trade(i))
        assert bus.writable and marks == []
        await bus.wait_writable()  # returns at once
        for i in range(7, 30):  # past the mark: still enqueued
            bus.publish(T, trade(i))
        assert not bus.writable and marks == [True] and sub.paused and len(sub) == 30
        assert bus.pressed == [sub.inbox]

        waiter = asyncio.ensure_future(bus.wait_writable())
        other = asyncio.ensure_future(bus.wait_writable("unrelated.topic"))
        await asyncio.sleep(0)
        assert other.done() and not waiter.done()  # only matching publishers wait
        got = [(await anext(sub)).payload.id for _ in range(27)]
        assert not waiter.done() and sub.paused  # 3 left: above the low water mark
        got.append((await anext(sub)).payload.id)  # 2 left: released
        await waiter
        assert marks == [True, False] and bus.writable and not sub.paused
        got += [e.payload.id for e in _drain(sub)]
        assert got == list(range(30)) and sub.dropped == 0 and sub.max_depth == 30


async def test_closing_a_pressed_subscription_releases_the_publishers() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("*", maxsize=2, policy="lossless")
        bus.publish(T, trade(1))
        bus.publish(T, trade(2))
        assert not bus.writable
        sub.close()
        assert bus.writable
        await bus.wait_writable()


# ------------------------------------------------------------------------------ handlers


async def test_sync_handlers_run_inline_and_a_failing_one_is_isolated() -> None:
    async with Bus() as bus:
        seen: list[int] = []

        def bad(event: Event) -> None:
            if event.payload.id % 2:
                raise ValueError(f"odd {event.payload.id}")

        failures = bus.subscribe("bus.handler_failed.*")
        bus.subscribe("trade.*", handler=lambda e: seen.append(e.payload.id), name="good")
        broken = bus.subscribe("trade.*", handler=bad, name="broken")
        after = bus.subscribe("trade.*")
        for i in range(4):
            bus.publish(T, trade(i))
            assert seen[-1] == i  # inline: handled before publish returned
        assert seen == [0, 1, 2, 3] and len(after) == 4
        assert broken.handler_errors == 2 and broken.delivered == 2
        reports = [e.payload for e in _drain(failures)]
        assert [r.subscription for r in reports] == ["broken", "broken"]
        assert reports[0].topic == T and reports[0].error == "ValueError: odd 1"
        assert "bad" in reports[0].handler and "ValueError" in reports[0].traceback
        assert isinstance(reports[0], models.HandlerFailed)


async def test_a_handler_failing_on_failure_reports_does_not_loop() -> None:
    async with Bus() as bus:
        def always(event: Event) -> None:
            raise RuntimeError("no")

        sub = bus.subscribe("*", handler=always)
        watch = bus.subscribe("bus.*")
        bus.publish(T, trade(1))
        # the trade failed (reported once), and the report itself failed (counted, not reported)
        assert sub.handler_errors == 2
        assert [e.topic for e in _drain(watch)] == [f"bus.handler_failed.{sub.name}"]


async def test_async_handler_runs_in_order_in_one_task_and_close_leaves_none() -> None:
    before = other_tasks()
    async with Bus() as bus:
        seen: list[int] = []

        async def slow(event: Event) -> None:
            await asyncio.sleep(0)
            seen.append(event.payload.id)

        sub = bus.subscribe("*", handler=slow)
        assert len(other_tasks() - before) == 1
        for i in range(50):
            bus.publish(T, trade(i))
        await sub.aclose()  # finishes the buffered events
        assert seen == list(range(50)) and sub.delivered == 50
        assert other_tasks() == before


async def test_closing_the_bus_awaits_async_handlers_and_cancels_stuck_ones() -> None:
    before = other_tasks()
    seen: list[int] = []

    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(event.payload.id)

    async with Bus() as bus:
        bus.subscribe("*", handler=handler)
        for i in range(3):
            bus.publish(T, trade(i))
    assert seen == [0, 1, 2] and other_tasks() == before  # drained by leaving

    gate = asyncio.Event()

    async def stuck(event: Event) -> None:
        await gate.wait()

    bus2 = Bus()
    await bus2.start()
    bus2.subscribe("*", handler=stuck)
    bus2.publish(T, trade(1))
    await asyncio.sleep(0)
    await bus2.aclose(grace=0.01)
    assert other_tasks() == before


async def test_a_sync_handler_may_publish_and_order_holds_for_everyone() -> None:
    async with Bus() as bus:
        def echo(event: Event) -> None:
            if event.topic == "a":
                bus.publish("b", event.payload)

        watch_first = bus.subscribe("*")
        bus.subscribe("a", handler=echo)
        watch_last = bus.subscribe("*")
        bus.publish("a", trade(1))
        bus.publish("a", trade(2))
        assert [e.topic for e in _drain(watch_first)] == ["a", "b", "a", "b"]
        assert [e.topic for e in _drain(watch_last)] == ["a", "b", "a", "b"]


# ---------------------------------------------------------------------- iterator lifecycle


async def test_breaking_out_of_a_temporary_subscription_detaches_it() -> None:
    async with Bus() as bus:
        bus.publish(T, trade(0))
        async def reader() -> int:
            async for event in bus.subscribe("*", policy="lossless", maxsize=2):
                return int(event.payload.id)
            return -1

        task = asyncio.ensure_future(reader())
        await asyncio.sleep(0)
        bus.publish(T, trade(1))
        assert await task == 1
        gc.collect()
        assert bus.subscriptions == []
        for i in range(5):  # nobody holds the lossless subscription back any more
            bus.publish(T, trade(i))
        assert bus.writable


async def test_cancelling_a_reader_leaves_no_task_and_a_held_subscription_open() -> None:
    before = other_tasks()
    async with Bus() as bus:
        sub = bus.subscribe("*")

        async def reader() -> None:
            async for _ in sub:
                pass

        task = asyncio.ensure_future(reader())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert other_tasks() == before
        bus.publish(T, trade(1))  # still subscribed: the holder decides
        assert (await anext(sub)).payload.id == 1
        async with sub:
            pass
        assert sub.closed and bus.subscriptions == []


async def test_a_handler_subscription_cannot_be_iterated() -> None:
    async with Bus() as bus:
        sub = bus.subscribe("*", handler=lambda e: None)
        with pytest.raises(ConfigError):
            aiter(sub)


# -------------------------------------------------------------------------------- notices


async def test_drops_are_announced_once_per_interval_with_exact_counts() -> None:
    async with Bus(drop_interval=0.02) as bus:
        notices = bus.subscribe("bus.dropped.*")
        full = bus.subscribe("trade.*", maxsize=2, name="slow")
        for i in range(10):
            bus.publish(T, trade(i))
        await until(lambda: len(notices) == 1, "a notice")
        first = notices.get_nowait()
        assert first is not None and first.topic == "bus.dropped.slow"
        assert (first.payload.dropped, first.payload.total) == (8, 8)
        assert first.payload.pattern == "trade.*" and first.payload.policy == "drop_newest"
        for i in range(3):
            bus.publish(T, trade(i))
        await until(lambda: len(notices) == 1, "a second notice")
        second = notices.get_nowait()
        assert second is not None and (second.payload.dropped, second.payload.total) == (3, 11)
        assert full.dropped == 11 and bus.notices == 2


async def test_a_full_subscription_of_everything_does_not_loop_on_its_notices() -> None:
    async with Bus(drop_interval=0.01) as bus:
        greedy = bus.subscribe("*", maxsize=1)
        watch = bus.subscribe("bus.dropped.*")
        for i in range(5):
            bus.publish(T, trade(i))
        await until(lambda: len(watch) == 1, "the notice")
        # The notice reached the full subscription too: dropped and counted, not re-announced.
        assert greedy.dropped == 5 and bus.notices == 1
        assert isinstance(bus, LocalBus) and bus._notice_timer is None and not bus._drops_due


async def test_pending_drops_are_announced_at_close() -> None:
    bus = Bus(drop_interval=3600)
    await bus.start()
    sub = bus.subscribe("trade.*", maxsize=1)
    notes = bus.subscribe("bus.*")
    bus.publish(T, trade(1))
    bus.publish(T, trade(2))
    await bus.aclose()
    notice = notes.get_nowait()
    assert notice is not None and notice.payload.dropped == 1 and sub.dropped == 1


# ------------------------------------------------------------------------- groups, batches


async def test_a_group_shares_its_events_round_robin() -> None:
    async with Bus() as bus:
        a = bus.subscribe("trade.*", group="store")
        b = bus.subscribe("trade.*", group="store")
        solo = bus.subscribe("trade.*")
        for i in range(6):
            bus.publish(T, trade(i))
        ids_a = [e.payload.id for e in _drain(a)]
        ids_b = [e.payload.id for e in _drain(b)]
        assert sorted(ids_a + ids_b) == list(range(6)) and len(ids_a) == len(ids_b) == 3
        assert len(solo) == 6
        assert a.group == "store" and a.name != b.name


async def test_publish_many_is_publish_in_a_loop() -> None:
    async with Bus() as bus:
        newest = bus.subscribe("*", maxsize=5)
        oldest = bus.subscribe("*", maxsize=5, policy="drop_oldest")
        lossless = bus.subscribe("*", maxsize=5, policy="lossless")
        handled: list[int] = []
        bus.subscribe("*", handler=lambda e: handled.append(e.payload.id))
        events = bus.publish_many(T, [trade(i) for i in range(8)])
        assert [e.id for e in events] == list(range(1, 9))
        events = bus.publish_many(T, [trade(i) for i in range(8, 10)])
        assert [e.payload.id for e in _drain(newest)] == [0, 1, 2, 3, 4] and newest.dropped == 5
        assert [e.payload.id for e in _drain(oldest)] == [5, 6, 7, 8, 9] and oldest.dropped == 5
        assert [e.payload.id for e in _drain(lossless)] == list(range(10))
        assert handled == list(range(10))
        assert bus.publish_many(T, []) == []


# --------------------------------------------------------------------------- backend seam


async def test_on_done_follows_handled_and_consumed_events_only() -> None:
    async with Bus() as bus:
        done: list[int] = []

        def flaky(event: Event) -> None:
            if event.payload.id == 1:
                raise ValueError("x")

        handled = bus.subscribe("h", handler=flaky)
        handled.inbox.set_on_done(lambda e: done.append(e.payload.id))
        for i in range(3):
            bus.publish("h", trade(i))
        assert done == [0, 2]  # not the one whose handler raised

        done.clear()
        sub = bus.subscribe("i", maxsize=3)
        sub.inbox.set_on_done(lambda e: done.append(e.payload.id))
        for i in range(5):
            bus.publish("i", trade(i))  # 3 and 4 dropped: never done
        assert (await anext(sub)).payload.id == 0
        assert done == []  # taken, not yet consumed
        assert (await anext(sub)).payload.id == 1
        assert done == [0]
        sub.close()  # closed after taking 1: consumed; 2 stays in the buffer, not done
        assert done == [0, 1]

        done.clear()

        async def ok(event: Event) -> None:
            await asyncio.sleep(0)

        later = bus.subscribe("a", handler=ok)
        later.inbox.set_on_done(lambda e: done.append(e.payload.id))
        for i in range(3):
            bus.publish("a", trade(i))
        await later.aclose()
        assert done == [0, 1, 2]


async def test_stats_snapshot_lists_every_subscription() -> None:
    async with Bus(name="s") as bus:
        sub = bus.subscribe("trade.*", maxsize=1, name="t")
        bus.publish(T, trade(1))
        bus.publish(T, trade(2))
        stats = bus.stats()
        assert stats["source"] == "s" and stats["published"] == 2 and stats["writable"]
        [row] = stats["subscriptions"]
        assert row["name"] == "t" and row["dropped"] == 1 and row["backlog"] == 1
        assert sub.stats() == row and "t" in repr(sub)


async def test_directly_called_handlers_are_counted_across_route_changes() -> None:
    async with Bus() as bus:
        got: dict[str, list[int]] = {"a": [], "c": []}

        def flaky(event: Event) -> None:
            if event.payload.id % 2:
                raise ValueError("odd")

        a = bus.subscribe("t", handler=lambda e: got["a"].append(e.payload.id))
        b = bus.subscribe("t", handler=flaky)
        c = bus.subscribe("t", handler=lambda e: got["c"].append(e.payload.id))
        for i in range(4):
            bus.publish("t", trade(i))
        assert (a.delivered, b.delivered, b.handler_errors) == (4, 2, 2)
        extra = bus.subscribe("other")  # the route is rebuilt: counts are kept
        for i in range(4, 6):
            bus.publish("t", trade(i))
        bus.publish_many("t", [trade(i) for i in range(6, 10)])
        assert got["a"] == got["c"] == list(range(10))
        assert (a.delivered, b.delivered, b.handler_errors, c.delivered) == (10, 5, 5, 10)
        extra.close()
        assert a.stats()["delivered"] == 10 and bus.stats()["subscriptions"][1]["delivered"] == 5


async def test_events_published_by_handlers_wait_in_a_bounded_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tickloop.bus import local

    monkeypatch.setattr(local, "MAX_NESTED", 5)
    async with Bus() as bus:
        def fan(event: Event) -> None:
            for i in range(10):
                bus.publish("b", trade(i))

        source = bus.subscribe("a", handler=fan)
        b = bus.subscribe("b")
        bus.publish("a", trade(0))
        # five waited and were delivered; the sixth raised in the handler, which was reported
        assert [e.payload.id for e in _drain(b)] == [0, 1, 2, 3, 4]
        assert source.handler_errors == 1


async def test_default_timestamps_follow_the_system_clocks() -> None:
    import time

    wall0, mono0 = time.time_ns(), time.monotonic_ns()
    bus = Bus()
    async with bus:
        event = bus.publish(T, trade(1))
        [batched] = bus.publish_many(T, [trade(2)])
    wall1, mono1 = time.time_ns(), time.monotonic_ns()
    for e in (event, batched):
        assert mono0 <= e.mono <= mono1
        # wall = monotonic + an offset re-read every second: within a step of the clock
        assert wall0 - 10**9 <= e.ts <= wall1 + 10**9
    assert isinstance(bus, LocalBus) and bus._resync_timer is None  # nothing left scheduled


def test_sync_code_may_use_a_bus_without_a_loop_but_async_handlers_need_one() -> None:
    bus = Bus()
    seen: list[int] = []
    bus.subscribe("t", handler=lambda e: seen.append(e.payload.id))
    full = bus.subscribe("t", maxsize=1)
    bus.publish("t", trade(1))
    bus.publish("t", trade(2))  # a drop with no loop: counted, announced later
    assert seen == [1, 2] and full.dropped == 1

    async def handler(event: Event) -> None:
        return None

    with pytest.raises(ConfigError) as info:
        bus.subscribe("t", handler=handler)
    assert info.value.field == "handler"


async def test_plain_readers_fast_path_counts_drops_wakes_and_ignores_a_closed_inbox() -> None:
    # publish appends to plain drop_newest readers' buffers itself (LocalBus._Route.buffers):
    # the full, closed and waiting cases must behave as inbox.push does.
    async with Bus() as bus:
        small = bus.subscribe("trade.*", maxsize=2)
        wide = bus.subscribe(T, maxsize=10)
        route = bus._routes.get(T) or bus._route(T)  # type: ignore[attr-defined]
        assert route.buffers is not None and len(route.buffers) == 2
        waiting = asyncio.ensure_future(anext(wide))
        await asyncio.sleep(0)  # the reader waits on its future
        events = [bus.publish(T, trade(i)) for i in range(5)]
        assert await waiting == events[0]  # woken by the fast path
        assert [small.get_nowait(), small.get_nowait(), small.get_nowait()] == [
            events[0], events[1], None]
        assert (small.dropped, wide.dropped) == (3, 0)
        assert [wide.get_nowait() for _ in range(4)] == events[1:]
        small.inbox.close()  # closed behind the route's back: ignored, not counted as a drop
        bus.publish(T, trade(9))
        assert small.dropped == 3 and len(small.inbox) == 0
        assert wide.get_nowait() is not None
        # a handler on the topic takes the route off the fast path
        seen: list[Event] = []
        bus.subscribe(T, handler=seen.append)
        route = bus._routes.get(T) or bus._route(T)  # type: ignore[attr-defined]
        assert route.buffers is None
        last = bus.publish(T, trade(10))
        assert seen == [last] and wide.get_nowait() == last
