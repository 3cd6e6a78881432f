"""Performance metrics of a backtest: pure functions over an equity curve and a list of fills.

Sans-I/O: numbers in, numbers out; no clock, no store. Conventions (docs/backtest.md):

* The equity curve has one point per bar close (``e_0`` the starting cash, before the first
  bar); bar returns are ``r_i = e_i / e_{i-1} - 1``.
* A year is 365 days of 24 hours (markets that never close), so a bar of ``s`` seconds gives
  ``periods_per_year = 31_536_000 / s``.
* Sharpe is ``mean(r) / std(r) * sqrt(periods_per_year)`` with the sample standard deviation
  (``n - 1``) and a risk-free rate of 0; Sortino divides by the downside deviation
  ``sqrt(sum(min(r_i, 0)^2) / n)`` instead. Either is None when its denominator is 0 or there
  are fewer than two returns.
* The annualised return is geometric: ``(e_n / e_0) ** (periods_per_year / n) - 1``; Calmar is
  it divided by the maximum drawdown (None without a drawdown).
* The maximum drawdown is the largest fall from a running peak, as a fraction of the peak; its
  duration is the number of bars from that peak to the first bar back at or above it (or to
  the last bar, when it never recovered).
* A trade is a round trip of one symbol from flat to flat (a fill that flips the position
  closes one trade and opens the next at its price); its PnL is realised PnL after the fees of
  its fills (a flipping fill's fee is split by size). Win rate: trades with PnL > 0 over all
  trades; profit factor: gross profit over gross loss (None without a losing trade);
  expectancy: the mean trade PnL.
* Exposure: the fraction of bars closed with a position open; turnover: traded notional over
  the mean equity.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ..models import Fill, Side

__all__ = [
    "YEAR_SECONDS",
    "RoundTrip",
    "annualized_return",
    "calmar",
    "drawdowns",
    "expectancy",
    "max_drawdown",
    "periods_per_year",
    "profit_factor",
    "returns",
    "round_trips",
    "sharpe",
    "sortino",
    "total_return",
    "win_rate",
]

YEAR_SECONDS = 365 * 86_400
_ZERO = Decimal(0)
_BUY = Side.BUY  # (a module name: read off its class, an enum member costs ~65 ns)


def periods_per_year(bar_seconds: float) -> float:
    return YEAR_SECONDS / bar_seconds


def returns(equity: Sequence[float]) -> list[float]:
    """Bar returns; a bar starting at zero equity (or below) has return 0."""
    return [b / a - 1.0 if a > 0 else 0.0 for a, b in itertools.pairwise(equity)]


def total_return(equity: Sequence[float]) -> float:
    if len(equity) < 2 or equity[0] <= 0:
        return 0.0
    return equity[-1] / equity[0] - 1.0


def annualized_return(equity: Sequence[float], periods: float) -> float | None:
    """None when compounding a short run over a year overflows a float."""
    n = len(equity) - 1
    if n < 1 or equity[0] <= 0:
        return 0.0
    growth = equity[-1] / equity[0]
    if growth <= 0:
        return -1.0
    try:
        return float(growth ** (periods / n) - 1.0)
    except OverflowError:
        return None


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def sharpe(rets: Sequence[float], periods: float) -> float | None:
    n = len(rets)
    if n < 2:
        return None
    mean = _mean(rets)
    # (lists, not generators: a backtest's curve has a point per bar; the same sums)
    var = math.fsum([(r - mean) ** 2 for r in rets]) / (n - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(periods)


def sortino(rets: Sequence[float], periods: float) -> float | None:
    n = len(rets)
    if n < 2:
        return None
    # min(r, 0.0) ** 2 without a call per return (a NaN return stays NaN, as with min)
    down = math.fsum([r ** 2 if not r >= 0.0 else 0.0 for r in rets]) / n
    if down <= 0:
        return None
    return _mean(rets) / math.sqrt(down) * math.sqrt(periods)


def drawdowns(equity: Sequence[float]) -> list[float]:
    """The fall from the running peak at each point, as a fraction of the peak (>= 0)."""
    out = []
    peak = -math.inf
    for e in equity:
        if e > peak:
            peak = e
        out.append(1.0 - e / peak if peak > 0 else 0.0)
    return out


def max_drawdown(equity: Sequence[float]) -> tuple[float, int]:
    """The maximum drawdown (a fraction) and its duration in bars (module docstring)."""
    if not equity:
        return 0.0, 0
    peak = equity[0]
    peak_at = 0
    worst = 0.0
    worst_peak_at = 0
    worst_at = -1
    for i, e in enumerate(equity):
        if e >= peak:
            peak = e
            peak_at = i
            continue
        dd = 1.0 - e / peak if peak > 0 else 0.0
        if dd > worst:
            worst = dd
            worst_peak_at = peak_at
            worst_at = i
    if worst_at < 0:
        return 0.0, 0
    top = equity[worst_peak_at]
    end = len(equity) - 1
    for i in range(worst_at + 1, len(equity)):
        if equity[i] >= top:
            end = i
            break
    return worst, end - worst_peak_at


def calmar(annualized: float | None, mdd: float) -> float | None:
    return annualized / mdd if mdd > 0 and annualized is not None else None


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One trade, flat to flat: ``side`` is the side it opened with."""

    symbol: str
    side: Side
    size: Decimal  # the largest size held during the trade
    entry_ts: int
    exit_ts: int
    pnl: Decimal


