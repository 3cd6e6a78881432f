"""Candles from the engine's trades, sans-I/O: trades and times in, :class:`~tickloop.models.Candle`
out.

An interval's candle opens with the first trade inside it (``open_time`` is the interval start,
aligned to the Unix epoch, so ``1d`` candles start at 00:00 UTC; ``close_time`` is the exclusive
end). It closes (``closed=True``) when a trade arrives in a later interval, or when
:meth:`CandleAggregator.close_due` is called at or after its ``close_time``. An interval with no
trade has no candle. A trade stamped before the open candle's interval (a clock step back) is
counted in the open candle: a closed candle never changes again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal

from ..models import Candle
from .engine import TradeEvent
from .market import MarketSpec

__all__ = ["INTERVAL_NS", "CandleAggregator"]

_SECOND = 1_000_000_000
INTERVAL_NS: dict[str, int] = {
    "1s": _SECOND,
    "1m": 60 * _SECOND,
    "5m": 300 * _SECOND,
    "15m": 900 * _SECOND,
    "1h": 3600 * _SECOND,
    "1d": 86400 * _SECOND,
}


class _Bar:
    __slots__ = ("close", "close_time", "high", "low", "open", "open_time", "trades", "volume")

    def __init__(self, open_time: int, close_time: int, price: int) -> None:
        self.open_time = open_time
        self.close_time = close_time
        self.open = self.high = self.low = self.close = price
        self.volume = 0
        self.trades = 0


class _Series:
    __slots__ = ("current", "duration", "history", "interval", "spec")

    def __init__(self, spec: MarketSpec, interval: str, max_candles: int) -> None:
        self.spec = spec
        self.interval = interval
        self.duration = INTERVAL_NS[interval]
        self.current: _Bar | None = None
        self.history: deque[Candle] = deque(maxlen=max_candles)

    def model(self, bar: _Bar, closed: bool) -> Candle:
        spec = self.spec
        return Candle(
            venue="sim",
            symbol=spec.symbol,
            interval=self.interval,
            open_time=bar.open_time,
            close_time=bar.close_time,
            open=Decimal(spec.price_text(bar.open)),
            high=Decimal(spec.price_text(bar.high)),
            low=Decimal(spec.price_text(bar.low)),
            close=Decimal(spec.price_text(bar.close)),
            volume=Decimal(spec.size_text(bar.volume)),
            trades=bar.trades,
            closed=closed,
        )

    def close_current(self) -> Candle:
        bar = self.current
        assert bar is not None
        self.current = None
        candle = self.model(bar, True)
        self.history.append(candle)
        return candle


class CandleAggregator:
    """OHLCV candles per symbol and interval; keeps the last ``max_candles`` of each series."""

    def __init__(
        self,
        intervals: Iterable[str] = tuple(INTERVAL_NS),
        *,
        max_candles: int = 1000,
    ) -> None:
        self.intervals = tuple(intervals)
        for interval in self.intervals:
            if interval not in INTERVAL_NS:
                raise ValueError(
                    f"unknown interval {interval!r}; one of {' '.join(INTERVAL_NS)} expected"
                )
        if max_candles < 1:
            raise ValueError("max_candles must be >= 1")
        self.max_candles = max_candles
        self._series: dict[str, list[_Series]] = {}  # symbol -> one series per interval

    def on_trade(
        self,
        trade: TradeEvent,
        spec: MarketSpec,
        wanted: Callable[[str, str], bool] | None = None,
    ) -> list[Candle]:
        """Fold a trade in; returns the changed candles: per interval, the one that closed (if
        the trade opened a new interval) and the one the trade went into.

        ``wanted(symbol, interval)``, if given, says whether anyone will read the open candle
        of that series: the others are folded but not turned into models (five Decimals
        each, six series a trade: most of a trade's cost in the sim when nobody subscribed
        to candles). A closed candle is always made, since the history keeps it."""
        series = self._series.get(trade.symbol)
        if series is None:
            series = self._series[trade.symbol] = [
                _Series(spec, interval, self.max_candles) for interval in self.intervals
            ]
        ts, price, size = trade.ts, trade.price, trade.size
        out: list[Candle] = []
        for s in series:
            bar = s.current
            if bar is not None and ts >= bar.close_time:
                out.append(s.close_current())
                bar = None
            if bar is None:
                open_time = ts - ts % s.duration
                bar = s.current = _Bar(open_time, open_time + s.duration, price)
            elif price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            bar.close = price
            bar.volume += size
            bar.trades += 1
            if wanted is None or wanted(trade.symbol, s.interval):
                out.append(s.model(bar, False))
        return out

    def close_due(self, ts: int) -> list[Candle]:
        """Close the candles whose interval ended at or before ``ts`` (no trade came to close
        them); returns them with ``closed=True``."""
        out: list[Candle] = []
        for series in self._series.values():
            for s in series:
                bar = s.current
                if bar is not None and ts >= bar.close_time:
                    out.append(s.close_current())
        return out

    def candles(self, symbol: str, interval: str, limit: int | None = None) -> list[Candle]:
        """The last ``limit`` candles, oldest first; the last one may be open."""
        if interval not in INTERVAL_NS:
            raise ValueError(f"unknown interval {interval!r}")
        if interval not in self.intervals:
            return []
        series = self._series.get(symbol)
        if series is None:
            return []
        s = series[self.intervals.index(interval)]
        out = list(s.history)
        if s.current is not None:
            out.append(s.model(s.current, False))
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out
