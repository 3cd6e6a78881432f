"""StreamClient -> bus, end to end against the embedded exchange (loopback only).

The sim's own state is the ground truth: the trades on the bus are the sim's trade log, the last
book snapshot is the sim's book, a forced disconnect shows up as status events. The waits are
bounded and only stop a broken run from hanging.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from tickloop import AsyncClient, Credentials, StreamClient
from tickloop.bus import Bus, Event, FeedLink
from tickloop.exceptions import ConfigError, SubscriptionError
from tickloop.models import BookSnapshot, Fill, OrderEvent, Reconnected, Ticker, Trade
from tickloop.sim import SimExchange

from .helpers import other_tasks, until

SYMBOLS = ["BTC-USD", "ETH-USD"]


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=5, symbols=SYMBOLS, rate=300) as ex:
        yield ex


def feed_for(ex: SimExchange, **options: Any) -> StreamClient:
    options.setdefault("base_wait", 0.01)
    options.setdefault("max_wait", 0.1)
    return StreamClient("sim", url=ex.ws_url, **options)


def _all(sub: Any) -> list[Event]:
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out


async def test_trades_on_the_bus_are_the_exchange_trade_log(ex: SimExchange) -> None:
    async with feed_for(ex) as feed, Bus() as bus:
        sub = bus.subscribe("trade.sim.*", policy="lossless", maxsize=100_000)
        link = await bus.attach(feed, trades=SYMBOLS)
        assert isinstance(link, FeedLink)
        assert "trade.sim.BTC-USD" in link.topics and "status.reconnected" in link.topics
        await until(lambda: len(sub) >= 60, "trades arrive")
        ex.pause_flow()
        last = {s: ex.trades(s)[-1].id for s in SYMBOLS}
        seen: dict[str, list[Trade]] = {s: [] for s in SYMBOLS}

        def caught_up() -> bool:
            for event in _all(sub):
                seen[event.payload.symbol].append(event.payload)
            return all(seen[s] and seen[s][-1].id == last[s] for s in SYMBOLS)

        await until(caught_up, "every trade up to the pause")
        for symbol in SYMBOLS:
            got = seen[symbol]
            log = [t for t in ex.trades(symbol) if t.id is not None and t.id >= (got[0].id or 0)]
            assert [(t.id, t.price, t.size, t.side) for t in got] == [
                (t.id, t.price, t.size, t.side) for t in log
            ]
        assert link.published >= sum(len(v) for v in seen.values())
        await link.aclose()
        assert feed.upstream() == {}  # the client unsubscribed what nobody else needs


async def test_books_are_top_n_snapshots_conflated_per_symbol(ex: SimExchange) -> None:
    async with feed_for(ex) as feed, Bus() as bus:
        books = bus.subscribe("book.*", policy="conflate")
        tickers = bus.subscribe("ticker.*", policy="conflate")
        await bus.attach(feed, books=SYMBOLS, depth=5, tickers=SYMBOLS)
        await until(lambda: books.conflated > 20 and len(tickers) == 2, "books and tickers")
        assert len(books) <= 2  # one pending snapshot per symbol, however many updates came
        ex.pause_flow()
        truth = {s: ex.book(s) for s in SYMBOLS}

        latest: dict[str, BookSnapshot] = {}

        def matches() -> bool:
            for event in _all(books):
                assert event.topic == f"book.sim.{event.payload.symbol}"
                latest[event.payload.symbol] = event.payload
            return all(
                s in latest and latest[s].sequence == truth[s].sequence for s in SYMBOLS
            )

        await until(matches, "the books caught up with the exchange")
        for symbol in SYMBOLS:
            snap = latest[symbol]
            assert isinstance(snap, BookSnapshot) and len(snap.bids) == len(snap.asks) == 5
            assert snap.bids == truth[symbol].bids[:5] and snap.asks == truth[symbol].asks[:5]
        assert all(isinstance(e.payload, Ticker) for e in _all(tickers))
        assert books.dropped == 0


async def test_a_forced_disconnect_arrives_as_status_events(ex: SimExchange) -> None:
    async with feed_for(ex) as feed, Bus() as bus:
        status = bus.subscribe("status.*")
        await bus.attach(feed, trades="BTC-USD")
        await until(lambda: feed.counters["connected"] >= 1, "connected")
        await ex.faults.disconnect_all()
        kinds: list[str] = []

        def reconnected() -> bool:
            kinds.extend(e.topic for e in _all(status))
            return "status.reconnected" in kinds

        await until(reconnected, "a reconnection reported on the bus")
        assert "status.disconnected" in kinds
        assert kinds.index("status.disconnected") < kinds.index("status.reconnected")


async def test_private_orders_and_fills_reach_the_bus(ex: SimExchange) -> None:
    credentials = Credentials.from_key(ex.create_api_key())
    async with (
        AsyncClient("sim", url=ex.rest_url, credentials=credentials) as rest,
        feed_for(ex, rest=rest, credentials=credentials) as feed,
        Bus() as bus,
    ):
        store = bus.subscribe(["order.sim", "fill.sim"], policy="lossless")
        await bus.attach(feed, orders=True, fills=True, status=False)
        placed = await rest.place_order("BTC-USD", side="buy", type="market",
                                        size=Decimal("0.01"))
        got: list[Event] = []

        def filled() -> bool:
            got.extend(_all(store))
            return any(e.topic == "fill.sim" for e in got)

        await until(filled, "the order's fill on the bus")
        orders = [e.payload for e in got if e.topic == "order.sim"]
        fills = [e.payload for e in got if e.topic == "fill.sim"]
        assert all(isinstance(o, OrderEvent) for o in orders) and orders[0].order.id == placed.id
        assert isinstance(fills[0], Fill) and fills[0].order_id == placed.id


async def test_a_refused_stream_undoes_the_link_and_bad_arguments_fail_early(
    ex: SimExchange,
) -> None:
    async with feed_for(ex) as feed, Bus() as bus:
        with pytest.raises(ConfigError):
            await bus.attach(feed, books="BTC-USD", depth=0)
        with pytest.raises(SubscriptionError):
            await bus.attach(feed, trades="BTC-USD", tickers="NOPE-USD")  # unknown symbol
        await until(lambda: feed.upstream() == {}, "the trades were unsubscribed again")
        assert bus._links == []


async def test_closing_the_bus_detaches_links_and_leaves_no_task(ex: SimExchange) -> None:
    before = _ours()
    async with feed_for(ex) as feed:
        bus = Bus()
        async with bus:
            got: list[Event] = []
            bus.subscribe("*", handler=got.append)

            async def on_reconnect(event: Event) -> None:
                assert isinstance(event.payload, Reconnected)

            bus.subscribe("status.reconnected", handler=on_reconnect)
            link = await bus.attach(feed, trades="BTC-USD")
            await until(lambda: len(got) > 5, "trades")
        assert link.closed and bus.closed
        await until(lambda: feed.upstream() == {}, "unsubscribed upstream")
    assert _ours() == before  # (the exchange's own tasks end on their own time)


def _ours() -> set[Any]:
    """The client's and the bus's tasks (all named ``tickloop-...``), not the exchange's."""
    return {t for t in other_tasks() if t.get_name().startswith("tickloop-")
            and not t.get_name().startswith("tickloop-sim")}