class _Open:
    __slots__ = ("cost", "entry_ts", "peak", "pnl", "side", "size")

    def __init__(self, side: Side, ts: int) -> None:
        self.side = side
        self.entry_ts = ts
        self.size = _ZERO
        self.cost = _ZERO
        self.pnl = _ZERO
        self.peak = _ZERO


def round_trips(fills: Iterable[Fill]) -> list[RoundTrip]:
    """The closed trades the fills make, in the order they closed (module docstring)."""
    out: list[RoundTrip] = []
    open_: dict[str, _Open] = {}
    for f in fills:
        signed = f.size if f.side is _BUY else -f.size
        t = open_.get(f.symbol)
        if t is None:
            t = open_[f.symbol] = _Open(f.side, f.ts)
        old = t.size
        if old == 0 or (old > 0) == (signed > 0):
            t.cost += signed * f.price
            t.size = old + signed
            t.pnl -= f.fee
            t.peak = max(t.peak, abs(t.size))
            continue
        closed = min(abs(old), abs(signed))
        fee_close = f.fee if closed == abs(signed) else f.fee * closed / abs(signed)
        closed_cost = t.cost if closed == abs(old) else t.cost * closed / abs(old)
        direction = 1 if old > 0 else -1
        t.pnl += direction * closed * f.price - closed_cost - fee_close
        t.cost -= closed_cost
        t.size = old + signed
        if t.size == 0 or (t.size > 0) != (old > 0):
            out.append(RoundTrip(f.symbol, t.side, t.peak, t.entry_ts, f.ts, t.pnl))
            del open_[f.symbol]
            if t.size != 0:  # flipped: the rest opens a new trade at the fill price
                n = open_[f.symbol] = _Open(f.side, f.ts)
                n.size = t.size
                n.cost = t.size * f.price
                n.pnl = -(f.fee - fee_close)
                n.peak = abs(t.size)
    return out


def win_rate(pnls: Sequence[float]) -> float | None:
    if not pnls:
        return None
    return sum(1 for p in pnls if p > 0) / len(pnls)


def profit_factor(pnls: Sequence[float]) -> float | None:
    gross_loss = -math.fsum(p for p in pnls if p < 0)
    if gross_loss <= 0:
        return None
    return math.fsum(p for p in pnls if p > 0) / gross_loss


def expectancy(pnls: Sequence[float]) -> float | None:
    return _mean(pnls) if pnls else None
