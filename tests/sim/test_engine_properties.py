"""Property tests of the sim matching engine: random sequences of orders from several accounts.

Each example runs a random sequence of place (limit GTC, IOC, FOK, post-only, market), cancel,
amend and cancel-all calls from three accounts on two markets, with crossing prices, self-trades
and too-large orders, and checks after every call:

* the matches against an independent oracle built from the resting orders before the call
  (price-time priority, self-trade prevention, and which rejection applies);
* assets conserved exactly over all accounts including the fee account;
* ``0 <= locked <= total`` per account and asset, locked exactly what the open orders need;
* the book is never crossed, and each level's size is the sum of its open orders;
* trade ids per symbol are 1, 2, 3, ...;
* at most one BookUpdate per call and symbol, seq contiguous, and the updates replayed onto
  empty dicts reproduce ``depth()`` exactly;
* a rejected call changes nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickloop.models import OrderStatus, OrderType, Side, TimeInForce
from tickloop.sim.engine import (
    BookUpdate,
    Engine,
    EngineEvent,
    MarketSpec,
    OrderUpdate,
    Rejected,
    SimOrder,
    TradeEvent,
)

MARKETS = [
    MarketSpec("AAA-USD", "AAA", "USD", price_precision=2, size_precision=2),
    MarketSpec("BBB-USD", "BBB", "USD", price_precision=1, size_precision=3),
]
ACCOUNTS = ["a", "b", "c"]
FUNDS = {"AAA": Decimal(30), "BBB": Decimal(30), "USD": Decimal(300)}
KINDS = ["gtc", "ioc", "fok", "post", "market"]

place_op = st.tuples(
    st.just("place"),
    st.integers(0, len(ACCOUNTS) - 1),
    st.sampled_from([0, 0, 0, 1]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from(KINDS),
    st.integers(98, 102),  # price, ticks
    st.one_of(st.integers(1, 60), st.integers(1, 2500)),  # size, lots
)
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(0, 30))
amend_op = st.tuples(st.just("amend"), st.integers(0, 2), st.integers(0, 30), st.integers(0, 999))
cancel_all_op = st.tuples(st.just("cancel_all"), st.integers(0, 2), st.sampled_from([None, 0, 1]))
ops_strategy = st.lists(
    st.one_of(place_op, place_op, place_op, place_op, cancel_op, amend_op, cancel_all_op),
    min_size=8,
    max_size=60,
)
fees_strategy = st.sampled_from(
    [
        (Decimal("0.001"), Decimal(0)),
        (Decimal("0.002"), Decimal("0.0005")),
        (Decimal(0), Decimal(0)),
    ]
)


@dataclass
class Units:
    base: int  # balance units per lot
    quote: int  # per tick*lot
    taker_fee: int  # per tick*lot
    maker_fee: int


def units_of(engine: Engine, spec: MarketSpec) -> Units:
    quote = 10 ** (engine.scale - spec.price_precision - spec.size_precision)
    return Units(
        base=10 ** (engine.scale - spec.size_precision),
        quote=quote,
        taker_fee=int(Fraction(engine.taker_fee) * quote),
        maker_fee=int(Fraction(engine.maker_fee) * quote),
    )


@dataclass
class Expected:
    fills: list[tuple[str, int, int]] = field(default_factory=list)  # maker id, price, lots
    stp_cancels: list[str] = field(default_factory=list)
    left: int = 0
    reason: str | None = None


def all_open(engine: Engine) -> list[SimOrder]:
    return [o for account in ACCOUNTS for o in engine.orders(account)]


def oracle(
    engine: Engine,
    account: str,
    symbol: str,
    side: Side,
    kind: str,
    price: int | None,
    size: int,
) -> Expected:
    """What the order must do, from the resting orders alone: walk the opposite side in
    price-time order (best price first, then arrival), cancelling the account's own orders."""
    spec = engine.markets[symbol]
    u = units_of(engine, spec)
    opposite = [o for o in all_open(engine) if o.symbol == symbol and o.side is not side]
    if side is Side.BUY:
        opposite.sort(key=lambda o: (o.price, int(o.id)))
    else:
        opposite.sort(key=lambda o: (-(o.price or 0), int(o.id)))
    exp = Expected(left=size)
    if kind == "post" and opposite:
        best = opposite[0].price
        assert best is not None and price is not None
        if (side is Side.BUY and best <= price) or (side is Side.SELL and best >= price):
            exp.reason = "post_only_would_take"
            return exp
    for o in opposite:
        if exp.left == 0:
            break
        assert o.price is not None
        if price is not None and (o.price > price if side is Side.BUY else o.price < price):
            break
        if o.account == account:
            exp.stp_cancels.append(o.id)
            continue
        lots = min(exp.left, o.remaining)
        exp.fills.append((o.id, o.price, lots))
        exp.left -= lots
    if kind == "fok" and exp.left:
        exp.reason = "fok_not_filled"
        return exp
    total, locked = engine.balance_units(account)[spec.quote if side is Side.BUY else spec.base]
    if side is Side.BUY:
        notional = sum(p * lots for _, p, lots in exp.fills)
        need = notional * (u.quote + u.taker_fee)
        if kind in ("gtc", "post") and exp.left:
            assert price is not None
            need += exp.left * price * (u.quote + u.maker_fee)
    else:
        need = size * u.base
    if total - locked < need:
        exp.reason = "insufficient_balance"
    return exp


