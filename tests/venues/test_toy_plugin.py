"""A venue plug-in from outside tickloop's package, installed for real and used end to end.

tests/plugins/toy_venue is a separate distribution (its own pyproject.toml) declaring the
entry point ``toy`` in group ``tickloop.venues``. The fixture installs it with pip into a
temporary folder (offline: no index, no dependencies, no build isolation) and puts that folder
on ``sys.path``, so ``importlib.metadata`` finds its entry points as it would after a normal
``pip install``. A small loopback server speaks the toy protocol (toy_venue/__init__.py) on one
port: the stream at ``/ws``, REST under ``/toy/v1``, checking the toy signature on private calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from tickloop import (
    AsyncClient,
    AuthError,
    ConfigError,
    Credentials,
    ProtocolError,
    StreamClient,
    SubscriptionError,
    VenueLoadError,
)
from tickloop.models import Side
from tickloop.venues import ENTRY_POINT_GROUP, Channel, Subscription, get, names, unregister

TOY_PROJECT = Path(__file__).resolve().parents[1] / "plugins" / "toy_venue"
KEY_ID = "toy-key-1"
SECRET = "toy-secret-never-printed"

TRADES = [
    {"ch": "trades", "sym": "toy_usd", "id": n, "px": px, "qty": qty, "side": side, "ts": 1000 + n}
    for n, px, qty, side in [
        (1, "1.25", "2", "b"),
        (2, "1.26", "0.5", "s"),
        (3, "1.25", "10", "b"),
        (4, "1.2400", "3", "s"),
        (5, "1.30", "1", "b"),
    ]
]


@pytest.fixture(scope="module")
def toy_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site") / "toy-site"
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
        "--no-build-isolation", "--disable-pip-version-check", "--target", str(target),
        str(TOY_PROJECT),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for module in [m for m in sys.modules if m == "toy_venue" or m.startswith("toy_venue.")]:
            del sys.modules[module]
        unregister("toy")
        importlib.invalidate_caches()


class ToyServer:
    """The toy venue on one loopback port; records what it saw."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/ws", self.ws),
                web.get("/toy/v1/markets", self.markets),
                web.get("/toy/v1/book/{sym}", self.book),
                web.get("/toy/v1/trades/{sym}", self.trades),
                web.get("/toy/v1/balances", self.private),
                web.get("/toy/v1/positions", self.private),
                web.get("/toy/v1/fills", self.private),
            ]
        )
        self.runner = web.AppRunner(self.app)
        self.port = 0
        self.received: list[dict[str, Any]] = []
        self.signed: list[str] = []  # paths whose signature checked out

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            self.received.append(req)
            if req.get("op") == "ping":
                await ws.send_str(json.dumps({"pong": 1}))
                continue
            known = [s for s in req["streams"] if s == "trades.toy_usd"]
            for stream in req["streams"]:
                if stream not in known:
                    refusal = {"error": "unknown_symbol", "id": req["id"], "stream": stream}
                    await ws.send_str(json.dumps(refusal))
            if req["op"] == "unsub":
                await ws.send_str(json.dumps({"unack": req["id"], "streams": known}))
                continue
            if not known:
                continue
            await ws.send_str(json.dumps({"ack": req["id"], "streams": known}))
            for n, trade in enumerate(TRADES):
                await ws.send_str(json.dumps(trade))
                if n == 1:
                    await ws.send_str("{not json")  # counted, logged and skipped by the client
        return ws

    async def markets(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"sym": "toy_usd", "base": "TOY", "quote": "USD", "tick": "0.01", "lot": "0.1"}]
        )

    async def book(self, request: web.Request) -> web.Response:
        if request.match_info["sym"] != "toy_usd":
            return web.json_response({"error": "unknown_symbol"}, status=400)
        return web.json_response({"seq": 42, "bids": [["1.24", "5"]], "asks": [["1.26", "2.5"]]})

    async def trades(self, request: web.Request) -> web.Response:
        return web.json_response([{k: t[k] for k in ("id", "px", "qty", "side", "ts")}
                                  for t in TRADES])

    async def private(self, request: web.Request) -> web.Response:
        ts, sig = request.headers.get("X-Toy-Ts", ""), request.headers.get("X-Toy-Sig", "")
        payload = ts.encode() + request.method.encode() + request.path_qs.encode()
        expected = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
        if request.headers.get("X-Toy-Key") != KEY_ID or not hmac.compare_digest(sig, expected):
            return web.json_response(
                {"error": "bad_signature", "message": "signature does not match"}, status=401
            )
        self.signed.append(request.path_qs)
        answers: dict[str, Any] = {
            "/toy/v1/balances": [{"asset": "USD", "total": "100.50", "free": "90"}],
            "/toy/v1/positions": [{"sym": "toy_usd", "qty": "-3", "avg": "1.25"}],
            "/toy/v1/fills": [
                {"order": "o-1", "trade": 9, "sym": "toy_usd", "side": "s", "px": "1.25",
                 "qty": "3", "maker": True, "ts": 77}
            ],
        }
        return web.json_response(answers[request.path])


@pytest.fixture
async def toy_server() -> AsyncIterator[ToyServer]:
    server = ToyServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def test_the_installed_plugin_is_found_by_its_entry_point(toy_installed: Path) -> None:
    declared = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert declared["toy"] == "toy_venue:VENUE"
    assert {"toy", "toybroken"} <= set(names())
    venue = get("toy")
    module = sys.modules["toy_venue"]
    assert Path(module.__file__ or "").is_relative_to(toy_installed)  # the installed copy
    assert venue is module.VENUE and venue.name == "toy"


