"""The metric functions: hand-computed values, and numpy as an independent computation on
hypothesis-generated equity curves."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.backtest import metrics as m
from tickloop.models import Fill, Liquidity, Side

CURVE = [100.0, 110.0, 99.0, 108.9, 120.0]


def test_hand_computed_curve() -> None:
    rets = m.returns(CURVE)
    assert rets == pytest.approx([0.1, -0.1, 0.1, 120 / 108.9 - 1])
    assert m.total_return(CURVE) == pytest.approx(0.2)
    # 4 bars; 8 bars a year: the growth of 1.2 happens twice a year
    assert m.annualized_return(CURVE, 8) == pytest.approx(1.44 - 1)
    # max drawdown: 110 -> 99 is 10 %, lasting from bar 1 to bar 4 (120 >= 110)
    assert m.max_drawdown(CURVE) == (pytest.approx(0.1), 3)
    assert m.drawdowns(CURVE) == pytest.approx([0, 0, 0.1, 0.01, 0])
    assert m.calmar(0.44, 0.1) == pytest.approx(4.4)
    assert m.calmar(0.44, 0.0) is None
    mean = sum(rets) / 4
    std = math.sqrt(sum((r - mean) ** 2 for r in rets) / 3)
    assert m.sharpe(rets, 8) == pytest.approx(mean / std * math.sqrt(8))
    down = math.sqrt(0.01 / 4)  # only -0.1 is below zero
    assert m.sortino(rets, 8) == pytest.approx(mean / down * math.sqrt(8))


def test_degenerate_curves() -> None:
    assert m.sharpe([0.01, 0.01], 10) is None  # no variance
    assert m.sharpe([0.01], 10) is None
    assert m.sortino([0.01, 0.02], 10) is None  # no downside
    assert m.max_drawdown([]) == (0.0, 0)
    assert m.max_drawdown([1.0, 2.0, 3.0]) == (0.0, 0)
    assert m.max_drawdown([3.0, 2.0, 1.0]) == (pytest.approx(2 / 3), 2)  # never recovered
    assert m.annualized_return([100.0], 12) == 0.0
    assert m.annualized_return([100.0, 0.0], 12) == -1.0
    assert m.periods_per_year(60) == 525_600


def _fill(side: Side, price: str, size: str, fee: str = "0", ts: int = 0,
          symbol: str = "BTC-USD") -> Fill:
    return Fill(venue="backtest", symbol=symbol, order_id="o", trade_id=ts, side=side,
                price=Decimal(price), size=Decimal(size), fee=Decimal(fee),
                liquidity=Liquidity.TAKER, ts=ts)


def test_round_trips_hand_computed() -> None:
    fills = [
        _fill(Side.BUY, "100", "1", "0.1", 1),
        _fill(Side.BUY, "110", "1", "0.11", 2),  # average 105
        _fill(Side.SELL, "120", "2", "0.24", 3),  # +30 - fees 0.45
        _fill(Side.SELL, "100", "1", "0.1", 4),  # short 1 at 100
        _fill(Side.BUY, "90", "3", "0.27", 5),  # +10, fee 0.1 + 1/3 of 0.27; long 2 at 90
        _fill(Side.SELL, "80", "2", "0.16", 6),  # -20, fees 2/3 of 0.27 + 0.16
    ]
    trips = m.round_trips(fills)
    assert [(t.side, t.entry_ts, t.exit_ts, t.size) for t in trips] == [
        (Side.BUY, 1, 3, 2), (Side.SELL, 4, 5, 1), (Side.BUY, 5, 6, 2)]
    assert trips[0].pnl == Decimal("29.55")
    assert trips[1].pnl == Decimal("10") - Decimal("0.1") - Decimal("0.09")
    assert trips[2].pnl == Decimal("-20") - Decimal("0.18") - Decimal("0.16")
    # every fee and every realised unit is in exactly one trip
    assert sum(t.pnl for t in trips) == Decimal("19.02")
    pnls = [float(t.pnl) for t in trips]
    assert m.win_rate(pnls) == pytest.approx(2 / 3)
    assert m.profit_factor(pnls) == pytest.approx((29.55 + 9.81) / 20.34)
    assert m.expectancy(pnls) == pytest.approx(19.02 / 3)
    assert m.profit_factor([1.0]) is None
    assert m.win_rate([]) is None
    assert m.expectancy([]) is None


def test_an_open_trade_is_not_a_round_trip() -> None:
    assert m.round_trips([_fill(Side.BUY, "100", "1")]) == []


curves = st.lists(st.floats(min_value=1.0, max_value=1e6, allow_nan=False), min_size=3,
                  max_size=200)


@settings(max_examples=200, deadline=None)
@given(curves, st.sampled_from([1.0, 60.0, 86_400.0]))
def test_against_numpy(curve: list[float], bar: float) -> None:
    e = np.array(curve)
    periods = m.periods_per_year(bar)
    r = e[1:] / e[:-1] - 1
    assert m.returns(curve) == pytest.approx(r.tolist(), rel=1e-12, abs=1e-15)
    rets = m.returns(curve)
    std = np.std(r, ddof=1)
    got = m.sharpe(rets, periods)
    if std > 1e-12 * max(1.0, abs(float(np.mean(r)))):
        assert got == pytest.approx(np.mean(r) / std * np.sqrt(periods), rel=1e-6)
    down = np.sqrt(np.mean(np.minimum(r, 0) ** 2))
    got_s = m.sortino(rets, periods)
    if down > 1e-9:
        assert got_s == pytest.approx(np.mean(r) / down * np.sqrt(periods), rel=1e-6)
    elif down == 0:
        assert got_s is None
    peak = np.maximum.accumulate(e)
    dd = 1 - e / peak
    mdd, bars = m.max_drawdown(curve)
    assert mdd == pytest.approx(float(dd.max()), abs=1e-12)
    if dd.max() > 0:
        trough = int(np.argmax(dd))
        top = int(np.flatnonzero(e[: trough + 1] == peak[trough])[-1])
        back = np.flatnonzero(e[trough:] >= e[top])
        end = trough + int(back[0]) if back.size else len(e) - 1
        assert bars == end - top
    else:
        assert bars == 0
    assert m.drawdowns(curve) == pytest.approx(dd.tolist(), abs=1e-12)
    n = len(e) - 1
    assert m.annualized_return(curve, 12) == pytest.approx(
        (e[-1] / e[0]) ** (12 / n) - 1, rel=1e-9, abs=1e-12)