def state(engine: Engine) -> object:
    return (
        {a: engine.balance_units(a) for a in engine.accounts()},
        {s: engine.depth(s) for s in engine.markets},
        {s: engine.seq(s) for s in engine.markets},
        {a: engine.orders(a, open_only=False) for a in ACCOUNTS},
        {s: engine.last_trade_id(s) for s in engine.markets},
    )


def check_invariants(
    engine: Engine, initial: dict[str, int], books: dict[str, tuple[dict[int, int], dict[int, int]]]
) -> None:
    # assets conserved, exactly
    sums: dict[str, int] = {}
    for account in engine.accounts():
        for asset, (total, locked) in engine.balance_units(account).items():
            sums[asset] = sums.get(asset, 0) + total
            assert 0 <= locked <= total, (account, asset, total, locked)
    assert sums == initial
    # locked is exactly what the open orders need
    for account in ACCOUNTS:
        need: dict[str, int] = {}
        for o in engine.orders(account):
            spec = engine.markets[o.symbol]
            u = units_of(engine, spec)
            assert o.price is not None and o.remaining > 0
            assert o.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
            if o.side is Side.BUY:
                need[spec.quote] = need.get(spec.quote, 0) + o.remaining * o.price * (
                    u.quote + u.maker_fee
                )
            else:
                need[spec.base] = need.get(spec.base, 0) + o.remaining * u.base
        for asset, (_, locked) in engine.balance_units(account).items():
            assert locked == need.get(asset, 0), (account, asset)
    open_orders = all_open(engine)
    for symbol in engine.markets:
        bids, asks = engine.depth(symbol)
        # never crossed; sorted best first; no empty level
        if bids and asks:
            assert bids[0][0] < asks[0][0]
        assert [p for p, _ in bids] == sorted({p for p, _ in bids}, reverse=True)
        assert [p for p, _ in asks] == sorted({p for p, _ in asks})
        # each level is the sum of its open orders
        for side, levels in ((Side.BUY, bids), (Side.SELL, asks)):
            expected: dict[int, int] = {}
            for o in open_orders:
                if o.symbol == symbol and o.side is side:
                    assert o.price is not None
                    expected[o.price] = expected.get(o.price, 0) + o.remaining
            assert dict(levels) == expected
        # the replayed update stream is the book
        replay_bids, replay_asks = books[symbol]
        assert sorted(replay_bids.items(), reverse=True) == bids
        assert sorted(replay_asks.items()) == asks
        assert engine.depth(symbol, 2) == (bids[:2], asks[:2])
        # trade ids 1, 2, 3, ...
        trades = engine.trades(symbol)
        assert [t.trade_id for t in trades] == list(range(1, len(trades) + 1))
        assert engine.last_trade_id(symbol) == len(trades)


