"""Unit tests of the sim matching engine: every order type, every rejection, the accounting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.exceptions import OrderRejected, TickloopError
from tickloop.models import (
    Instrument,
    Liquidity,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tickloop.sim.engine import (
    DEFAULT_MARKETS,
    BookUpdate,
    Engine,
    EngineEvent,
    MarketSpec,
    OrderUpdate,
    Rejected,
    SimOrder,
    TradeEvent,
    market_for,
)
from tickloop.sim.market import fixed_text

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
IOC, FOK = TimeInForce.IOC, TimeInForce.FOK

# 2 price decimals, 3 size decimals: price 10000 = 100.00, size 1000 = 1.000
ABC = MarketSpec("ABC-USD", "ABC", "USD", price_precision=2, size_precision=3)
FUNDS = {"ABC": Decimal(100), "USD": Decimal(100_000), "BTC": Decimal(10)}


@pytest.fixture
def engine() -> Engine:
    eng = Engine([ABC, DEFAULT_MARKETS["BTC-USD"]])
    for account in ("alice", "bob", "carol"):
        eng.open_account(account, FUNDS)
    return eng


def trades_of(events: list[EngineEvent]) -> list[TradeEvent]:
    return [ev for ev in events if isinstance(ev, TradeEvent)]


def updates_of(events: list[EngineEvent]) -> list[BookUpdate]:
    return [ev for ev in events if isinstance(ev, BookUpdate)]


def kinds(events: list[EngineEvent]) -> list[tuple[str, OrderEventKind]]:
    return [(ev.order.id, ev.kind) for ev in events if isinstance(ev, OrderUpdate)]


def usd(engine: Engine, account: str) -> tuple[Decimal, Decimal]:
    return engine.balances(account)["USD"]


def abc(engine: Engine, account: str) -> tuple[Decimal, Decimal]:
    return engine.balances(account)["ABC"]


def limit(
    engine: Engine, account: str, side: Side, size: int, price: int, **kw: object
) -> tuple[SimOrder, list[EngineEvent]]:
    return engine.place(account, "ABC-USD", side, LIMIT, size, price, ts=1, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ markets


def test_market_spec_text_and_parsing() -> None:
    btc = DEFAULT_MARKETS["BTC-USD"]
    assert btc.price_text(10012) == "100.12"
    assert btc.price_text(5) == "0.05"
    assert btc.size_text(1500) == "0.1500"
    assert btc.parse_price("100.12") == 10012
    assert btc.parse_price("100.1") == 10010
    assert btc.parse_size("0.15") == 1500
    for text, why in [
        ("abc", "not a number"),
        ("NaN", "not a number"),
        ("0", "> 0"),
        ("-1", "> 0"),
        ("100.123", "multiple of the tick size 0.01"),
        ("1e40", "not a number"),  # the protocol's grammar has no exponent
        ("1" * 30, "too large"),
        ("١", "not a number"),  # an Arabic-Indic one: a digit to str.isdigit, not to the protocol
        ("1_0", "not a number"),
        ("+1", "not a number"),
        (" 1", "not a number"),
        ("100.100", "multiple of the tick size 0.01"),  # more decimals than the market's 2
    ]:
        with pytest.raises(ValueError, match=why):
            btc.parse_price(text)
    with pytest.raises(ValueError, match=r"multiple of the lot size 0\.0001"):
        btc.parse_size("0.00001")
    big_min = MarketSpec("X-Y", "X", "Y", price_precision=0, size_precision=0, min_size_lots=5)
    assert big_min.price_text(7) == "7"
    with pytest.raises(ValueError, match="below the minimum size 5"):
        big_min.parse_size("4")
    assert "SOL-USD" in DEFAULT_MARKETS and "ETH-USD" in DEFAULT_MARKETS


def test_market_spec_instrument_and_market_for() -> None:
    inst = DEFAULT_MARKETS["BTC-USD"].instrument()
    assert isinstance(inst, Instrument)
    assert (inst.venue, inst.symbol, inst.base, inst.quote) == ("sim", "BTC-USD", "BTC", "USD")
    assert str(inst.tick_size) == "0.01" and str(inst.lot_size) == "0.0001"
    assert str(inst.min_size) == "0.0001"
    assert market_for("BTC-USD") is DEFAULT_MARKETS["BTC-USD"]
    doge = market_for("DOGE-EUR")
    assert (doge.base, doge.quote, doge.symbol) == ("DOGE", "EUR", "DOGE-EUR")
    for bad in ("btc-usd", "BTCUSD", "BTC-", "BTC-BTC", "A-B-C"):
        with pytest.raises(ValueError):
            market_for(bad)
    with pytest.raises(ValueError):
        MarketSpec("A-B", "A", "C", price_precision=2, size_precision=2)


# ------------------------------------------------------------------ accounts


def test_open_account_is_idempotent_and_defaults_follow_the_protocol() -> None:
    eng = Engine(DEFAULT_MARKETS.values())
    eng.open_account("k")
    assert eng.balances("k")["USD"] == (Decimal(1_000_000), Decimal(1_000_000))
    assert eng.balances("k")["BTC"] == (Decimal(100), Decimal(100))
    eng.open_account("k", {"USD": Decimal(5)})
    assert eng.balances("k")["USD"][0] == Decimal(1_000_000)
    assert eng.balances("nobody") == {} and eng.positions("nobody") == []
    assert eng.orders("nobody") == [] and eng.fills("nobody") == []
    with pytest.raises(ValueError, match=">= 0"):
        eng.open_account("neg", {"USD": Decimal(-1)})
    with pytest.raises(ValueError, match="decimals"):
        eng.open_account("fine", {"USD": Decimal("0.0000000000001")})
    assert not eng.has_account("neg") and not eng.has_account("fine")


def test_engine_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Engine([])
    with pytest.raises(ValueError):
        Engine([ABC], taker_fee=Decimal(1))
    with pytest.raises(ValueError):
        Engine([ABC], maker_fee=Decimal("-0.001"))


# ------------------------------------------------------------------ limit orders


def test_limit_rests_and_locks(engine: Engine) -> None:
    order, events = limit(engine, "alice", BUY, 2000, 10000, client_order_id="c1")
    assert order.status is OrderStatus.OPEN and order.remaining == 2000
    assert kinds(events) == [(order.id, OrderEventKind.ACCEPTED)]
    [update] = updates_of(events)
    assert (update.seq, update.prev_seq, update.bids, update.asks) == (1, 0, ((10000, 2000),), ())
    assert engine.depth("ABC-USD") == ([(10000, 2000)], [])
    assert usd(engine, "alice") == (Decimal(100_000), Decimal(100_000 - 200))
    sell, _ = limit(engine, "alice", SELL, 500, 10100)
    assert abc(engine, "alice") == (Decimal(100), Decimal("99.5"))
    assert engine.orders("alice") == [
        engine.order("alice", order.id),
        engine.order("alice", sell.id),
    ]
    assert engine.order_by_client_id("alice", "c1") == order
    assert engine.order("bob", order.id) is None
    assert engine.best("ABC-USD") == (10000, 10100)
    assert engine.level_counts("ABC-USD") == (1, 1)


@settings(max_examples=500, deadline=None)
@given(st.integers(-(10**20), 10**20), st.integers(0, 12))
def test_fixed_text_is_the_exact_decimal_with_all_its_decimals(value: int, decimals: int) -> None:
    assert fixed_text(value, decimals) == f"{Decimal(value).scaleb(-decimals):.{decimals}f}"


def test_crossing_limit_fills_then_rests_the_rest(engine: Engine) -> None:
    ask, _ = limit(engine, "alice", SELL, 1000, 10000)
    bid, events = limit(engine, "bob", BUY, 3000, 10100)
    [trade] = trades_of(events)
    assert (trade.trade_id, trade.price, trade.size, trade.taker_side) == (1, 10000, 1000, BUY)
    assert (trade.maker_order_id, trade.taker_order_id) == (ask.id, bid.id)
    assert (trade.maker_account, trade.taker_account) == ("alice", "bob")
    assert bid.status is OrderStatus.PARTIALLY_FILLED and bid.filled == 1000
    assert bid.quote_filled == 10000 * 1000
    assert engine.order("alice", ask.id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    [update] = updates_of(events)
    assert update.asks == ((10000, 0),) and update.bids == ((10100, 2000),)
    assert engine.depth("ABC-USD") == ([(10100, 2000)], [])
    # bob paid 100.00 for 1 ABC plus the 0.1 % taker fee, and locks 101.00 * 2 for the rest
    assert usd(engine, "bob") == (Decimal("99899.9"), Decimal("99899.9") - Decimal(202))
    assert abc(engine, "bob") == (Decimal(101), Decimal(101))
    assert usd(engine, "alice") == (Decimal(100_100), Decimal(100_100))
    assert abc(engine, "alice") == (Decimal(99), Decimal(99))
    assert engine.balances("fees")["USD"] == (Decimal("0.1"), Decimal("0.1"))
    assert engine.last_price("ABC-USD") == 10000
    [maker_fill] = engine.fills("alice")
    [taker_fill] = engine.fills("bob")
    assert (maker_fill.liquidity, maker_fill.fee, maker_fill.side) == (
        Liquidity.MAKER,
        Decimal(0),
        SELL,
    )
    assert (taker_fill.liquidity, taker_fill.fee, taker_fill.fee_asset) == (
        Liquidity.TAKER,
        Decimal("0.1"),
        "USD",
    )
    order_events = [ev for ev in events if isinstance(ev, OrderUpdate)]
    assert [ev.kind for ev in order_events] == [
        OrderEventKind.ACCEPTED,
        OrderEventKind.FILL,
        OrderEventKind.FILL,
    ]
    assert order_events[1].fill == maker_fill and order_events[2].fill == taker_fill


def test_price_time_priority(engine: Engine) -> None:
    first, _ = limit(engine, "alice", SELL, 1000, 10100)
    second, _ = limit(engine, "carol", SELL, 1000, 10100)
    better, _ = limit(engine, "carol", SELL, 500, 10050)
    _, events = engine.place("bob", "ABC-USD", BUY, MARKET, 2000, ts=2)
    fills = [(t.maker_order_id, t.price, t.size) for t in trades_of(events)]
    assert fills == [(better.id, 10050, 500), (first.id, 10100, 1000), (second.id, 10100, 500)]
    assert [t.trade_id for t in trades_of(events)] == [1, 2, 3]
    assert engine.depth("ABC-USD") == ([], [(10100, 500)])
    [update] = updates_of(events)
    assert update.asks == ((10050, 0), (10100, 500))


def test_amend_reduces_size_and_keeps_priority(engine: Engine) -> None:
    first, _ = limit(engine, "alice", SELL, 1000, 10100)
    second, _ = limit(engine, "carol", SELL, 1000, 10100)
    amended, events = engine.amend("alice", first.id, 400, ts=3)
    assert amended.size == 400 and amended.updated_ts == 3
    assert kinds(events) == [(first.id, OrderEventKind.AMENDED)]
    assert updates_of(events)[0].asks == ((10100, 1400),)
    assert abc(engine, "alice") == (Decimal(100), Decimal("99.6"))
    _, events = engine.place("bob", "ABC-USD", BUY, MARKET, 500, ts=4)
    assert [(t.maker_order_id, t.size) for t in trades_of(events)] == [
        (first.id, 400),
        (second.id, 100),
    ]


def test_amend_rejections(engine: Engine) -> None:
    ask, _ = limit(engine, "alice", SELL, 1000, 10100)
    engine.place("bob", "ABC-USD", BUY, MARKET, 300, ts=2)
    for size, reason in [(1000, "amend_not_smaller"), (2000, "amend_not_smaller")]:
        with pytest.raises(Rejected) as info:
            engine.amend("alice", ask.id, size, ts=3)
        assert (info.value.reason, info.value.field) == (reason, None)
    with pytest.raises(Rejected, match="above the filled") as info:
        engine.amend("alice", ask.id, 300, ts=3)
    assert info.value.reason == "amend_below_filled"
    with pytest.raises(Rejected) as info:
        engine.amend("bob", ask.id, 500, ts=3)
    assert (info.value.reason, info.value.field) == ("unknown_order", "order_id")
    assert engine.amend("alice", ask.id, 301, ts=3)[0].remaining == 1


# ------------------------------------------------------------------ market, IOC, FOK, post-only


def test_market_order_takes_and_expires_the_rest(engine: Engine) -> None:
    limit(engine, "alice", BUY, 1000, 9900)
    limit(engine, "alice", BUY, 1000, 9800)
    order, events = engine.place("bob", "ABC-USD", SELL, MARKET, 2500, ts=2)
    assert order.status is OrderStatus.EXPIRED and order.filled == 2000 and order.price is None
    assert [(t.price, t.size) for t in trades_of(events)] == [(9900, 1000), (9800, 1000)]
    assert kinds(events)[-1] == (order.id, OrderEventKind.EXPIRED)
    assert isinstance(events[-1], BookUpdate)
    assert engine.depth("ABC-USD") == ([], [])
    assert order.to_model(ABC).avg_price == Decimal("98.5")
    # proceeds 197.00 less 0.197 fee; 2.5 ABC was needed, 2 were sold
    assert usd(engine, "bob")[0] == Decimal("100196.803")
    assert abc(engine, "bob") == (Decimal(98), Decimal(98))


def test_market_order_on_empty_book_expires_unfilled(engine: Engine) -> None:
    order, events = engine.place("bob", "ABC-USD", BUY, MARKET, 100, ts=2)
    assert order.status is OrderStatus.EXPIRED and order.filled == 0
    assert kinds(events) == [
        (order.id, OrderEventKind.ACCEPTED),
        (order.id, OrderEventKind.EXPIRED),
    ]
    assert updates_of(events) == [] and engine.seq("ABC-USD") == 0


def test_ioc_fills_what_it_can_and_never_rests(engine: Engine) -> None:
    limit(engine, "alice", SELL, 1000, 10000)
    limit(engine, "alice", SELL, 1000, 10200)
    order, events = limit(engine, "bob", BUY, 1500, 10100, time_in_force=IOC)
    assert order.status is OrderStatus.EXPIRED and order.filled == 1000
    assert [(t.price, t.size) for t in trades_of(events)] == [(10000, 1000)]
    assert engine.depth("ABC-USD") == ([], [(10200, 1000)])
    assert usd(engine, "bob")[0] == usd(engine, "bob")[1]  # nothing stays locked
    full, events = limit(engine, "bob", BUY, 400, 10200, time_in_force=IOC)
    assert full.status is OrderStatus.FILLED
    assert OrderEventKind.EXPIRED not in [kind for _, kind in kinds(events)]


def test_fok_fills_entirely_or_is_rejected_without_changes(engine: Engine) -> None:
    limit(engine, "alice", SELL, 1000, 10000)
    limit(engine, "alice", SELL, 1000, 10100)
    before = (engine.depth("ABC-USD"), engine.balances("bob"), engine.seq("ABC-USD"))
    with pytest.raises(Rejected) as info:
        limit(engine, "bob", BUY, 1500, 10000, time_in_force=FOK)
    assert (info.value.reason, info.value.field) == ("fok_not_filled", None)
    assert (engine.depth("ABC-USD"), engine.balances("bob"), engine.seq("ABC-USD")) == before
    assert engine.orders("bob", open_only=False) == []
    order, events = limit(engine, "bob", BUY, 1500, 10100, time_in_force=FOK)
    assert order.status is OrderStatus.FILLED and len(trades_of(events)) == 2
    with pytest.raises(Rejected, match="fill-or-kill"):
        engine.place("bob", "ABC-USD", BUY, MARKET, 1000, time_in_force=FOK, ts=2)
    order, _ = engine.place("bob", "ABC-USD", BUY, MARKET, 500, time_in_force=FOK, ts=2)
    assert order.status is OrderStatus.FILLED and engine.depth("ABC-USD") == ([], [])


def test_post_only(engine: Engine) -> None:
    limit(engine, "alice", SELL, 1000, 10100)
    maker, _ = limit(engine, "bob", BUY, 1000, 10000, post_only=True)
    assert maker.status is OrderStatus.OPEN and maker.post_only
    for price in (10100, 10200):
        with pytest.raises(Rejected) as info:
            limit(engine, "bob", BUY, 1000, price, post_only=True)
        assert (info.value.reason, info.value.field) == ("post_only_would_take", None)
    with pytest.raises(Rejected, match="would take"):
        limit(engine, "carol", SELL, 1000, 10000, post_only=True)
    assert engine.depth("ABC-USD") == ([(10000, 1000)], [(10100, 1000)])


# ------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("args", "kwargs", "reason", "field"),
    [
        (("alice", "NOPE-USD", BUY, LIMIT, 1, 100), {}, "unknown_symbol", "symbol"),
        (("nobody", "ABC-USD", BUY, LIMIT, 1, 100), {}, "unknown_account", "account"),
        (("alice", "ABC-USD", "up", LIMIT, 1, 100), {}, "invalid_side", "side"),
        (("alice", "ABC-USD", BUY, "stop", 1, 100), {}, "invalid_type", "type"),
        (
            ("alice", "ABC-USD", BUY, LIMIT, 1, 100),
            {"time_in_force": "gtd"},
            "invalid_time_in_force",
            "time_in_force",
        ),
        (("alice", "ABC-USD", BUY, LIMIT, 0, 100), {}, "invalid_size", "size"),
        (("alice", "ABC-USD", BUY, LIMIT, -5, 100), {}, "invalid_size", "size"),
        (("alice", "ABC-USD", BUY, LIMIT, True, 100), {}, "invalid_size", "size"),
        (("alice", "ABC-USD", BUY, LIMIT, 1.5, 100), {}, "invalid_size", "size"),
        (("alice", "ABC-USD", BUY, LIMIT, 1, None), {}, "invalid_price", "price"),
        (("alice", "ABC-USD", BUY, LIMIT, 1, 0), {}, "invalid_price", "price"),
        (("alice", "ABC-USD", BUY, MARKET, 1, 100), {}, "invalid_price", "price"),
        (
            ("alice", "ABC-USD", BUY, LIMIT, 1, 100),
            {"post_only": True, "time_in_force": IOC},
            "invalid_post_only",
            "post_only",
        ),
        (
            ("alice", "ABC-USD", BUY, MARKET, 1),
            {"post_only": True},
            "invalid_post_only",
            "post_only",
        ),
        (
            ("alice", "ABC-USD", BUY, LIMIT, 1, 100),
            {"client_order_id": "x" * 65},
            "invalid_client_order_id",
            "client_order_id",
        ),
        (
            ("alice", "ABC-USD", BUY, LIMIT, 1, 100),
            {"client_order_id": ""},
            "invalid_client_order_id",
            "client_order_id",
        ),
        (("alice", "ABC-USD", BUY, LIMIT, 10**6 + 1, 100_00), {}, "insufficient_balance", None),
        (("alice", "ABC-USD", SELL, LIMIT, 100_001, 100_00), {}, "insufficient_balance", None),
        (("alice", "ABC-USD", SELL, MARKET, 100_001), {}, "insufficient_balance", None),
    ],
)
def test_rejections_are_typed_and_change_nothing(
    engine: Engine,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    reason: str,
    field: str | None,
) -> None:
    before = (engine.balances("alice"), engine.depth("ABC-USD"), engine.seq("ABC-USD"))
    with pytest.raises(Rejected) as info:
        engine.place(*args, ts=1, **kwargs)  # type: ignore[arg-type]
    assert (info.value.reason, info.value.field) == (reason, field)
    assert isinstance(info.value, OrderRejected) and isinstance(info.value, TickloopError)
    assert str(info.value) and info.value.code == reason
    assert (engine.balances("alice"), engine.depth("ABC-USD"), engine.seq("ABC-USD")) == before
    assert engine.orders("alice", open_only=False) == []


def test_buy_needs_the_taker_fee_too(engine: Engine) -> None:
    eng = Engine([ABC])
    eng.open_account("maker", {"ABC": Decimal(10)})
    eng.open_account("taker", {"USD": Decimal(100)})
    eng.place("maker", "ABC-USD", SELL, LIMIT, 1000, 10000, ts=1)
    # 1 ABC at 100.00 costs 100.10 with the fee: 100 USD is not enough, for market or limit
    with pytest.raises(Rejected, match="insufficient USD"):
        eng.place("taker", "ABC-USD", BUY, MARKET, 1000, ts=2)
    with pytest.raises(Rejected, match="insufficient"):
        eng.place("taker", "ABC-USD", BUY, LIMIT, 1000, 10000, ts=2)
    order, _ = eng.place("taker", "ABC-USD", BUY, MARKET, 999, ts=2)
    assert order.status is OrderStatus.FILLED
    assert eng.balances("taker")["USD"][0] == Decimal("100") - Decimal("99.9") - Decimal("0.0999")


def test_market_buy_needs_only_its_fills(engine: Engine) -> None:
    eng = Engine([ABC])
    eng.open_account("maker", {"ABC": Decimal(10)})
    eng.open_account("taker", {"USD": Decimal("100.1")})
    eng.place("maker", "ABC-USD", SELL, LIMIT, 1000, 10000, ts=1)
    order, _ = eng.place("taker", "ABC-USD", BUY, MARKET, 5000, ts=2)
    assert order.filled == 1000 and order.status is OrderStatus.EXPIRED
    assert eng.balances("taker")["USD"] == (Decimal(0), Decimal(0))


# ------------------------------------------------------------------ cancel


def test_cancel_releases_and_reports(engine: Engine) -> None:
    bid, _ = limit(engine, "alice", BUY, 2000, 10000)
    limit(engine, "bob", BUY, 1000, 10000)
    cancelled, events = engine.cancel("alice", bid.id, ts=5)
    assert cancelled.status is OrderStatus.CANCELED and cancelled.updated_ts == 5
    assert kinds(events) == [(bid.id, OrderEventKind.CANCELED)]
    assert updates_of(events)[0].bids == ((10000, 1000),)
    assert usd(engine, "alice") == (Decimal(100_000), Decimal(100_000))
    assert engine.orders("alice") == [] and engine.orders("alice", open_only=False) == [cancelled]
    for account in ("alice", "bob", "nobody"):
        with pytest.raises(Rejected) as info:
            engine.cancel(account, bid.id, ts=6)
        assert (info.value.reason, info.value.field) == ("unknown_order", "order_id")


def test_cancel_all_per_symbol_and_everywhere(engine: Engine) -> None:
    limit(engine, "alice", BUY, 1000, 10000)
    limit(engine, "alice", SELL, 1000, 10100)
    engine.place("alice", "BTC-USD", BUY, LIMIT, 100, 100_00, ts=1)
    keep, _ = limit(engine, "bob", BUY, 1000, 9900)
    orders, events = engine.cancel_all("alice", "ABC-USD", ts=2)
    assert len(orders) == 2 and {o.symbol for o in orders} == {"ABC-USD"}
    assert [u.symbol for u in updates_of(events)] == ["ABC-USD"]
    orders, events = engine.cancel_all("alice", ts=3)
    assert [o.symbol for o in orders] == ["BTC-USD"]
    assert [u.symbol for u in updates_of(events)] == ["BTC-USD"]
    assert engine.cancel_all("alice", ts=4) == ([], [])
    assert engine.cancel_all("nobody", ts=4) == ([], [])
    with pytest.raises(Rejected, match="unknown symbol"):
        engine.cancel_all("alice", "NOPE-USD", ts=4)
    assert engine.orders("bob") == [engine.order("bob", keep.id)]
    assert engine.balances("alice") == {k: (v, v) for k, v in FUNDS.items()} | {
        "BTC": (Decimal(10), Decimal(10))
    }


def test_cancel_all_covers_two_symbols_in_one_call(engine: Engine) -> None:
    limit(engine, "alice", BUY, 1000, 10000)
    engine.place("alice", "BTC-USD", BUY, LIMIT, 100, 100_00, ts=1)
    _, events = engine.cancel_all("alice", ts=2)
    assert sorted(u.symbol for u in updates_of(events)) == ["ABC-USD", "BTC-USD"]


# ------------------------------------------------------------------ self-trade prevention


def test_self_trade_cancels_the_resting_order_and_goes_on(engine: Engine) -> None:
    own, _ = limit(engine, "alice", SELL, 1000, 10000)
    other, _ = limit(engine, "bob", SELL, 1000, 10000)
    order, events = limit(engine, "alice", BUY, 1500, 10000)
    assert [(t.maker_order_id, t.size) for t in trades_of(events)] == [(other.id, 1000)]
    assert kinds(events) == [
        (order.id, OrderEventKind.ACCEPTED),
        (own.id, OrderEventKind.CANCELED),
        (other.id, OrderEventKind.FILL),
        (order.id, OrderEventKind.FILL),
    ]
    assert engine.order("alice", own.id).status is OrderStatus.CANCELED  # type: ignore[union-attr]
    assert engine.depth("ABC-USD") == ([(10000, 500)], [])
    assert abc(engine, "alice") == (Decimal(101), Decimal(101))


def test_self_trade_clears_own_crossing_orders_before_resting(engine: Engine) -> None:
    limit(engine, "alice", SELL, 1000, 10000)
    limit(engine, "alice", SELL, 1000, 10050)
    order, events = limit(engine, "alice", BUY, 500, 10100)
    assert trades_of(events) == [] and order.status is OrderStatus.OPEN
    assert engine.depth("ABC-USD") == ([(10100, 500)], [])
    [update] = updates_of(events)
    assert update.asks == ((10000, 0), (10050, 0)) and update.bids == ((10100, 500),)


# ------------------------------------------------------------------ idempotency, views


def test_client_order_id_replay_returns_the_existing_order(engine: Engine) -> None:
    first, _ = limit(engine, "alice", BUY, 1000, 10000, client_order_id="abc")
    again, replay = limit(engine, "alice", SELL, 5, 20000, client_order_id="abc")
    assert again == first and replay == []
    assert len(engine.orders("alice")) == 1
    # another account may use the same id
    other, _ = limit(engine, "bob", BUY, 1000, 10000, client_order_id="abc")
    assert other.id != first.id
    # a rejected order does not use up its client order id
    with pytest.raises(Rejected):
        limit(engine, "carol", BUY, 10**9, 10000, client_order_id="big")
    assert engine.order_by_client_id("carol", "big") is None
    assert limit(engine, "carol", BUY, 1, 10000, client_order_id="big")[0].size == 1


def test_sequence_numbers_and_skip(engine: Engine) -> None:
    assert engine.seq("ABC-USD") == 0
    _, e1 = limit(engine, "alice", BUY, 1000, 10000)
    engine.skip_sequence("ABC-USD")
    assert engine.seq("ABC-USD") == 1
    _, e2 = limit(engine, "alice", BUY, 1000, 9900)
    _, e3 = limit(engine, "alice", BUY, 1000, 9800)
    seqs = [(u.prev_seq, u.seq) for u in updates_of(e1 + e2 + e3)]
    assert seqs == [(0, 1), (2, 3), (3, 4)]
    assert engine.seq("ABC-USD") == 4 and engine.seq("BTC-USD") == 0


def test_trade_log_ids_and_queries(engine: Engine) -> None:
    for _ in range(5):
        limit(engine, "alice", SELL, 100, 10000)
    for _ in range(5):
        engine.place("bob", "ABC-USD", BUY, MARKET, 100, ts=9)
    assert [t.trade_id for t in engine.trades("ABC-USD")] == [1, 2, 3, 4, 5]
    assert [t.trade_id for t in engine.trades("ABC-USD", since_id=2, limit=2)] == [3, 4]
    assert engine.trades("ABC-USD", since_id=5) == [] and engine.trades("BTC-USD") == []
    assert engine.last_trade_id("ABC-USD") == 5 and engine.last_price("BTC-USD") is None
    model = engine.trades("ABC-USD")[0].to_model(ABC)
    assert (model.id, str(model.price), str(model.size), model.side) == (1, "100.00", "0.100", BUY)


def test_trade_log_bound_keeps_ids_contiguous() -> None:
    eng = Engine([ABC], max_trades=10)
    eng.open_account("a", FUNDS)
    eng.open_account("b", FUNDS)
    for _ in range(1100):
        eng.place("a", "ABC-USD", SELL, LIMIT, 1, 10000, ts=1)
        eng.place("b", "ABC-USD", BUY, MARKET, 1, ts=1)
    kept = eng.trades("ABC-USD")
    assert 10 <= len(kept) < 1100
    assert [t.trade_id for t in kept] == list(range(1101 - len(kept), 1101))
    assert [t.trade_id for t in eng.trades("ABC-USD", since_id=1095)] == list(range(1096, 1101))


def test_order_listeners_only_drop_the_other_accounts_order_events() -> None:
    """Every kind of call, on an engine reporting every account and on one reporting bob's
    only: the same results, market events and queries; bob's OrderUpdates and no others."""

    def script(eng: Engine) -> list[object]:
        out: list[object] = []

        def call(result: tuple[object, list[EngineEvent]]) -> None:
            out.append(result)

        for account in ("alice", "bob", "carol"):
            eng.open_account(account, FUNDS)
        call(limit(eng, "alice", SELL, 1000, 10100))
        call(limit(eng, "bob", SELL, 500, 10200, client_order_id="b1"))
        call(limit(eng, "carol", BUY, 700, 9900))
        call(limit(eng, "bob", BUY, 2000, 10200))  # fills alice, self-trade cancels b1, rests
        call(limit(eng, "carol", SELL, 300, 9900, time_in_force=IOC))  # fills bob's rest
        call(eng.place("alice", "ABC-USD", SELL, MARKET, 5000, ts=2))  # fills, then expires
        call(limit(eng, "carol", BUY, 400, 9800))
        call(limit(eng, "bob", BUY, 900, 9700))
        call(eng.amend("carol", eng.orders("carol")[0].id, 300, ts=3))
        call(eng.amend("bob", eng.orders("bob")[0].id, 800, ts=3))
        call(eng.cancel("carol", eng.orders("carol")[0].id, ts=4))
        call(eng.cancel_all("bob", ts=5))
        call(eng.cancel_all("carol", ts=5))
        for account in eng.accounts():
            out += [eng.orders(account, open_only=False), eng.fills(account)]
            out += [eng.balances(account), eng.positions(account)]
        out += [eng.depth("ABC-USD"), eng.trades("ABC-USD"), eng.seq("ABC-USD")]
        return out

    full = Engine([ABC, DEFAULT_MARKETS["BTC-USD"]])
    quiet = Engine([ABC, DEFAULT_MARKETS["BTC-USD"]])
    quiet.order_listeners = {"bob"}
    heard, said = script(full), script(quiet)
    assert len(heard) == len(said)
    order_events = 0
    for one, other in zip(heard, said, strict=True):
        if isinstance(one, tuple):
            value, events = one
            kept = [ev for ev in events if not isinstance(ev, OrderUpdate) or ev.account == "bob"]
            order_events += sum(isinstance(ev, OrderUpdate) for ev in events)
            assert other == (value, kept)
        else:
            assert other == one
    said_events = [ev for item in said if isinstance(item, tuple) for ev in item[1]]
    assert {ev.account for ev in said_events if isinstance(ev, OrderUpdate)} == {"bob"}
    assert order_events > sum(isinstance(ev, OrderUpdate) for ev in said_events)


