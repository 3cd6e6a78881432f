"""The replay transport on its own, with a test playing the session (its FrameSink): frames
carry the recorded receive times, the pace follows the recorded clock scaled by ``speed``, data
waits for the sends it answered, REST answers wait for their place, and venue-side ends are
replayed while the client's own are not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from tickloop.exceptions import ConfigError
from tickloop.record import RecordKind, RecordWriter, RestExchange
from tickloop.replay import Replay

pytestmark = pytest.mark.timeout(30)
S = 1_000_000_000


class Sink:
    def __init__(self) -> None:
        self.frames: list[tuple[bytes, int]] = []
        self.closed: list[str] = []

    def on_frame(self, data: bytes | memoryview, now_ns: int) -> None:
        self.frames.append((bytes(data), now_ns))

    def on_oversized(self, limit: str, size: int, now_ns: int) -> None:
        raise AssertionError("never")

    def on_closed(self, reason: str, now_ns: int, limit: str | None) -> None:
        self.closed.append(reason)


def recording(path: Path, records: list[tuple[RecordKind, int, int, bytes]]) -> Path:
    with RecordWriter(path, meta={"venue": "sim"}) as writer:
        for kind, conn, second, data in records:
            wall = 1_700_000_000 * S + second * S
            writer.write(kind, conn, data, mono_ns=second * S, wall_ns=wall)
    return path


def connect_record(conn: int, second: int) -> tuple[RecordKind, int, int, bytes]:
    return (RecordKind.CONNECT, conn, second, b'{"url":"ws://x"}')


async def test_scaled_pace_follows_the_recorded_clock(tmp_path: Path) -> None:
    path = recording(tmp_path / "r", [
        connect_record(1, 0),
        *[(RecordKind.RECEIVED, 1, s, b"%d" % s) for s in (1, 2, 4, 8)],
    ])
    now = [100.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async with Replay(path, speed=10.0) as replay:
        replay._clock = lambda: now[0]
        replay._sleep = fake_sleep
        sink = Sink()
        await replay.connect("ws://x", {}, sink)
        await replay.wait()
    assert slept == pytest.approx([0.1, 0.1, 0.2, 0.4])
    assert sink.frames == [(b"%d" % s, 1_700_000_000 * S + s * S) for s in (1, 2, 4, 8)]


async def test_data_waits_for_the_send_it_answered(tmp_path: Path) -> None:
    path = recording(tmp_path / "r", [
        connect_record(1, 0),
        (RecordKind.RECEIVED, 1, 1, b"hello"),
        (RecordKind.SENT, 1, 2, b"subscribe"),
        (RecordKind.RECEIVED, 1, 3, b"data"),
    ])
    async with Replay(path) as replay:
        sink = Sink()
        conn = await replay.connect("ws://x", {}, sink)
        for _ in range(20):
            await asyncio.sleep(0)
        assert [f for f, _ in sink.frames] == [b"hello"]  # held until the client subscribes
        conn.send("subscribe")
        await replay.wait()
    assert [f for f, _ in sink.frames] == [b"hello", b"data"]
    assert conn.sent == [b"subscribe"] and replay.stats.send_timeouts == 0


async def test_rest_answers_wait_for_their_place_and_unknown_requests_get_404(
    tmp_path: Path,
) -> None:
    answer = RestExchange("GET", "/api/v1/book?symbol=BTC-USD&depth=5", 200, b"[1]", {}, 0, 0)
    path = recording(tmp_path / "r", [
        connect_record(1, 0),
        (RecordKind.RECEIVED, 1, 1, b"before"),
        (RecordKind.REST, 0, 2, msgspec.msgpack.encode(answer)),
        (RecordKind.RECEIVED, 1, 3, b"after"),
    ])
    async with Replay(path, batch=1) as replay:
        sink = Sink()
        order: list[str] = []
        await replay.connect("ws://x", {}, sink)
        # parameters in another order, and another host: the same request
        status, body, _ = await replay.http(
            "GET", "http://elsewhere/api/v1/book?depth=5&symbol=BTC-USD", None, {}
        )
        order.append(f"answer after {[f for f, _ in sink.frames]}")
        await replay.wait()
        missing = await replay.http("GET", "http://x/api/v1/other", None, {})
    assert (status, body) == (200, b"[1]")
    assert order == ["answer after [b'before']"]
    assert missing[0] == 404
    assert replay.stats.rest_answers == 1 and replay.stats.rest_missing == 1


async def test_the_venues_disconnect_is_replayed_the_clients_own_is_not(tmp_path: Path) -> None:
    path = recording(tmp_path / "r", [
        connect_record(1, 0),
        (RecordKind.DISCONNECT, 1, 1, b'{"reason":"closed by the venue (1012)"}'),
        connect_record(2, 2),
        (RecordKind.RECEIVED, 2, 3, b"again"),
        (RecordKind.DISCONNECT, 2, 4, b'{"reason":"closed by the client","by_client":true}'),
    ])
    async with Replay(path) as replay:
        first, second = Sink(), Sink()
        await replay.connect("ws://x", {}, first)
        await asyncio.sleep(0.01)
        assert first.closed == ["closed by the venue (1012)"]
        conn = await replay.connect("ws://x", {}, second)
        await replay.wait()
        assert second.frames and second.closed == [] and not conn.closed
    assert second.closed == ["the replay was closed"]


def test_bad_options_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Replay(tmp_path, speed=0)
    assert info.value.field == "speed"


async def test_a_corrupt_recording_is_a_one_line_error_from_wait(tmp_path: Path) -> None:
    path = recording(tmp_path / "r", [connect_record(1, 0), (RecordKind.RECEIVED, 1, 1, b"x")])
    (path / "seg-00000.tlr.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 10)
    async with Replay(path) as replay:
        with pytest.raises(ConfigError, match="corrupt segment"):
            await replay.wait()