def apply_updates(
    engine: Engine,
    events: list[EngineEvent],
    books: dict[str, tuple[dict[int, int], dict[int, int]]],
    seqs: dict[str, int],
) -> None:
    seen: set[str] = set()
    for ev in events:
        if not isinstance(ev, BookUpdate):
            continue
        assert ev.symbol not in seen, "more than one BookUpdate for a symbol in one call"
        seen.add(ev.symbol)
        assert ev.prev_seq == seqs[ev.symbol] and ev.seq == ev.prev_seq + 1
        seqs[ev.symbol] = ev.seq
        assert ev.bids or ev.asks
        for side_book, levels in zip(books[ev.symbol], (ev.bids, ev.asks), strict=True):
            for price, size in levels:
                assert size >= 0
                if size:
                    side_book[price] = size
                else:
                    assert price in side_book, "removal of a level that was not there"
                    del side_book[price]
    for symbol in engine.markets:
        assert engine.seq(symbol) == seqs[symbol]


def random_ops(rng: random.Random, n: int) -> list[tuple[object, ...]]:
    """A random sequence weighted towards crossing orders and self-trades."""
    ops: list[tuple[object, ...]] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            ops.append(
                (
                    "place",
                    rng.randrange(len(ACCOUNTS)),
                    0 if rng.random() < 0.8 else 1,
                    rng.choice([Side.BUY, Side.SELL]),
                    rng.choice(KINDS),
                    rng.randint(97, 103),
                    rng.choice([rng.randint(1, 50), rng.randint(1, 2500)]),
                )
            )
        elif r < 0.75:
            ops.append(("cancel", rng.randrange(3), rng.randrange(30)))
        elif r < 0.9:
            ops.append(("amend", rng.randrange(3), rng.randrange(30), rng.randrange(1000)))
        else:
            ops.append(("cancel_all", rng.randrange(3), rng.choice([None, 0, 1])))
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fees=fees_strategy, ops=ops_strategy)
def test_random_order_sequences_keep_every_invariant(
    fees: tuple[Decimal, Decimal], ops: list[tuple[object, ...]]
) -> None:
    run(fees, ops)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fees=fees_strategy, seed=st.integers(0, 2**32 - 1))
def test_long_random_sequences_keep_every_invariant(
    fees: tuple[Decimal, Decimal], seed: int
) -> None:
    run(fees, random_ops(random.Random(seed), 80))


def test_the_random_sequences_exercise_matching() -> None:
    """The property tests are not vacuous: the sequences trade, self-trade, sweep levels and
    hit every rejection."""
    seen: Counter[str] = Counter()
    for seed in range(20):
        seen += run((Decimal("0.001"), Decimal(0)), random_ops(random.Random(seed), 80))
    for what in (
        "trade",
        "self_trade_cancel",
        "multi_level",
        "rested",
        "cancel",
        "amend",
        "cancel_all",
        "fok_not_filled",
        "post_only_would_take",
        "insufficient_balance",
        "unknown_order",
    ):
        assert seen[what] > 0, what


