"""The embedded exchange against a bad client (issue 15, cases 3, 6 and 7): every bad request is
a clean JSON error, never a 500, a closed WebSocket, a number read the way no venue writes it,
or a signed request that counts twice."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import websockets

from tickloop.sim import SimApiKey, SimExchange

SYM = "BTC-USD"


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=5, symbols=[SYM], rate=0) as ex:
        ex.step(SYM, 50)
        yield ex


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def signed_without_nonce(key: SimApiKey, method: str, path: str, body: bytes) -> dict[str, str]:
    """What a client that signs the protocol's minimum sends (no nonce): replayable."""
    ts = str(time.time_ns() // 1_000_000)
    sig = hmac.new(
        key.secret.encode(), (ts + method + path).encode() + body, hashlib.sha256
    ).hexdigest()
    return {"TL-KEY": key.key_id, "TL-TS": ts, "TL-SIGN": sig, "Content-Type": "application/json"}


async def call(
    http: aiohttp.ClientSession,
    ex: SimExchange,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.request(
        method, ex.rest_url + path, data=body or None, headers=headers
    ) as resp:
        return resp.status, await resp.json()


async def test_case7_a_replayed_signed_order_creates_nothing(
    ex: SimExchange, http: aiohttp.ClientSession
) -> None:
    key = ex.create_api_key()
    body = json.dumps(
        {"symbol": SYM, "side": "buy", "type": "limit", "size": "0.0100", "price": "10.00"}
    ).encode()
    headers = signed_without_nonce(key, "POST", "/api/v1/orders", body)
    status, first = await call(http, ex, "POST", "/orders", body, headers)
    assert status == 201, first
    status, again = await call(http, ex, "POST", "/orders", body, headers)  # the same bytes
    assert status == 401 and again["error"]["code"] == "replayed"
    assert len(ex.engine.orders(key.key_id, SYM)) == 1


async def test_case7_a_replayed_token_request_mints_no_second_token(
    ex: SimExchange, http: aiohttp.ClientSession
) -> None:
    key = ex.create_api_key()
    headers = signed_without_nonce(key, "POST", "/api/v1/auth/token", b"")
    status, _ = await call(http, ex, "POST", "/auth/token", b"", headers)
    assert status == 200
    status, again = await call(http, ex, "POST", "/auth/token", b"", headers)
    assert status == 401 and again["error"]["code"] == "replayed"
    assert ex.stats.tokens_issued == 1


async def test_case7_the_client_signs_each_request_afresh(
    ex: SimExchange, http: aiohttp.ClientSession
) -> None:
    """tickloop's signer sends a nonce: two identical requests signed in the same millisecond
    are two signatures, and both are served; replaying either is refused."""
    from tickloop import Credentials

    key = ex.create_api_key()
    creds = Credentials.from_key(key)
    ts = time.time_ns() // 1_000_000
    one = creds.signed_headers("GET", "/api/v1/orders", ts_ms=ts)
    two = creds.signed_headers("GET", "/api/v1/orders", ts_ms=ts)
    assert (await call(http, ex, "GET", "/orders", headers=one))[0] == 200
    assert (await call(http, ex, "GET", "/orders", headers=two))[0] == 200
    status, answer = await call(http, ex, "GET", "/orders", headers=one)
    assert status == 401 and answer["error"]["code"] == "replayed"


@pytest.mark.parametrize("size", ["١", "1_0", "+1", " 1", "1e1", "0.01000", "0x1", "１"])
async def test_case3_sizes_must_be_plain_ascii_decimals(
    ex: SimExchange, http: aiohttp.ClientSession, size: str
) -> None:
    """"١" (Arabic-Indic one) and "1_0" were read as 1 and 10; "0.01000" has more decimals
    than the market's 4."""
    key = ex.create_api_key()
    body = json.dumps(
        {"symbol": SYM, "side": "buy", "type": "limit", "size": size, "price": "10.00"},
        ensure_ascii=False,
    ).encode()
    headers = signed_without_nonce(key, "POST", "/api/v1/orders", body)
    status, answer = await call(http, ex, "POST", "/orders", body, headers)
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_request" and answer["error"]["field"] == "size"


async def test_case3_duplicate_keys_are_refused(
    ex: SimExchange, http: aiohttp.ClientSession
) -> None:
    key = ex.create_api_key()
    body = (
        b'{"symbol":"BTC-USD","side":"buy","type":"limit","size":"0.0100",'
        b'"price":"10.00","size":"50.0000"}'
    )
    headers = signed_without_nonce(key, "POST", "/api/v1/orders", body)
    status, answer = await call(http, ex, "POST", "/orders", body, headers)
    assert status == 400 and answer["error"]["code"] == "invalid_json"
    assert "duplicate" in answer["error"]["message"]
    assert ex.engine.orders(key.key_id, SYM) == []


async def test_case6_nested_bodies_and_fields_are_400_not_500(
    ex: SimExchange, http: aiohttp.ClientSession
) -> None:
    key = ex.create_api_key()
    body = b'{"symbol":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = signed_without_nonce(key, "POST", "/api/v1/orders", body)
    status, answer = await call(http, ex, "POST", "/orders", body, headers)
    assert status == 400 and answer["error"]["code"] == "invalid_json"
    fields = "a(" * 1300 + "b" + ")" * 1300
    async with http.get(f"{ex.rest_url}/book/{SYM}", params={"fields": fields}) as resp:
        answer = await resp.json()
        assert resp.status == 400 and answer["error"]["field"] == "fields"
    assert ex.stats.rest_errors >= 2


async def test_case6_a_nested_websocket_frame_is_answered_and_the_connection_stays(
    ex: SimExchange,
) -> None:
    async with websockets.connect(ex.ws_url, max_size=None) as ws:
        await ws.send(b'{"op":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
        while answer.get("type") == "heartbeat":
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
        assert answer["type"] == "error" and answer["code"] == "invalid_json"
        await ws.send(json.dumps({"op": "ping", "id": 7}))
        while True:
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
            if answer.get("type") == "pong":
                break
        assert answer["id"] == 7


async def test_a_channel_that_is_not_a_string_is_an_error_message(ex: SimExchange) -> None:
    """Found by the fuzzer (fuzz/): ``"channel": [1]`` raised TypeError in the handler, which
    closed the connection."""
    async with websockets.connect(ex.ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": [1], "symbols": [SYM], "id": 4}))
        while True:
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
            if answer.get("type") != "heartbeat":
                break
        assert answer["type"] == "error" and answer["code"] == "unknown_channel"
        assert answer["id"] == 4
