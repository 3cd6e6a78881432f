"""tickloop.runtime.fanout: the market fan-out step, the same in its compiled and pure forms.

Every test runs on each class the build has (the mypyc-compiled ``Fanout`` and ``PureFanout``;
in the pure-Python leg they are one class): bots are called in order, a shut gate skips a bot
and a busy one has the event queued, a raising handler is reported and the others still get the
event, a coroutine handler that waits is handed over with what it yielded, every call is counted
and timed to its bot, the running slot is restored, and what is not an ``Exception`` goes up.
"""

from __future__ import annotations

import asyncio
import os
import types
from collections.abc import Generator
from decimal import Decimal
from typing import Any

import pytest

from tickloop.runtime import fanout
from tickloop.runtime.fanout import Gate, HandlerStats, Running, Slot

FANOUTS = sorted({fanout.Fanout, fanout.PureFanout}, key=lambda c: c.__module__)


@pytest.fixture(params=FANOUTS, ids=lambda c: c.__module__.rpartition(".")[2])
def cls(request: pytest.FixtureRequest) -> Any:
    return request.param


class World:
    """A fan-out over some bots, recording what its callbacks were given."""

    def __init__(self, cls: Any) -> None:
        self.running = Running()
        self.got: list[tuple[str, Any]] = []
        self.queued: list[tuple[str, str, Any]] = []
        self.failed: list[tuple[str, str, Exception]] = []
        self.suspended: list[tuple[str, str, Any, Any]] = []
        self.fan = cls(
            "on_trade",
            self.running,
            lambda host, name, payload: self.queued.append((host, name, payload)),
            lambda host, name, exc: self.failed.append((host, name, exc)),
            lambda host, name, coro, yielded: self.suspended.append((host, name, coro, yielded)),
        )
        self.gates: dict[str, Gate] = {}
        self.stats: dict[str, HandlerStats] = {}

    def add(self, bot: str, fn: Any, is_async: bool = False) -> None:
        gate = self.gates[bot] = Gate()
        gate.running = True
        stats = self.stats[bot] = HandlerStats()
        self.fan.slots = (*self.fan.slots, Slot(bot, bot, fn, is_async, stats, gate))

    def plain(self, bot: str) -> Any:
        def handler(payload: Any) -> None:
            self.got.append((bot, payload))
            assert self.running.bot == bot and self.running.handler == "on_trade"

        return handler

    def coroutine(self, bot: str) -> Any:
        async def handler(payload: Any) -> None:
            self.got.append((bot, payload))
            assert self.running.bot == bot and self.running.handler == "on_trade"

        return handler


@types.coroutine
def _wait() -> Generator[str, None, None]:
    yield "waiting"


def test_every_running_bot_in_order_plain_and_coroutine(cls: Any) -> None:
    w = World(cls)
    w.add("a", w.plain("a"))
    w.add("b", w.coroutine("b"), is_async=True)
    w.add("c", w.plain("c"))
    w.running.enter("outer", "tick")
    started = w.running.started
    w.fan.deliver(1)
    w.fan.deliver(2)
    assert w.got == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2), ("c", 2)]
    assert (w.running.bot, w.running.handler, w.running.started) == ("outer", "tick", started)
    for stats in w.stats.values():
        assert stats.count == 2 and stats.errors == 0
        assert 0 < stats.max <= stats.total
    assert w.running.longest_bot in ("a", "b", "c")
    assert w.running.longest_handler == "on_trade"
    assert w.running.longest == max(s.max for s in w.stats.values())
    assert not (w.queued or w.failed or w.suspended)


def test_a_shut_gate_skips_and_a_busy_one_queues(cls: Any) -> None:
    w = World(cls)
    for bot in "abc":
        w.add(bot, w.plain(bot))
    w.gates["a"].running = False
    w.gates["b"].busy = True
    w.fan.deliver(7)
    assert w.got == [("c", 7)]
    assert w.queued == [("b", "on_trade", 7)]
    assert [w.stats[b].count for b in "abc"] == [0, 0, 1]