def run(fees: tuple[Decimal, Decimal], ops: list[tuple[object, ...]]) -> Counter[str]:
    """Run ``ops`` on a fresh engine, checking everything after every call; count what
    happened."""
    seen: Counter[str] = Counter()
    engine = Engine(MARKETS, taker_fee=fees[0], maker_fee=fees[1])
    for account in ACCOUNTS:
        engine.open_account(account, FUNDS)
    initial: dict[str, int] = {}
    for account in engine.accounts():
        for asset, (total, _) in engine.balance_units(account).items():
            initial[asset] = initial.get(asset, 0) + total
    books: dict[str, tuple[dict[int, int], dict[int, int]]] = {s: ({}, {}) for s in engine.markets}
    seqs = dict.fromkeys(engine.markets, 0)
    placed: dict[str, list[str]] = {a: [] for a in ACCOUNTS}
    ts = 0
    for op in ops:
        ts += 1
        before = state(engine)
        events: list[EngineEvent] = []
        try:
            if op[0] == "place":
                _, a, m, side, kind, price, size = op
                assert isinstance(a, int) and isinstance(m, int) and isinstance(side, Side)
                assert isinstance(kind, str) and isinstance(price, int) and isinstance(size, int)
                account, symbol = ACCOUNTS[a], MARKETS[m].symbol
                limit_price = None if kind == "market" else price
                exp = oracle(engine, account, symbol, side, kind, limit_price, size)
                try:
                    order, events = engine.place(
                        account,
                        symbol,
                        side,
                        OrderType.MARKET if kind == "market" else OrderType.LIMIT,
                        size,
                        limit_price,
                        time_in_force={"ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}.get(
                            kind, TimeInForce.GTC
                        ),
                        post_only=kind == "post",
                        ts=ts,
                    )
                except Rejected as exc:
                    assert exc.reason == exp.reason
                    seen[exc.reason] += 1
                    raise
                assert exp.reason is None
                trades = [ev for ev in events if isinstance(ev, TradeEvent)]
                seen["trade"] += len(trades)
                seen["self_trade_cancel"] += len(exp.stp_cancels)
                seen["multi_level"] += len({t.price for t in trades}) > 1
                assert [(t.maker_order_id, t.price, t.size) for t in trades] == exp.fills
                assert all(t.taker_order_id == order.id and t.taker_side is side for t in trades)
                assert all(t.maker_account != account for t in trades)
                cancels = [
                    ev.order.id
                    for ev in events
                    if isinstance(ev, OrderUpdate)
                    and ev.order.id != order.id
                    and ev.kind == "canceled"
                ]
                assert cancels == exp.stp_cancels
                assert order.filled == size - exp.left
                rests = kind in ("gtc", "post") and exp.left > 0
                assert engine.order_is_open(account, order.id) == rests
                seen["rested"] += rests
                if not rests:
                    assert order.status is (
                        OrderStatus.FILLED if exp.left == 0 else OrderStatus.EXPIRED
                    )
                placed[account].append(order.id)
            elif op[0] == "cancel":
                _, a, pick = op
                assert isinstance(a, int) and isinstance(pick, int)
                account = ACCOUNTS[a]
                ids = placed[account]
                order_id = ids[pick % len(ids)] if ids else "0"
                was_open = engine.order_is_open(account, order_id)
                try:
                    order, events = engine.cancel(account, order_id, ts=ts)
                except Rejected as exc:
                    assert not was_open and exc.reason == "unknown_order"
                    seen[exc.reason] += 1
                    raise
                assert was_open and order.status is OrderStatus.CANCELED
                seen["cancel"] += 1
            elif op[0] == "amend":
                _, a, pick, permille = op
                assert isinstance(a, int) and isinstance(pick, int) and isinstance(permille, int)
                account = ACCOUNTS[a]
                ids = placed[account]
                order_id = ids[pick % len(ids)] if ids else "0"
                current = engine.order(account, order_id)
                new_size = 1 if current is None else current.size * permille // 1000
                _, events = engine.amend(account, order_id, new_size, ts=ts)
                assert current is not None and current.filled < new_size < current.size
                seen["amend"] += 1
            else:
                _, a, m = op
                assert isinstance(a, int)
                account = ACCOUNTS[a]
                symbol_or_none = None if m is None else MARKETS[m].symbol  # type: ignore[index]
                open_before = {o.id for o in engine.orders(account, symbol_or_none)}
                canceled, events = engine.cancel_all(account, symbol_or_none, ts=ts)
                assert {o.id for o in canceled} == open_before
                assert engine.orders(account, symbol_or_none) == []
                seen["cancel_all"] += len(canceled)
        except Rejected:
            assert state(engine) == before, "a rejected call changed the state"
            continue
        apply_updates(engine, events, books, seqs)
        check_invariants(engine, initial, books)
    return seen
