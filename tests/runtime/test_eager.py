"""An eager executor (the paper one): a paper order that needs no wait is matched in the
caller's own step, on the book of that moment, with no task and no turn of the event loop;
one that waits (latency) goes on in a task, under the timeout (tests/runtime/test_engine.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tickloop.runtime import Bot, Engine, PaperExecutor
from tickloop.sim import SimExchange


class Idle(Bot):
    symbols = ("BTC-USD",)


async def test_a_paper_order_is_matched_in_the_callers_step() -> None:
    async with (SimExchange(seed=4, symbols=["BTC-USD"], rate=40) as ex,
                Engine([Idle("idle")], url=ex.ws_url, executor=PaperExecutor()) as engine):
        async with asyncio.timeout(20):  # a bound on a hang, not a timing assertion
            while (book := engine.book("BTC-USD")) is None or not book.valid:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        # what a market buy of 0.01 takes from the asks now
        left, cost = Decimal("0.01"), Decimal(0)
        for level in book.asks():
            take = min(level.size, left)
            cost += take * level.price
            left -= take
            if not left:
                break
        coro = engine.place("idle", "BTC-USD", "buy", "0.01")
        # one step of the coroutine completes it: it never waited for anything
        with pytest.raises(StopIteration) as done:
            coro.send(None)
        order = done.value.value
        assert order.status == "filled" and order.filled_size == order.size
        # taken from the book of that very moment: nothing ran in between
        assert order.avg_price == cost / Decimal("0.01")
        assert engine.position("idle", "BTC-USD").size == order.size
