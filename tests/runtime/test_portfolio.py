"""Portfolio: PnL arithmetic is exact and equity always equals cash plus holdings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.exceptions import ConfigError
from tickloop.models import Fill, Liquidity, Side
from tickloop.runtime.portfolio import Portfolio

D = Decimal


def _fill(side: Side, price: str, size: str, fee: str = "0", symbol: str = "BTC-USD") -> Fill:
    return Fill(venue="sim", symbol=symbol, order_id="o", trade_id=1, side=side,
                price=D(price), size=D(size), fee=D(fee), liquidity=Liquidity.TAKER, ts=0)


def test_open_add_reduce_flip_close() -> None:
    p = Portfolio(cash=D("1000"), bot="b1")
    p.apply_fill(_fill(Side.BUY, "100", "1"))
    p.apply_fill(_fill(Side.BUY, "110", "1"))
    pos = p.position("BTC-USD")
    assert (pos.size, pos.avg_price) == (D(2), D(105))
    p.apply_fill(_fill(Side.SELL, "120", "1", fee="0.5"))
    pos = p.position("BTC-USD")
    assert (pos.size, pos.avg_price, pos.realized_pnl) == (D(1), D(105), D("14.5"))
    p.apply_fill(_fill(Side.SELL, "90", "3"))  # closes 1 at -15, opens 2 short at 90
    pos = p.position("BTC-USD")
    assert (pos.size, pos.avg_price, pos.realized_pnl) == (D(-2), D(90), D("-0.5"))
    p.mark("BTC-USD", D("80"))
    assert p.unrealized_pnl == D(20)
    p.apply_fill(_fill(Side.BUY, "80", "2"))
    assert p.position("BTC-USD").size == 0
    assert p.position("BTC-USD").avg_price is None
    assert p.realized_pnl == D("19.5")
    assert p.equity_value == D("1019.5")
    eq = p.equity(ts=5)
    assert (eq.bot, eq.equity, eq.cash, eq.ts) == ("b1", D("1019.5"), D("1019.5"), 5)


def test_daily_pnl_restarts_each_utc_day() -> None:
    p = Portfolio(cash=D(0))
    day = 86_400.0 * 20_000
    assert p.daily_pnl(day) == 0
    p.apply_fill(_fill(Side.BUY, "100", "1"))
    p.mark("BTC-USD", D(90))
    assert p.daily_pnl(day + 10) == D(-10)
    assert p.daily_pnl(day + 86_400) == 0
    p.mark("BTC-USD", D(95))
    assert p.daily_pnl(day + 86_401) == D(5)


def test_mixed_quote_assets_are_refused() -> None:
    p = Portfolio()
    p.apply_fill(_fill(Side.BUY, "100", "1"))
    with pytest.raises(ConfigError):
        p.apply_fill(_fill(Side.BUY, "0.05", "1", symbol="ETH-BTC"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]),
                          st.sampled_from(["BTC-USD", "ETH-USD"]),
                          st.decimals(min_value=1, max_value=200, places=2),
                          st.decimals(min_value=D("0.01"), max_value=5, places=2),
                          st.decimals(min_value=0, max_value=1, places=3)),
                max_size=30),
       st.decimals(min_value=1, max_value=200, places=2))
def test_equity_is_cash_plus_holdings_and_start_plus_pnl(
        fills: list[tuple[Side, str, Decimal, Decimal, Decimal]], mark: Decimal) -> None:
    p = Portfolio(cash=D(10_000))
    for side, symbol, price, size, fee in fills:
        p.apply_fill(Fill(venue="sim", symbol=symbol, order_id="o", trade_id=1, side=side,
                          price=price, size=size, fee=fee, liquidity=Liquidity.MAKER, ts=0))
    for symbol in ("BTC-USD", "ETH-USD"):
        p.mark(symbol, mark)
    assert p.equity_value == p.start_cash + p.realized_pnl + p.unrealized_pnl
    assert p.fees == sum((f[4] for f in fills), D(0))
    net = {s: sum((f[3] if f[0] is Side.BUY else -f[3] for f in fills if f[1] == s), D(0))
           for s in ("BTC-USD", "ETH-USD")}
    assert {s: p.size(s) for s in net} == net


@pytest.mark.parametrize("cash", ["1000", "1E+4", "0.50", "-0"])
def test_mark_equity_flat_is_cash_plus_zero_made_once(cash: str) -> None:
    p = Portfolio(cash=D(cash), bot="b1")
    first, exposed = p.mark_equity({"BTC-USD": D("100")})
    assert not exposed
    # cash + 0, digits and all ("1E+4" + 0 is "10000"), as the general formula makes it
    assert str(first) == str(D(cash) + D(0))
    again, _ = p.mark_equity({"BTC-USD": D("101")})
    assert again is first  # no new Decimal a flat bar
    p.apply_fill(_fill(Side.BUY, "100", "1", fee="0.1"))
    held, exposed = p.mark_equity({"BTC-USD": D("102")})
    assert exposed and held == p.cash + D("102")
    p.apply_fill(_fill(Side.SELL, "102", "1"))
    flat, exposed = p.mark_equity({"BTC-USD": D("103")})
    assert not exposed and flat is not first and str(flat) == str(p.cash + D(0))
