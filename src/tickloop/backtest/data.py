"""Candles for a backtest: read from CSV files, checked row by row, as
:class:`~tickloop.models.Candle` s.

The layout (a header row is required; column order is free; other columns are ignored)::

    open_time,open,high,low,close,volume
    1767225600000,100.00,100.50,99.80,100.20,12.5

* ``open_time``: when the candle opened, integer milliseconds since the Unix epoch, or an ISO
  8601 UTC time (``2026-01-01T00:00:00Z``);
* ``open, high, low, close, volume``: decimal numbers, kept exact (Decimal);
* ``symbol`` (optional): the market; without it the file's name is the symbol
  (``BTC-USD.csv`` holds ``BTC-USD``).

A directory is every ``*.csv`` in it, in name order. Rows of one symbol must have increasing
open times. The bar interval is the smallest gap between two open times of a symbol (or given);
gaps of several intervals are allowed (no candle, no trade). Any bad row is a one-line
:class:`~tickloop.exceptions.ConfigError` naming the file and line. The runtime's store keeps no
market data, so a backtest reads its candles from CSV (or from a list of Candles in Python).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..exceptions import ConfigError
from ..models import Candle

__all__ = ["COLUMNS", "interval_name", "interval_seconds", "load_candles", "read_csv"]

#: The columns a candle CSV must have.
COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
_NAMES = {1: "1s", 60: "1m", 300: "5m", 900: "15m", 3600: "1h", 14_400: "4h", 86_400: "1d"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_MS = 1_000_000


def interval_name(seconds: int) -> str:
    """``60`` -> ``"1m"``; an interval without a usual name is ``"<n>s"``."""
    return _NAMES.get(seconds, f"{seconds}s")


def interval_seconds(name: str) -> int:
    """``"1m"`` -> 60 (``<n>s``, ``<n>m``, ``<n>h``, ``<n>d``)."""
    unit = _UNITS.get(name[-1:]) if name else None
    if unit is None or not name[:-1].isdigit() or int(name[:-1]) < 1:
        raise ConfigError(f"interval {name!r} is not like 1s, 5m, 1h or 1d", field="interval")
    return int(name[:-1]) * unit


def _open_time(text: str) -> int:
    """ns since the epoch."""
    text = text.strip()
    if text.isdigit():
        return int(text) * _MS
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"open_time {text!r} is neither epoch milliseconds nor ISO 8601") \
            from None
    if when.tzinfo is None:
        raise ValueError(f"open_time {text!r} has no time zone (add Z for UTC)")
    return round(when.timestamp() * 1000) * _MS


def _number(row: Sequence[str], at: int, name: str) -> Decimal:
    try:
        value = Decimal(row[at])
    except (InvalidOperation, IndexError):
        text = row[at] if at < len(row) else ""
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{name} {row[at]!r} is not a finite number")
    return value


def read_csv(path: str | Path, *, venue: str = "backtest",
             interval: str | None = None) -> list[Candle]:
    """The candles of one CSV file (see the module docstring), by symbol then open time."""
    path = Path(path)
    rows: dict[str, list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]] = {}
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}", field="REC") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ConfigError(f"{path}, line 1: empty file (need a header: "
                              f"{','.join(COLUMNS)})", field="REC") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}, line 1: {exc}", field="REC") from None
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ConfigError(f"{path}, line 1: missing column(s) {', '.join(missing)} (need "
                              f"{','.join(COLUMNS)})", field="REC")
        at = [header.index(c) for c in COLUMNS]
        sym_at = header.index("symbol") if "symbol" in header else None
        default = path.stem.upper()
        line = 1
        try:
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                try:
                    t = _open_time(row[at[0]]) if at[0] < len(row) else None
                    if t is None:
                        raise ValueError("open_time is missing")
                    o, h, lo, c, v = (_number(row, at[i], COLUMNS[i]) for i in range(1, 6))
                    if lo <= 0:
                        raise ValueError(f"low {lo} must be > 0")
                    if h < max(o, c) or lo > min(o, c):
                        raise ValueError(f"high {h} / low {lo} do not contain open {o} and "
                                         f"close {c}")
                    if v < 0:
                        raise ValueError(f"volume {v} must be >= 0")
                    symbol = row[sym_at].strip() if sym_at is not None and sym_at < len(row) \
                        else default
                    if not symbol:
                        raise ValueError("symbol is empty")
                except ValueError as exc:
                    raise ConfigError(f"{path}, line {line}: {exc}", field="REC") from None
                series = rows.setdefault(symbol, [])
                if series and t <= series[-1][0]:
                    raise ConfigError(f"{path}, line {line}: open_time {row[at[0]].strip()} is "
                                      f"not after the previous {symbol} candle's", field="REC")
                series.append((t, o, h, lo, c, v))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}, line {line}: {exc}", field="REC") from None
    if not rows:
        raise ConfigError(f"{path}: no candles", field="REC")
    out: list[Candle] = []
    for symbol in sorted(rows):
        series = rows[symbol]
        if interval is not None:
            step = interval_seconds(interval) * 1_000_000_000
        elif len(series) > 1:
            step = min(b[0] - a[0] for a, b in itertools.pairwise(series))
        else:
            raise ConfigError(f"{path}: one {symbol} candle: the interval cannot be inferred "
                              "(give it)", field="interval")
        if step % 1_000_000_000:
            raise ConfigError(f"{path}: {symbol}'s interval {step / 1e9} s is not whole "
                              "seconds", field="interval")
        name = interval_name(step // 1_000_000_000)
        out.extend(Candle(venue=venue, symbol=symbol, interval=name, open_time=t,
                          close_time=t + step, open=o, high=h, low=lo, close=c, volume=v,
                          closed=True) for t, o, h, lo, c, v in series)
    return out


def load_candles(paths: str | Path | Iterable[str | Path], *, venue: str = "backtest",
                 interval: str | None = None) -> list[Candle]:
    """The candles of a CSV file, a directory of them, or several of either."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.csv"))
            if not found:
                raise ConfigError(f"{p}: no *.csv file in the directory", field="REC")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise ConfigError(f"{p}: no such file or directory", field="REC")
    out: list[Candle] = []
    seen: dict[str, Path] = {}
    for f in files:
        candles = read_csv(f, venue=venue, interval=interval)
        for symbol in sorted({c.symbol for c in candles}):
            if symbol in seen:
                raise ConfigError(f"{f}: {symbol} is also in {seen[symbol]}", field="REC")
            seen[symbol] = f
        out.extend(candles)
    return out
