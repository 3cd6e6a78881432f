"""End to end against the embedded exchange with faults on: the issue's acceptance test.

50 forced disconnects and 5 silent stalls (plus truncated frames) in one run; afterwards every
subscription is live again, every handler still fires, and the trades each consumer received
equal the exchange's trade log exactly: no gap, no duplicate, same order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tickloop.client.stream import StreamClient
from tickloop.models import Gap, Reconnected, Stale, StatusEvent, Trade
from tickloop.sim import SimExchange

SYMBOLS = ["BTC-USD", "ETH-USD"]


def _key(trade: Trade) -> tuple[object, ...]:
    return (trade.symbol, trade.id, trade.price, trade.size, trade.side, trade.ts)


async def _until(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Poll ``condition``; the limit only stops a broken run from hanging (not a timing goal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


def _check_log(ex: SimExchange, symbol: str, got: list[Trade]) -> None:
    assert got, f"no trade of {symbol}"
    log = ex.trades(symbol)
    first = got[0].id
    assert first is not None
    expected = [t for t in log if t.id is not None and t.id >= first]
    assert [_key(t) for t in got] == [_key(t) for t in expected]


async def test_fifty_disconnects_five_stalls_trades_equal_the_log() -> None:
    async with SimExchange(seed=7, symbols=SYMBOLS, rate=150) as ex:
        feed = StreamClient(
            "sim",
            url=ex.ws_url,
            base_wait=0.005,
            max_wait=0.05,
            heartbeat_timeout=0.5,
            ping_interval=0.15,
        )
        async with feed:
            statuses: list[StatusEvent] = []
            await feed.subscribe_status(statuses.append)
            by_handler: dict[str, list[Trade]] = {s: [] for s in SYMBOLS}
            async_calls: list[Trade] = []

            def on_trade(trade: Trade) -> None:
                by_handler[trade.symbol].append(trade)

            async def on_trade_async(trade: Trade) -> None:
                async_calls.append(trade)

            await feed.subscribe_trades(SYMBOLS, handler=on_trade)
            await feed.subscribe_trades(["ETH-USD"], handler=on_trade_async)
            by_iterator: list[Trade] = []

            async def consume() -> None:
                async for trade in feed.trades("BTC-USD"):
                    by_iterator.append(trade)

            consumer = asyncio.create_task(consume())
            await _until(lambda: all(by_handler.values()) and by_iterator, "first trades")

            def reconnected() -> int:
                return sum(isinstance(e, Reconnected) for e in statuses)

            for i in range(50):
                before = reconnected()
                if i % 10 == 3:
                    malformed = feed.stats()["malformed"]
                    ex.faults.malformed(2)  # truncated frames: their trades are lost in transit
                    # Received before the next disconnect, which would discard them unsent on
                    # a busy machine (the sim truncates at broadcast, then queues the frame).
                    await _until(
                        lambda m=malformed: feed.stats()["malformed"] >= m + 2,  # type: ignore[misc]
                        f"truncated frames {i} counted",
                    )
                if i % 10 == 7:
                    ex.faults.rate_limit(2)  # the backfill's REST calls meet 429s
                await ex.faults.disconnect_all()
                await _until(lambda b=before: reconnected() > b, f"reconnect {i}")  # type: ignore[misc]
            for i in range(5):
                stale_before = sum(isinstance(e, Stale) for e in statuses)
                before = reconnected()
                ex.faults.stall(0.8)
                await _until(
                    lambda s=stale_before: sum(isinstance(e, Stale) for e in statuses) > s,  # type: ignore[misc]
                    f"stall {i} detected",
                )
                await _until(lambda b=before: reconnected() > b, f"reconnect after stall {i}")  # type: ignore[misc]
                await asyncio.sleep(0.8)  # let the stall run out before the next one

            # Every subscription is live again and every handler still fires.
            counts = (
                len(by_handler["BTC-USD"]),
                len(by_handler["ETH-USD"]),
                len(async_calls),
                len(by_iterator),
            )
            await _until(
                lambda: (
                    len(by_handler["BTC-USD"]) > counts[0]
                    and len(by_handler["ETH-USD"]) > counts[1]
                    and len(async_calls) > counts[2]
                    and len(by_iterator) > counts[3]
                ),
                "handlers fire after the faults",
            )
            ex.pause_flow()
            for symbol in SYMBOLS:
                last = ex.trades(symbol)[-1].id
                await _until(
                    lambda s=symbol, n=last: by_handler[s][-1].id == n,  # type: ignore[misc]
                    f"{symbol} caught up",
                )
            await _until(lambda: by_iterator[-1].id == ex.trades("BTC-USD")[-1].id, "iterator")
            await _until(lambda: async_calls[-1].id == ex.trades("ETH-USD")[-1].id, "async")

            for symbol in SYMBOLS:
                _check_log(ex, symbol, by_handler[symbol])
            _check_log(ex, "BTC-USD", by_iterator)
            _check_log(ex, "ETH-USD", async_calls)

            stats = feed.stats()
            assert stats["reconnects"] >= 55
            assert stats["stale"] >= 5
            assert stats["malformed"] >= 10  # counted and skipped, never fatal
            assert any(isinstance(e, Gap) and e.recovered for e in statuses)
            assert not any(isinstance(e, Gap) and not e.recovered for e in statuses)
            assert stats["duplicates"] > 0 or stats["backfilled"] > 0
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
