"""Record the embedded exchange live through StreamClient, replay the recording through the
same code path: the same trades and books, bit for bit, as the live consumers got; the
``tickloop record`` command, against the sim and against a venue URL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickloop import StreamClient
from tickloop.client.rest import AsyncClient
from tickloop.models import Trade
from tickloop.record import Recorder, RecordKind, open_recording
from tickloop.replay import Replay, ReplayServer
from tickloop.sim import SimExchange

pytestmark = pytest.mark.timeout(120)

SYMBOLS = ["BTC-USD", "ETH-USD"]


class Log:
    def __init__(self) -> None:
        self.trades: list[Trade] = []
        self.books: list[bytes] = []
        self.status: list[str] = []
        self.records_at_end = 0

    def on_trade(self, trade: Trade) -> None:
        self.trades.append(trade)

    def on_book(self, view: Any) -> None:
        self.books.append(
            msgspec.json.encode([view.symbol, view.sequence, view.ts, view.bids(), view.asks()])
        )

    def on_status(self, event: Any) -> None:
        # stamped by the client's wall clock: live, when it happened; replayed, the recorded
        # time of the frame that caused it
        fields = msgspec.structs.asdict(event)
        fields.pop("ts")
        self.status.append(f"{type(event).__name__} {sorted(fields.items())}")


async def until(condition: Any, what: str, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit  # a hang guard, not a timing goal
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def record_live(out: Path) -> Log:
    live = Log()
    async with SimExchange(seed=11, symbols=SYMBOLS, rate=200) as ex:
        meta = {"venue": "sim", "url": ex.ws_url, "rest_url": ex.rest_url}
        with Recorder(out, meta=meta, max_segment_bytes=64 * 1024) as recorder:
            async with AsyncClient("sim", url=ex.rest_url) as rest:
                recorder.attach_http(rest.http)
                async with StreamClient(
                    "sim", url=ex.ws_url, rest=rest, transport=recorder.transport()
                ) as feed:
                    feed.subscribe_status(recorder.on_status)
                    feed.subscribe_status(live.on_status)
                    await feed.subscribe_trades(SYMBOLS, live.on_trade)
                    await feed.subscribe_books(SYMBOLS, live.on_book, depth=20)
                    await until(lambda: len(live.trades) >= 200, "200 trades live")
                    # what the live consumers saw ends here; frames of the socket read under
                    # way when the client closes are recorded but reach no consumer
                    live.records_at_end = recorder.writer.records
    return live


async def replay(out: Path) -> tuple[Log, Replay]:
    got = Log()
    async with Replay(out) as rep, rep.client() as feed:
        feed.subscribe_status(got.on_status)
        await feed.subscribe_trades(SYMBOLS, got.on_trade)
        await feed.subscribe_books(SYMBOLS, got.on_book, depth=20)
        await rep.wait()
    return got, rep


async def test_a_sim_session_replays_as_it_was_seen_live(tmp_path: Path) -> None:
    live = await record_live(tmp_path / "rec")
    rec = open_recording(tmp_path / "rec")
    kinds = {r.kind for r in rec.records()}
    assert {RecordKind.CONNECT, RecordKind.SENT, RecordKind.RECEIVED, RecordKind.STATUS} <= kinds
    assert len(rec.files) > 1  # type: ignore[attr-defined]  # rotated by size
    first, second = await replay(tmp_path / "rec")
    again, rep = await replay(tmp_path / "rec")
    # the same trades (receive times included) and the same books, in the same order; after
    # them only what the frames recorded once the live consumers were gone hold
    late = sum(
        1 for i, r in enumerate(rec.records())
        if r.kind is RecordKind.RECEIVED and i >= live.records_at_end
    )
    assert first.trades[: len(live.trades)] == live.trades
    assert first.books[: len(live.books)] == live.books
    assert len(first.trades) - len(live.trades) + len(first.books) - len(live.books) <= 2 * late
    assert first.status == live.status
    assert [s.split()[0] for s in live.status] == ["Connected", "BookValid", "BookValid"]
    assert rep.stats.send_timeouts == 0 and rep.stats.connect_timeouts == 0
    # and run after run
    assert again.trades == first.trades and again.books == first.books
    del second


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickloop", *args],
        capture_output=True, text=True, timeout=90, cwd=cwd,
    )


def test_record_command_records_the_embedded_exchange(tmp_path: Path) -> None:
    proc = run_cli("record", "out", "--seconds", "1.5", "--symbols", "BTC-USD,ETH-USD",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("recorded ") and proc.stdout.rstrip().endswith(": out")
    rec = open_recording(tmp_path / "out")
    assert rec.complete and rec.venue == "sim"  # type: ignore[attr-defined]
    assert rec.meta["symbols"] == ["BTC-USD", "ETH-USD"]
    assert rec.meta["channels"] == ["trades", "book"]
    records = list(rec.records())
    counts = {k: sum(1 for r in records if r.kind is k) for k in RecordKind}
    assert counts[RecordKind.CONNECT] == 1 and counts[RecordKind.SENT] >= 2
    assert counts[RecordKind.RECEIVED] > 10 and counts[RecordKind.STATUS] >= 1
    monos = [r.mono_ns for r in records]
    assert monos == sorted(monos)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seconds", "0"], "tickloop: error: --seconds 0 must be > 0"),
        (["--seconds", "1", "--channels", "trades,nope"],
         "tickloop: error: unknown channel 'nope': one of trades, book, tickers, candles"),
        (["--seconds", "1", "--venue", "nowhere"],
         "tickloop: error: --venue 'nowhere' is not a known venue"),
        (["--seconds", "1", "--symbols", ","], "tickloop: error: --symbols lists nothing"),
    ],
)
def test_record_command_bad_options_are_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run_cli("record", "out", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == message + "\n"


def test_record_command_refuses_an_existing_recording(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "index.json").write_text("{}")
    proc = run_cli("record", "out", "--seconds", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "tickloop: error: out already exists and is not an empty directory\n"


@pytest.mark.playback
async def test_record_a_venue_url_then_replay_it(tmp_path: Path, recorded_data: Path) -> None:
    """A real venue's protocol at a URL (Kraken's, served by the loopback replay server):
    recorded by the command, then replayed with the trades the venue sent."""
    path = recorded_data / "KRAKEN.ws.48.0"
    async with ReplayServer([path], start_on_message=True, close_at_end=False) as srv:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickloop", "record", "out", "--venue", "kraken",
            "--url", srv.url("/kraken"), "--symbols", "XMR-USD,SC-EUR", "--channels", "trades",
            "--seconds", "2", cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    rec = open_recording(tmp_path / "out")
    assert rec.venue == "kraken"
    got: list[Trade] = []
    async with Replay(rec) as rep, rep.client() as feed:
        await feed.subscribe_trades(["XMR-USD", "SC-EUR"], got.append)
        await rep.wait()
    assert got and {t.symbol for t in got} == {"XMR-USD", "SC-EUR"}
    assert rep.stats.frames == sum(1 for r in rec.records() if r.kind is RecordKind.RECEIVED)
