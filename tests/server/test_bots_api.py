"""The bot runtime's routes over httpx's ASGI transport, with an Engine trading on paper
against the embedded exchange: bots (status, parameters, PnL, errors, handler time, order
latency), pause/resume, the kill switch and cancel-all behind the token (401s), open orders,
the store's history pages, and the per-bot metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tickloop import StreamClient
from tickloop.bus import Bus
from tickloop.runtime import Bot, Engine, Store
from tickloop.server import Platform, TickloopApp, create_app
from tickloop.sim import SimExchange

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class BuyerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    size: Decimal = Decimal("0.01")


class Buyer(Bot):
    """Buys once at market, as soon as the book has a mid."""

    symbols = ("BTC-USD",)
    every = 0.05
    Params = BuyerParams

    async def tick(self) -> None:
        book = self.book("BTC-USD")
        if self.state.get("bought") or book is None or not book.valid or book.mid is None:
            return
        self.state["bought"] = True
        await self.buy("BTC-USD", self.params.size)


class Faulty(Bot):
    symbols = ("BTC-USD",)
    every = 0.05

    def tick(self) -> None:
        raise ValueError("boom")


@dataclass
class World:
    ex: SimExchange
    bus: Bus
    engine: Engine
    app: TickloopApp
    http: httpx.AsyncClient


async def _first(sub: Any) -> Any:
    import asyncio

    async with asyncio.timeout(30):  # a bound on a hang, not a timing assertion
        return await anext(sub)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with SimExchange(seed=3, symbols=["BTC-USD"], rate=40) as ex, Bus(name="bots") as bus:
        fills = bus.subscribe("bot.fill.buyer", maxsize=100)
        breaker = bus.subscribe("bot.breaker.faulty", maxsize=10)
        equity = bus.subscribe("bot.equity.*", maxsize=1000)
        # as `tickloop run` does: the app is made on the started bus before the engine starts
        # (the server then follows the bots' errors and orders from their first)
        feed = StreamClient("sim", url=ex.ws_url)
        store = Store(tmp_path / "bots.db")
        engine = Engine([Buyer("buyer"), Faulty("faulty")], feed=feed, bus=bus, store=store,
                        breaker_errors=3, equity_every=0.1, stagger=0)
        app = create_app(Platform(bus, feeds=[feed], engine=engine, store=store), token=TOKEN)
        async with feed, store, engine:
            await _first(fills)
            await _first(breaker)
            await _first(equity)
            await engine.flush()
            transport = httpx.ASGITransport(app=app)
            async with app, httpx.AsyncClient(transport=transport,
                                              base_url="http://test") as http:
                yield World(ex, bus, engine, app, http)


def _by_id(bots: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {b["id"]: b for b in bots}


async def test_bots_list_status_params_pnl_errors_and_latency(world: World) -> None:
    resp = await world.http.get("/api/bots")
    assert resp.status_code == 200
    bots = _by_id(resp.json())
    assert set(bots) == {"buyer", "faulty"}
    buyer, faulty = bots["buyer"], bots["faulty"]
    assert buyer["status"] == "running" and buyer["class"] == "Buyer"
    assert buyer["params"] == {"size": "0.01"}
    assert buyer["positions"] == {"BTC-USD": "0.01"}
    assert Decimal(buyer["pnl"]) == (Decimal(buyer["realized_pnl"])
                                     + Decimal(buyer["unrealized_pnl"]))
    assert buyer["orders_accepted"] == 1 and buyer["order_latency_seconds"] >= 0
    assert buyer["handler_calls"] > 0 and buyer["handler_seconds"] > 0
    assert faulty["status"] == "error"
    assert faulty["errors"] >= 3
    assert faulty["last_error"] == "tick: ValueError: boom"
    one = await world.http.get("/api/bots/faulty")
    assert one.status_code == 200 and one.json()["id"] == "faulty"
    missing = await world.http.get("/api/bots/nope")
    assert missing.status_code == 404


@pytest.mark.parametrize("path", ["/api/bots/buyer/pause", "/api/bots/buyer/resume",
                                  "/api/kill", "/api/revive", "/api/cancel-all"])
async def test_control_routes_need_the_token(world: World, path: str) -> None:
    assert (await world.http.post(path)).status_code == 401
    wrong = await world.http.post(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert world.engine.status("buyer") == "running"
    assert not world.engine.risk.killed("buyer")


async def test_pause_and_resume(world: World) -> None:
    paused = await world.http.post("/api/bots/buyer/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert world.engine.status("buyer") == "paused"
    assert (await world.http.get("/api/bots/buyer")).json()["status"] == "paused"
    resumed = await world.http.post("/api/bots/buyer/resume", headers=AUTH)
    assert resumed.json()["status"] == "running"
    # resume also restarts a bot whose circuit breaker fired
    assert (await world.http.post("/api/bots/faulty/resume", headers=AUTH)).json()[
        "status"] == "running"
    assert (await world.http.post("/api/bots/nope/pause", headers=AUTH)).status_code == 404


async def test_kill_switch_and_revive(world: World) -> None:
    resp = await world.http.post("/api/kill", params={"bot": "buyer"}, headers=AUTH)
    assert resp.status_code == 200 and resp.json() == {"killed": True, "bot": "buyer"}
    assert (await world.http.get("/api/bots/buyer")).json()["killed"] is True
    order = await world.engine.place("buyer", "BTC-USD", "buy", "0.01")
    assert order.status == "rejected" and "kill_switch" in (order.reject_reason or "")
    revived = await world.http.post("/api/revive", params={"bot": "buyer"}, headers=AUTH)
    assert revived.json() == {"killed": False, "bot": "buyer"}
    everyone = await world.http.post("/api/kill", headers=AUTH)
    assert everyone.json() == {"killed": True, "bot": None}
    assert world.engine.risk.killed("faulty")
    assert (await world.http.post("/api/kill", params={"bot": "x"}, headers=AUTH)
            ).status_code == 404


async def test_open_orders_and_cancel_all(world: World) -> None:
    book = world.engine.book("BTC-USD")
    assert book is not None and book.mid is not None
    price = (book.mid * Decimal("0.9")).quantize(Decimal("0.01"))
    order = await world.engine.place("buyer", "BTC-USD", "buy", "0.01", price=price)
    assert order.status == "open"
    open_ = (await world.http.get("/api/orders/open", params={"bot": "buyer"})).json()
    assert [o["id"] for o in open_] == [order.id]
    assert open_[0]["price"] == str(price)  # the model as it is: exact digits as a string
    cancelled = await world.http.post("/api/cancel-all", params={"bot": "buyer"}, headers=AUTH)
    assert cancelled.status_code == 200
    assert [(o["id"], o["status"]) for o in cancelled.json()] == [(order.id, "canceled")]
    assert (await world.http.get("/api/orders/open")).json() == []


async def test_history_pages_from_the_store(world: World) -> None:
    await world.engine.place("buyer", "BTC-USD", "sell", "0.01")
    await world.engine.flush()
    orders = (await world.http.get("/api/orders", params={"bot": "buyer"})).json()
    assert len(orders["items"]) == 2 and orders["next"] is None
    first = (await world.http.get("/api/orders", params={"bot": "buyer", "limit": 1})).json()
    assert len(first["items"]) == 1 and first["next"] is not None
    second = (await world.http.get("/api/orders", params={
        "bot": "buyer", "limit": 1, "after": first["next"]})).json()
    assert [o["id"] for o in first["items"] + second["items"]] == [
        o["id"] for o in orders["items"]]
    filled = (await world.http.get("/api/orders", params={"status": "filled,canceled"})).json()
    assert {o["status"] for o in filled["items"]} <= {"filled", "canceled"}
    fills = (await world.http.get("/api/fills", params={"bot": "buyer"})).json()["items"]
    # a market order may fill across book levels: one fill or more per order, in order
    sides = [f["side"] for f in fills]
    assert sides[0] == "buy" and sides == sorted(sides) and "sell" in sides
    for side in ("buy", "sell"):
        assert sum(Decimal(f["size"]) for f in fills if f["side"] == side) == Decimal("0.01")
    equity = (await world.http.get("/api/equity", params={"bot": "buyer"})).json()
    assert equity["items"] and all(e["bot"] == "buyer" for e in equity["items"])
    errors = (await world.http.get("/api/events", params={"type": "bot_error"})).json()
    assert len(errors["items"]) >= 3
    assert errors["items"][0]["payload"]["error"] == "ValueError: boom"
    positions = (await world.http.get("/api/positions", params={"bot": "buyer"})).json()
    assert [(p["symbol"], Decimal(p["size"])) for p in positions] == [("BTC-USD", 0)]
    bad = await world.http.get("/api/fills", params={"limit": 0})
    assert bad.status_code == 422


async def test_per_bot_metrics(world: World) -> None:
    text = (await world.http.get("/metrics")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("tickloop_bot_errors_total", (("bot", "faulty"),))] >= 3
    assert samples[("tickloop_bot_errors_total", (("bot", "buyer"),))] == 0
    assert samples[("tickloop_bot_status", (("bot", "faulty"), ("status", "error")))] == 1
    assert samples[("tickloop_bot_status", (("bot", "buyer"), ("status", "running")))] == 1
    assert samples[("tickloop_bot_handler_calls_total",
                    (("bot", "buyer"), ("handler", "tick")))] > 0
    assert samples[("tickloop_bot_handler_seconds_total",
                    (("bot", "buyer"), ("handler", "tick")))] > 0
    assert samples[("tickloop_order_latency_seconds_count", (("bot", "buyer"),))] == 1
    assert samples[("tickloop_order_latency_seconds_bucket",
                    (("bot", "buyer"), ("le", "+Inf")))] == 1
    assert samples[("tickloop_order_latency_seconds_count", (("bot", "faulty"),))] == 0
    assert ("tickloop_bot_pnl", (("bot", "buyer"),)) in samples


async def test_openapi_lists_the_bot_routes(world: World) -> None:
    paths = (await world.http.get("/openapi.json")).json()["paths"]
    for path in ("/api/bots", "/api/bots/{bot_id}", "/api/bots/{bot_id}/pause",
                 "/api/kill", "/api/cancel-all", "/api/orders", "/api/fills", "/api/equity",
                 "/api/events", "/api/positions", "/api/orders/open"):
        assert path in paths, path


async def test_without_an_engine_there_are_no_bot_routes() -> None:
    async with Bus(name="no-engine") as bus:
        app = create_app(Platform(bus), token=TOKEN)
        transport = httpx.ASGITransport(app=app)
        async with app, httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/api/bots")).status_code == 404
            assert (await http.get("/api/orders")).status_code == 404
            text = (await http.get("/metrics")).text
            assert "tickloop_bot_errors_total" not in text
