"""Candle CSVs: the documented layout, and a one-line error naming the file and line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tickloop.backtest import load_candles, read_csv
from tickloop.backtest.data import interval_name, interval_seconds
from tickloop.exceptions import ConfigError

HEADER = "open_time,open,high,low,close,volume\n"


def _write(path: Path, body: str, header: str = HEADER) -> Path:
    path.write_text(header + body)
    return path


def test_layout_symbol_from_the_name_and_interval_from_the_gaps(tmp_path: Path) -> None:
    f = _write(tmp_path / "btc-usd.csv",
               "1767225600000,100,101,99,100.5,3\n1767225660000,100.5,102,100,101,4.25\n"
               "1767225780000,101,101,100,100,0\n")
    candles = read_csv(f)
    assert [c.symbol for c in candles] == ["BTC-USD"] * 3
    assert {c.interval for c in candles} == {"1m"}  # a gap of two minutes is allowed
    first = candles[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal(100), Decimal(101), Decimal(99), Decimal("100.5"), Decimal(3))
    assert first.open_time == 1767225600 * 10**9
    assert first.close_time == first.open_time + 60 * 10**9 and first.closed


def test_iso_times_symbol_column_and_directories(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "ETH-USD,2026-01-01T00:00:00Z,1,1,1,1,1\n"
           "BTC-USD,2026-01-01T00:00:00Z,2,2,2,2,1\nETH-USD,2026-01-01T00:00:01Z,1,1,1,1,1\n"
           "BTC-USD,2026-01-01T00:00:01Z,2,2,2,2,1\n",
           header="symbol,open_time,open,high,low,close,volume\n")
    _write(tmp_path / "SOL-USD.csv", "1767225600000,3,3,3,3,1\n1767225601000,3,3,3,3,1\n")
    candles = load_candles(tmp_path)
    assert sorted({c.symbol for c in candles}) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert {c.interval for c in candles} == {"1s"}
    assert candles[0].open_time == 1767225600 * 10**9
    with pytest.raises(ConfigError, match="SOL-USD is also in"):
        load_candles([tmp_path / "SOL-USD.csv", tmp_path / "SOL-USD.csv"])


@pytest.mark.parametrize(("body", "message"), [
    ("1767225600000,100,101,99,100.5,3\n1767225660000,1OO,101,99,100,1\n",
     r"x\.csv, line 3: open '1OO' is not a number"),
    ("1767225600000,100,99,98,100.5,3\n", r"x\.csv, line 2: high 99 / low 98 do not contain"),
    ("1767225600000,100,101,99,100,-1\n", r"line 2: volume -1 must be >= 0"),
    ("1767225600000,100,101,99,100,1\n1767225600000,100,101,99,100,1\n",
     r"line 3: open_time 1767225600000 is not after the previous X candle's"),
    ("yesterday,100,101,99,100,1\n", r"line 2: open_time 'yesterday' is neither"),
    ("2026-01-01T00:00:00,100,101,99,100,1\n", r"line 2: .* has no time zone"),
    ("1767225600000,100,101,0,100,1\n", r"line 2: low 0 must be > 0"),
    ("1767225600000,100,101\n", r"line 2: low '' is not a number"),
])
def test_a_bad_row_names_the_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    f = _write(tmp_path / "x.csv", body)
    with pytest.raises(ConfigError, match=message) as info:
        read_csv(f, interval="1m")
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"e\.csv, line 1: empty file"):
        read_csv(_write(tmp_path / "e.csv", "", header=""))
    with pytest.raises(ConfigError, match=r"line 1: missing column\(s\) volume"):
        read_csv(_write(tmp_path / "m.csv", "", header="open_time,open,high,low,close\n"))
    with pytest.raises(ConfigError, match="no candles"):
        read_csv(_write(tmp_path / "h.csv", ""))
    with pytest.raises(ConfigError, match="interval cannot be inferred"):
        read_csv(_write(tmp_path / "one.csv", "1767225600000,1,1,1,1,1\n"))
    assert read_csv(tmp_path / "one.csv", interval="1h")[0].interval == "1h"
    with pytest.raises(ConfigError, match="no such file"):
        load_candles(tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.csv"):
        load_candles(tmp_path / "empty")
    (tmp_path / "bin.csv").write_bytes(HEADER.encode() + b"\xff\xfe\x00\n")
    with pytest.raises(ConfigError, match=r"bin\.csv, line"):
        read_csv(tmp_path / "bin.csv")


def test_interval_names() -> None:
    assert [interval_name(s) for s in (1, 60, 3600, 86_400, 7)] == ["1s", "1m", "1h", "1d", "7s"]
    assert [interval_seconds(n) for n in ("1s", "5m", "4h", "1d")] == [1, 300, 14_400, 86_400]
    for bad in ("", "m", "0s", "5x", "1.5m"):
        with pytest.raises(ConfigError, match="interval"):
            interval_seconds(bad)
