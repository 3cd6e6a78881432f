"""``tickloop backtest`` in a subprocess: the JSON object (the same on two runs), the table,
the PNG, the store's rows, sweeps, and one-line errors for bad arguments and files."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tickloop.runtime.store import SCHEMA_VERSION, Store

from .helpers import walk


def _csv(path: Path, n: int = 400) -> Path:
    with path.open("w") as f:
        f.write("open_time,open,high,low,close,volume\n")
        for c in walk(n, seed=3):
            f.write(f"{c.open_time // 10**6},{c.open},{c.high},{c.low},{c.close},{c.volume}\n")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickloop", "backtest", *args],
                          capture_output=True, text=True, timeout=120)


BOT = ("--bot", "tickloop.examples:SmaCross")


def test_json_is_one_object_and_the_same_twice(tmp_path: Path) -> None:
    rec = str(_csv(tmp_path / "BTC-USD.csv"))
    args = (rec, *BOT, "--param", "fast=3", "--param", "slow=10", "--json")
    first = _run(*args)
    assert first.returncode == 0, first.stderr
    second = _run(*args)
    assert first.stdout == second.stdout
    data = json.loads(first.stdout)
    for key in ("orders", "fills", "pnl", "max_drawdown", "sharpe"):
        assert key in data
    assert data["fills"] > 0 and data["params"] == {"fast": 3, "slow": 10, "size": "0.01"}
    assert first.stdout.count("\n") == 1


def test_table_plot_and_store(tmp_path: Path) -> None:
    rec = str(_csv(tmp_path / "BTC-USD.csv"))
    png = tmp_path / "eq.png"
    db = tmp_path / "runs.db"
    out = _run(rec, *BOT, "--param", "fast=3", "--param", "slow=10", "--fee", "0",
               "--cash", "500", "--plot", str(png), "--store", str(db))
    assert out.returncode == 0, out.stderr
    assert "max_drawdown" in out.stdout and "sharpe" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    async def rows() -> None:
        async with Store(db) as store:
            assert await store.schema_version() == SCHEMA_VERSION == 3
            (run,) = await store.backtest_runs()
            assert run["params"] == {"fast": 3, "slow": 10, "size": "0.01"}
            assert run["metrics"]["fees"] == 0.0
            assert run["candles"] == 400 and run["symbols"] == ["BTC-USD"]
            fills = await store.backtest_rows("fills", run["id"])
            assert len(fills) == run["metrics"]["fills"] > 0
            equity = await store.backtest_rows("equity", run["id"])
            assert len(equity) == 401 and equity[0]["equity"] == "500"
            assert len(await store.backtest_rows("orders", run["id"])) == run["metrics"]["orders"]
            (position,) = await store.backtest_rows("positions", run["id"])
            assert position["symbol"] == "BTC-USD" and position["seq"] == 0
            assert Decimal(position["size"]) in (Decimal(0), Decimal("0.01"))

    asyncio.run(rows())


def test_sweep_rows_in_combination_order(tmp_path: Path) -> None:
    rec = str(_csv(tmp_path / "BTC-USD.csv", n=200))
    out = _run(rec, *BOT, "--sweep", "fast=2,3", "--sweep", "slow=10,3", "--json",
               "--workers", "2")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(str(r["params"]["fast"]), str(r["params"]["slow"])) for r in rows] == [
        ("2", "10"), ("2", "3"), ("3", "10"), ("3", "3")]
    assert "error" in rows[3] and "below slow" in rows[3]["error"]
    assert all("sharpe" in r for r in rows[:3])
    single = json.loads(_run(rec, *BOT, "--param", "fast=3", "--param", "slow=10",
                             "--json").stdout)
    assert rows[2] == single  # a sweep row is the single run's object
    table = _run(rec, *BOT, "--sweep", "fast=2,3", "--param", "slow=10", "--workers", "1")
    assert table.returncode == 0 and "2 combinations" in table.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--param", "fast=five"), "parameter 'fast': Expected `int`, got `str`"),
    (("--param", "speed=1"), "unknown parameter 'speed'"),
    (("--param", "fast"), "--param 'fast' is not name=value"),
    (("--sweep", "speed=1,2"), "--sweep speed: SmaCross has no parameter 'speed'"),
    (("--cash", "lots"), "--cash 'lots' is not a number"),
    (("--symbols", "SOL-USD"), "no candles of SOL-USD"),
])
def test_bad_arguments_are_one_line(tmp_path: Path, args: tuple[str, ...],
                                    message: str) -> None:
    rec = str(_csv(tmp_path / "BTC-USD.csv", n=50))
    out = _run(rec, *BOT, *args)
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_bad_bot_and_bad_file(tmp_path: Path) -> None:
    rec = _csv(tmp_path / "BTC-USD.csv", n=50)
    out = _run(str(rec), "--bot", "tickloop.examples:Nope")
    assert out.returncode == 2 and "has no Nope" in out.stderr
    out = _run(str(rec), "--bot", "tickloop.models:Candle")
    assert out.returncode == 2 and "is not a tickloop Bot class" in out.stderr
    lines = rec.read_text().splitlines()
    lines[7] = lines[7].replace(",", ";", 1)
    rec.write_text("\n".join(lines) + "\n")
    out = _run(str(rec), *BOT)
    assert out.returncode == 2
    assert f"{rec}, line 8:" in out.stderr and out.stderr.count("\n") == 1
