"""SMA-crossover backtest on the same one-second candles: tickloop, backtrader, and a vectorised
ceiling (vectorbt when it is installed, else numpy), side by side in one run.

    .venv/bin/python bench/bench_backtest.py            # 1,000,000 candles
    .venv/bin/python bench/bench_backtest.py --n 100000

The candles are a seeded random walk in cents (the same on every run). Every engine runs the
same strategy: long ``size`` when the fast SMA of the closes crosses above the slow one, flat
when it crosses below; a market order placed at a bar's close fills at the next bar's open, with
a fee of 0.1% of the notional. tickloop runs it twice: ``SmaCandleCross`` decides as each
candle closes (what backtrader's ``next`` does: the ratio is this row's), ``SmaCross`` on a tick
every simulated second (through the scheduler; on one-second candles the same decisions). The
script checks that every engine made the same trades (time, side, price) before it prints the
times. Data preparation is not timed; each engine's run is.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from decimal import Decimal
from typing import Any

from tickloop.backtest import run_backtest
from tickloop.examples import SmaCandleCross, SmaCross
from tickloop.models import Candle

T0 = 1_767_225_600
FEE = 0.001


def walk(n: int, seed: int = 7) -> list[tuple[int, int, int, int, int]]:
    """(open_time s, open, high, low, close) in cents."""
    rng = random.Random(seed)
    p = 1_000_000
    out = []
    for i in range(n):
        o = h = lo = p
        for _ in range(3):
            p += rng.randint(-5, 5)
            h = max(h, p)
            lo = min(lo, p)
        out.append((T0 + i, o, h, lo, p))
    return out


class Timer:
    """Wall time and this process's CPU time of a block: on a shared machine the CPU time
    is the fairer figure (time the process spent waiting for a core is not counted)."""

    def __enter__(self) -> Timer:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def tickloop_run(rows: list[tuple[int, int, int, int, int]], fast: int, slow: int,
                 on_candle: bool = True) -> tuple[Timer, list[tuple[int, str, int]]]:
    """``SmaCandleCross`` (a decision at each candle close, as backtrader's ``next``), or with
    ``on_candle=False`` ``SmaCross`` (a tick every simulated second on the last price: on
    one-second candles the same decisions, through the scheduler)."""
    cents = Decimal("0.01")
    candles = [Candle(venue="backtest", symbol="BTC-USD", interval="1s",
                      open_time=t * 10**9, close_time=(t + 1) * 10**9, open=o * cents,
                      high=h * cents, low=lo * cents, close=c * cents,
                      volume=Decimal(1000), closed=True)
               for t, o, h, lo, c in rows]
    with Timer() as timer:
        bot = (SmaCandleCross("sma", fast=fast, slow=slow, candle_interval="1s") if on_candle
               else SmaCross("sma", fast=fast, slow=slow))
        result = run_backtest(bot, candles, fee=Decimal("0.001"))
    fills = result.report().fills
    return timer, [(f.ts // 10**9, str(f.side), int(f.price * 100)) for f in fills]


def backtrader_run(rows: list[tuple[int, int, int, int, int]], fast: int, slow: int
                   ) -> tuple[Timer, list[tuple[int, str, int]]]:
    import datetime as dt

    import backtrader as bt

    class Feed(bt.feed.DataBase):  # type: ignore[misc]
        def start(self) -> None:
            super().start()
            self._rows = iter(rows)

        def _load(self) -> bool:
            row = next(self._rows, None)
            if row is None:
                return False
            t, o, h, lo, c = row
            self.lines.datetime[0] = bt.date2num(dt.datetime.fromtimestamp(t, dt.UTC)
                                                 .replace(tzinfo=None))
            # in cents: whole numbers, so the float SMAs tie exactly when tickloop's do
            self.lines.open[0] = float(o)
            self.lines.high[0] = float(h)
            self.lines.low[0] = float(lo)
            self.lines.close[0] = float(c)
            self.lines.volume[0] = 1000.0
            self.lines.openinterest[0] = 0.0
            return True

    trades: list[tuple[int, str, int]] = []

    class Sma(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=fast), bt.ind.SMA(period=slow))

        def next(self) -> None:
            if self.cross[0] > 0 and self.position.size <= 0:
                self.buy(size=0.01)
            elif self.cross[0] < 0 and self.position.size > 0:
                self.close()

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                when = bt.num2date(order.executed.dt).replace(tzinfo=dt.UTC).timestamp()
                trades.append((round(when), "buy" if order.isbuy() else "sell",
                               round(order.executed.price)))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(Feed())
    cerebro.addstrategy(Sma)
    cerebro.broker.setcash(1e9)  # prices are in cents
    cerebro.broker.setcommission(commission=FEE)
    with Timer() as timer:
        cerebro.run()
    return timer, trades


def vector_run(rows: list[tuple[int, int, int, int, int]], fast: int, slow: int
               ) -> tuple[str, Timer, list[tuple[int, str, int]]]:
    import numpy as np

    times = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    opens = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)) / 100
    closes = np.fromiter((r[4] for r in rows), dtype=np.float64, count=len(rows)) / 100
    try:
        import vectorbt as vbt
    except ImportError:
        vbt = None
    if vbt is not None:
        import pandas as pd

        def signals(close: Any, opens: Any) -> Any:
            f = vbt.MA.run(close, fast).ma
            s = vbt.MA.run(close, slow).ma
            entries = f.vbt.crossed_above(s)
            exits = f.vbt.crossed_below(s)
            # signals at a close, filled at the next open
            return vbt.Portfolio.from_signals(close, entries.shift(1, fill_value=False),
                                              exits.shift(1, fill_value=False), price=opens,
                                              size=0.01, fees=FEE, init_cash=1e9)

        cents_close = pd.Series(closes * 100).round()
        cents_open = pd.Series(opens * 100).round()
        signals(cents_close[:1000], cents_open[:1000])  # numba compiles here, not timed
        with Timer() as timer:
            pf = signals(cents_close, cents_open)
            records = pf.orders.records
        out = [(int(times[i]), "buy" if side == 0 else "sell", round(float(price)))
               for i, side, price in zip(records["idx"], records["side"], records["price"],
                                         strict=True)]
        return "vectorbt", timer, out
    timer = Timer().__enter__()
    # the same signals with numpy alone: SMAs by cumulative sums (in cents, exact)
    cents = np.fromiter((r[4] for r in rows), dtype=np.int64, count=len(rows))
    csum = np.concatenate(([0], np.cumsum(cents)))
    n = len(rows)
    idx = np.arange(slow - 1, n)
    fast_sum = (csum[idx + 1] - csum[idx + 1 - fast]) * slow
    slow_sum = (csum[idx + 1] - csum[idx + 1 - slow]) * fast
    diff = np.sign(fast_sum - slow_sum)
    nz = np.flatnonzero(diff)
    d = diff[nz]
    change = np.flatnonzero(d[1:] != d[:-1]) + 1
    bars = idx[nz[change]]
    ups = d[change] > 0
    out = []
    long = False
    for bar, up in zip(bars.tolist(), ups.tolist(), strict=True):
        if bar + 1 >= n:
            break
        if up and not long:
            out.append((int(times[bar + 1]), "buy", round(float(opens[bar + 1]) * 100)))
            long = True
        elif not up and long:
            out.append((int(times[bar + 1]), "sell", round(float(opens[bar + 1]) * 100)))
            long = False
    timer.__exit__()
    return "numpy", timer, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="candles (default 1M)")
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=30)
    parser.add_argument("--skip-backtrader", action="store_true")
    args = parser.parse_args()
    rows = walk(args.n)
    tl, tl_trades = tickloop_run(rows, args.fast, args.slow)

    def line(name: str, t: Timer, fills: int) -> str:
        return (f"{name:<17} {t.wall:8.2f} s wall {t.cpu:8.2f} s cpu "
                f"{args.n / t.cpu:>10,.0f} candles/cpu-s  {fills} fills")

    print(line("tickloop", tl, len(tl_trades)), flush=True)
    ticked, ticked_trades = tickloop_run(rows, args.fast, args.slow, on_candle=False)
    same_ticked = ticked_trades == tl_trades
    ok = same_ticked
    print(f"{line('tickloop (tick)', ticked, len(ticked_trades))}  same trades: {same_ticked}",
          flush=True)
    if not args.skip_backtrader:
        bt, bt_trades = backtrader_run(rows, args.fast, args.slow)
        same = bt_trades == tl_trades
        ok &= same
        print(f"{line('backtrader', bt, len(bt_trades))}  same trades: {same}", flush=True)
        if not same:
            for i, (a, b) in enumerate(zip(tl_trades, bt_trades, strict=False)):
                if a != b:
                    print(f"  first difference at fill {i}: tickloop {a}, backtrader {b}")
                    break
    name, vt, v_trades = vector_run(rows, args.fast, args.slow)
    same_v = v_trades == tl_trades
    ok &= same_v
    print(f"{line(name, vt, len(v_trades))}  same trades: {same_v}", flush=True)
    if not args.skip_backtrader:
        print(f"tickloop / backtrader speed: {bt.cpu / tl.cpu:.1f}x cpu, "
              f"{bt.wall / tl.wall:.1f}x wall (tick: {bt.cpu / ticked.cpu:.1f}x cpu); "
              f"{name} / tickloop: {tl.cpu / vt.cpu:.0f}x cpu")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
