"""Backtests on a recording (:mod:`tickloop.backtest.replayed`): a real recording of the embedded
exchange (``tickloop.record.record``) replayed through StreamClient into an Engine with the paper
executor on a SimClock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

from tickloop.backtest import ReplayBacktest, is_recording
from tickloop.exceptions import ConfigError
from tickloop.models import Side, Trade
from tickloop.record import RecordKind, open_recording, record
from tickloop.runtime import Bot

SECONDS = 6.0


class FlipParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    every_n: int = 7
    size: Decimal = Decimal("0.01")


class Flipper(Bot):
    """Buys on every ``every_n``-th trade when flat, sells when long; counts its ticks."""

    symbols = ("BTC-USD",)
    every = 0.5
    Params: ClassVar[type[msgspec.Struct]] = FlipParams

    def on_start(self) -> None:
        self.trades = 0
        self.ticks: list[float] = []

    async def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        if self.trades % self.params.every_n:
            return
        symbol = self.symbols[0]
        held = self.position(symbol).size
        if held > 0:
            await self.sell(symbol, held)
        else:
            await self.buy(symbol, self.params.size)

    def tick(self) -> None:
        self.ticks.append(self.engine.clock.now())


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "sim"
    asyncio.run(record(out, seconds=SECONDS, symbols=["BTC-USD"], channels=["trades", "book"]))
    return out


def test_a_bot_on_a_recording_trades_in_simulated_time_and_the_same_every_run(rec: Path) -> None:
    assert is_recording([str(rec)]) and not is_recording(["BTC-USD.csv"])
    records = list(open_recording(rec).records())
    span = (records[-1].mono_ns - records[0].mono_ns) / 1e9
    first = ReplayBacktest(Flipper("flip"), rec, cash=1000, fee="0.0005")
    result = first.run_sync()
    report = result.report()
    bot = first.engine.bots[0]  # type: ignore[union-attr]
    assert isinstance(bot, Flipper)
    received = sum(1 for r in records if r.kind is RecordKind.RECEIVED)
    assert result.frames == received
    # the orders: one per 7 trades the bot heard, alternately buy and sell, all filled on the
    # replayed book
    assert bot.trades >= 14 and len(report.orders) == bot.trades // 7
    assert [o.side for o in report.orders] == [
        Side.BUY if i % 2 == 0 else Side.SELL for i in range(len(report.orders))]
    assert len(report.fills) >= len(report.orders) and all(
        o.status == "filled" for o in report.orders)
    assert report.metrics["fees"] > 0 and report.metrics["orders"] == len(report.orders)
    # the schedule ran on the recording's clock: a tick every 0.5 s of recorded time, at
    # recorded wall times (the replay itself takes a fraction of that)
    t0 = records[0].wall_ns / 1e9
    assert abs(len(bot.ticks) - span / 0.5) <= 2
    assert all(t0 <= t <= t0 + span + 1e-6 for t in bot.ticks)
    assert [round(b - a, 6) for a, b in zip(bot.ticks, bot.ticks[1:], strict=False)] == [
        0.5] * (len(bot.ticks) - 1)
    # equity once a simulated second, from the starting cash to the end of the recording
    assert report.equity[0] == Decimal(1000) and report.equity_ts[0] == records[0].wall_ns
    assert len(report.equity) >= int(span)
    # the loop-lag monitor ran on that clock, once a simulated second, and saw no lag: a
    # task a timer woke runs at the time it was woken, whatever the gap to the next frame
    monitor = first.engine.monitor  # type: ignore[union-attr]
    assert monitor is not None and abs(len(monitor.lags) - span) <= 2
    assert monitor.blocked == 0 and monitor.max_lag < 1e-9  # float rounding of the times
    again = ReplayBacktest(Flipper("flip"), rec, cash=1000, fee="0.0005").run_sync()
    assert again.digest() == result.digest()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickloop", "backtest", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_command_on_a_recording_prints_the_same_object_twice(rec: Path) -> None:
    args = (str(rec), "--bot", "tickloop.examples:SmaCross", "--param", "fast=2",
            "--param", "slow=4", "--json")
    first, second = _cli(*args), _cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.count("\n") == 1
    assert "Unclosed" not in first.stderr, first.stderr  # every client it made is closed
    data = json.loads(first.stdout)
    for key in ("orders", "fills", "pnl", "max_drawdown", "sharpe"):
        assert key in data
    assert data["frames"] > 0 and data["candles"] == 0 and data["bar_seconds"] == 1
    assert data["symbols"] == ["BTC-USD"]
    out = _cli(str(rec), "--bot", "tickloop.examples:SmaCross", "--slippage", "0.01")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "--slippage is for candles" in out.stderr


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="equity_every"):
        ReplayBacktest(Flipper("f"), [], equity_every=0)  # type: ignore[arg-type]
