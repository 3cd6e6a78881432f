"""The engine's market-data seam: any MarketSource, the same topics; SimClock.advance_to's
``inclusive``; counter client ids; ticks driven eagerly."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets

from tickloop import StreamClient
from tickloop.book.engine import OrderBook
from tickloop.bus import Bus
from tickloop.exceptions import ConfigError
from tickloop.models import BookLevel, BookSnapshot, Trade
from tickloop.replay import ReplayServer
from tickloop.runtime import Bot, Engine, SimClock
from tickloop.runtime.source import MarketWants, StreamSource
from tickloop.venues.base import Channel, Subscription


class ListSource:
    """A MarketSource that publishes given trades when told."""

    def __init__(self) -> None:
        self.wants: MarketWants | None = None
        self.bus: Bus | None = None
        self.closed = False
        self._book = OrderBook.from_snapshot(BookSnapshot(
            venue="mem", symbol="BTC-USD", bids=(BookLevel(Decimal(99), Decimal(5)),),
            asks=(BookLevel(Decimal(101), Decimal(5)),), sequence=1))

    async def start(self) -> None:
        pass

    async def wire(self, bus: Bus, wants: MarketWants) -> None:
        self.bus, self.wants = bus, wants

    def book(self, symbol: str) -> OrderBook | None:
        return self._book if symbol == "BTC-USD" else None

    async def close(self) -> None:
        self.closed = True

    def trade(self, price: str) -> None:
        assert self.bus is not None
        self.bus.publish("trade.mem.BTC-USD", Trade(venue="mem", symbol="BTC-USD", id=1,
                                                    price=Decimal(price), size=Decimal(1),
                                                    side=None, ts=0))


class Buyer(Bot):
    symbols = ("BTC-USD",)
    every = 1.0

    def __init__(self, id: str, **kw: Any) -> None:
        super().__init__(id, **kw)
        self.heard: list[Decimal] = []
        self.ticks = 0

    def on_trade(self, trade: Trade) -> None:
        self.heard.append(trade.price)

    async def tick(self) -> None:
        self.ticks += 1
        if self.ticks == 2:
            await self.buy("BTC-USD", "1")


async def test_an_engine_on_another_source() -> None:
    source = ListSource()
    clock = SimClock()
    ids = iter(range(1, 100))
    engine = Engine([Buyer("b1")], venue="mem", source=source, clock=clock, stagger=0,
                    equity_every=0, client_ids=lambda bot: f"{bot}-{next(ids)}")
    async with engine:
        assert source.wants == MarketWants(trades=("BTC-USD",), traded=("BTC-USD",))
        with pytest.raises(ConfigError, match="come from a source"):
            _ = engine.feed
        assert engine.source is source
        source.trade("100")
        bot = engine.bots[0]
        assert isinstance(bot, Buyer) and bot.heard == [Decimal(100)]
        clock.advance(0)
        assert bot.ticks == 1 and bot._engine is engine
        assert engine._hosts["b1"].tick_task is None  # a tick that never waits: no task
        clock.advance(1)
        for _ in range(5):
            await asyncio.sleep(0)
        fills = engine.portfolio("b1").position("BTC-USD")
        assert fills.size == 1 and fills.avg_price == Decimal(101)
        assert engine.position("b1", "BTC-USD") == fills
        assert [o.client_order_id for o in engine.open_orders("b1")] == []
    assert source.closed


def test_a_source_and_a_feed_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Engine([], source=ListSource(), url="ws://127.0.0.1:1")


def test_advance_to_not_inclusive_leaves_the_timers_of_that_instant() -> None:
    clock = SimClock()
    fired: list[str] = []
    clock.call_at(1.0, fired.append, "a")
    clock.call_at(2.0, fired.append, "b")
    assert clock.advance_to(2.0, inclusive=False) == 1
    assert fired == ["a"] and clock.monotonic() == 2.0
    assert clock.advance_to(2.0) == 1 and fired == ["a", "b"]


# -------------------------------------------------------- StreamSource on a recorded Binance


@pytest.mark.playback
@pytest.mark.timeout(60)
async def test_binance_traded_and_published_book_is_one_full_subscription(
    recorded_data: Path,
) -> None:
    # A symbol the bots both trade and read books of: one upstream book subscription, and the
    # local book behind it kept whole (the paper executor walks it), not cut to the published
    # depth by a depth-limited REST snapshot. A consumer at any depth can then share it.
    async with (
        ReplayServer([recorded_data / "BINANCE.ws.1.0"], start_on_message=True,
                     close_at_end=False, subscribed_only=True) as srv,
        StreamClient("binance", url=srv.url("/stream"), rest_url=srv.rest_url) as feed,
        Bus() as bus,
    ):
        source = StreamSource(feed)
        await source.start()
        wants = MarketWants(trades=("NKN-USDT",), books=("NKN-USDT", "LRC-BTC"),
                            traded=("NKN-USDT",), depth=10)
        await source.wire(bus, wants)
        try:
            books = {s: n for s, n in feed.upstream().items() if s.channel is Channel.BOOK}
            assert books == {Subscription(Channel.BOOK, "NKN-USDT"): 1,
                             Subscription(Channel.BOOK, "LRC-BTC"): 1}
            # the traded book serves any depth; the only-published one stays at depth 10
            await feed.subscribe_books(["NKN-USDT"], _nothing, depth=None, live=True)
            with pytest.raises(ConfigError, match="kept at 10 levels"):
                await feed.subscribe_books(["LRC-BTC"], _nothing, depth=None, live=True)
        finally:
            await source.close()


def _nothing(book: OrderBook) -> None:
    """A book consumer that only holds its subscription."""


# ------------------------------------------------------- StreamSource on a Kraken-protocol fake


async def _kraken_fake(sent: list[dict[str, Any]]) -> Any:
    """A Kraken v1 WebSocket that confirms every (un)subscription as the venue does, echoing
    the requested depth, and records what it was sent."""

    async def serve(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                msg = json.loads(raw)
                sent.append(msg)
                if msg.get("event") not in ("subscribe", "unsubscribe"):
                    continue
                sub = msg["subscription"]
                name = sub["name"] + (f"-{sub['depth']}" if "depth" in sub else "")
                status = "subscribed" if msg["event"] == "subscribe" else "unsubscribed"
                for pair in msg["pair"]:
                    await ws.send(json.dumps({
                        "channelID": 7, "channelName": name, "event": "subscriptionStatus",
                        "pair": pair, "status": status, "subscription": sub,
                        "reqid": msg["reqid"]}))

    return await websockets.serve(serve, "127.0.0.1", 0)


@pytest.mark.timeout(60)
async def test_kraken_live_books_are_subscribed_at_a_depth_the_venue_takes() -> None:
    # Kraken's book channel takes a depth from a fixed set: the keep-book consumer of a traded
    # symbol with no published book (depth None) is subscribed at the venue's default (10) and
    # its local book truncates there; a traded symbol whose book is published is subscribed at
    # the published depth (full_books changes nothing on a depth-limited venue).
    sent: list[dict[str, Any]] = []
    server = await _kraken_fake(sent)
    port = server.sockets[0].getsockname()[1]
    try:
        async with StreamClient("kraken", url=f"ws://127.0.0.1:{port}") as feed, Bus() as bus:
            source = StreamSource(feed)
            await source.start()
            wants = MarketWants(trades=("BTC-USD", "ETH-USD"), books=("ETH-USD",),
                                traded=("BTC-USD", "ETH-USD"), depth=25)
            await asyncio.wait_for(source.wire(bus, wants), 20)  # a hang guard
            try:
                books = {(m["pair"][0], m["subscription"].get("depth")) for m in sent
                         if m.get("event") == "subscribe"
                         and m["subscription"]["name"] == "book"}
                assert books == {("XBT/USD", 10), ("ETH/USD", 25)}
                assert {s for s in feed.upstream() if s.channel is Channel.BOOK} == {
                    Subscription(Channel.BOOK, "BTC-USD", depth=10),
                    Subscription(Channel.BOOK, "ETH-USD", depth=25),
                }
                btc, eth = source.book("BTC-USD"), source.book("ETH-USD")
                assert btc is not None and btc.depth == 10
                assert eth is not None and eth.depth == 25
            finally:
                await source.close()
    finally:
        server.close()
        await server.wait_closed()
