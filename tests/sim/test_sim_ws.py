"""The sim's WebSocket API end to end, with the independent ``websockets`` client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets

from tickloop.checksums import sim_checksum
from tickloop.sim import SimExchange

SYM = "BTC-USD"


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    # rate=0: no flow task steps; tests drive the flow with ex.step() for determinism.
    async with SimExchange(seed=7, symbols=[SYM, "ETH-USD"], rate=0, heartbeat=0.2) as ex:
        yield ex


async def recv(ws: Any, *, heartbeats: bool = False) -> dict[str, Any]:
    """The next message, skipping heartbeats unless asked (they come whenever the test is slow);
    5 s is a hang guard, not a timing assertion."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
        if heartbeats or message.get("type") != "heartbeat":
            return message


async def until(ws: Any, kind: str) -> tuple[dict[str, Any], list[Any]]:
    """Read until a message of type ``kind``; returns it and everything read before it."""
    before = []
    while True:
        message = await recv(ws, heartbeats=kind == "heartbeat")
        if message.get("type") == kind:
            return message, before
        before.append(message)


async def sync(ws: Any, req_id: int = 999) -> list[dict[str, Any]]:
    """Everything the server queued before now: ping and read up to the pong."""
    await ws.send(json.dumps({"op": "ping", "id": req_id}))
    pong, before = await until(ws, "pong")
    assert pong["id"] == req_id
    return before


class Book:
    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.bids = {p: s for p, s in snapshot["bids"]}
        self.asks = {p: s for p, s in snapshot["asks"]}
        self.seq = snapshot["seq"]

    def apply(self, update: dict[str, Any]) -> None:
        for side, levels in ((self.bids, update["bids"]), (self.asks, update["asks"])):
            for price, size in levels:
                if Decimal(size) == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
        self.seq = update["seq"]

    def top(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))
        return bids, asks

    def checksum(self) -> int:
        bids, asks = self.top()
        return sim_checksum(bids[:10], asks[:10])


