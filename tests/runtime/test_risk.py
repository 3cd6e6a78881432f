"""Pre-trade risk checks: each limit refuses exactly what breaches it, per bot and globally."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.exceptions import ConfigError
from tickloop.models import OrderType, Side
from tickloop.runtime.risk import Exposure, OrderIntent, RiskEngine, RiskLimits

D = Decimal
MID = D("100")
NONE = Exposure()


def _buy(size: str = "1", price: str | None = "100", bot: str = "b1") -> OrderIntent:
    return OrderIntent(bot=bot, symbol="BTC-USD", side=Side.BUY, size=D(size),
                       type=OrderType.LIMIT if price is not None else OrderType.MARKET,
                       price=D(price) if price is not None else None)


def test_no_limits_accepts() -> None:
    assert RiskEngine().check(_buy(), bot=NONE, total=NONE, mid=MID, now=0.0).accepted


def test_kill_switch_global_and_per_bot() -> None:
    risk = RiskEngine()
    risk.kill("b1", "manual")
    d = risk.check(_buy(), bot=NONE, total=NONE, mid=MID, now=0.0)
    assert (d.accepted, d.check, d.scope, d.reason) == (False, "kill_switch", "bot", "manual")
    assert risk.check(_buy(bot="b2"), bot=NONE, total=NONE, mid=MID, now=0.0).accepted
    risk.kill()
    assert risk.check(_buy(bot="b2"), bot=NONE, total=NONE, mid=MID, now=0.0).scope == "global"
    risk.revive()
    risk.revive("b1")
    assert risk.check(_buy(), bot=NONE, total=NONE, mid=MID, now=0.0).accepted


@pytest.mark.parametrize(
    ("limits", "intent", "exposure", "check"),
    [
        (RiskLimits(price_band=D("0.05")), _buy(price="106"), NONE, "price_band"),
        (RiskLimits(max_order_notional=D("99")), _buy(), NONE, "max_order_notional"),
        (RiskLimits(max_order_notional=D("99")), _buy(price=None), NONE, "max_order_notional"),
        (RiskLimits(max_position=D("2")), _buy("1"), Exposure(position=D("1.5")),
         "max_position"),
        (RiskLimits(max_position=D("2")), _buy("1"), Exposure(open_buy=D("1.5")),
         "max_position"),
        (RiskLimits(max_open_orders=3), _buy(), Exposure(open_orders=3), "max_open_orders"),
        (RiskLimits(max_daily_loss=D("50")), _buy(), Exposure(daily_pnl=D("-50")),
         "max_daily_loss"),
    ],
)
def test_each_limit_rejects_its_breach(limits: RiskLimits, intent: OrderIntent,
                                       exposure: Exposure, check: str) -> None:
    per_bot = RiskEngine(default_limits=limits)
    d = per_bot.check(intent, bot=exposure, total=exposure, mid=MID, now=0.0)
    assert (d.accepted, d.check, d.scope) == (False, check, "bot")
    assert d.reason
    overall = RiskEngine(global_limits=limits)
    d = overall.check(intent, bot=NONE, total=exposure, mid=MID, now=0.0)
    assert (d.accepted, d.check, d.scope) == (False, check, "global")


def test_price_band_without_a_mid_refuses() -> None:
    risk = RiskEngine(default_limits=RiskLimits(price_band=D("0.05")))
    assert risk.check(_buy(), bot=NONE, total=NONE, mid=None, now=0.0).check == "price_band"
    assert risk.check(_buy(price="104"), bot=NONE, total=NONE, mid=MID, now=0.0).accepted


def test_orders_per_second_sliding_window() -> None:
    risk = RiskEngine(default_limits=RiskLimits(max_orders_per_second=2))
    ok = [risk.check(_buy(), bot=NONE, total=NONE, mid=MID, now=t).accepted
          for t in (0.0, 0.5, 0.9, 1.0, 1.4, 1.6)]
    # 0.0, 0.5 accepted; 0.9 refused; at 1.0 the 0.0 order left the window; 1.4 refused
    # (0.5 and 1.0 within it); 1.6: 0.5 left
    assert ok == [True, True, False, True, False, True]
    # other bots have their own window; a global window counts everyone
    assert risk.check(_buy(bot="b2"), bot=NONE, total=NONE, mid=MID, now=1.6).accepted
    glob = RiskEngine(global_limits=RiskLimits(max_orders_per_second=1))
    assert glob.check(_buy(), bot=NONE, total=NONE, mid=MID, now=0.0).accepted
    assert glob.check(_buy(bot="b2"), bot=NONE, total=NONE, mid=MID, now=0.1).check == \
        "max_orders_per_second"


def test_daily_loss_lets_reducing_orders_through() -> None:
    risk = RiskEngine(default_limits=RiskLimits(max_daily_loss=D("10")))
    losing_long = Exposure(position=D("2"), daily_pnl=D("-11"))
    sell = OrderIntent(bot="b1", symbol="BTC-USD", side=Side.SELL, size=D("1"), price=D("99"))
    assert risk.check(sell, bot=losing_long, total=losing_long, mid=MID, now=0.0).accepted
    flip = OrderIntent(bot="b1", symbol="BTC-USD", side=Side.SELL, size=D("3"), price=D("99"))
    assert risk.check(flip, bot=losing_long, total=losing_long, mid=MID, now=0.0).check == \
        "max_daily_loss"


def test_per_bot_limits_override_defaults() -> None:
    risk = RiskEngine(default_limits=RiskLimits(max_open_orders=1))
    risk.set_limits("b1", RiskLimits(max_open_orders=5))
    two = Exposure(open_orders=2)
    assert risk.check(_buy(), bot=two, total=two, mid=MID, now=0.0).accepted
    assert not risk.check(_buy(bot="b2"), bot=two, total=two, mid=MID, now=0.0).accepted


def test_bad_intent_and_bad_limits() -> None:
    risk = RiskEngine()
    assert risk.check(_buy("0"), bot=NONE, total=NONE, mid=MID, now=0.0).check == "size"
    no_price = OrderIntent(bot="b1", symbol="BTC-USD", side=Side.BUY, size=D(1))
    assert risk.check(no_price, bot=NONE, total=NONE, mid=MID, now=0.0).check == "size"
    with pytest.raises(ConfigError) as err:
        RiskLimits(max_position=D(-1))
    assert err.value.field == "max_position"


_dec = st.decimals(min_value=D("-50"), max_value=D("50"), places=1, allow_nan=False,
                   allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(side=st.sampled_from([Side.BUY, Side.SELL]),
       size=st.decimals(min_value=D("0.1"), max_value=D("20"), places=1),
       price=st.decimals(min_value=D("50"), max_value=D("150"), places=1),
       position=_dec, open_buy=st.decimals(min_value=0, max_value=10, places=1),
       open_sell=st.decimals(min_value=0, max_value=10, places=1),
       max_position=st.decimals(min_value=1, max_value=30, places=0),
       notional=st.decimals(min_value=10, max_value=3000, places=0),
       band=st.decimals(min_value=D("0.01"), max_value=D("0.5"), places=2))
def test_an_accepted_order_breaches_nothing(side: Side, size: Decimal, price: Decimal,
                                            position: Decimal, open_buy: Decimal,
                                            open_sell: Decimal, max_position: Decimal,
                                            notional: Decimal, band: Decimal) -> None:
    limits = RiskLimits(max_position=max_position, max_order_notional=notional,
                        price_band=band)
    risk = RiskEngine(default_limits=limits)
    exposure = Exposure(position=position, open_buy=open_buy, open_sell=open_sell)
    intent = OrderIntent(bot="b", symbol="BTC-USD", side=side, size=size, price=price)
    decision = risk.check(intent, bot=exposure, total=exposure, mid=MID, now=0.0)
    signed = size if side is Side.BUY else -size
    pending = open_buy if side is Side.BUY else -open_sell
    before = abs(position + pending)
    after = abs(position + pending + signed)
    breaches = (abs(price - MID) > band * MID or price * size > notional
                or (after > max_position and after > before))
    assert decision.accepted is (not breaches)


_maybe_dec = st.none() | st.decimals(min_value=D("0.01"), max_value=D("50"), places=2)
_maybe_int = st.none() | st.integers(min_value=0, max_value=5)


@st.composite
def _limits(draw: st.DrawFn) -> RiskLimits:
    return RiskLimits(max_position=draw(_maybe_dec), max_order_notional=draw(_maybe_dec),
                      max_open_orders=draw(_maybe_int), max_orders_per_second=draw(_maybe_int),
                      max_daily_loss=draw(_maybe_dec),
                      price_band=draw(st.none() | st.decimals(min_value=D("0.01"),
                                                              max_value=D("0.5"), places=2)))


_exposures = st.builds(Exposure, position=_dec,
                       open_buy=st.decimals(min_value=0, max_value=10, places=1),
                       open_sell=st.decimals(min_value=0, max_value=10, places=1),
                       open_orders=st.integers(min_value=0, max_value=8),
                       daily_pnl=st.decimals(min_value=-100, max_value=100, places=1))


@settings(max_examples=400, deadline=None)
@given(mine=_limits(), every=_limits(), exposure=_exposures, total=_exposures,
       mid=st.none() | st.decimals(min_value=D("50"), max_value=D("150"), places=1),
       side=st.sampled_from([Side.BUY, Side.SELL]),
       size=st.decimals(min_value=D("0.1"), max_value=D("20"), places=1),
       price=st.none() | st.decimals(min_value=D("50"), max_value=D("150"), places=1))
def test_what_reads_says_is_not_read_does_not_change_the_decision(
        mine: RiskLimits, every: RiskLimits, exposure: Exposure, total: Exposure,
        mid: Decimal | None, side: Side, size: Decimal, price: Decimal | None) -> None:
    # the engine passes an empty exposure and no mid where reads() says they are not read
    intent = OrderIntent(bot="b", symbol="BTC-USD", side=side, size=size, price=price,
                         type=OrderType.LIMIT if price is not None else OrderType.MARKET)

    def engine() -> RiskEngine:
        risk = RiskEngine(global_limits=every)
        risk.set_limits("b", mine)
        return risk

    reads_exposure, reads_mid = engine().reads("b")
    full = engine().check(intent, bot=exposure, total=total, mid=mid, now=0.0)
    skipped = engine().check(intent, bot=exposure if reads_exposure else NONE,
                             total=total if reads_exposure else NONE,
                             mid=mid if reads_mid else None, now=0.0)
    assert skipped == full
    assert reads_exposure == any(getattr(lim, name) is not None for lim in (mine, every)
                                 for name in ("max_position", "max_open_orders",
                                              "max_daily_loss"))
    assert reads_mid == any(getattr(lim, name) is not None for lim in (mine, every)
                            for name in ("price_band", "max_order_notional"))
