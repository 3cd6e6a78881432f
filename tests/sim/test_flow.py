"""Synthetic order flow: deterministic per seed, changes the book every step, keeps it sane."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.models import OrderType, Side
from tickloop.sim.engine import (
    DEFAULT_MARKETS,
    BookUpdate,
    Engine,
    EngineEvent,
    Rejected,
    TradeEvent,
)
from tickloop.sim.flow import Flow
from tickloop.sim.market import market_for

SYMBOLS = ["BTC-USD", "SOL-USD", "XYZ-EUR"]


def make(seed: int, **kw: object) -> tuple[Engine, Flow]:
    engine = Engine([DEFAULT_MARKETS["BTC-USD"], DEFAULT_MARKETS["SOL-USD"], market_for("XYZ-EUR")])
    flow = Flow(engine, rng=random.Random(seed), symbols=SYMBOLS, **kw)  # type: ignore[arg-type]
    for symbol in SYMBOLS:
        flow.seed_book(symbol, 0)
    return engine, flow


def units(engine: Engine) -> dict[str, int]:
    sums: dict[str, int] = {}
    for account in engine.accounts():
        for asset, (total, _) in engine.balance_units(account).items():
            sums[asset] = sums.get(asset, 0) + total
    return sums


def run(flow: Flow, steps: int, ts0: int = 1) -> list[list[EngineEvent]]:
    return [flow.step(SYMBOLS[i % len(SYMBOLS)], ts0 + i) for i in range(steps)]


def test_same_seed_same_events_other_seed_other_events() -> None:
    one = run(make(7)[1], 600)
    two = run(make(7)[1], 600)
    assert one == two
    assert run(make(8)[1], 600) != one


def test_seed_book_places_a_ladder_per_maker() -> None:
    engine, flow = make(1, makers=2, levels=5)
    for symbol in SYMBOLS:
        bids, asks = engine.depth(symbol)
        assert len(bids) == 5 and len(asks) == 5
        assert bids[0][0] < flow.fair_value(symbol) < asks[0][0]
    for maker in flow.makers:
        assert len(engine.orders(maker)) == 2 * 5 * len(SYMBOLS)
    assert engine.last_trade_id("BTC-USD") == 0


def test_every_step_changes_a_two_sided_uncrossed_book() -> None:
    engine, flow = make(3)
    initial = units(engine)
    seqs = {s: engine.seq(s) for s in SYMBOLS}
    trades = 0
    for i in range(4500):
        symbol = SYMBOLS[i % 3]
        events = flow.step(symbol, 10 + i)
        updates = [ev for ev in events if isinstance(ev, BookUpdate)]
        assert updates and all(u.symbol == symbol for u in updates)
        for update in updates:
            assert update.prev_seq == seqs[symbol]
            seqs[symbol] = update.seq
        best_bid, best_ask = engine.best(symbol)
        assert best_bid is not None and best_ask is not None and best_bid < best_ask
        for ev in events:
            if isinstance(ev, TradeEvent):
                trades += 1
                assert ev.taker_account in flow.takers and ev.maker_account in flow.makers
    assert units(engine) == initial
    assert trades > 500
    for symbol in SYMBOLS:
        ids = [t.trade_id for t in engine.trades(symbol)]
        assert ids == list(range(1, len(ids) + 1))
    # the ladders stay bounded and near the fair value
    for maker in flow.makers:
        assert len(engine.orders(maker)) <= 2 * flow.levels * len(SYMBOLS) + 6
    for symbol in SYMBOLS:
        bid, ask = engine.best(symbol)
        assert bid is not None and ask is not None
        spacing = max(1, round(flow.fair_value(symbol) * 0.0001))
        assert abs((bid + ask) / 2 - flow.fair_value(symbol)) < flow.levels * spacing * 2


def test_flow_refills_a_side_a_user_swept() -> None:
    engine, flow = make(5)
    engine.open_account("whale", {"BTC": Decimal(10**6), "USD": Decimal(10**12)})
    engine.place("whale", "BTC-USD", Side.SELL, OrderType.MARKET, 10**9, ts=1)
    assert engine.depth("BTC-USD")[0] == []
    events = flow.step("BTC-USD", 2)
    assert any(isinstance(ev, BookUpdate) for ev in events)
    bid, ask = engine.best("BTC-USD")
    assert bid is not None and ask is not None and bid < ask
    run(flow, 300, ts0=3)
    assert engine.level_counts("BTC-USD")[0] > 3


def test_flow_keeps_the_book_sane_around_user_orders() -> None:
    engine, flow = make(9)
    engine.open_account("user", dict.fromkeys(["BTC", "SOL", "XYZ", "USD", "EUR"], Decimal(10**7)))
    initial = units(engine)
    rng = random.Random(1)
    swept = 0
    for i in range(3000):
        symbol = SYMBOLS[i % 3]
        if rng.random() < 0.3:
            bid, ask = engine.best(symbol)
            assert bid is not None and ask is not None
            side = rng.choice([Side.BUY, Side.SELL])
            size = rng.choice([rng.randint(1, 5000), 10**8])
            try:
                if rng.random() < 0.2:
                    engine.place("user", symbol, side, OrderType.MARKET, size, ts=i)
                else:
                    price = max(1, (bid + ask) // 2 + rng.randint(-5000, 5000))
                    engine.place("user", symbol, side, OrderType.LIMIT, size, price, ts=i)
            except Rejected:
                pass
            swept += 0 in engine.level_counts(symbol)
        if rng.random() < 0.05:
            engine.cancel_all("user", symbol, ts=i)
        events = flow.step(symbol, i)
        assert any(isinstance(ev, BookUpdate) for ev in events)
        bid, ask = engine.best(symbol)
        assert bid is not None and ask is not None and bid < ask
    assert swept > 0  # the user did empty sides, and the flow refilled them
    assert units(engine) == initial


def test_taker_rate_controls_trading() -> None:
    engine, flow = make(11, taker_rate=0.0)
    run(flow, 600)
    assert all(engine.last_trade_id(s) == 0 for s in SYMBOLS)
    engine, flow = make(11, taker_rate=1.0)
    steps = run(flow, 300)
    with_trades = sum(any(isinstance(ev, TradeEvent) for ev in events) for events in steps)
    assert with_trades > 250


def test_start_prices_and_arguments() -> None:
    engine = Engine([DEFAULT_MARKETS["ETH-USD"]])
    flow = Flow(engine, rng=random.Random(0), symbols=["ETH-USD"], start_prices={"ETH-USD": 123456})
    flow.seed_book("ETH-USD", 0)
    bid, ask = engine.best("ETH-USD")
    assert bid is not None and ask is not None and bid < 123456 < ask
    rng = random.Random(0)
    with pytest.raises(ValueError, match="not a market"):
        Flow(engine, rng=rng, symbols=["BTC-USD"])
    with pytest.raises(ValueError):
        Flow(engine, rng=rng, symbols=["ETH-USD"], makers=0)
    with pytest.raises(ValueError):
        Flow(engine, rng=rng, symbols=["ETH-USD"], taker_rate=1.5)
    with pytest.raises(ValueError):
        Flow(engine, rng=rng, symbols=["ETH-USD"], start_prices={"ETH-USD": 0})


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), taker_rate=st.sampled_from([0.0, 0.3, 0.9]))
def test_any_seed_keeps_the_flow_guarantees(seed: int, taker_rate: float) -> None:
    engine = Engine([DEFAULT_MARKETS["SOL-USD"]])
    flow = Flow(
        engine,
        rng=random.Random(seed),
        symbols=["SOL-USD"],
        makers=2,
        levels=5,
        taker_rate=taker_rate,
    )
    book: tuple[dict[int, int], dict[int, int]] = ({}, {})
    initial = units(engine)
    for i in range(250):
        events = flow.seed_book("SOL-USD", 0) if i == 0 else flow.step("SOL-USD", i)
        updates = [ev for ev in events if isinstance(ev, BookUpdate)]
        assert updates
        for update in updates:
            for side, levels in zip(book, (update.bids, update.asks), strict=True):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        del side[price]
        bids, asks = engine.depth("SOL-USD")
        assert sorted(book[0].items(), reverse=True) == bids and sorted(book[1].items()) == asks
        assert bids and asks and bids[0][0] < asks[0][0]
    assert units(engine) == initial