def test_history_limit_bounds_closed_orders_and_fills() -> None:
    eng = Engine([ABC], history_limit=3)
    eng.open_account("a", FUNDS)
    eng.open_account("b", FUNDS)
    for i in range(6):
        eng.place("a", "ABC-USD", SELL, LIMIT, 1, 10000, ts=1, client_order_id=f"c{i}")
        eng.place("b", "ABC-USD", BUY, MARKET, 1, ts=1)
    open_one, _ = eng.place("a", "ABC-USD", SELL, LIMIT, 1, 10000, ts=1)
    assert len(eng.orders("a", open_only=False)) == 4  # 3 closed + 1 open
    assert len(eng.fills("a")) == 3 and eng.fills("a")[-1].trade_id == 6
    assert eng.order_by_client_id("a", "c0") is None and eng.order_by_client_id("a", "c5")
    assert eng.order("a", open_one.id) is not None


def test_positions_average_price_and_realised_pnl(engine: Engine) -> None:
    limit(engine, "alice", SELL, 1000, 10000)
    limit(engine, "alice", SELL, 1000, 10200)
    engine.place("bob", "ABC-USD", BUY, MARKET, 2000, ts=2)
    [pos] = engine.positions("bob")
    assert (pos.symbol, pos.size, pos.avg_price, pos.realized_pnl) == (
        "ABC-USD",
        Decimal("2.000"),
        Decimal("101.00"),
        Decimal(0),
    )
    limit(engine, "carol", BUY, 3000, 10300)
    engine.place("bob", "ABC-USD", SELL, MARKET, 3000, ts=3)  # sells 2 (closing), 1 (opening)
    [pos] = engine.positions("bob")
    assert pos.size == Decimal("-1.000") and pos.avg_price == Decimal("103.00")
    assert pos.realized_pnl == Decimal("4.00000")  # (103 - 101) * 2
    [alice] = engine.positions("alice")
    assert alice.size == Decimal("-2.000") and alice.avg_price == Decimal("101.00")
    assert engine.positions("fees") == []


