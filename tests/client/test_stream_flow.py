"""Flow control: the opt-in ``overflow="backpressure"`` policy, from the consumer's water marks to
pausing and resuming the socket, and the per-stream ``overflow=`` argument.

Loopback only; the waits are bounded and only stop a broken run from hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from tickloop import StreamClient
from tickloop.client.consumers import Consumer, Overflow
from tickloop.client.session import WsSession
from tickloop.exceptions import ConfigError
from tickloop.models import Side, Trade
from tickloop.sim import SimExchange
from tickloop.venues.base import Channel
from tickloop.venues.sim import SimCodec

from .helpers import until

SYMBOLS = ["BTC-USD", "ETH-USD"]


def trade(i: int) -> Trade:
    return Trade(
        venue="sim", symbol="BTC-USD", id=i, price=Decimal(1), size=Decimal(1), side=Side.BUY, ts=i
    )


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=11, symbols=SYMBOLS, rate=200) as ex:
        yield ex


def feed_for(ex: SimExchange, **options: Any) -> StreamClient:
    options.setdefault("base_wait", 0.01)
    options.setdefault("max_wait", 0.1)
    return StreamClient("sim", url=ex.ws_url, **options)


# ------------------------------------------------------------------------- the consumer alone


async def test_backpressure_consumer_pauses_at_high_and_resumes_at_low_water() -> None:
    c = Consumer(Channel.TRADES, policy=Overflow.BACKPRESSURE, maxsize=8, low_water=2)
    calls: list[bool] = []
    c.on_pressure = lambda consumer, paused: calls.append(paused)
    for i in range(7):
        c.push(trade(i))
    assert calls == [] and not c.paused
    c.push(trade(7))  # the high water mark: pause once
    assert calls == [True] and c.paused
    for i in range(8, 20):  # a socket read already under way: queued, never dropped
        c.push(trade(i))
    assert calls == [True] and c.stats.dropped == 0 and len(c) == 20
    got = [(await c.get()).id for _ in range(17)]
    assert calls == [True] and c.paused  # 3 left: still above the low water mark
    got.append((await c.get()).id)  # 2 left: resume
    assert calls == [True, False] and not c.paused
    got += [c.get_nowait().id for _ in range(2)]
    assert got == list(range(20))
    assert c.stats.pauses == 1 and c.stats.delivered == 20


async def test_a_closed_backpressure_consumer_never_holds_its_source_paused() -> None:
    c = Consumer(Channel.TRADES, policy=Overflow.BACKPRESSURE, maxsize=2)
    calls: list[bool] = []
    c.on_pressure = lambda consumer, paused: calls.append(paused)
    c.push(trade(0))
    c.push(trade(1))
    assert calls == [True]
    c.close()
    assert calls == [True, False] and not c.paused


async def test_switching_to_a_sync_handler_flushes_and_resumes() -> None:
    c = Consumer(Channel.TRADES, policy=Overflow.BACKPRESSURE, maxsize=3)
    calls: list[bool] = []
    c.on_pressure = lambda consumer, paused: calls.append(paused)
    for i in range(3):
        c.push(trade(i))
    assert calls == [True]
    got: list[Trade] = []
    c.set_handler(got.append)
    assert [t.id for t in got] == [0, 1, 2] and calls == [True, False] and not c.paused
    c.push(trade(3))
    assert [t.id for t in got] == [0, 1, 2, 3] and calls == [True, False]


def test_water_marks_are_checked() -> None:
    with pytest.raises(ValueError):
        Consumer(Channel.TRADES, policy=Overflow.BACKPRESSURE, maxsize=4, low_water=4)
    with pytest.raises(ValueError):
        Consumer(Channel.TRADES, policy=Overflow.BACKPRESSURE, maxsize=4, low_water=-1)
    assert Consumer(Channel.TRADES, policy=Overflow.BACKPRESSURE, maxsize=100).low_water == 25


async def test_session_reading_is_paused_while_any_owner_asks() -> None:
    class Owner:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: None

    session = WsSession(SimCodec.create, "ws://127.0.0.1:1/ws", owner=Owner(), sinks={})
    a, b = object(), object()
    session.pause_reading(a)
    session.pause_reading(b)
    assert session.paused and session.stats.pauses == 1
    session.resume_reading(a)
    assert session.paused
    session.resume_reading(a)  # twice: no effect
    assert session.paused
    session.resume_reading(b)
    assert not session.paused


# ------------------------------------------------------------------ end to end on the sim


async def test_backpressure_iterator_pauses_the_socket_loses_nothing_and_resumes(
    ex: SimExchange,
) -> None:
    async with feed_for(ex, heartbeat_timeout=0.3) as feed:
        slow = feed.trades("BTC-USD", buffer=8, overflow="backpressure")
        first = await anext(slow)
        session = feed.sessions[0]
        # Not reading: the consumer reaches its high water mark and the socket is paused.
        await until(lambda: session.paused, "reading paused")
        assert slow.consumer.paused
        # Paused for several heartbeat timeouts: silence we asked for is not a stale
        # connection, so nothing is replaced.
        await asyncio.sleep(1.0)
        assert session.paused and feed.stats()["stale"] == 0 and feed.stats()["reconnects"] == 0
        backlog = len(slow.consumer)
        assert backlog >= 8
        ids = [first.id]
        for _ in range(backlog):  # drain below the low water mark: reading resumes
            ids.append((await anext(slow)).id)
        assert not session.paused and not slow.consumer.paused
        for _ in range(20):  # and trades flow again
            ids.append((await anext(slow)).id)
        assert ids == list(range(ids[0] or 0, (ids[0] or 0) + len(ids)))
        assert slow.consumer.stats.dropped == 0 and slow.consumer.stats.pauses >= 1
        assert session.stats.pauses >= 1
        await slow.aclose()
        assert not session.paused


async def test_backpressure_async_handler_slows_the_source_and_sees_every_trade(
    ex: SimExchange,
) -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def handler(t: Trade) -> None:
        await gate.wait()
        assert t.id is not None
        seen.append(t.id)

    async with feed_for(ex) as feed:
        await feed.subscribe_trades("BTC-USD", handler, buffer=4, overflow="backpressure")
        session = feed.sessions[0]
        await until(lambda: session.paused, "reading paused by the blocked handler")
        gate.set()
        await until(lambda: not session.paused and len(seen) > 30, "resumed, flowing")
        assert seen == list(range(seen[0], seen[0] + len(seen)))
        await feed.unsubscribe_trades("BTC-USD", handler)
        assert not session.paused


async def test_leaving_a_paused_stream_resumes_the_connection_for_the_others(
    ex: SimExchange,
) -> None:
    async with feed_for(ex) as feed:
        others: list[Trade] = []
        await feed.subscribe_trades("ETH-USD", others.append)
        slow = feed.trades("BTC-USD", buffer=4, overflow="backpressure")
        await anext(slow)
        session = feed.sessions[0]
        await until(lambda: session.paused, "reading paused")
        await slow.aclose()
        assert not session.paused
        count = len(others)
        await until(lambda: len(others) > count + 5, "the other stream flows")


async def test_overflow_argument_is_checked_per_stream(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        with pytest.raises(ConfigError) as info:
            feed.trades("BTC-USD", overflow="conflate")  # would lose trades
        assert info.value.field == "overflow"
        with pytest.raises(ConfigError):
            feed.trades("BTC-USD", overflow="later")
        with pytest.raises(ConfigError):
            await feed.subscribe_trades("BTC-USD", print, overflow="drop")
        assert feed.upstream() == {}
        assert feed.trades("BTC-USD").consumer.policy is Overflow.ERROR
        assert feed.tickers("BTC-USD").consumer.policy is Overflow.CONFLATE
        assert feed.tickers("BTC-USD", overflow="error").consumer.policy is Overflow.ERROR
        assert (
            feed.candles("BTC-USD", "1m", overflow=Overflow.BACKPRESSURE).consumer.policy
            is Overflow.BACKPRESSURE
        )
        assert feed.orders(overflow="backpressure").consumer.policy is Overflow.BACKPRESSURE
