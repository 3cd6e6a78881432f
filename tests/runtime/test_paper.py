"""Paper matching against the sim's own books and trades: never a fill better than the book,
never a resting fill at a price the market did not trade through."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.book.engine import OrderBook
from tickloop.models import (
    BookLevel,
    BookSnapshot,
    Liquidity,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
)
from tickloop.runtime.paper import PaperMatcher
from tickloop.sim.engine import Engine
from tickloop.sim.flow import Flow
from tickloop.sim.market import market_for

D = Decimal
SPEC = market_for("BTC-USD")


def _sim(seed: int) -> tuple[Engine, Flow]:
    engine = Engine([SPEC])
    flow = Flow(engine, rng=random.Random(seed), symbols=["BTC-USD"])
    flow.seed_book("BTC-USD", 0)
    for i in range(50):
        flow.step("BTC-USD", i)
    return engine, flow


def _book(engine: Engine) -> OrderBook:
    bids, asks = engine.depth("BTC-USD")
    snap = BookSnapshot(
        venue="sim", symbol="BTC-USD",
        bids=tuple(BookLevel(SPEC.price_decimal(p), SPEC.size_decimal(s)) for p, s in bids),
        asks=tuple(BookLevel(SPEC.price_decimal(p), SPEC.size_decimal(s)) for p, s in asks),
        sequence=engine.seq("BTC-USD"))
    return OrderBook.from_snapshot(snap)


def _small_book() -> OrderBook:
    return OrderBook.from_snapshot(BookSnapshot(
        venue="sim", symbol="BTC-USD", sequence=1,
        bids=(BookLevel(D("99"), D("1")), BookLevel(D("98"), D("2"))),
        asks=(BookLevel(D("101"), D("1")), BookLevel(D("102"), D("2")))))


def _trade(price: str, size: str = "10") -> Trade:
    return Trade(venue="sim", symbol="BTC-USD", id=1, price=D(price), size=D(size),
                 side=Side.SELL, ts=5)


def test_market_order_walks_levels_and_pays_taker_fee() -> None:
    m = PaperMatcher(taker_fee=D("0.01"))
    events = m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.MARKET, size=D("2"),
                      book=_small_book(), ts=1)
    kinds = [e.kind for e in events]
    assert kinds == [OrderEventKind.ACCEPTED, OrderEventKind.FILL, OrderEventKind.FILL]
    fills = [e.fill for e in events if e.fill is not None]
    assert [(f.price, f.size, f.fee, f.liquidity) for f in fills] == [
        (D("101"), D("1"), D("1.01"), Liquidity.TAKER), (D("102"), D("1"), D("1.02"),
                                                         Liquidity.TAKER)]
    assert events[-1].order.status is OrderStatus.FILLED
    assert events[-1].order.avg_price == D("101.5")


def test_liquidity_taken_is_not_taken_twice_from_the_same_book() -> None:
    m = PaperMatcher()
    book = _small_book()
    m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.MARKET, size=D("1"), book=book,
             ts=1)
    events = m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.MARKET, size=D("3"),
                      book=book, ts=2)
    fills = [e.fill for e in events if e.fill is not None]
    assert [(f.price, f.size) for f in fills] == [(D("102"), D("2"))]
    assert events[-1].kind is OrderEventKind.EXPIRED  # the book could not fill the rest


def test_limit_rests_and_fills_only_when_traded_through() -> None:
    m = PaperMatcher(maker_fee=D("0"))
    events = m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.LIMIT, price=D("100"),
                      size=D("3"), book=_small_book(), ts=1, client_order_id="c1")
    assert [e.kind for e in events] == [OrderEventKind.ACCEPTED]
    assert m.on_trade(_trade("100")) == []  # at the price: not through
    assert m.on_trade(_trade("100.5")) == []
    fills = m.on_trade(_trade("99.5", size="2"))
    assert [(e.fill.price, e.fill.size) for e in fills if e.fill] == [(D("100"), D("2"))]
    assert fills[0].order.status is OrderStatus.PARTIALLY_FILLED
    assert m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.LIMIT, price=D("100"),
                    size=D("3"), book=_small_book(), ts=1, client_order_id="c1") == []
    cancelled = m.cancel(fills[0].order.id, ts=9)
    assert cancelled[0].order.status is OrderStatus.CANCELED
    assert m.on_trade(_trade("90")) == []
    touch = PaperMatcher(fill_at_touch=True)
    touch.submit(symbol="BTC-USD", side=Side.SELL, type=OrderType.LIMIT, price=D("101"),
                 size=D("1"), book=_small_book(), ts=1)
    assert touch.on_trade(_trade("101"))[0].fill is not None


def test_crossing_limit_post_only_ioc_fok() -> None:
    m = PaperMatcher()
    events = m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.LIMIT, price=D("101"),
                      size=D("2"), book=_small_book(), ts=1)
    assert [e.fill.price for e in events if e.fill] == [D("101")]
    assert events[-1].order.status is OrderStatus.PARTIALLY_FILLED
    assert len(m.open_orders()) == 1
    rej = PaperMatcher().submit(symbol="BTC-USD", side=Side.SELL, type=OrderType.LIMIT,
                                price=D("99"), size=D("1"), post_only=True, book=_small_book(),
                                ts=1)
    assert rej[0].kind is OrderEventKind.REJECTED
    fok = PaperMatcher().submit(symbol="BTC-USD", side=Side.SELL, type=OrderType.LIMIT,
                                price=D("98"), size=D("4"), time_in_force=TimeInForce.FOK,
                                book=_small_book(), ts=1)
    assert [e.kind for e in fok] == [OrderEventKind.ACCEPTED, OrderEventKind.EXPIRED]
    ioc = PaperMatcher().submit(symbol="BTC-USD", side=Side.SELL, type=OrderType.LIMIT,
                                price=D("98"), size=D("4"), time_in_force=TimeInForce.IOC,
                                book=_small_book(), ts=1)
    assert [e.fill.size for e in ioc if e.fill] == [D("1"), D("2")]
    assert ioc[-1].kind is OrderEventKind.EXPIRED


def test_invalid_book_or_order_is_rejected() -> None:
    m = PaperMatcher()
    assert m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.MARKET, size=D("1"),
                    book=OrderBook("sim", "BTC-USD"), ts=1)[0].kind is OrderEventKind.REJECTED
    assert m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.LIMIT, size=D("1"),
                    book=_small_book(), ts=1)[0].order.reject_reason


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000),
       orders=st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]),
                                 st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
                                 st.integers(1, 40_000),  # lots
                                 st.integers(-200, 200)),  # ticks from the mid
                       min_size=1, max_size=8),
       steps=st.integers(1, 150))
def test_no_fill_better_than_the_sim_book_or_at_an_untraded_price(
        seed: int, orders: list[tuple[Side, OrderType, int, int]], steps: int) -> None:
    engine, flow = _sim(seed)
    book = _book(engine)
    m = PaperMatcher()
    mid_ticks = (engine.best("BTC-USD")[0] or 0) + (engine.best("BTC-USD")[1] or 0)
    taken: dict[tuple[Side, Decimal], Decimal] = {}
    for side, type_, lots, offset in orders:
        price = SPEC.price_decimal(max(1, mid_ticks // 2 + offset)) \
            if type_ is OrderType.LIMIT else None
        for ev in m.submit(symbol="BTC-USD", side=side, type=type_, size=SPEC.size_decimal(lots),
                           price=price, book=book, ts=1):
            if ev.fill is None:
                continue
            f = ev.fill
            # a taker fill is at a level of the book on the opposite side, within its size
            level = book.size_at(side.opposite, f.price)
            assert level > 0
            key = (side, f.price)
            taken[key] = taken.get(key, D(0)) + f.size
            assert taken[key] <= level
            if side is Side.BUY:
                assert book.best_ask is not None and f.price >= book.best_ask
                assert price is None or f.price <= price
            else:
                assert book.best_bid is not None and f.price <= book.best_bid
                assert price is None or f.price >= price
    # the market moves on; resting orders fill only at their limit, through a traded price
    resting = {o.id: o.price for o in m.open_orders()}
    first_new = engine.last_trade_id("BTC-USD") + 1
    for i in range(steps):
        flow.step("BTC-USD", 100 + i)
    for t in engine.trades("BTC-USD", since_id=first_new - 1):
        trade = t.to_model(SPEC)
        for ev in m.on_trade(trade):
            assert ev.fill is not None
            f = ev.fill
            assert f.liquidity is Liquidity.MAKER
            assert f.price == resting[f.order_id]
            assert f.size <= trade.size
            if f.side is Side.BUY:
                assert trade.price < f.price
            else:
                assert trade.price > f.price


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_resting_orders_do_fill_on_the_sim(seed: int) -> None:
    engine, flow = _sim(seed)
    book = _book(engine)
    m = PaperMatcher()
    bid, ask = engine.best("BTC-USD")
    assert bid is not None and ask is not None
    m.submit(symbol="BTC-USD", side=Side.BUY, type=OrderType.LIMIT,
             price=SPEC.price_decimal(bid), size=D("0.01"), book=book, ts=1)
    m.submit(symbol="BTC-USD", side=Side.SELL, type=OrderType.LIMIT,
             price=SPEC.price_decimal(ask), size=D("0.01"), book=book, ts=1)
    since = engine.last_trade_id("BTC-USD")
    fills = []
    for i in range(3000):
        flow.step("BTC-USD", 100 + i)
        for t in engine.trades("BTC-USD", since_id=since):
            since = t.trade_id
            fills.extend(e for e in m.on_trade(t.to_model(SPEC)) if e.fill is not None)
        if len(fills) >= 2:
            break
    assert fills, "a random walk trades through a quote at the touch sooner or later"
