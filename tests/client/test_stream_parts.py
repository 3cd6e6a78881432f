"""The pieces StreamClient is made of, each on its own: the channel table, shard placement, the
task owner, the trade feed; and the API's shape (async subscribe_status, plain change_handler,
aclose with close as its deprecated name)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any, cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tickloop import ConfigError, StreamClient
from tickloop.client.channels import ALL, CHANNELS, held, kind, subscriptions, symbols
from tickloop.client.consumers import BOOK_DELTAS, Consumer, Overflow
from tickloop.client.continuity import TradeContinuity
from tickloop.client.placement import Placement
from tickloop.client.session import SessionState, WsSession
from tickloop.client.tasks import TaskOwner
from tickloop.client.trades import TradeFeed
from tickloop.models import Gap, StatusEvent, Trade
from tickloop.sim import SimExchange
from tickloop.venues.base import Channel, Subscription

from .helpers import until

# ---------------------------------------------------------------------------- channel table


def test_every_row_has_its_iterator_and_subscribe_pair() -> None:
    for name, row in CHANNELS.items():
        assert callable(getattr(StreamClient, name)), name
        assert inspect.iscoroutinefunction(getattr(StreamClient, f"subscribe_{name}")), name
        assert inspect.iscoroutinefunction(getattr(StreamClient, f"unsubscribe_{name}")), name
        assert row.default in row.allowed
    assert kind("ticker") is kind("tickers") is CHANNELS["tickers"]
    assert kind(Channel.BOOK) is CHANNELS["books"] and kind(BOOK_DELTAS).route == BOOK_DELTAS
    with pytest.raises(ConfigError) as info:
        kind("quotes")
    assert info.value.field == "channel"


def test_policies_come_from_the_row() -> None:
    assert CHANNELS["trades"].policy(None) is Overflow.ERROR
    assert CHANNELS["tickers"].policy("backpressure") is Overflow.BACKPRESSURE
    for row, bad in ((CHANNELS["trades"], "conflate"), (CHANNELS["books"], "error")):
        with pytest.raises(ConfigError) as info:
            row.policy(bad)
        assert info.value.field == "overflow"
    with pytest.raises(ConfigError):
        CHANNELS["trades"].policy("drop_oldest")  # the bus's lossy policies are not offered


def test_symbols_and_subscriptions() -> None:
    assert symbols("btc-usd") == ["BTC-USD"]
    assert symbols(["a-b", "A-B", "c-d"]) == ["A-B", "C-D"]
    assert symbols("*") == symbols(None) == symbols([]) == symbols(("x-y", "*")) == [ALL]
    candles = subscriptions(CHANNELS["candles"], ["A-B"], "1m")
    assert candles == (Subscription(Channel.CANDLES, "A-B", "1m"),)
    assert subscriptions(CHANNELS["orders"], None) == (Subscription(Channel.ORDERS),)
    current = [Subscription(Channel.CANDLES, s, i) for s in ("A-B", "C-D") for i in ("1m", "5m")]
    assert held(current, "A-B", "1m") == [Subscription(Channel.CANDLES, "A-B", "1m")]
    assert len(held(current, "*", "5m")) == 2 and len(held(current, None)) == 4


# -------------------------------------------------------------------------------- placement


class FakeSession:
    def __init__(self, index: int) -> None:
        self.index = index
        self.subscriptions: set[Subscription] = set()
        self.state = SessionState.OPEN


def test_placement_shards_by_the_limit_and_keeps_private_streams_together() -> None:
    made: list[FakeSession] = []

    def factory(index: int) -> WsSession:
        made.append(FakeSession(index))
        return cast(WsSession, made[-1])

    placement = Placement(2, factory)
    subs = [Subscription(Channel.TRADES, s) for s in ("A-B", "C-D", "E-F")]
    plan = placement.plan(subs)
    assert [len(v) for v in plan.values()] == [2, 1] and len(placement.sessions) == 2
    for session, added in plan.items():
        cast(FakeSession, session).subscriptions.update(added)
    assert placement.plan(subs[:1]) == {placement[subs[0]]: []}  # still carried: nothing to add
    orders, fills = Subscription(Channel.ORDERS), Subscription(Channel.FILLS)
    first = placement.plan([orders])
    (carrier,) = first
    cast(FakeSession, carrier).subscriptions.add(orders)
    assert placement.place(fills) is carrier  # beside the logged-in private stream
    made[1].state = SessionState.FAILED  # a failed connection is never chosen
    cast(FakeSession, placement.sessions[0]).subscriptions.clear()
    assert placement.place(Subscription(Channel.TICKER, "A-B")) is placement.sessions[0]
    taken = placement.by_session(subs)
    assert sum(len(v) for v in taken.values()) == 3 and not any(s in placement for s in subs)


# ------------------------------------------------------------------------------ task owner


async def test_task_owner_cancels_awaits_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    owner = TaskOwner("test")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async def broken() -> None:
        raise ValueError("boom")

    waiting = owner.spawn(forever(), name="forever")
    failing = owner.spawn(broken(), name="broken")
    await started.wait()
    assert len(owner) >= 1
    with caplog.at_level(logging.ERROR, logger="tickloop.client.tasks"):
        await owner.aclose()
    assert waiting.cancelled() and failing.done() and len(owner) == 0 and owner.closed
    assert any("broken" in r.getMessage() for r in caplog.records)  # logged, not raised


async def test_task_owner_passes_the_closers_own_cancellation_on() -> None:
    owner = TaskOwner("test")
    release = asyncio.Event()

    async def shielded() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # takes its time to end
            raise

    owner.spawn(shielded(), name="slow")
    await asyncio.sleep(0)
    closer = asyncio.get_running_loop().create_task(owner.aclose())
    await asyncio.sleep(0.01)
    closer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closer


# ------------------------------------------------------------------------------- trade feed


def trade(tid: int, symbol: str = "A-B") -> Trade:
    return Trade(
        venue="sim",
        symbol=symbol,
        id=tid,
        price=Decimal("1.5"),
        size=Decimal(1),
        side="buy",
        ts=tid,
        recv_ts=tid,
    )


def trade_feed(
    track_ids: bool = True, clock: Callable[[], int] = time.time_ns
) -> tuple[TradeFeed, Consumer, list[StatusEvent]]:
    consumer = Consumer(Channel.TRADES, policy=Overflow.ERROR, maxsize=100)
    published: list[StatusEvent] = []
    counters = {k: 0 for k in ("gaps", "gaps_recovered", "backfilled", "bogus_trade_ids")}
    feed = TradeFeed(
        "sim",
        routes={"A-B": (consumer,)},
        track_ids=track_ids,
        source=lambda: None,
        publish=published.append,
        report=published.append,
        counters=counters,
        tasks=TaskOwner(),
        clock=clock,
    )
    feed.watch("A-B")
    return feed, consumer, published


def backlog(consumer: Consumer) -> list[int | None]:
    out: list[Any] = []
    while True:
        try:
            out.append(consumer.get_nowait().id)
        except LookupError:
            return out


def test_trade_feed_dedupes_and_reports_a_real_hole_after_an_outage() -> None:
    feed, consumer, published = trade_feed()
    for tid in (1, 2, 2, 3):
        feed.on_trade(trade(tid))
    assert backlog(consumer) == [1, 2, 3] and feed.duplicates == 1
    feed.on_lost("A-B", ts=10)
    feed.on_confirmed("A-B")  # no REST source: the next live trade tells what was missed
    feed.on_trade(trade(6))
    assert backlog(consumer) == [6]
    (gap,) = published
    assert isinstance(gap, Gap) and (gap.first_missing, gap.last_missing) == (4, 5)
    assert not gap.recovered and feed.counters["gaps"] == 1
    feed.forget("A-B")
    feed.on_trade(trade(6))  # nothing is tracked any more: delivered as it comes
    assert backlog(consumer) == [6]


def on_trade_through_on_live(feed: TradeFeed, trade: Trade) -> None:
    """TradeFeed.on_trade as it was before it took the next id inline: every trade through
    TradeContinuity.on_live (the reference the inline path must match)."""
    cont = feed._continuity.get(trade.symbol)
    if cont is not None and not cont.on_live(trade):
        if cont.bogus != feed._bogus_seen.get(trade.symbol, 0):
            feed._bogus(cont)
            released = cont.released()
            if released is not None:
                for consumer in feed._routes.get(trade.symbol, ()):
                    consumer.push(released)
        if cont.recovering:
            feed._recover(cont)
        return
    for consumer in feed._routes.get(trade.symbol, ()):
        consumer.push(trade)


# steps: an absolute id (a small one, so that a stream comes back after a jump), or one
# relative to the last id sent (next, repeated, a hole, an absurd jump past max_jump)
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just(False), st.integers(0, 12)),
        st.tuples(st.just(True), st.sampled_from([1, 1, 1, 0, 2, 2_000_000])),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_STEPS)
@example([(False, 3), (True, 1), (True, 2_000_000), (False, 5), (True, 1)])  # back after a jump
def test_trade_feed_takes_the_next_id_inline_exactly_as_on_live_would(
    steps: list[tuple[bool, int]],
) -> None:
    # TradeFeed.on_trade decides the commonest case (the next id) without calling on_live: it
    # delivers and reports what the path through on_live does, in the same order (duplicates,
    # holes, recoveries and absurd jumps included)
    feed, consumer, published = trade_feed(clock=lambda: 7)
    ref, ref_consumer, ref_published = trade_feed(clock=lambda: 7)
    tid = 0
    for relative, step in steps:
        tid = tid + step if relative else step
        feed.on_trade(trade(tid))
        on_trade_through_on_live(ref, trade(tid))
        a, b = feed._continuity["A-B"], ref._continuity["A-B"]
        assert (a.last_id, a.suspect, a.bogus, a.recovering) == (
            b.last_id, b.suspect, b.bogus, b.recovering)
    assert backlog(consumer) == backlog(ref_consumer)
    assert published == ref_published
    assert feed.duplicates == ref.duplicates and feed.counters == ref.counters


def test_a_continuity_refuses_a_jump_bound_below_one() -> None:
    with pytest.raises(ValueError, match="max_jump"):
        TradeContinuity("sim", "A-B", max_jump=0)


def test_trade_feed_without_ids_reports_the_outage_as_a_time_range() -> None:
    feed, _, published = trade_feed(track_ids=False)
    feed.on_lost("A-B", ts=10)
    feed.on_confirmed("A-B")
    (gap,) = published
    assert isinstance(gap, Gap) and gap.start_ts == 10 and gap.first_missing is None


# ----------------------------------------------------------------------------- API shape


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=3, symbols=["BTC-USD"], rate=50) as ex:
        yield ex


async def test_status_subscription_is_awaited_and_change_handler_is_a_plain_call(
    ex: SimExchange,
) -> None:
    assert inspect.iscoroutinefunction(StreamClient.subscribe_status)
    assert inspect.iscoroutinefunction(StreamClient.unsubscribe_status)
    assert not inspect.iscoroutinefunction(StreamClient.change_handler)
    async with StreamClient("sim", url=ex.ws_url) as feed:
        seen: list[StatusEvent] = []
        await feed.subscribe_status(seen.append)
        first: list[Trade] = []
        second: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", first.append)
        assert feed.change_handler("trades", second.append) == 1  # an int, not a coroutine
        count = len(first)  # no await since the change: from here on, all go to `second`
        await until(lambda: len(second) >= 3, "trades reach the new handler")
        assert len(first) == count
        assert any(c["name"] == "status" for c in feed.stats()["consumers"])
        await feed.unsubscribe_status(seen.append)
        assert not any(c["name"] == "status" for c in feed.stats()["consumers"])


async def test_aclose_is_the_name_and_close_still_works_with_a_warning(ex: SimExchange) -> None:
    feed = StreamClient("sim", url=ex.ws_url)
    await feed.start()
    await feed.aclose()
    assert feed.closed
    await feed.aclose()  # idempotent
    old = StreamClient("sim", url=ex.ws_url)
    await old.start()
    with pytest.warns(DeprecationWarning, match="aclose"):
        await old.close()
    assert old.closed