def test_a_gate_shut_during_the_pass_is_seen_at_once(cls: Any) -> None:
    w = World(cls)

    def pauser(payload: Any) -> None:
        w.gates["c"].running = False

    w.add("a", pauser)
    w.add("b", w.plain("b"))
    w.add("c", w.plain("c"))
    w.fan.deliver(1)
    assert w.got == [("b", 1)]


def test_a_raising_handler_is_reported_and_the_others_still_get_the_event(cls: Any) -> None:
    w = World(cls)

    def boom(payload: Any) -> None:
        raise ValueError(f"bad {payload}")

    async def aboom(payload: Any) -> None:
        raise KeyError(payload)

    w.add("a", boom)
    w.add("b", w.plain("b"))
    w.add("c", aboom, is_async=True)
    w.add("d", w.coroutine("d"), is_async=True)
    w.fan.deliver(3)
    assert w.got == [("b", 3), ("d", 3)]
    assert [(h, n, type(e)) for h, n, e in w.failed] == [
        ("a", "on_trade", ValueError),
        ("c", "on_trade", KeyError),
    ]
    assert all(w.stats[b].count == 1 for b in "abcd")  # errors are counted by the callback
    assert w.stats["a"].total > 0 and w.stats["c"].total > 0


def test_a_coroutine_that_waits_is_handed_over_with_what_it_yielded(cls: Any) -> None:
    w = World(cls)
    finished: list[int] = []

    async def waiter(payload: Any) -> None:
        await _wait()
        finished.append(payload)

    w.add("a", waiter, is_async=True)
    w.add("b", w.plain("b"))
    w.fan.deliver(5)
    assert w.got == [("b", 5)]
    [(host, name, coro, yielded)] = w.suspended
    assert (host, name, yielded) == ("a", "on_trade", "waiting")
    with pytest.raises(StopIteration):
        coro.send(None)
    assert finished == [5]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, asyncio.CancelledError])
def test_what_is_not_an_exception_goes_up_and_the_slot_is_restored(cls: Any, exc: type) -> None:
    w = World(cls)

    def stop(payload: Any) -> None:
        raise exc

    w.add("a", stop)
    w.add("b", w.plain("b"))
    with pytest.raises(exc):
        w.fan.deliver(1)
    assert w.got == [] and w.failed == []
    assert (w.running.bot, w.running.handler) == (None, None)


def test_the_slots_are_replaced_never_changed_during_a_pass(cls: Any) -> None:
    w = World(cls)

    def joiner(payload: Any) -> None:
        w.add("late", w.plain("late"))

    w.add("a", joiner)
    w.fan.deliver(1)
    assert w.got == []  # the bot that joined during the pass waits for the next event
    w.fan.slots = w.fan.slots[1:]
    w.fan.deliver(2)
    assert w.got == [("late", 2)]


def test_an_awaitable_that_is_not_a_coroutine_is_driven_too(cls: Any) -> None:
    w = World(cls)

    class Ready:
        def __await__(self) -> Generator[Any, None, None]:
            w.got.append(("ready", None))
            return
            yield  # a generator: __await__ returns without yielding

    w.add("a", lambda payload: Ready(), is_async=True)
    w.add("b", w.plain("b"))
    w.fan.deliver(1)
    assert w.got == [("ready", None), ("b", 1)] and not w.suspended


@pytest.mark.compiled
def test_first_step_in_c() -> None:
    """Under CI (installed with a C compiler) the C module must be built: fail. Elsewhere (a
    checkout installed without one) there is nothing to check: skip."""
    if fanout._first_step is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the install did not build tickloop.runtime._coro_native")
        pytest.skip("no C module _coro_native in this checkout")
    step = fanout._first_step
    assert step is not None
    nothing = object()
    log: list[str] = []

    async def returns() -> int:
        log.append("ran")
        return 5

    assert step(returns(), nothing) is nothing and log == ["ran"]

    async def waits() -> None:
        await _wait()
        log.append("resumed")

    coro = waits()
    assert step(coro, nothing) == "waiting"
    with pytest.raises(StopIteration):
        coro.send(None)
    assert log == ["ran", "resumed"]

    async def raises() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        step(raises(), nothing)
    gen = iter(range(0))
    with pytest.raises(TypeError, match="needs a coroutine"):
        step(gen, nothing)
    with pytest.raises(TypeError, match="two arguments"):
        step(gen)  # type: ignore[call-arg]


