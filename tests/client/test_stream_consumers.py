"""Consumers and fan-out without a network: buffers, overflow policies, handlers, ref counts."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tickloop.client.consumers import Consumer, Fanout, Overflow
from tickloop.exceptions import ConsumerOverflow, StreamError
from tickloop.models import Side, Ticker, Trade
from tickloop.venues.base import Channel, Subscription

BTC = Subscription(Channel.TRADES, "BTC-USD")
ETH = Subscription(Channel.TRADES, "ETH-USD")


def trade(i: int, symbol: str = "BTC-USD") -> Trade:
    return Trade(
        venue="sim", symbol=symbol, id=i, price=Decimal(1), size=Decimal(1), side=Side.BUY, ts=i
    )


def ticker(symbol: str, last: int) -> Ticker:
    return Ticker(venue="sim", symbol=symbol, last=Decimal(last), ts=last)


async def test_buffered_consumer_delivers_in_order_and_waits() -> None:
    c = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=10)
    for i in range(3):
        c.push(trade(i))
    assert [(await c.get()).id for _ in range(3)] == [0, 1, 2]
    waiting = asyncio.ensure_future(c.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    c.push(trade(9))
    assert (await waiting).id == 9
    assert c.stats.delivered == 4 and c.stats.high_water == 3


async def test_error_policy_detaches_with_consumer_overflow() -> None:
    fanout = Fanout()
    slow = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=3)
    fast = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=100)
    unneeded: list[list[Subscription]] = []
    fanout.on_unneeded = unneeded.append
    assert fanout.attach(slow, [BTC]) == [BTC]
    assert fanout.attach(fast, [BTC]) == []
    for i in range(10):
        for consumer in fanout.routes[Channel.TRADES]["BTC-USD"]:
            consumer.push(trade(i))
    with pytest.raises(ConsumerOverflow) as info:
        await slow.get()
    assert info.value.dropped == 4
    assert slow.stats.dropped == 4
    assert fanout.refs == {BTC: 1}  # the slow one left by itself; the fast one keeps BTC
    assert unneeded == []
    assert [(await fast.get()).id for _ in range(10)] == list(range(10))


async def test_conflate_policy_keeps_the_latest_per_key() -> None:
    c = Consumer(Channel.TICKER, policy=Overflow.CONFLATE, maxsize=10, key=lambda t: t.symbol)
    for i in range(5):
        c.push(ticker("BTC-USD", i))
        c.push(ticker("ETH-USD", 100 + i))
    assert len(c) == 2
    first, second = await c.get(), await c.get()
    assert (first.symbol, first.last) == ("BTC-USD", Decimal(4))
    assert (second.symbol, second.last) == ("ETH-USD", Decimal(104))
    assert c.stats.conflated == 8 and c.stats.dropped == 0


async def test_conflate_with_more_keys_than_room_drops_the_oldest_and_counts_it() -> None:
    c = Consumer(Channel.TICKER, policy=Overflow.CONFLATE, maxsize=2, key=lambda t: t.symbol)
    for symbol in ("A-USD", "B-USD", "C-USD"):
        c.push(ticker(symbol, 1))
    assert c.stats.dropped == 1
    assert [(await c.get()).symbol for _ in range(2)] == ["B-USD", "C-USD"]


async def test_refcount_last_consumer_leaving_releases_the_subscription() -> None:
    fanout = Fanout()
    a = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=5)
    b = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=5)
    assert fanout.attach(a, [BTC, ETH]) == [BTC, ETH]
    assert fanout.attach(b, [BTC]) == []
    assert fanout.refs == {BTC: 2, ETH: 1}
    assert fanout.detach(a, [ETH]) == [ETH]
    assert fanout.detach(a) == []
    assert fanout.detach(b) == [BTC]
    assert fanout.refs == {} and fanout.routes[Channel.TRADES] == {}


async def test_sync_handler_is_called_inline_and_its_errors_are_counted() -> None:
    got: list[int] = []

    def handler(t: Trade) -> None:
        if t.id == 1:
            raise ValueError("user bug")
        got.append(t.id or 0)

    c = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=5, handler=handler)
    for i in range(3):
        c.push(trade(i))
    assert got == [0, 2]
    assert c.stats.handler_errors == 1 and c.stats.delivered == 2


async def test_async_handler_runs_in_one_worker_and_can_be_changed() -> None:
    got: list[tuple[str, int]] = []

    async def first(t: Trade) -> None:
        got.append(("first", t.id or 0))

    def second(t: Trade) -> None:
        got.append(("second", t.id or 0))

    c = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=100, handler=first)
    c.push(trade(1))
    c.push(trade(2))
    await asyncio.sleep(0.01)
    assert got == [("first", 1), ("first", 2)]
    c.set_handler(second)
    c.push(trade(3))
    assert got[-1] == ("second", 3)
    await c.aclose()
    assert c.closed


async def test_close_ends_after_the_backlog_and_errors_end_at_once() -> None:
    c = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=5)
    c.push(trade(1))
    c.close()
    c.push(trade(2))  # ignored after the end
    assert (await c.get()).id == 1
    with pytest.raises(StopAsyncIteration):
        await c.get()
    d = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=5)
    waiting = asyncio.ensure_future(d.get())
    await asyncio.sleep(0)
    d.close(StreamError("refused"))
    with pytest.raises(StreamError):
        await waiting


async def test_fail_ends_every_consumer_of_a_subscription() -> None:
    fanout = Fanout()
    a = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=5)
    b = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=5)
    fanout.attach(a, [BTC])
    fanout.attach(b, [BTC, ETH])
    released: list[list[Subscription]] = []
    fanout.on_unneeded = released.append
    fanout.fail(BTC, StreamError("unknown symbol"))
    assert a.error is not None and b.error is not None
    assert fanout.refs == {}
    assert sorted(s.symbol or "" for batch in released for s in batch) == ["BTC-USD", "ETH-USD"]
