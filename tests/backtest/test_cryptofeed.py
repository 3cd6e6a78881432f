"""Bots in an Engine on cryptofeed's real recordings (tests/data/cryptofeed), through
ReplayBacktest: the bot's on_trade sees every recorded trade, exactly as the codec decodes the
recorded frame (as the StreamClient replay tests do), its on_book the replayed books, and two
runs give the same event log."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickloop.backtest import ReplayBacktest
from tickloop.models import BookDelta, BookSnapshot, Trade
from tickloop.runtime import Bot
from tickloop.venues import stream_codec
from tickloop.venues.recorded import Direction, read_recording

pytestmark = [pytest.mark.playback, pytest.mark.timeout(120)]


class Watch(Bot):
    """Logs every trade and book it is given."""

    channels = ("trades", "books")

    def on_start(self) -> None:
        self.trades: list[Trade] = []
        self.books = 0
        self.booked: set[str] = set()
        self.lines: list[bytes] = []

    def on_trade(self, trade: Trade) -> None:
        self.trades.append(trade)
        self.lines.append(msgspec.json.encode(trade))

    def on_book(self, book: Any) -> None:
        self.books += 1
        self.booked.add(book.symbol)
        self.lines.append(msgspec.json.encode(book))


def decoded(path: Path, venue: str) -> list[Any]:
    codec = stream_codec(venue)()
    return [e for r in read_recording(path) if r.direction is Direction.RECEIVED
            for e in codec.decode(r.frame, r.ts)]


def received(paths: list[Path]) -> int:
    return sum(1 for p in paths for r in read_recording(p) if r.direction is Direction.RECEIVED)


CASES = [
    ("binance", ["BINANCE.ws.1.0", "BINANCE.http.0.0"]),
    ("coinbase", ["COINBASE.ws.28.0"]),
    # cryptofeed recorded Kraken's trades and books on two connections: merged in time order
    ("kraken", ["KRAKEN.ws.48.0", "KRAKEN.ws.50.0"]),
]


@pytest.mark.parametrize(("venue", "names"), CASES, ids=[v for v, _ in CASES])
def test_a_bot_in_an_engine_sees_every_recorded_trade_and_book(
    venue: str, names: list[str], recorded_data: Path
) -> None:
    paths: list[Path] = [recorded_data / n for n in names]
    events = decoded(paths[0], venue)
    trades = [e for e in events if isinstance(e, Trade)]
    symbols = tuple(sorted({t.symbol for t in trades}))
    assert trades and symbols
    books = {e.symbol for p in paths if ".ws." in p.name for e in decoded(p, venue)
             if isinstance(e, BookSnapshot | BookDelta)}
    assert set(symbols) <= books  # the recording holds their books too
    digests = []
    for _ in range(2):
        bot = Watch("watch")
        bot.symbols = symbols
        run = ReplayBacktest(bot, list[str | Path](paths))
        result = run.run_sync()
        stats = run.replay.stats  # type: ignore[union-attr]
        # every recorded trade of these symbols, in order, as decoded from the recorded frame
        assert bot.trades == trades
        assert result.frames == received(paths)
        assert stats.dropped == 0 and stats.send_timeouts == 0 and stats.connect_timeouts == 0
        assert stats.rest_missing == 0
        if venue == "binance":
            assert stats.rest_answers == len(symbols)  # a snapshot each, the recorded one
        assert bot.booked == set(symbols)  # every symbol's book synced and reached the bot
        digests.append(hashlib.sha256(b"\n".join(bot.lines)).hexdigest())
    assert digests[0] == digests[1]


CLI_CASES = [
    # one recorded trade of NKN-USDT: SmaCross places nothing, but the run goes end to end
    ("binance", ["BINANCE.ws.1.0", "BINANCE.http.0.0"], "NKN-USDT"),
    ("coinbase", ["COINBASE.ws.28.0"], "SKL-USD"),
    ("kraken", ["KRAKEN.ws.48.0", "KRAKEN.ws.50.0"], "XMR-USD"),
]


@pytest.mark.parametrize(("venue", "names", "symbol"), CLI_CASES, ids=[v for v, _, _ in CLI_CASES])
def test_the_command_runs_smacross_on_a_cryptofeed_recording(
    venue: str, names: list[str], symbol: str, recorded_data: Path
) -> None:
    paths = [recorded_data / n for n in names]
    args = [sys.executable, "-m", "tickloop", "backtest", *map(str, paths), "--bot",
            "tickloop.examples:SmaCross", "--symbols", symbol, "--param", "fast=2",
            "--param", "slow=4", "--json"]
    first, second = (subprocess.run(args, capture_output=True, text=True, timeout=120)
                     for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.count("\n") == 1
    data = json.loads(first.stdout)
    assert data["frames"] == received(paths) and data["symbols"] == [symbol]
    assert data["start_ts"] < data["end_ts"]
