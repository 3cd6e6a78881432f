from __future__ import annotations

import random
from decimal import Decimal

from tickloop.models import Candle

T0 = 1_767_225_600 * 10**9
SECOND = 10**9


def walk(n: int, *, seed: int = 1, symbol: str = "BTC-USD", step: int = 1,
         volume: str = "10") -> list[Candle]:
    """``n`` candles of ``step`` seconds: a seeded random walk in cents."""
    rng = random.Random(seed)
    p = 1_000_000
    out = []
    cents = Decimal("0.01")
    for i in range(n):
        o = h = lo = p
        for _ in range(3):
            p += rng.randint(-5, 5)
            h = max(h, p)
            lo = min(lo, p)
        out.append(Candle(venue="backtest", symbol=symbol, interval=f"{step}s" if step != 60
                          else "1m", open_time=T0 + i * step * SECOND,
                          close_time=T0 + (i + 1) * step * SECOND, open=o * cents,
                          high=h * cents, low=lo * cents, close=p * cents,
                          volume=Decimal(volume), closed=True))
    return out


def candle(i: int, o: str, h: str, lo: str, c: str, v: str = "10",
           symbol: str = "BTC-USD") -> Candle:
    return Candle(venue="backtest", symbol=symbol, interval="1s", open_time=T0 + i * SECOND,
                  close_time=T0 + (i + 1) * SECOND, open=Decimal(o), high=Decimal(h),
                  low=Decimal(lo), close=Decimal(c), volume=Decimal(v), closed=True)