async def test_the_link_pauses_only_for_lossless_subscriptions_it_feeds(ex: SimExchange) -> None:
    async with feed_for(ex, heartbeat_timeout=30.0) as feed, Bus() as bus:
        link = await bus.attach(feed, trades="BTC-USD", status=False)
        unrelated = bus.subscribe("risk.*", policy="lossless", maxsize=2)
        for _ in range(3):
            bus.publish("risk.x", Ticker(venue="sim", symbol="X", ts=0))
        assert unrelated.paused and not link.paused  # not a topic of this link
        slow = bus.subscribe("trade.*", policy="lossless", maxsize=4)
        session = feed.sessions[0]
        await until(lambda: session.paused, "reading paused by the full subscription")
        assert link.paused and link.pauses == 1
        slow.close()  # a closed subscription never holds the socket
        assert not session.paused and not link.paused
        count = link.published
        await until(lambda: link.published > count + 5, "trades flow again")
        again = bus.subscribe("trade.*", policy="lossless", maxsize=4)
        await until(lambda: session.paused, "paused again")
        while (event := again.get_nowait()) is not None:
            assert isinstance(event.payload, Trade)
        # drained below the low water mark: resumed
        assert not session.paused and link.pauses == 2
        await link.aclose()
        assert not session.paused


def test_every_status_model_has_its_tag_as_its_topic() -> None:
    """A status model added to the StatusEvent union is published under ``status.<its tag>``
    (ConsumerFailed once went out as ``status.consumerfailed``)."""
    from typing import get_args

    from tickloop.bus import STATUS_KINDS, status_topic
    from tickloop.models import ConsumerFailed, Malformed, StatusEvent, Unconfirmed

    models = get_args(StatusEvent)
    assert {ConsumerFailed, Malformed, Unconfirmed} <= set(models) == set(STATUS_KINDS)
    for cls in models:
        assert STATUS_KINDS[cls] == cls.__struct_config__.tag
    malformed = Malformed(venue="sim", connection=0, reason="bad", limit=None, symbol=None,
                          channel=None, count=1, ts=0)
    assert status_topic(malformed) == "status.malformed"
