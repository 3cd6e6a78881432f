"""The engine against the embedded exchange: many bots on one loop, isolated, scheduled,
risk-checked, paper-executed and persisted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickloop.bus import Event
from tickloop.exceptions import ConfigError
from tickloop.models import (
    BookSnapshot,
    BotError,
    Candle,
    CircuitBreakerFired,
    Fill,
    LoopBlocked,
    OrderEvent,
    OrderStatus,
    RiskRejected,
    Ticker,
    Trade,
)
from tickloop.runtime import Bot, Engine, RiskLimits
from tickloop.runtime.store import Store
from tickloop.sim import SimExchange
from tickloop.venues.base import Channel

D = Decimal


async def until(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Poll ``condition``; the limit only stops a broken run from hanging (not a timing goal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


class Counter(Bot):
    symbols = ["BTC-USD"]
    every = 0.05

    def __init__(self, id: str, **params: Any) -> None:
        super().__init__(id, **params)
        self.ticks = 0
        self.trades: list[Trade] = []
        self.started = self.stopped = False

    async def on_start(self) -> None:
        self.started = True

    async def on_stop(self) -> None:
        self.stopped = True

    async def tick(self) -> None:
        self.ticks += 1

    async def on_trade(self, trade: Trade) -> None:
        self.trades.append(trade)


class SyncCounter(Bot):
    symbols = ["ETH-USD"]
    every = 0.05

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.ticks = 0
        self.trades = 0

    def tick(self) -> None:
        self.ticks += 1

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1


class AllChannels(Bot):
    symbols = ["BTC-USD"]
    channels = ("books", "tickers", "candles")
    candle_interval = "1s"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.got: dict[str, list[Any]] = {"book": [], "ticker": [], "candle": []}

    def on_book(self, book: BookSnapshot) -> None:
        self.got["book"].append(book)

    async def on_ticker(self, ticker: Ticker) -> None:
        self.got["ticker"].append(ticker)

    def on_candle(self, candle: Candle) -> None:
        self.got["candle"].append(candle)


class Raiser(Bot):
    symbols = ["BTC-USD"]
    every = 0.02

    async def tick(self) -> None:
        raise RuntimeError("boom in tick")


class Blocker(Bot):
    symbols = ["BTC-USD"]

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.blocked = False

    def on_trade(self, trade: Trade) -> None:
        if not self.blocked:
            self.blocked = True
            time.sleep(0.25)  # what CPU-bound work in a handler does to the loop


def _collect(engine: Engine, pattern: str) -> list[Event]:
    seen: list[Event] = []
    engine.bus.subscribe(pattern, handler=seen.append)
    return seen


async def test_bots_get_ticks_and_their_symbols_trades_sync_and_async() -> None:
    async with SimExchange(seed=3, symbols=["BTC-USD", "ETH-USD"], rate=60) as ex:
        a, b, s = Counter("a"), Counter("b"), SyncCounter("s")
        async with Engine([a, b, s], url=ex.ws_url, stagger=0.05) as engine:
            assert engine.status("a") == "running"
            await until(lambda: a.ticks >= 3 and b.ticks >= 3 and s.ticks >= 3, "ticks")
            await until(lambda: len(a.trades) >= 2 and s.trades >= 2, "trades")
            assert {t.symbol for t in a.trades} == {"BTC-USD"}
            # one upstream subscription per symbol and channel, whatever the number of bots
            upstream = engine.feed.upstream()
            assert upstream, upstream
            stats = engine.stats("a")
            assert stats["handlers"]["tick"]["count"] >= 3
            assert stats["handlers"]["on_trade"]["count"] == len(a.trades)
            assert a.started
        assert a.stopped and engine.status("a") == "stopped"


async def test_books_tickers_and_candles_reach_the_bots_that_declared_them() -> None:
    async with SimExchange(seed=9, symbols=["BTC-USD"], rate=60) as ex:
        bot, trades_only = AllChannels("all"), Counter("t")
        async with Engine([bot, trades_only], url=ex.ws_url):
            await until(lambda: all(bot.got.values()), "a book, a ticker and a candle")
            book = bot.got["book"][-1]
            assert isinstance(book, BookSnapshot) and book.symbol == "BTC-USD"
            assert 0 < len(book.bids) <= 10 and book.bids[0].price < book.asks[0].price
            assert isinstance(bot.got["ticker"][0], Ticker)
            assert bot.got["candle"][0].interval == "1s"


async def test_errors_are_isolated_and_the_breaker_pauses_then_resumes() -> None:
    async with SimExchange(seed=4, symbols=["BTC-USD"], rate=40) as ex:
        good, bad = Counter("good"), Raiser("bad")
        async with Engine([good, bad], url=ex.ws_url, breaker_errors=3,
                          breaker_window=60.0) as engine:
            errors = _collect(engine, "bot.error.*")
            breaker = _collect(engine, "bot.breaker.*")
            await until(lambda: engine.status("bad") == "error", "the breaker fired")
            assert len(errors) == 3
            err = errors[0].payload
            assert isinstance(err, BotError)
            assert (errors[0].topic, err.bot, err.handler) == ("bot.error.bad", "bad", "tick")
            assert "RuntimeError: boom in tick" in err.error and "Traceback" in err.traceback
            assert isinstance(breaker[0].payload, CircuitBreakerFired)
            assert breaker[0].topic == "bot.breaker.bad"
            before = good.ticks
            await until(lambda: good.ticks >= before + 3, "the good bot carries on")
            assert len(errors) == 3  # paused: no more ticks, no more errors
            engine.resume("bad")
            assert engine.status("bad") == "running"
            await until(lambda: len(errors) >= 4, "ticks again after resume")
            assert engine.status("good") == "running"


async def test_a_blocking_handler_is_named_by_loop_blocked() -> None:
    async with SimExchange(seed=5, symbols=["BTC-USD"], rate=40) as ex:
        blocker = Blocker("slowpoke")
        async with Engine([blocker, Counter("fine")], url=ex.ws_url) as engine:
            blocked = _collect(engine, "loop.blocked")
            # a loaded machine may stall the loop on its own too (bot None): find the bot's
            await until(lambda: any(e.payload.bot == "slowpoke" for e in blocked),
                        "a LoopBlocked event naming the bot")
            event = next(e.payload for e in blocked if e.payload.bot == "slowpoke")
            assert isinstance(event, LoopBlocked)
            assert event.handler == "on_trade"
            assert event.duration >= 0.2
            assert engine.stats("slowpoke")["handlers"]["on_trade"]["max"] >= 0.2
            assert engine.monitor is not None and engine.monitor.blocked >= 1
            overall = engine.stats()
            assert set(overall["bots"]) == {"slowpoke", "fine"}
            assert overall["loop"]["blocked"] >= 1 and overall["loop"]["lag_max"] >= 0.1


class Trader(Bot):
    symbols = ["BTC-USD"]
    risk = RiskLimits(max_order_notional=D("1000000"), max_position=D("0.05"))

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.orders_seen: list[OrderEvent] = []
        self.fills: list[Fill] = []

    async def on_order(self, event: OrderEvent) -> None:
        self.orders_seen.append(event)

    async def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)


async def test_paper_market_order_fills_and_risk_rejects_before_the_venue() -> None:
    async with SimExchange(seed=6, symbols=["BTC-USD"], rate=40) as ex:
        bot = Trader("t1")
        async with Engine([bot], url=ex.ws_url) as engine:
            rejected = _collect(engine, "risk.rejected.*")
            await until(lambda: (engine.book("BTC-USD") is not None
                                 and engine.book("BTC-USD").valid), "a valid local book")
            order = await bot.buy("BTC-USD", "0.01")
            assert order.status is OrderStatus.FILLED
            await until(lambda: len(bot.fills) >= 1, "on_fill")
            assert bot.position("BTC-USD").size == D("0.01")
            assert bot.fills[0].price >= D(0)
            placed = len(engine.executor.matcher._orders)  # type: ignore[attr-defined]
            refused = await bot.buy("BTC-USD", "0.1")  # past max_position
            assert refused.status is OrderStatus.REJECTED
            assert "max_position" in (refused.reject_reason or "")
            assert len(engine.executor.matcher._orders) == placed  # type: ignore[attr-defined]
            assert isinstance(rejected[0].payload, RiskRejected)
            assert rejected[0].topic == "risk.rejected.t1"
            assert rejected[0].payload.check == "max_position"
            # the kill switch refuses everything and cancels what rests
            book = engine.book("BTC-USD")
            assert book is not None and book.best_bid is not None
            resting = await bot.buy("BTC-USD", "0.01", price=str(book.best_bid - 100))
            assert resting.status is OrderStatus.OPEN and len(bot.orders) == 1
            await engine.kill("t1")
            assert bot.orders == []
            assert (await bot.sell("BTC-USD", "0.01")).status is OrderStatus.REJECTED
            assert rejected[-1].payload.check == "kill_switch"


class Params(msgspec.Struct):
    fast: int = 5
    slow: int = 20
    size: Decimal = D("0.01")


class WithParams(Bot):
    Params = Params


def test_parameters_are_typed_and_a_bad_one_is_named() -> None:
    bot = WithParams("p1", fast=3, size="0.5")
    assert (bot.params.fast, bot.params.slow, bot.params.size) == (3, 20, D("0.5"))
    with pytest.raises(ConfigError) as err:
        WithParams("p2", fast="quick")
    assert err.value.field == "fast" and "fast" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        WithParams("p3", fats=3)
    assert err.value.field == "fats"
    with pytest.raises(ConfigError) as err:
        Bot("bad id!")
    assert err.value.field == "id"


class Persistent(Bot):
    symbols = ["BTC-USD"]
    every = 0.02

    async def tick(self) -> None:
        self.state["ticks"] = self.state.get("ticks", 0) + 1


async def test_state_persists_across_restarts_and_events_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "rt.db"
    async with SimExchange(seed=7, symbols=["BTC-USD"], rate=20) as ex:
        first = Persistent("keeper")
        async with Engine([first, Raiser("bad")], url=ex.ws_url, store=path,
                          breaker_errors=2, equity_every=0.05) as engine:
            await until(lambda: first.state.get("ticks", 0) >= 3, "ticks")
            await until(lambda: engine.status("bad") == "error", "breaker")
            refused = await first.buy("BTC-USD", "0")
            assert refused.status is OrderStatus.REJECTED
            equities = _collect(engine, "bot.equity.keeper")
            await until(lambda: len(equities) >= 2, "equity snapshots")
        ticks = first.state["ticks"]
        second = Persistent("keeper")
        async with Engine([second], url=ex.ws_url, store=path):
            assert second.state["ticks"] >= ticks
    async with Store(path) as store:
        errors = await store.events(bot="bad", type="bot_error")
        assert len(errors.items) == 2
        assert len((await store.events(type="circuit_breaker")).items) == 1
        rejected = (await store.events(type="risk_rejected")).items
        assert [(r["bot"], r["payload"]["check"]) for r in rejected] == [("keeper", "size")]
        snapshots = (await store.equity(bot="keeper")).items
        assert len(snapshots) >= 2 and snapshots[0]["equity"] == "10000"
        assert await store.integrity_check() == "ok"


class Offloader(Bot):
    symbols = ["BTC-USD"]

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.result: int | None = None

    async def on_start(self) -> None:
        self.log.info("offloading")
        self.result = await self.offload(pow, 2, 20)


async def test_offload_log_pause_stop_and_the_venue_call_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    from tickloop.exceptions import TimeoutError as TickloopTimeout
    from tickloop.runtime import PaperExecutor

    caplog.set_level("INFO", logger="tickloop.bot")
    async with SimExchange(seed=8, symbols=["BTC-USD"], rate=40) as ex:
        off, counter, trader = Offloader("off"), Counter("c"), Trader("slowvenue")
        async with Engine([off, counter, trader], url=ex.ws_url, call_timeout=0.05,
                          executor=PaperExecutor(latency=5.0)) as engine:
            assert off.result == 2 ** 20  # computed in the process pool
            assert engine._pool is not None
            record = next(r for r in caplog.records if r.getMessage() == "[off] offloading")
            assert record.bot == "off"  # type: ignore[attr-defined]
            # a venue call that hangs is cut at call_timeout, on the engine's clock
            with pytest.raises(TickloopTimeout):
                await trader.buy("BTC-USD", "0.01")
            engine.pause("c")
            assert engine.status("c") == "paused"
            await asyncio.sleep(0.05)  # a tick started before the pause may still finish
            ticks = counter.ticks
            await asyncio.sleep(0.2)
            assert counter.ticks == ticks  # a paused bot gets no ticks
            engine.resume("c")
            await until(lambda: counter.ticks > ticks, "ticks after resume")
            await engine.stop("c")
            assert engine.status("c") == "stopped" and counter.stopped
        assert engine._pool is None  # shut down with the engine


class Listener(Bot):
    topics = ["bot.signal.*"]

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.events: list[Event] = []

    async def on_event(self, event: Event) -> None:
        self.events.append(event)


class Signaller(Bot):
    symbols = ["BTC-USD"]
    every = 0.02

    def tick(self) -> None:
        self.signal("hello", "1", symbol="BTC-USD")


async def test_declared_topics_reach_on_event() -> None:
    async with SimExchange(seed=10, symbols=["BTC-USD"], rate=20) as ex:
        listener = Listener("ears")
        async with Engine([listener, Signaller("mouth")], url=ex.ws_url):
            await until(lambda: len(listener.events) >= 2, "signals on_event")
            first = listener.events[0]
            assert first.topic == "bot.signal.mouth"
            assert first.payload.name == "hello" and first.payload.bot == "mouth"


class BookReader(Bot):
    symbols = ["BTC-USD"]
    channels = ("trades", "books")

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.snapshots: list[BookSnapshot] = []
        self.live_valid: list[bool] = []

    def on_book(self, book: BookSnapshot) -> None:
        self.snapshots.append(book)
        live = self.book("BTC-USD")
        self.live_valid.append(live is not None and live.valid)


async def test_a_traded_symbol_with_published_books_keeps_its_live_book_with_one_consumer() -> None:
    # The bus link's book subscription keeps the live book of a symbol the bots both trade and
    # read books of: no second (live) book consumer is made for the executor and the marks.
    async with SimExchange(seed=5, symbols=["BTC-USD"], rate=60) as ex:
        bot = BookReader("r1")
        async with Engine([bot], url=ex.ws_url) as engine:
            await until(lambda: len(bot.snapshots) >= 5, "five published books")
            book = engine.book("BTC-USD")
            assert book is not None and book.valid
            assert all(bot.live_valid)
            consumers = [c for c in engine.feed._handlers[Channel.BOOK]
                         if "BTC-USD" in {s.symbol for s in c.subscriptions}]
            assert len(consumers) == 1
            last = bot.snapshots[-1]
            assert len(last.bids) <= engine.book_depth and len(last.asks) <= engine.book_depth
            assert last.bids[0].price < last.asks[0].price
