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
from tickloop.runtime.bot import Bot
from tickloop.runtime.engine import Engine
from tickloop.sim import SimExchange

pytestmark = pytest.mark.timeout(120)

SYMBOLS = ["BTC-USD", "ETH-USD"]


class Log:
    def __init__(self) -> None:
        self.trades: list[Trade] = []
        self.books: list[bytes] = []
        self.status: list[str] = []
        self.records_at_end = 0
        self.exact: list[bytes] = []

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
        self.exact.append(msgspec.json.encode({**fields, "downtime": None}))
        # times of the client's own clock: live, when it happened; replayed, the recorded time
        # of the frame before (the same on every replay)
        for name in ("ts", "start_ts", "end_ts"):
            fields.pop(name, None)
        # measured on the monotonic clock of the process that reconnects: not replayed
        fields.pop("downtime", None)
        self.status.append(f"{type(event).__name__} {sorted(fields.items())}")


async def until(condition: Any, what: str, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit  # a hang guard, not a timing goal
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def record_live(out: Path, *, drop: bool = False) -> Log:
    live = Log()
    async with SimExchange(seed=11, symbols=SYMBOLS, rate=200) as ex:
        meta = {"venue": "sim", "url": ex.ws_url, "rest_url": ex.rest_url}
        with Recorder(out, meta=meta, max_segment_bytes=64 * 1024) as recorder:
            async with AsyncClient("sim", url=ex.rest_url) as rest:
                recorder.attach_http(rest.http)
                async with StreamClient(
                    "sim", url=ex.ws_url, rest=rest, transport=recorder.transport(),
                    base_wait=0.01, max_wait=0.05,
                ) as feed:
                    await feed.subscribe_status(recorder.on_status)
                    await feed.subscribe_status(live.on_status)
                    await feed.subscribe_trades(SYMBOLS, live.on_trade)
                    await feed.subscribe_books(SYMBOLS, live.on_book, depth=20)
                    await until(lambda: len(live.trades) >= 100, "100 trades live")
                    if drop:
                        await ex.faults.disconnect_all()
                        await until(lambda: any(s.startswith("Reconnected") for s in live.status),
                                    "the reconnect")
                    await until(lambda: len(live.trades) >= 200, "200 trades live")
                    # what the live consumers saw ends here; frames of the socket read under
                    # way are recorded but may reach no consumer
                    live.records_at_end = recorder.writer.records
                    recorder.close()  # before the client's own shutdown
    return live


async def replay(out: Path) -> tuple[Log, Replay]:
    got = Log()
    async with Replay(out) as rep, rep.client(base_wait=0.01, max_wait=0.05) as feed:
        await feed.subscribe_status(got.on_status)
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


async def test_a_disconnect_reconnect_and_backfill_replay_as_they_happened(
    tmp_path: Path,
) -> None:
    live = await record_live(tmp_path / "rec", drop=True)
    records = list(open_recording(tmp_path / "rec").records())
    assert sum(1 for r in records if r.kind is RecordKind.CONNECT) == 2
    assert any(r.kind is RecordKind.REST for r in records)  # the trade backfill
    got, rep = await replay(tmp_path / "rec")
    kinds = [s.split()[0] for s in live.status]
    assert "Disconnected" in kinds and "Reconnected" in kinds
    assert got.status[: len(live.status)] == live.status
    assert got.trades[: len(live.trades)] == live.trades  # backfilled ones included
    assert got.books[: len(live.books)] == live.books
    assert len(rep.connections) == 2 and rep.stats.rest_answers >= 1
    assert rep.stats.rest_missing == 0 and rep.stats.send_timeouts == 0
    again, _ = await replay(tmp_path / "rec")
    # replay after replay: the same, times of status events included
    assert again.exact == got.exact and again.trades == got.trades and again.books == got.books


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


class Echo(Bot):
    """Writes down every event the engine hands it."""

    channels = ("trades", "books")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[bytes] = []

    def on_trade(self, trade: Trade) -> None:
        self.seen.append(msgspec.json.encode(trade))

    def on_book(self, book: Any) -> None:
        self.seen.append(msgspec.json.encode(book))


async def test_a_bot_on_the_replay_sees_what_it_saw_live(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    live_bot = Echo("echo", symbols=SYMBOLS)
    async with SimExchange(seed=5, symbols=SYMBOLS, rate=200) as ex:
        meta = {"venue": "sim", "url": ex.ws_url, "rest_url": ex.rest_url}
        with Recorder(out, meta=meta) as recorder:
            rest = AsyncClient("sim", url=ex.rest_url)
            recorder.attach_http(rest.http)
            feed = StreamClient("sim", url=ex.ws_url, rest=rest, transport=recorder.transport())
            async with feed, Engine([live_bot], venue="sim", feed=feed):
                await until(lambda: len(live_bot.seen) >= 300, "300 events live")
                seen_live = list(live_bot.seen)
                recorder.close()  # before the client's own shutdown
            await rest.close()
    replay_bot = Echo("echo", symbols=SYMBOLS)
    async with (
        Replay(out) as rep,
        rep.client() as replayed,
        Engine([replay_bot], venue="sim", feed=replayed),
    ):
        await rep.wait()
        await asyncio.sleep(0)
    # Live, the events that came while the engine was still wiring the bot reached no bot
    # (how many depends on the machine); replayed, the client keeps up with each message, so
    # the bot gets those too. From the live bot's first event on, it sees exactly the same.
    start = replay_bot.seen.index(seen_live[0])
    assert replay_bot.seen[start : start + len(seen_live)] == seen_live
    assert rep.stats.send_timeouts == 0 and rep.stats.connect_timeouts == 0


def test_record_command_says_so_when_it_never_connected(tmp_path: Path) -> None:
    proc = run_cli("record", "out", "--venue", "kraken", "--url", "ws://127.0.0.1:9/",
                   "--symbols", "XMR-USD", "--seconds", "1", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == (
        "tickloop: error: [kraken] never connected to ws://127.0.0.1:9/ "
        "(the recording in out is empty)\n"
    )
    assert open_recording(tmp_path / "out").complete  # type: ignore[attr-defined]
