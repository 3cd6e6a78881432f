"""The replay server, driven by independent clients (websockets, aiohttp) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tickloop.exceptions import ConfigError
from tickloop.replay import ReplayServer
from tickloop.venues.binance import BinanceCodec, BinanceRest
from tickloop.venues.kraken import KrakenCodec
from tickloop.venues.recorded import Direction, read_recording

pytestmark = [pytest.mark.playback, pytest.mark.timeout(30)]


def recorded(path: Path) -> list[str]:
    return [r.frame.decode() for r in read_recording(path) if r.direction is Direction.RECEIVED]


async def receive_all(url: str, send: list[str] = ()) -> tuple[list[str], int | None]:
    frames: list[str] = []
    async with websockets.connect(url, max_size=None) as ws:
        for text in send:
            await ws.send(text)
        try:
            async for msg in ws:
                assert isinstance(msg, str)  # text frames, as the venues send them
                frames.append(msg)
        except ConnectionClosed:
            pass
        code = ws.close_code
    return frames, code


async def test_streams_a_recorded_session_byte_for_byte(recorded_data: Path) -> None:
    path = recorded_data / "BINANCE.ws.1.0"
    async with ReplayServer(ws_files=[path]) as srv:
        assert srv.ws_url.startswith("ws://127.0.0.1:")
        frames, code = await receive_all(srv.url("/stream"))
    assert frames == recorded(path)
    assert len(frames) == 265 and code == 1000
    assert srv.connections == 1 and srv.frames_sent == 265


async def test_frames_decode_end_to_end_through_the_codec(recorded_data: Path) -> None:
    path = recorded_data / "KRAKEN.ws.50.0"
    async with ReplayServer(ws_files=[path]) as srv:
        frames, _ = await receive_all(srv.url("/kraken"))
    codec = KrakenCodec()
    counts = Counter(type(e).__name__ for f in frames for e in codec.decode(f.encode(), 0))
    assert counts["BookSnapshot"] == 10 and counts["BookDelta"] == 4269


async def test_paths_select_sessions_and_root_merges_in_time_order(recorded_data: Path) -> None:
    files = [recorded_data / "KRAKEN.ws.48.0", recorded_data / "COINBASE.ws.28.0"]
    async with ReplayServer(ws_files=files) as srv:
        kraken, _ = await receive_all(srv.url("/kraken"))
        coinbase, _ = await receive_all(srv.url("/coinbase"))
        everything, _ = await receive_all(srv.ws_url)
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect(srv.url("/okx"))
    assert kraken == recorded(files[0]) and coinbase == recorded(files[1])
    assert sorted(everything) == sorted(kraken + coinbase)
    # a merge of the two sessions, each in its own order, in recorded time order overall
    streams = [
        [(r.ts, r.frame.decode()) for r in read_recording(f) if r.direction is Direction.RECEIVED]
        for f in files
    ]
    position = [0, 0]
    stamps = []
    for text in everything:
        which = next(
            i
            for i in (0, 1)
            if position[i] < len(streams[i]) and streams[i][position[i]][1] == text
        )
        stamps.append(streams[which][position[which]][0])
        position[which] += 1
    assert position == [len(streams[0]), len(streams[1])]
    assert stamps == sorted(stamps)


async def test_answers_recorded_rest_requests(recorded_data: Path) -> None:
    http_file = recorded_data / "BINANCE.http.0.0"
    bodies = {r.url: r.frame for r in read_recording(http_file)}
    async with (
        ReplayServer(
            http_files=[http_file, recorded_data / "BINANCE_US.http.0.0"],
            http_bodies={"https://api.binance.com/api/v3/ping": b"{}"},
        ) as srv,
        aiohttp.ClientSession() as http,
    ):
        url = srv.rest_url + "/api/v3/depth?symbol=NKNUSDT&limit=1000"
        async with http.get(url) as resp:
            assert resp.status == 200
            body = await resp.read()
        assert body == bodies["https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000"]
        assert BinanceRest().parse_book(body, "NKN-USDT").sequence == 499869752
        reordered = srv.rest_url + "/api/v3/depth?limit=1000&symbol=OMGBUSD"
        async with http.get(reordered) as resp:
            snap = BinanceRest().parse_book(await resp.read(), "OMG-BUSD")
            assert snap.sequence == 77819467
        async with http.get(srv.rest_url + "/api/v3/ping") as resp:
            assert resp.status == 200 and await resp.read() == b"{}"
        async with http.get(srv.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=1000") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "no recorded answer"


async def test_acknowledges_subscribe_and_waits_for_it(recorded_data: Path) -> None:
    path = recorded_data / "BINANCE_US.ws.1.0"
    subscribe = json.dumps({"method": "SUBSCRIBE", "params": ["omgbusd@aggTrade"], "id": 7})
    async with ReplayServer(ws_files=[path], start_on_message=True) as srv:
        frames, _ = await receive_all(srv.url("/stream"), send=[subscribe])
        assert srv.client_messages[0] == (1, subscribe)
    assert json.loads(frames[0]) == {"result": None, "id": 7}
    assert frames[1:] == recorded(path)
    codec = BinanceCodec()
    codec.subscribe([])  # nothing pending: the ack of an unknown id still decodes
    (ack,) = codec.decode(frames[0].encode(), 0)
    assert ack.request_id == 7  # type: ignore[union-attr]


async def test_paced_replay_keeps_order_and_answers_pings(recorded_data: Path) -> None:
    # 31 s recorded; at 20x about 1.5 s: the ping, sent as soon as the client is connected, must
    # reach the server before the session ends and it closes (at 2000x, 16 ms, a busy machine
    # sometimes delivered it too late for a pong)
    path = recorded_data / "KRAKEN.ws.48.0"
    async with ReplayServer(ws_files=[path], speed=20.0) as srv:
        frames, _ = await receive_all(srv.url("/"), send=['{"event":"ping","reqid":3}'])
    pong = [f for f in frames if json.loads(f) == {"event": "pong", "reqid": 3}]
    assert len(pong) == 1
    assert [f for f in frames if f not in pong] == recorded(path)


async def test_stopping_closes_open_connections(recorded_data: Path) -> None:
    path = recorded_data / "KRAKEN.ws.49.0"
    srv = ReplayServer(ws_files=[path], speed=0.001)  # would take hours: only a stop ends it
    await srv.start()
    try:
        ws = await websockets.connect(srv.ws_url)
        first = await asyncio.wait_for(ws.recv(), 10)
        assert first == recorded(path)[0]
    finally:
        await srv.stop()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1001
    with pytest.raises(RuntimeError):
        _ = srv.ws_url


async def test_reconnecting_client_gets_the_session_again(recorded_data: Path) -> None:
    path = recorded_data / "KRAKEN.ws.48.0"
    async with ReplayServer(ws_files=[path]) as srv:
        first, _ = await receive_all(srv.ws_url)
        second, _ = await receive_all(srv.ws_url)
    assert first == second == recorded(path) and srv.connections == 2


def test_rejects_a_bad_speed() -> None:
    with pytest.raises(ConfigError):
        ReplayServer(speed=0)


async def test_command_line_server_in_its_own_process(recorded_data: Path) -> None:
    path = recorded_data / "KRAKEN.ws.49.0"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickloop.replay.server", str(path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        word, port = line.decode().split()
        assert word == "READY"
        frames, code = await receive_all(f"ws://127.0.0.1:{int(port)}/")
        assert frames == recorded(path) and code == 1000
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0