ROUTERS = sorted({fanout.Router, fanout.PureRouter}, key=lambda c: c.__module__)


class Ev:
    def __init__(self, topic: str, payload: Any) -> None:
        self.topic = topic
        self.payload = payload


class Trade:
    pass


class TradeLike(Trade):
    """A subclass of the route's model: not the model, so it takes the other path."""


@pytest.mark.parametrize("router_cls", ROUTERS, ids=lambda c: c.__module__.rpartition(".")[2])
def test_the_router_hands_the_exact_model_to_the_topic_s_fan_out(router_cls: Any) -> None:
    w = World(FANOUTS[0])
    w.add("a", w.plain("a"))
    other: list[Any] = []
    router = router_cls(other.append)
    router.routes["trade.sim.X"] = (w.fan, Trade)
    t, like, text = Trade(), TradeLike(), "not a trade"
    for ev in (
        Ev("trade.sim.X", t),
        Ev("trade.sim.Y", t),
        Ev("trade.sim.X", like),
        Ev("trade.sim.X", text),
    ):
        router.on_event(ev)
    assert w.got == [("a", t)]
    assert [e.payload for e in other] == [like, text]


class QuietSource:
    """A MarketSource that publishes nothing: the test publishes on the bus."""

    async def start(self) -> None:
        pass

    async def wire(self, bus: Any, wants: Any) -> None:
        pass

    def book(self, symbol: str) -> None:
        return None

    async def close(self) -> None:
        pass


def trade(i: int) -> Any:
    from tickloop.models import Trade as MarketTrade

    return MarketTrade(
        venue="sim",
        symbol="BTC-USD",
        id=i,
        price=Decimal(100 + i),
        size=Decimal(1),
        side=None,
        ts=i,
    )


async def test_the_engine_hands_another_model_on_a_market_topic_to_its_own_handler() -> None:
    from tickloop.models import (
        Order,
        OrderEvent,
        OrderEventKind,
        OrderStatus,
        OrderType,
        Side,
    )
    from tickloop.models import Trade as MarketTrade
    from tickloop.runtime import Bot, Engine

    class Both(Bot):
        symbols = ("BTC-USD",)

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.seen: list[Any] = []

        def on_trade(self, t: MarketTrade) -> None:
            self.seen.append(("trade", t.id))

        async def on_order(self, e: OrderEvent) -> None:
            self.seen.append(("order", e.order.id))

    class TradesOnly(Both):
        on_order = None  # type: ignore[assignment]

    order = Order(
        venue="sim",
        symbol="BTC-USD",
        id="o1",
        side=Side.BUY,
        type=OrderType.LIMIT,
        price=Decimal(1),
        size=Decimal(1),
        status=OrderStatus.OPEN,
    )
    both, trades_only = Both("b"), TradesOnly("t")
    async with Engine(
        [both, trades_only], source=QuietSource(), stagger=0.0, equity_every=0
    ) as engine:
        engine.bus.publish("trade.sim.BTC-USD", trade(1))
        engine.bus.publish(
            "trade.sim.BTC-USD",
            OrderEvent(venue="sim", kind=OrderEventKind.ACCEPTED, order=order, ts=1),
        )
        engine.bus.publish("trade.sim.BTC-USD", trade(2))
    assert both.seen == [("trade", 1), ("order", "o1"), ("trade", 2)]
    assert trades_only.seen == [("trade", 1), ("trade", 2)]
