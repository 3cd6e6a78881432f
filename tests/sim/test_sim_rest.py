"""The sim's REST API end to end, with an aiohttp client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tickloop.checksums import sim_checksum
from tickloop.sim import SimApiKey, SimExchange

SYM = "BTC-USD"
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=11, symbols=[SYM, "ETH-USD"], rate=0) as ex:
        ex.step(SYM, 100)
        yield ex


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def signed(key: SimApiKey, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    """Headers of a signed request; ``path`` starts at /api/v1 and includes the query."""
    ts = str(time.time_ns() // 1_000_000)
    nonce = os.urandom(8).hex()  # a signature is accepted once: each request signs afresh
    payload = (ts + nonce + method + path).encode() + body
    sig = hmac.new(key.secret.encode(), payload, hashlib.sha256).hexdigest()
    return {"TL-KEY": key.key_id, "TL-TS": ts, "TL-NONCE": nonce, "TL-SIGN": sig}


class Api:
    """A tiny signed client for the tests."""

    def __init__(self, ex: SimExchange, http: aiohttp.ClientSession, key: SimApiKey) -> None:
        self.ex, self.http, self.key = ex, http, key

    async def call(
        self, method: str, path: str, body: Any = None
    ) -> tuple[int, Any, dict[str, str]]:
        raw = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        headers = signed(self.key, method, "/api/v1" + path, raw)
        headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.ex.rest_url + path, data=raw or None, headers=headers
        ) as resp:
            return resp.status, await resp.json(), dict(resp.headers)


@pytest.fixture
def api(ex: SimExchange, http: aiohttp.ClientSession) -> Api:
    return Api(ex, http, ex.create_api_key())


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, dict[str, str]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_time_markets_and_market(ex: SimExchange, http: aiohttp.ClientSession) -> None:
    status, body, headers = await get(http, ex.rest_url + "/time")
    assert status == 200 and isinstance(body["ts"], int)
    assert headers["TL-RateLimit-Limit"] == "200" and headers["TL-RateLimit-Weight"] == "1"
    status, markets, headers = await get(http, ex.rest_url + "/markets")
    assert status == 200 and headers["TL-RateLimit-Weight"] == "10"
    assert [m["symbol"] for m in markets] == [SYM, "ETH-USD"]
    btc = markets[0]
    assert btc["base"] == "BTC" and btc["quote"] == "USD" and btc["status"] == "open"
    assert btc["tick_size"] == "0.01" and btc["lot_size"] == "0.0001"
    assert len(btc["book"]["bids"]) == 10 and btc["book"]["seq"] == ex.book(SYM).sequence
    assert set(btc["ticker"]) == {"bid", "ask", "last", "volume"}
    status, one, _ = await get(http, ex.rest_url + "/markets/ETH-USD")
    assert status == 200 and one["symbol"] == "ETH-USD"
    status, error, _ = await get(http, ex.rest_url + "/markets/FOO-USD")
    assert status == 404 and error["error"]["code"] == "unknown_symbol"


async def test_book_matches_the_true_book(ex: SimExchange, http: aiohttp.ClientSession) -> None:
    status, book, _ = await get(http, ex.rest_url + f"/book/{SYM}?depth=1000")
    truth = ex.book(SYM)
    assert status == 200 and book["seq"] == truth.sequence
    assert book["bids"] == [[str(p), str(s)] for p, s in truth.bids]
    assert book["asks"] == [[str(p), str(s)] for p, s in truth.asks]
    assert book["checksum"] == truth.checksum == sim_checksum(book["bids"][:10], book["asks"][:10])
    status, top, headers = await get(http, ex.rest_url + f"/book/{SYM}?depth=2")
    assert len(top["bids"]) == 2 and top["checksum"] == truth.checksum
    assert headers["TL-RateLimit-Weight"] == "1"
    _, _, headers = await get(http, ex.rest_url + f"/book/{SYM}?depth=500")
    assert headers["TL-RateLimit-Weight"] == "5"
    for bad in ("0", "1001", "x"):
        status, error, _ = await get(http, ex.rest_url + f"/book/{SYM}?depth={bad}")
        assert status == 400 and error["error"]["field"] == "depth"


async def test_trades_since_id_and_limit(ex: SimExchange, http: aiohttp.ClientSession) -> None:
    truth = ex.trades(SYM)
    assert len(truth) >= 4
    status, trades, _ = await get(http, ex.rest_url + f"/trades/{SYM}")
    assert status == 200 and [t["id"] for t in trades] == [t.id for t in truth]
    assert trades[0] == {
        "id": truth[0].id,
        "symbol": SYM,
        "price": str(truth[0].price),
        "size": str(truth[0].size),
        "side": str(truth[0].side),
        "ts": truth[0].ts,
    }
    _, some, _ = await get(http, ex.rest_url + f"/trades/{SYM}?since_id=2&limit=2")
    assert [t["id"] for t in some] == [3, 4]
    status, error, _ = await get(http, ex.rest_url + f"/trades/{SYM}?limit=0")
    assert status == 400 and error["error"]["field"] == "limit"


async def test_candles_and_ticker(ex: SimExchange, http: aiohttp.ClientSession) -> None:
    status, candles, _ = await get(http, ex.rest_url + f"/candles/{SYM}?interval=1m")
    assert status == 200 and candles
    assert sum(c["trades"] for c in candles) == len(ex.trades(SYM))
    status, error, _ = await get(http, ex.rest_url + f"/candles/{SYM}?interval=7m")
    assert status == 400 and error["error"]["field"] == "interval"
    status, ticker, _ = await get(http, ex.rest_url + f"/ticker/{SYM}")
    truth = ex.book(SYM)
    assert status == 200
    assert (ticker["bid"], ticker["ask"]) == (str(truth.bids[0].price), str(truth.asks[0].price))
    assert ticker["last"] == str(ex.trades(SYM)[-1].price)
    assert Decimal(ticker["volume"]) == sum(t.size for t in ex.trades(SYM))


async def test_nested_field_selection(ex: SimExchange, http: aiohttp.ClientSession) -> None:
    url = ex.rest_url + "/markets?fields=symbol,status,book(bids,asks)"
    status, markets, _ = await get(http, url)
    assert status == 200
    for market in markets:
        assert set(market) == {"symbol", "status", "book"}
        assert set(market["book"]) == {"bids", "asks"}
    _, ticker, _ = await get(http, ex.rest_url + f"/ticker/{SYM}?fields=bid,ask")
    assert set(ticker) == {"bid", "ask"}
    for fields, field in (
        ("symbol,book(bogus)", "book.bogus"),
        ("nope", "nope"),
        ("symbol(x)", "symbol"),
        ("a,,b", "fields"),
    ):
        status, error, _ = await get(http, ex.rest_url + f"/markets?fields={fields}")
        assert status == 400, fields
        assert error["error"]["code"] == "invalid_request"
        assert error["error"]["field"] == field, fields


async def test_place_replay_amend_cancel(ex: SimExchange, api: Api) -> None:
    best_bid = ex.book(SYM).bids[0].price
    price = str(best_bid - Decimal("5.00"))
    order = {
        "symbol": SYM,
        "side": "buy",
        "type": "limit",
        "price": price,
        "size": "0.5000",
        "client_order_id": "c-1",
    }
    status, placed, headers = await api.call("POST", "/orders", order)
    assert status == 201 and "TL-Idempotent-Replay" not in headers
    assert (
        placed["status"] == "open"
        and placed["price"] == price
        and placed["client_order_id"] == "c-1"
    )
    status, again, headers = await api.call("POST", "/orders", order)
    assert (
        status == 200 and headers["TL-Idempotent-Replay"] == "true" and again["id"] == placed["id"]
    )
    assert len(ex.engine.orders(api.key.key_id)) == 1
    status, got, _ = await api.call("GET", f"/orders/{placed['id']}")
    assert status == 200 and got == placed
    status, got, _ = await api.call("GET", "/orders/by-client-id/c-1?fields=id,status")
    assert got == {"id": placed["id"], "status": "open"}
    status, listed, _ = await api.call("GET", f"/orders?symbol={SYM}")
    assert [o["id"] for o in listed] == [placed["id"]]
    status, amended, _ = await api.call("PATCH", f"/orders/{placed['id']}", {"size": "0.2000"})
    assert status == 200 and amended["size"] == "0.2000"
    status, error, _ = await api.call("PATCH", f"/orders/{placed['id']}", {"size": "0.3000"})
    assert status == 400 and error["error"]["field"] == "size"
    status, canceled, _ = await api.call("DELETE", f"/orders/{placed['id']}")
    assert status == 200 and canceled["status"] == "canceled"
    status, error, _ = await api.call("DELETE", f"/orders/{placed['id']}")
    assert status == 404 and error["error"]["code"] == "unknown_order"
    status, listed, _ = await api.call("GET", "/orders?status=all")
    assert [o["status"] for o in listed] == ["canceled"]
    for _ in range(2):
        await api.call("POST", "/orders", {**order, "client_order_id": None})
    status, canceled_all, _ = await api.call("DELETE", "/orders")
    assert status == 200 and len(canceled_all) == 2


async def test_taking_order_fills_balances_positions(ex: SimExchange, api: Api) -> None:
    status, balances, _ = await api.call("GET", "/balances")
    assert {b["asset"]: Decimal(b["total"]) for b in balances} == {
        "BTC": 100,
        "ETH": 100,
        "USD": 1_000_000,
    }
    order = {"symbol": SYM, "side": "buy", "type": "market", "size": "0.0100"}
    status, placed, _ = await api.call("POST", "/orders", order)
    assert status == 201 and placed["status"] == "filled" and placed["avg_price"] is not None
    status, fills, _ = await api.call("GET", f"/fills?symbol={SYM}")
    assert status == 200 and fills and all(f["liquidity"] == "taker" for f in fills)
    assert sum(Decimal(f["size"]) for f in fills) == Decimal("0.0100")
    assert all(f["fee_asset"] == "USD" and Decimal(f["fee"]) > 0 for f in fills)
    status, positions, _ = await api.call("GET", "/positions")
    assert positions[0]["symbol"] == SYM and Decimal(positions[0]["size"]) == Decimal("0.0100")
    status, balances, _ = await api.call("GET", "/balances?fields=asset,total")
    assert {b["asset"]: Decimal(b["total"]) for b in balances}["BTC"] == Decimal("100.0100")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size": "-1"}, "size"),
        ({"size": "0.00001"}, "size"),
        ({"size": None}, "size"),
        ({"price": "100.001"}, "price"),
        ({"price": "-5"}, "price"),
        ({"price": None}, "price"),
        ({"symbol": "FOO-USD"}, "symbol"),
        ({"side": "up"}, "side"),
        ({"type": "stop"}, "type"),
        ({"time_in_force": "day"}, "time_in_force"),
        ({"post_only": True, "time_in_force": "ioc"}, "post_only"),
        ({"post_only": "yes"}, "post_only"),
        ({"client_order_id": "x" * 65}, "client_order_id"),
        ({"type": "market"}, "price"),
    ],
)
async def test_bad_orders_name_the_field(api: Api, change: dict[str, Any], field: str) -> None:
    order = {"symbol": SYM, "side": "buy", "type": "limit", "price": "100.00", "size": "0.1000"}
    order.update(change)
    order = {k: v for k, v in order.items() if v is not None}
    status, error, _ = await api.call("POST", "/orders", order)
    assert status == 400, error
    assert error["error"]["code"] == "invalid_request"
    assert error["error"]["field"] == field
    assert error["error"]["message"]


async def test_rejections_and_bad_bodies(ex: SimExchange, api: Api) -> None:
    status, error, _ = await api.call("POST", "/orders", b"{not json")
    assert status == 400 and error["error"]["code"] == "invalid_json"
    status, error, _ = await api.call("POST", "/orders", [1, 2])
    assert status == 400 and error["error"]["code"] == "invalid_request"
    huge = {"symbol": SYM, "side": "buy", "type": "limit", "price": "50000.00", "size": "1000.0000"}
    status, error, _ = await api.call("POST", "/orders", huge)
    assert status == 422 and error["error"] == {
        "code": "order_rejected",
        "message": "insufficient_balance",
    }
    ask = ex.book(SYM).asks[0].price
    crossing = {
        "symbol": SYM,
        "side": "buy",
        "type": "limit",
        "price": str(ask),
        "size": "0.0001",
        "post_only": True,
    }
    status, error, _ = await api.call("POST", "/orders", crossing)
    assert status == 422 and error["error"]["message"] == "post_only_would_take"
    status, error, _ = await api.call("GET", "/orders/nope")
    assert status == 404 and error["error"]["code"] == "unknown_order"
    status, error, _ = await api.call("GET", "/orders?status=closed")
    assert status == 400 and error["error"]["field"] == "status"
    async with api.http.get(ex.rest_url + "/nowhere") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    async with api.http.put(ex.rest_url + "/time") as resp:
        assert resp.status == 405 and "GET" in resp.headers["Allow"]
        assert (await resp.json())["error"]["code"] == "invalid_request"
    # the exchange still works
    status, _, _ = await api.call("GET", "/balances")
    assert status == 200


async def test_weighted_rate_limit_answers_429() -> None:
    async with (
        SimExchange(seed=1, symbols=[SYM], rate=0, rate_limit_weight=25) as ex,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for _ in range(3):
            async with http.get(ex.rest_url + "/markets") as resp:  # weight 10
                statuses.append(resp.status)
                headers = resp.headers
        assert statuses == [200, 200, 429]
        assert int(headers["Retry-After"]) >= 1
        ms = int(headers["TL-Retry-After-Ms"])
        assert 0 < ms <= 1000
        assert headers["TL-RateLimit-Remaining"] == "5"
        async with http.get(ex.rest_url + "/time") as resp:  # weight 1 still fits
            assert resp.status == 200
        assert ex.stats.rate_limited == 1
        # a key has its own budget, separate from the address's
        api = Api(ex, http, ex.create_api_key())
        status, _, headers = await api.call("GET", "/balances")
        assert status == 200 and headers["TL-RateLimit-Remaining"] == "24"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--port", "70000"], "--port"),
        (["--port", "abc"], "--port"),
        (["--symbols", "btc"], "--symbols"),
        (["--rate", "-1"], "--rate"),
        (["--fault", "explode=1"], "--fault"),
    ],
)
def test_sim_command_bad_arguments(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tickloop.cli import main

    with pytest.raises(SystemExit) as info:
        main(["sim", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option in err


async def test_sim_command_serves_until_stopped(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickloop",
        "sim",
        "--port",
        "0",
        "--rate",
        "5",
        "--seed",
        "7",
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=SRC, XDG_STATE_HOME=str(tmp_path)),
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not any("demo key" in line for line in lines):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, f"tickloop sim exited early: {lines}"
            lines.append(line)
        # The demo secret is in a file only the user can read, never on the terminal.
        key_file = tmp_path / "tickloop" / "sim-key.json"
        assert key_file.stat().st_mode & 0o777 == 0o600
        demo = json.loads(key_file.read_text())
        assert demo["key_id"] in "".join(lines) and demo["secret"] not in "".join(lines)
        rest = next(line.split()[-1] for line in lines if "REST" in line)
        ws_url = next(line.split()[-1] for line in lines if "WebSocket" in line)
        assert ws_url.endswith("/ws")
        async with aiohttp.ClientSession() as http, http.get(rest + "/markets") as resp:
            assert resp.status == 200
        # A plain client that is not ours subscribes and sees a live market.
        import websockets

        async with websockets.connect(ws_url) as ws:
            await ws.send(
                json.dumps({"op": "subscribe", "channel": "book", "symbols": ["BTC-USD"]})
            )
            seen: set[str] = set()
            while "book_update" not in seen:
                seen.add(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
            assert {"subscribed", "book_snapshot"} <= seen
        proc.send_signal(signal.SIGTERM)  # Ctrl-C works too, if the test runner lets it through
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