def test_a_plugin_that_fails_to_import_is_one_line_naming_it(toy_installed: Path) -> None:
    for make in (StreamClient, AsyncClient):
        with pytest.raises(VenueLoadError) as info:
            make("toybroken")
        assert str(info.value) == (
            "venue plug-in 'toybroken' (entry point toy_venue.broken:VENUE of "
            "tickloop-toy-venue) failed to load: ModuleNotFoundError: No module named "
            "'toy_venue_missing_dependency'"
        )
        assert info.value.venue == "toybroken" and info.value.field == "venue"


async def test_stream_trades_from_the_toy_venue(
    toy_installed: Path, toy_server: ToyServer
) -> None:
    async with StreamClient("toy", url=toy_server.ws_url) as feed:
        got = []
        async with asyncio.timeout(30):  # a bound on a broken run, not a timing goal
            async for trade in feed.trades("TOY-USD"):
                got.append(trade)
                if len(got) == len(TRADES):
                    break
        malformed = feed.counters["malformed"]
    assert [(t.venue, t.symbol, t.id, t.price, t.size, t.side, t.ts) for t in got] == [
        ("toy", "TOY-USD", t["id"], Decimal(t["px"]), Decimal(t["qty"]),
         Side.BUY if t["side"] == "b" else Side.SELL, t["ts"])
        for t in TRADES
    ]
    assert str(got[3].price) == "1.2400"  # the venue's digits, exactly
    assert malformed == 1
    assert toy_server.received[0] == {"op": "sub", "id": 1, "streams": ["trades.toy_usd"]}


async def test_a_refused_toy_subscription_ends_its_stream(
    toy_installed: Path, toy_server: ToyServer
) -> None:
    async with StreamClient("toy", url=toy_server.ws_url) as feed:
        with pytest.raises(SubscriptionError, match="unknown symbol"):
            async with asyncio.timeout(30):
                async for _ in feed.trades("NOPE-USD"):
                    pass


async def test_rest_calls_through_the_toy_codec_and_signer(
    toy_installed: Path, toy_server: ToyServer
) -> None:
    codec = get("toy").stream
    assert codec is not None
    rest_url = codec.rest_url(toy_server.ws_url)
    assert rest_url == f"http://127.0.0.1:{toy_server.port}/toy/v1"
    creds = Credentials(KEY_ID, SECRET)
    async with AsyncClient("toy", url=rest_url, credentials=creds) as client:
        (market,) = await client.instruments()
        assert (market.symbol, market.venue_symbol, market.tick_size) == (
            "TOY-USD", "toy_usd", Decimal("0.01")
        )
        (listed,) = await client.markets()  # selected client-side: no FieldSelectionRest
        assert listed.symbol == "TOY-USD" and listed.venue == "toy"
        book = await client.book("TOY-USD")
        assert (book.sequence, book.bids[0].price, book.asks[0].size) == (
            42, Decimal("1.24"), Decimal("2.5")
        )
        assert [t.id for t in await client.trades("TOY-USD")] == [1, 2, 3, 4, 5]
        (balance,) = await client.balances()
        assert (balance.asset, balance.total, balance.locked) == (
            "USD", Decimal("100.50"), Decimal("10.50")
        )
        (position,) = await client.positions()
        assert (position.symbol, position.size) == ("TOY-USD", Decimal(-3))
        (fill,) = await client.fills("TOY-USD", limit=5)
        assert (fill.order_id, fill.side, fill.liquidity.value) == ("o-1", Side.SELL, "maker")
        with pytest.raises(ConfigError, match=r"tickloop\.venues\.TradingRest"):
            await client.place_order("TOY-USD", side="buy", type="market", size="1")
    assert toy_server.signed == [
        "/toy/v1/balances", "/toy/v1/positions", "/toy/v1/fills?sym=toy_usd&limit=5"
    ]


async def test_a_wrong_secret_is_refused_by_the_toy_venue(
    toy_installed: Path, toy_server: ToyServer
) -> None:
    codec = get("toy").stream
    assert codec is not None
    wrong = Credentials(KEY_ID, "not-the-secret")
    async with AsyncClient("toy", url=codec.rest_url(toy_server.ws_url), credentials=wrong) as c:
        with pytest.raises(AuthError, match="bad_signature") as info:
            await c.balances()
    assert "not-the-secret" not in str(info.value) and toy_server.signed == []


def test_the_toy_codec_alone_no_socket(toy_installed: Path) -> None:
    """A plug-in codec is unit-tested like the built-in ones: frames in, models out."""
    codec = get("toy").stream
    assert codec is not None
    toy = codec.create()
    (trade,) = toy.decode(json.dumps(TRADES[3]).encode(), 99)
    assert (trade.symbol, trade.price, trade.recv_ts) == ("TOY-USD", Decimal("1.2400"), 99)
    assert toy.decode(b'{"hello": "world"}', 0) == [] and toy.unknown == 1
    for bad in (b"{not json", b'{"ch": "trades", "sym": "toy_usd"}', b'{"ack": 1, "streams": 3}'):
        with pytest.raises(ProtocolError):
            toy.decode(bad, 0)
    (frame,) = toy.subscribe([Subscription(Channel.TRADES, "TOY-USD")])
    assert json.loads(frame) == {"op": "sub", "id": 1, "streams": ["trades.toy_usd"]}


def test_the_docs_excerpts_are_the_toy_package_verbatim() -> None:
    """docs/venues.md, "Adding your own venue", shows the toy package: each block that names
    a file of it on its first line is a verbatim excerpt of that file."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "venues.md").read_text()
    section = docs.split("## Adding your own venue", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)\n```", section, re.S)
    assert len(blocks) >= 7
    for name, body in blocks:
        source = (TOY_PROJECT / name).read_text()
        assert body in source, f"docs/venues.md excerpt of {name} is not in the file"
