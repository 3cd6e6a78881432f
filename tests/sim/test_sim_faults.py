"""Each fault of the sim and its effect, seen from independent clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import websockets

import tickloop.sim.feed
from tickloop.exceptions import ConfigError
from tickloop.sim import SimExchange
from tickloop.sim.auth import sign

SYM = "BTC-USD"


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=9, symbols=[SYM], rate=0, heartbeat=0.2) as ex:
        yield ex


async def recv_raw(ws: Any) -> str | bytes:
    """The next frame; 5 s is a hang guard, not a timing assertion."""
    frame: str | bytes = await asyncio.wait_for(ws.recv(), 5.0)
    return frame


async def recv(ws: Any) -> dict[str, Any]:
    """The next message other than a heartbeat (those come whenever the test is slow)."""
    while True:
        message: dict[str, Any] = json.loads(await recv_raw(ws))
        if message["type"] != "heartbeat":
            return message


async def subscribed(ex: SimExchange, channel: str = "book") -> Any:
    ws = await websockets.connect(ex.ws_url)
    await ws.send(json.dumps({"op": "subscribe", "channel": channel, "symbols": [SYM]}))
    assert (await recv(ws))["type"] == "subscribed"
    if channel == "book":
        assert (await recv(ws))["type"] == "book_snapshot"
    return ws


async def closed(ws: Any) -> None:
    """Read until the server ends the connection (bounded by the hang guard)."""
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await recv_raw(ws)


async def test_disconnect_all_drops_every_connection(ex: SimExchange) -> None:
    clients = [await subscribed(ex) for _ in range(3)]
    assert await ex.faults.disconnect_all() == 3
    for ws in clients:
        await closed(ws)
    assert ex.stats.dropped_by_fault == 3 and ex.stats.open_connections == 0
    async with websockets.connect(ex.ws_url) as ws:  # the exchange takes new connections
        await ws.send(json.dumps({"op": "ping", "id": 1}))
        assert (await recv(ws))["type"] == "pong"


@pytest.mark.parametrize("fault", ["drop_every", "drop_probability"])
async def test_periodic_and_random_drops(ex: SimExchange, fault: str) -> None:
    ws = await subscribed(ex, "trades")
    if fault == "drop_every":
        ex.faults.drop_every(0.05)
    else:
        ex.faults.drop_probability(1.0)
    await closed(ws)
    assert ex.stats.dropped_by_fault >= 1
    ex.faults.reset()


async def test_stall_sends_nothing_then_resumes(ex: SimExchange) -> None:
    ws = await subscribed(ex)
    ex.faults.stall(30.0)
    await ws.send(json.dumps({"op": "ping", "id": 1}))
    ex.step(SYM, 10)
    with pytest.raises(TimeoutError):  # no pong, no data, no heartbeat: nothing at all
        await asyncio.wait_for(ws.recv(), 0.6)
    pong = await ws.ping()  # WebSocket-level pings go unanswered too
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pong, 0.3)
    assert ex.stats.frames_dropped_stalled >= 10
    ex.faults.reset()  # end the stall early: the connection was never closed
    await ws.send(json.dumps({"op": "ping", "id": 2}))
    message = await recv(ws)
    assert message["type"] == "pong" and message["id"] == 2
    await asyncio.wait_for(await ws.ping(), 5.0)  # WebSocket-level pings are answered again
    await ws.close()


async def test_skip_sequence_makes_a_gap(ex: SimExchange) -> None:
    ws = await subscribed(ex)
    ex.step(SYM, 1)
    first = await recv(ws)
    while first["type"] != "book_update":
        first = await recv(ws)
    ex.faults.skip_sequence(SYM)
    ex.step(SYM, 1)
    update = await recv(ws)
    while update["type"] != "book_update":
        update = await recv(ws)
    last_seq = first["seq"]
    while update["seq"] == last_seq + 1 and update["prev_seq"] == last_seq:  # same step's others
        last_seq = update["seq"]
        update = await recv(ws)
    assert update["prev_seq"] == last_seq + 1 and update["seq"] == last_seq + 2
    await ws.close()


async def test_malformed_frames_are_truncated_real_frames(ex: SimExchange) -> None:
    ws = await subscribed(ex)
    ex.faults.malformed(2)
    ex.step(SYM, 5)
    frames = []
    while len(frames) < 5:
        frames.append(await recv_raw(ws))
    bad = []
    for frame in frames:
        try:
            json.loads(frame)
        except ValueError:
            bad.append(frame)
    assert len(bad) == 2
    assert all(str(frame).startswith('{"type":"book_update"') for frame in bad)
    assert ex.stats.malformed_sent == 2
    await ws.send(json.dumps({"op": "ping"}))  # the connection is fine
    while (await recv(ws))["type"] != "pong":
        pass
    await ws.close()


async def test_injected_429_and_503(ex: SimExchange) -> None:
    ex.faults.rate_limit(2, retry_after=0.25)
    ex.faults.fail_requests(1)
    async with aiohttp.ClientSession() as http:
        answers = []
        for _ in range(4):
            async with http.get(ex.rest_url + "/time") as resp:
                answers.append((resp.status, dict(resp.headers), await resp.json()))
    assert [a[0] for a in answers] == [429, 429, 503, 200]
    _, headers, body = answers[0]
    assert headers["Retry-After"] == "1" and headers["TL-Retry-After-Ms"] == "250"
    assert body["error"]["code"] == "rate_limited"
    assert answers[2][2]["error"]["code"] == "unavailable"


async def test_dropped_response_then_retry_with_the_same_client_order_id(ex: SimExchange) -> None:
    key = ex.create_api_key()
    order = {
        "symbol": SYM,
        "side": "buy",
        "type": "limit",
        "price": "1000.00",
        "size": "0.0100",
        "client_order_id": "retry-me",
    }
    body = json.dumps(order).encode()

    async def place(http: aiohttp.ClientSession) -> tuple[int, Any, dict[str, str]]:
        ts = str(time.time_ns() // 1_000_000)
        sig = sign(key.secret, (ts + "POST/api/v1/orders").encode() + body)
        headers = {"TL-KEY": key.key_id, "TL-TS": ts, "TL-SIGN": sig}
        async with http.post(ex.rest_url + "/orders", data=body, headers=headers) as resp:
            return resp.status, await resp.json(), dict(resp.headers)

    async with aiohttp.ClientSession() as http:
        ex.faults.drop_responses(1)
        with pytest.raises(aiohttp.ClientError):
            await place(http)
        assert len(ex.engine.orders(key.key_id)) == 1  # processed, answer lost
        status, placed, headers = await place(http)
    assert status == 200 and headers["TL-Idempotent-Replay"] == "true"
    assert placed["client_order_id"] == "retry-me"
    assert len(ex.engine.orders(key.key_id)) == 1
    assert ex.stats.dropped_responses == 1


async def test_latency_delays_answers(ex: SimExchange) -> None:
    ex.faults.latency(0.2)
    async with aiohttp.ClientSession() as http:
        start = time.monotonic()
        async with http.get(ex.rest_url + "/time") as resp:
            assert resp.status == 200
        assert time.monotonic() - start >= 0.2  # a lower bound: safe on a slow machine
    ws = await subscribed(ex, "trades")
    start = time.monotonic()
    await ws.send(json.dumps({"op": "ping"}))
    assert (await recv(ws))["type"] == "pong"
    assert time.monotonic() - start >= 0.2
    await ws.close()


async def test_a_client_that_cannot_keep_up_is_disconnected(
    ex: SimExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tickloop.sim.feed, "SEND_BUFFER", 20)
    ws = await subscribed(ex)
    ex.faults.latency(60.0)  # frames pile up in the server's per-connection buffer
    ex.step(SYM, 30)
    await closed(ws)
    assert ex.stats.slow_disconnects == 1
    ex.faults.reset()
    ws = await subscribed(ex)  # others are unaffected
    ex.step(SYM, 1)
    assert (await recv(ws))["type"] == "book_update"
    await ws.close()


def test_bad_fault_arguments_name_the_field() -> None:
    faults = SimExchange(symbols=[SYM]).faults
    for call, field in (
        (lambda: faults.stall(-1), "stall"),
        (lambda: faults.drop_probability(2), "p"),
        (lambda: faults.drop_every(0), "drop_every"),
        (lambda: faults.fail_requests(1, status=200), "status"),
        (lambda: faults.rate_limit(1, retry_after=0), "retry_after"),
        (lambda: faults.apply_spec("explode=1"), "fault"),
        (lambda: faults.skip_sequence("FOO-USD"), "symbol"),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.field == field
    faults.apply_spec("latency=0.5")
    assert faults.latency_s == 0.5
    faults.reset()
    assert faults.latency_s == 0.0
