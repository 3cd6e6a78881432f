"""Shared helpers of the bus tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

from tickloop import models


def trade(i: int, symbol: str = "BTC-USD") -> models.Trade:
    return models.Trade(venue="sim", symbol=symbol, id=i, price=Decimal(1), size=Decimal(1),
                        side=models.Side.BUY, ts=i)


async def until(condition: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    """Poll ``condition``; the limit only stops a broken run from hanging (not a timing goal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.005)


def other_tasks() -> set[asyncio.Task[object]]:
    """Every task of the running loop but the current one."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}
