"""The engine's market-data fan-out (one pass over a topic's bots per event): order per bot,
isolation of raising handlers, coroutine handlers that wait (the bot's mailbox, bounded, drops
counted), handler accounting and the running slot. No sim: trades are published on the bus."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from tickloop.book.engine import OrderBook
from tickloop.bus import Bus, Event
from tickloop.models import BotError, BusDropped, Trade
from tickloop.runtime import Bot, Engine
from tickloop.runtime.source import MarketWants


class QuietSource:
    """A MarketSource that publishes nothing; the tests publish on the bus."""

    async def start(self) -> None:
        pass

    async def wire(self, bus: Bus, wants: MarketWants) -> None:
        pass

    def book(self, symbol: str) -> OrderBook | None:
        return None

    async def close(self) -> None:
        pass


def trade(i: int, symbol: str = "BTC-USD") -> Trade:
    return Trade(venue="sim", symbol=symbol, id=i, price=Decimal(100 + i), size=Decimal(1),
                 side=None, ts=i)


class SyncBot(Bot):
    symbols = ("BTC-USD",)

    def __init__(self, id: str, **kw: Any) -> None:
        super().__init__(id, **kw)
        self.seen: list[int | None] = []

    def on_trade(self, t: Trade) -> None:
        self.seen.append(t.id)


class AsyncBot(SyncBot):
    async def on_trade(self, t: Trade) -> None:  # type: ignore[override]
        self.seen.append(t.id)


class SyncRaiser(SyncBot):
    def on_trade(self, t: Trade) -> None:
        self.seen.append(t.id)
        if t.id is not None and t.id % 2 == 0:
            raise ValueError(f"even trade {t.id}")


class AsyncRaiser(SyncBot):
    async def on_trade(self, t: Trade) -> None:  # type: ignore[override]
        self.seen.append(t.id)
        raise RuntimeError(f"async boom {t.id}")


class Waiter(SyncBot):
    """Waits on ``gate`` while handling trade 0: the later trades wait in its mailbox."""

    def __init__(self, id: str, **kw: Any) -> None:
        super().__init__(id, **kw)
        self.gate = asyncio.Event()

    async def on_trade(self, t: Trade) -> None:  # type: ignore[override]
        if t.id == 0:
            await self.gate.wait()
        self.seen.append(t.id)


class Sleeper(SyncBot):
    symbols = ("ETH-USD",)

    async def on_trade(self, t: Trade) -> None:  # type: ignore[override]
        time.sleep(0.2)  # noqa: ASYNC251 (blocks the loop inside a coroutine handler on purpose)
        self.seen.append(t.id)


async def _settle(engine: Engine, condition: Any, what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_every_bot_gets_every_event_in_order_and_raisers_are_isolated() -> None:
    bots: list[SyncBot] = [SyncBot("s1"), AsyncBot("a1"), SyncRaiser("sr"), AsyncRaiser("ar"),
                           SyncBot("s2"), AsyncBot("a2"),
                           SyncBot("other", symbols=["ETH-USD"])]
    async with Engine(bots, source=QuietSource(), stagger=0.0, equity_every=0,
                      breaker_errors=10**6) as engine:
        errors: list[Event] = []
        engine.bus.subscribe("bot.error.*", handler=errors.append)
        for i in range(50):
            engine.bus.publish("trade.sim.BTC-USD", trade(i))
        engine.bus.publish("trade.sim.ETH-USD", trade(99, "ETH-USD"))
        for bot in bots[:-1]:
            assert bot.seen == list(range(50)), bot.id
        assert bots[-1].seen == [99]
        by_bot: dict[str, list[str]] = {}
        for ev in errors:
            err: BotError = ev.payload
            by_bot.setdefault(err.bot, []).append(err.error)
        assert by_bot["sr"] == [f"ValueError: even trade {i}" for i in range(0, 50, 2)]
        assert by_bot["ar"] == [f"RuntimeError: async boom {i}" for i in range(50)]
        assert set(by_bot) == {"sr", "ar"}
        for bot in bots[:-1]:
            stats = engine.stats(bot.id)["handlers"]["on_trade"]
            assert stats["count"] == 50, bot.id
            assert stats["total"] > 0 and stats["max"] > 0
            errors_expected = {"sr": 25, "ar": 50}.get(bot.id, 0)
            assert stats["errors"] == errors_expected, bot.id
            assert engine.status(bot.id) == "running"
        # the running slot is empty again once the dispatch is over
        assert engine.running.bot is None and engine.running.handler is None


async def test_a_waiting_coroutine_handler_queues_that_bot_only_and_its_drops_are_counted(
) -> None:
    waiter, sync_bot, async_bot = Waiter("w"), SyncBot("s"), AsyncBot("a")
    async with Engine([waiter, sync_bot, async_bot], source=QuietSource(), stagger=0.0,
                      equity_every=0, bot_buffer=5) as engine:
        dropped: list[Event] = []
        engine.bus.subscribe("bus.dropped.*", handler=dropped.append)
        for i in range(20):
            engine.bus.publish("trade.sim.BTC-USD", trade(i))
        # the others were not held up by the waiting bot
        assert sync_bot.seen == async_bot.seen == list(range(20))
        assert waiter.seen == []
        stats = engine.stats("w")
        assert stats["pending"] == 5 and stats["dropped"] == 14  # trades 1..14 dropped
        waiter.gate.set()
        await _settle(engine, lambda: len(waiter.seen) == 6, "the mailbox drained")
        assert waiter.seen == [0, 15, 16, 17, 18, 19]  # in order; the oldest were dropped
        assert engine.stats("w")["handlers"]["on_trade"]["count"] == 6
        await _settle(engine, lambda: bool(dropped), "the drops announced")
        notice: BusDropped = dropped[0].payload
        assert (dropped[0].topic, notice.dropped, notice.total) == ("bus.dropped.w", 14, 14)


async def test_the_longest_call_is_accounted_to_the_bot_that_made_it() -> None:
    quick, sleeper = AsyncBot("quick", symbols=["ETH-USD"]), Sleeper("sleeper")
    async with Engine([quick, sleeper, SyncBot("s", symbols=["ETH-USD"])],
                      source=QuietSource(), stagger=0.0, equity_every=0,
                      block_threshold=10.0) as engine:
        engine.running.take_longest()
        engine.bus.publish("trade.sim.ETH-USD", trade(1, "ETH-USD"))
        longest, bot, handler = engine.running.take_longest()
        assert (bot, handler) == ("sleeper", "on_trade")
        assert longest >= 0.2
        assert engine.stats("sleeper")["handlers"]["on_trade"]["max"] >= 0.2
        assert quick.seen == sleeper.seen == [1]