def test_maker_fee_is_locked_and_charged() -> None:
    eng = Engine([ABC], taker_fee=Decimal("0.002"), maker_fee=Decimal("0.0005"))
    eng.open_account("m", {"USD": Decimal("100.05")})
    eng.open_account("t", {"ABC": Decimal(5)})
    with pytest.raises(Rejected, match="insufficient"):
        eng.place("m", "ABC-USD", BUY, LIMIT, 1001, 10000, ts=1)
    eng.place("m", "ABC-USD", BUY, LIMIT, 1000, 10000, ts=1)
    assert eng.balances("m")["USD"] == (Decimal("100.05"), Decimal(0))
    eng.place("t", "ABC-USD", SELL, MARKET, 1000, ts=2)
    assert eng.balances("m")["USD"] == (Decimal(0), Decimal(0))
    assert eng.balances("t")["USD"] == (Decimal("99.8"), Decimal("99.8"))
    assert eng.balances("fees")["USD"][0] == Decimal("0.25")
    assert eng.total_assets() == {"ABC": Decimal(5), "USD": Decimal("100.05")}
    assert eng.fills("m")[0].fee == Decimal("0.05")


def test_models(engine: Engine) -> None:
    ask, _ = limit(engine, "alice", SELL, 1500, 10000, client_order_id="x")
    _, events = engine.place("bob", "ABC-USD", BUY, MARKET, 1000, ts=7)
    model = engine.order("alice", ask.id).to_model(ABC)  # type: ignore[union-attr]
    assert (model.venue, model.id, model.client_order_id) == ("sim", ask.id, "x")
    assert (str(model.price), str(model.size), str(model.filled_size)) == (
        "100.00",
        "1.500",
        "1.000",
    )
    assert model.status is OrderStatus.PARTIALLY_FILLED and str(model.avg_price) == "100.00"
    update = next(ev for ev in events if isinstance(ev, OrderUpdate) and ev.fill is not None)
    event = update.to_model(ABC)
    assert event.kind is OrderEventKind.FILL and event.fill is not None
    assert (event.fill.trade_id, str(event.fill.price), str(event.fill.size)) == (
        1,
        "100.00",
        "1.000",
    )
    assert engine.order("alice", ask.id).to_model(ABC, venue="x").venue == "x"  # type: ignore[union-attr]