async def test_book_snapshot_and_updates_track_the_true_book(ex: SimExchange) -> None:
    async with websockets.connect(ex.ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbols": [SYM], "id": 1}))
        ack = await recv(ws)
        assert ack == {"type": "subscribed", "channel": "book", "id": 1, "symbols": [SYM]}
        snap = await recv(ws)
        assert snap["type"] == "book_snapshot" and snap["symbol"] == SYM
        book = Book(snap)
        assert book.checksum() == snap["checksum"]
        ex.step(SYM, 200)
        updates = [m for m in await sync(ws) if m["type"] == "book_update"]
        assert len(updates) >= 200  # every flow step changes the book
        for update in updates:
            assert update["prev_seq"] == book.seq
            assert update["seq"] == book.seq + 1
            book.apply(update)
            assert book.checksum() == update["checksum"]
        truth = ex.book(SYM)
        assert truth.sequence == book.seq
        bids, asks = book.top()
        assert bids == [(str(p), str(s)) for p, s in truth.bids]
        assert asks == [(str(p), str(s)) for p, s in truth.asks]
        assert truth.checksum == book.checksum()


async def test_flow_task_streams_updates_by_itself() -> None:
    async with (
        SimExchange(seed=3, symbols=[SYM], rate=200) as ex,
        websockets.connect(ex.ws_url) as ws,
    ):
        await ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbols": [SYM]}))
        await until(ws, "book_snapshot")
        update, _ = await until(ws, "book_update")
        second, _ = await until(ws, "book_update")
        assert second["prev_seq"] == update["seq"]
    assert ex.stats.flow_steps > 0


async def test_trades_match_the_exchange_trade_log(ex: SimExchange) -> None:
    async with websockets.connect(ex.ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": "trades", "symbols": [SYM]}))
        await until(ws, "subscribed")
        ex.step(SYM, 300)
        ex.step("ETH-USD", 50)  # not subscribed: must not appear
        trades = [m for m in await sync(ws) if m["type"] == "trade"]
    assert trades, "300 flow steps made no trade"
    assert {t["symbol"] for t in trades} == {SYM}
    ids = [t["id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    truth = {t.id: t for t in ex.trades(SYM)}
    for t in trades:
        model = truth[t["id"]]
        assert (Decimal(t["price"]), Decimal(t["size"]), t["side"], t["ts"]) == (
            model.price,
            model.size,
            str(model.side),
            model.ts,
        )
        assert model.venue == "sim"


async def test_bad_requests_answer_errors_and_keep_the_connection(ex: SimExchange) -> None:
    async with websockets.connect(ex.ws_url) as ws:
        cases: list[tuple[str, str, str | None]] = [
            ("{not json", "invalid_json", None),
            ('["a list"]', "invalid_request", None),
            (json.dumps({"op": "fly", "id": 1}), "unknown_op", "op"),
            (
                json.dumps({"op": "subscribe", "channel": "gossip", "symbols": [SYM]}),
                "unknown_channel",
                "channel",
            ),
            (
                json.dumps(
                    {"op": "subscribe", "channel": "trades", "symbols": ["FOO-USD"], "id": 3}
                ),
                "unknown_symbol",
                "symbols",
            ),
            (json.dumps({"op": "subscribe", "channel": "trades"}), "invalid_request", "symbols"),
            (
                json.dumps({"op": "subscribe", "channel": "candles", "symbols": [SYM]}),
                "invalid_request",
                "interval",
            ),
            (json.dumps({"op": "subscribe", "channel": "orders"}), "auth_required", None),
            (json.dumps({"op": "subscribe", "id": "x"}), "invalid_request", "id"),
        ]
        for frame, code, field in cases:
            await ws.send(frame)
            error = await recv(ws)
            assert error["type"] == "error", frame
            assert error["code"] == code, frame
            assert error.get("field") == field, frame
            assert error["message"]
        assert error is not None
        await ws.send(
            json.dumps({"op": "subscribe", "channel": "trades", "symbols": ["FOO-USD"], "id": 3})
        )
        assert (await recv(ws))["id"] == 3
        await sync(ws)  # still answering
        await ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbols": [SYM]}))
        await until(ws, "book_snapshot")
    assert ex.stats.ws_errors == len(cases) + 1


async def test_heartbeat_when_subscribed_and_idle(ex: SimExchange) -> None:
    async with websockets.connect(ex.ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": "trades", "symbols": [SYM]}))
        await until(ws, "subscribed")
        beat, before = await until(ws, "heartbeat")
        assert before == [] and isinstance(beat["ts"], int)


async def test_resubscribe_sends_a_fresh_snapshot_and_unsubscribe_stops(ex: SimExchange) -> None:
    async with websockets.connect(ex.ws_url) as ws:
        sub = {"op": "subscribe", "channel": "book", "symbols": [SYM]}
        await ws.send(json.dumps(sub))
        first, _ = await until(ws, "book_snapshot")
        ex.step(SYM, 5)
        await ws.send(json.dumps(sub))
        second, before = await until(ws, "book_snapshot")
        updates = [m for m in before if m["type"] == "book_update"]
        assert len(updates) >= 5  # a step changes the book at least once
        assert before[-1]["type"] == "subscribed"
        assert second["seq"] == updates[-1]["seq"] == first["seq"] + len(updates)
        await ws.send(json.dumps({**sub, "op": "unsubscribe", "id": 4}))
        ack, _ = await until(ws, "unsubscribed")
        assert ack["id"] == 4
        ex.step(SYM, 5)
        assert [m for m in await sync(ws) if m["type"] == "book_update"] == []


async def test_ticker_and_candles_channels(ex: SimExchange) -> None:
    async with websockets.connect(ex.ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": "ticker", "symbols": [SYM]}))
        await ws.send(
            json.dumps(
                {"op": "subscribe", "channel": "candles", "symbols": [SYM], "interval": "1m"}
            )
        )
        ack, _ = await until(ws, "subscribed")
        ack, _ = await until(ws, "subscribed")
        assert ack["interval"] == "1m"
        ex.step(SYM, 300)
        ticker, before = await until(ws, "ticker")
        assert set(ticker) >= {
            "symbol",
            "bid",
            "bid_size",
            "ask",
            "ask_size",
            "last",
            "volume",
            "ts",
        }
        assert Decimal(ticker["bid"]) < Decimal(ticker["ask"])
        candles = [m for m in before + await sync(ws) if m["type"] == "candle"]
    assert candles and all(c["interval"] == "1m" and c["symbol"] == SYM for c in candles)
    assert Decimal(candles[-1]["volume"]) > 0


def _sig(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


async def test_private_orders_and_fills_stream_after_login(ex: SimExchange) -> None:
    key = ex.create_api_key()
    async with aiohttp.ClientSession() as http:
        ts = str(time.time_ns() // 1_000_000)
        path = "/api/v1/auth/token"
        headers = {
            "TL-KEY": key.key_id,
            "TL-TS": ts,
            "TL-SIGN": _sig(key.secret, ts + "POST" + path),
        }
        async with http.post(ex.rest_url + "/auth/token", headers=headers) as resp:
            assert resp.status == 200
            token = (await resp.json())["token"]
        async with websockets.connect(ex.ws_url) as ws:
            await ws.send(json.dumps({"op": "login", "token": "nope", "id": 1}))
            error = await recv(ws)
            assert (error["type"], error["code"], error["id"]) == ("error", "auth_failed", 1)
            await ws.send(json.dumps({"op": "login", "token": token, "id": 2}))
            logged = await recv(ws)
            assert logged["type"] == "logged_in" and logged["id"] == 2
            assert isinstance(logged["expires_at"], int)
            for channel in ("orders", "fills"):
                await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
                ack = await recv(ws)
                assert ack["type"] == "subscribed" and ack["channel"] == channel
            order = {
                "symbol": SYM,
                "side": "buy",
                "type": "market",
                "size": "0.0100",
                "client_order_id": "m1",
            }
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post(ex.rest_url + "/orders", json=order, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
                placed = await resp.json()
            messages = await sync(ws)
    events = [m for m in messages if m["type"] == "order"]
    fills = [m for m in messages if m["type"] == "fill"]
    assert events[0]["event"] == "accepted"
    assert {e["order"]["id"] for e in events} == {placed["id"]}
    assert "fill" in [e["event"] for e in events]
    assert fills and all(f["order_id"] == placed["id"] and f["liquidity"] == "taker" for f in fills)
    assert all(f["client_order_id"] == "m1" for f in fills)
    assert sum(Decimal(f["size"]) for f in fills) == Decimal(placed["filled_size"])
    assert ex.stats.logins == 1  # one token, many uses


async def test_signed_websocket_login(ex: SimExchange) -> None:
    key = ex.create_api_key()
    async with websockets.connect(ex.ws_url) as ws:
        ts = time.time_ns() // 1_000_000
        await ws.send(
            json.dumps(
                {"op": "login", "key": key.key_id, "ts": ts, "sig": _sig("wrong", f"{ts}login")}
            )
        )
        error = await recv(ws)
        assert error["code"] == "auth_failed" and key.secret not in json.dumps(error)
        await ws.send(
            json.dumps(
                {"op": "login", "key": key.key_id, "ts": ts, "sig": _sig(key.secret, f"{ts}login")}
            )
        )
        assert (await recv(ws))["type"] == "logged_in"
        await ws.send(json.dumps({"op": "subscribe", "channel": "fills"}))
        assert (await recv(ws))["type"] == "subscribed"
    assert ex.stats.logins == 1 and ex.stats.rejected_auth == 1


async def test_exit_leaves_no_task_and_no_socket() -> None:
    before = asyncio.all_tasks()
    async with SimExchange(seed=1, symbols=[SYM], rate=100) as ex:
        port = ex.port
        ws = await websockets.connect(ex.ws_url)
        await ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbols": [SYM]}))
        await until(ws, "book_update")
    # the server closed the client (going away), and nothing of the exchange keeps running
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert asyncio.all_tasks() == before
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
