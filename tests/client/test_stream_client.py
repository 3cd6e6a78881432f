"""StreamClient against the embedded exchange: sharing, overflow, cleanup, sharding, errors,
status, handlers and private streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from tickloop import ConsumerOverflow, StreamClient, SubscriptionError
from tickloop.client.auth import Credentials
from tickloop.client.rest import AsyncClient
from tickloop.models import (
    Connected,
    ConsumerDetached,
    Fill,
    Gap,
    OrderEvent,
    StatusEvent,
    Ticker,
    Trade,
)
from tickloop.sim import SimExchange
from tickloop.venues.base import Channel, Subscription
from tickloop.venues.sim import SimCodec

from .helpers import open_sockets, until

SYMBOLS = ["BTC-USD", "ETH-USD"]
BTC = Subscription(Channel.TRADES, "BTC-USD")


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=7, symbols=SYMBOLS, rate=100) as ex:
        yield ex


def feed_for(ex: SimExchange, **options: Any) -> StreamClient:
    options.setdefault("base_wait", 0.01)
    options.setdefault("max_wait", 0.1)
    return StreamClient("sim", url=ex.ws_url, **options)


async def test_two_consumers_share_one_upstream_subscription(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        first = feed.trades("BTC-USD")
        second = feed.trades("BTC-USD")
        a = await anext(first)
        b = await anext(second)
        assert isinstance(a, Trade) and isinstance(b, Trade)
        assert feed.upstream() == {BTC: 2}
        assert len(feed.sessions) == 1
        assert feed.sessions[0].subscriptions == {BTC}
        await first.aclose()
        assert feed.upstream() == {BTC: 1}
        assert feed.sessions[0].subscriptions == {BTC}  # still needed by the second
        await anext(second)  # the second goes on
        await second.aclose()
        assert feed.upstream() == {}
        assert feed.sessions[0].subscriptions == set()
        await until(lambda: not feed.sessions[0].confirmed, "unsubscribed upstream")


async def test_slow_trades_consumer_overflows_others_unaffected(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        slow = feed.trades("BTC-USD", buffer=5)
        tickers = feed.tickers(SYMBOLS, buffer=2)
        fast: list[Trade] = []
        await anext(slow)
        await anext(tickers)
        await feed.subscribe_trades("BTC-USD", handler=fast.append)
        start = len(fast)
        # Never read `slow` or `tickers` meanwhile: they fall behind.
        await until(lambda: len(fast) > start + 20, "fast consumer keeps receiving")
        with pytest.raises(ConsumerOverflow) as info:
            while True:
                await anext(slow)
        assert info.value.dropped >= 1
        assert slow.consumer.stats.dropped >= 1
        # Tickers conflate to the latest per symbol: at most one pending per symbol, none lost.
        assert len(tickers.consumer) <= 2
        assert tickers.consumer.stats.conflated > 0
        latest = await anext(tickers)
        assert isinstance(latest, Ticker)
        # The fast consumer saw a contiguous run of ids.
        ids = [t.id for t in fast]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # type: ignore[operator]
        assert feed.upstream()[BTC] == 1  # the overflowed consumer left


async def test_detached_consumers_are_reported_as_status(ex: SimExchange) -> None:
    """An async handler that falls behind is detached like an iterator; neither drop is only a
    log line: status consumers get ConsumerDetached with what it was reading and lost."""
    async with feed_for(ex) as feed:
        status = feed.status()
        release = asyncio.Event()
        handled = 0

        async def stuck(trade: Trade) -> None:
            nonlocal handled
            handled += 1
            await release.wait()

        await feed.subscribe_trades(SYMBOLS, handler=stuck, buffer=3)
        slow = feed.trades("ETH-USD", buffer=4)
        await anext(slow)
        fast: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", handler=fast.append)
        seen: list[ConsumerDetached] = []
        while len(seen) < 2:
            event = await asyncio.wait_for(anext(status), 5)
            if isinstance(event, ConsumerDetached):
                seen.append(event)
        by_channel = {tuple(e.symbols): e for e in seen}
        assert set(by_channel) == {tuple(SYMBOLS), ("ETH-USD",)}
        assert all(e.venue == "sim" and e.channel == "trades" and e.dropped >= 1 for e in seen)
        assert handled == 1  # the handler never returned; it was not called again
        assert feed.counters["consumers_detached"] == 2
        with pytest.raises(ConsumerOverflow):
            while True:
                await anext(slow)
        release.set()
        assert feed.upstream() == {BTC: 1}  # only the fast consumer is left
        count = len(fast)
        await until(lambda: len(fast) > count + 5, "the fast consumer was never disturbed")


async def test_break_cancel_and_exit_leave_nothing_behind(ex: SimExchange) -> None:
    tasks_before = asyncio.all_tasks()
    sockets_before = open_sockets()
    async with feed_for(ex) as feed:
        async for _ in feed.trades("BTC-USD"):
            break
        await until(lambda: feed.upstream() == {}, "break releases the subscription")
        await until(lambda: not feed.sessions[0].subscriptions, "break unsubscribes upstream")

        started = asyncio.Event()

        async def consume() -> None:
            async for _ in feed.trades("ETH-USD"):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await until(lambda: feed.upstream() == {}, "cancel releases the subscription")

        # Left open on purpose: leaving `async with` must end them.
        pending = feed.trades("BTC-USD")
        await anext(pending)
        await feed.subscribe_trades("ETH-USD", handler=lambda t: None)

        async def async_handler(trade: Trade) -> None:
            return None

        await feed.subscribe_tickers("BTC-USD", handler=async_handler)
    backlog = [t async for t in pending]  # what was buffered, then the end
    assert all(isinstance(t, Trade) for t in backlog)
    with pytest.raises(StopAsyncIteration):
        await anext(pending)
    # The client's own tasks are gone at once; the exchange's per-connection tasks end when it
    # notices the closed sockets.
    client_prefixes = ("tickloop-session", "tickloop-stream", "tickloop-handler", "tickloop-backf")
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(client_prefixes)]
    await until(lambda: ex.stats.open_connections == 0, "the exchange sees no connection")
    await until(lambda: open_sockets() == sockets_before, "no socket left open")
    await until(lambda: asyncio.all_tasks() == tasks_before, "no task left")


class TinyLimits(SimCodec):
    max_streams_per_connection: ClassVar[int] = 8
    max_streams_per_message: ClassVar[int] = 3
    max_messages_per_second: ClassVar[float] = 500.0


async def test_fifty_symbols_are_sharded_over_several_connections() -> None:
    symbols = [f"C{i:02d}-USD" for i in range(50)]
    async with (
        SimExchange(seed=3, symbols=symbols, rate=10) as ex,
        feed_for(ex, codec=TinyLimits) as feed,
    ):
        seen: set[str] = set()
        await feed.subscribe_tickers(symbols, handler=lambda t: seen.add(t.symbol))
        assert len(feed.sessions) == 7
        assert all(len(s.subscriptions) <= 8 for s in feed.sessions)
        assert sum(len(s.subscriptions) for s in feed.sessions) == 50
        await until(lambda: seen == set(symbols), "every symbol receives data")
        assert ex.stats.open_connections == 7
        # 8 streams per connection, 3 per message: 3 subscribe messages a full connection.
        assert feed.sessions[0].stats.subscribe_messages == 3
        # Every shard reconnects and restores its own streams.
        await ex.faults.disconnect_all()
        await until(lambda: feed.counters["reconnected"] == 7, "all shards reconnected")
        seen.clear()
        await until(lambda: seen == set(symbols), "every symbol receives data again")


async def test_unknown_symbol_ends_the_stream_with_subscription_error(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        with pytest.raises(SubscriptionError) as info:
            async for _ in feed.trades("FOO-USD"):
                pass
        assert info.value.symbol == "FOO-USD"
        with pytest.raises(SubscriptionError):
            await feed.subscribe_trades(["BTC-USD", "NOPE-USD"], handler=lambda t: None)
        # The valid one of the same request is still served.
        got: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", handler=got.append)
        await until(lambda: len(got) > 3, "the good symbol still streams")
        assert feed.counters["refused"] == 2


async def test_status_events_are_observable(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        statuses = feed.status()
        seen: list[StatusEvent] = []
        await feed.subscribe_status(seen.append)
        await feed.subscribe_trades("BTC-USD", handler=lambda t: None)
        first = await anext(statuses)
        assert isinstance(first, Connected)
        await ex.faults.disconnect_all()
        kinds = [type(await anext(statuses)).__name__ for _ in range(2)]
        assert kinds == ["Disconnected", "Reconnected"]
        assert [type(e).__name__ for e in seen[:3]] == ["Connected", "Disconnected", "Reconnected"]
        reconnected = seen[2]
        assert reconnected.downtime >= 0  # type: ignore[union-attr]
        await statuses.aclose()  # type: ignore[attr-defined]


async def test_sync_and_async_handlers_and_change_handler(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        sync_got: list[Trade] = []
        async_got: list[Trade] = []
        replaced: list[Trade] = []

        async def on_async(trade: Trade) -> None:
            await asyncio.sleep(0)
            async_got.append(trade)

        await feed.subscribe_trades(["BTC-USD", "ETH-USD"], handler=sync_got.append)
        await feed.subscribe_trades("BTC-USD", handler=on_async)
        await until(lambda: len(sync_got) > 5 and len(async_got) > 5, "both handlers fire")
        assert {t.symbol for t in async_got} == {"BTC-USD"}
        assert feed.upstream()[BTC] == 2

        changed = feed.change_handler("trades", replaced.append, sync_got.append)
        assert changed == 1
        frozen = len(sync_got)
        await until(lambda: len(replaced) > 5, "the new handler fires")
        assert len(sync_got) == frozen

        await feed.unsubscribe_trades(["ETH-USD"])
        assert set(feed.upstream()) == {BTC}
        count = len(replaced)
        await until(lambda: len(replaced) > count + 3, "BTC still flows")
        assert {t.symbol for t in replaced[count:]} == {"BTC-USD"}

        # A failing handler is counted, never fatal.
        def broken(trade: Trade) -> None:
            raise RuntimeError("user bug")

        feed.change_handler("trades", broken, replaced.append)
        await until(lambda: len(async_got) > 20, "other handlers unaffected")
        consumers = feed.stats()["consumers"]
        assert any(c["handler_errors"] > 0 for c in consumers)


async def test_private_orders_and_fills_after_login(ex: SimExchange) -> None:
    key = ex.create_api_key()
    credentials = Credentials.from_key(key)
    async with (
        AsyncClient("sim", url=ex.rest_url, credentials=credentials) as rest,
        StreamClient(
            "sim", url=ex.ws_url, rest=rest, credentials=credentials, base_wait=0.01
        ) as feed,
    ):
        orders = feed.orders()
        fills: list[Fill] = []
        await feed.subscribe_fills(handler=fills.append)
        order_task = asyncio.ensure_future(anext(orders))
        await until(
            lambda: (
                feed.sessions[0].confirmed
                == {Subscription(Channel.ORDERS), Subscription(Channel.FILLS)}
            ),
            "private subscriptions confirmed",
        )
        placed = await rest.place_order("BTC-USD", side="buy", type="market", size=Decimal("0.01"))
        event = await order_task
        assert isinstance(event, OrderEvent)
        assert event.order.id == placed.id
        await until(lambda: len(fills) > 0, "a fill arrives")
        assert fills[0].order_id == placed.id
        assert ex.stats.ws_logins == 1
        # After a reconnect the private streams are restored (logging in again).
        await ex.faults.disconnect_all()
        await until(lambda: feed.counters["reconnected"] == 1, "reconnected")
        before = len(fills)
        await rest.place_order("BTC-USD", side="sell", type="market", size=Decimal("0.01"))
        await until(lambda: len(fills) > before, "fills after the reconnect")
        await orders.aclose()


async def test_private_stream_without_credentials_is_refused(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        with pytest.raises(SubscriptionError):
            async for _ in feed.orders():
                pass


async def test_rejected_credentials_end_the_private_stream(ex: SimExchange) -> None:
    wrong = Credentials("no-such-key", "not-the-secret")
    async with feed_for(ex, credentials=wrong) as feed:
        with pytest.raises(SubscriptionError) as info:
            async for _ in feed.fills():
                pass
        assert info.value.channel == "fills"
        assert "not-the-secret" not in str(info.value)


class NoTradeIds(SimCodec):
    contiguous_trade_ids: ClassVar[bool] = False


# With contiguous ids and backfill off, a reconnect is a Gap only when ids were really missed
# (issue 15, case 9): tests/client/test_stream_gaps.py. Without ids nothing can tell, so every
# outage is a time-range Gap.
@pytest.mark.parametrize("options", [{"codec": NoTradeIds}])
async def test_without_trade_ids_a_reconnect_is_reported_as_a_gap(
    ex: SimExchange, options: dict[str, Any]
) -> None:
    async with feed_for(ex, **options) as feed:
        gaps: list[Gap] = []
        await feed.subscribe_status(lambda e: gaps.append(e) if isinstance(e, Gap) else None)
        got: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", handler=got.append)
        await until(lambda: bool(got), "first trade")
        await ex.faults.disconnect_all()
        await until(lambda: bool(gaps), "a gap is reported")
        gap = gaps[0]
        assert not gap.recovered and gap.channel == "trades" and gap.symbol == "BTC-USD"
        assert gap.start_ts is not None and gap.end_ts is not None
        assert gap.start_ts <= gap.end_ts


async def test_five_hundred_symbols_just_work() -> None:
    symbols = [f"X{i:03d}-USD" for i in range(500)]
    async with (
        SimExchange(seed=5, symbols=symbols, rate=0.2) as ex,
        feed_for(ex, codec=TinyLimits) as feed,
    ):
        await feed.subscribe_trades(symbols, handler=lambda t: None)  # returns once confirmed
        assert len(feed.upstream()) == 500
        assert len(feed.sessions) == 63  # 8 streams per connection
        assert all(s.confirmed == s.subscriptions for s in feed.sessions)


async def test_candles_and_tickers_iterators(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        candles = feed.candles("BTC-USD", "1s")
        candle = await anext(candles)
        assert candle.symbol == "BTC-USD" and candle.interval == "1s"
        seen = set()
        async for ticker in feed.tickers(SYMBOLS):
            seen.add(ticker.symbol)
            if seen == set(SYMBOLS):
                break
        # Breaking out released the tickers; the candles stream is still held by `candles`.
        assert feed.upstream() == {Subscription(Channel.CANDLES, "BTC-USD", "1s"): 1}
        await candles.aclose()
        assert feed.upstream() == {}
