"""The REST side over httpx's ASGI transport, against the embedded exchange: health and
readiness, markets, the local book, the status strip, /metrics parsed as Prometheus text, the
dashboard's files, and /docs."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tickloop import AsyncClient, StreamClient, models
from tickloop.bus import Bus
from tickloop.client.results import Market
from tickloop.exceptions import ConfigError
from tickloop.server import STATIC_DIR, Platform, TickloopApp, create_app
from tickloop.sim import SimExchange

SYMBOLS = ["BTC-USD", "ETH-USD"]


@dataclass
class World:
    ex: SimExchange
    bus: Bus
    feed: StreamClient
    rest: AsyncClient
    app: TickloopApp
    http: httpx.AsyncClient


@pytest.fixture
async def world() -> AsyncIterator[World]:
    # rate=0: no synthetic flow, so the books stay as the exchange seeded them
    async with (
        SimExchange(seed=5, symbols=SYMBOLS, rate=0) as ex,
        Bus(name="app-test") as bus,
        StreamClient("sim", url=ex.ws_url) as feed,
        AsyncClient("sim", url=ex.rest_url) as rest,
    ):
        books = bus.subscribe("book.sim.BTC-USD", maxsize=10)
        await bus.attach(feed, trades=SYMBOLS, books=["BTC-USD"])
        await anext(books)  # the local book is synchronised
        app = create_app(Platform(bus, feeds=[feed], rest=[rest]), token="t0ken")
        transport = httpx.ASGITransport(app=app)
        async with app, httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield World(ex, bus, feed, rest, app, http)


async def test_health_and_readiness(world: World) -> None:
    health = await world.http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = await world.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True,
                            "checks": {"server": True, "bus": True, "feed:sim": True}}


async def test_not_ready_while_a_feed_has_no_connection() -> None:
    async with Bus() as bus, StreamClient("sim", url="ws://127.0.0.1:9/ws") as idle:
        app = create_app(Platform(bus, feeds=[idle]), token="t")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/healthz")).status_code == 503  # not started
            async with app:
                ready = await http.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"] == {"server": True, "bus": True,
                                                  "feed:sim": False}
            assert (await http.get("/healthz")).status_code == 503  # closed


async def test_markets_are_the_venues_models(world: World) -> None:
    answer = await world.http.get("/api/markets")
    assert answer.status_code == 200
    markets = msgspec.convert(answer.json(), list[Market])
    assert markets == await world.rest.markets()
    assert [m.symbol for m in markets] == SYMBOLS
    only = await world.http.get("/api/markets", params={"venue": "sim"})
    assert only.json() == answer.json()
    missing = await world.http.get("/api/markets", params={"venue": "kraken"})
    assert missing.status_code == 404 and "kraken" in missing.json()["detail"]


async def test_markets_when_the_venue_is_down(world: World) -> None:
    await world.ex.stop()
    answer = await world.http.get("/api/markets")
    assert answer.status_code == 502
    assert answer.json()["detail"].startswith("sim: ")


async def test_the_local_book_exactly(world: World) -> None:
    answer = await world.http.get("/api/book/btc-usd", params={"depth": 3})
    assert answer.status_code == 200
    got = msgspec.convert(answer.json(), models.BookSnapshot)
    local = world.feed.book("BTC-USD")
    assert local is not None and local.valid
    assert got == local.snapshot(3)
    assert len(got.bids) == 3 and got.bids[0].price > got.bids[1].price
    assert isinstance(answer.json()["bids"][0][0], str)  # the venue's digits
    exchange = await world.rest.book("BTC-USD", depth=3)
    assert (got.bids, got.asks) == (exchange.bids, exchange.asks)


@pytest.mark.parametrize(("path", "status"), [
    ("/api/book/ETH-USD", 404),           # traded, but no book kept
    ("/api/book/BTC-USD?venue=binance", 404),
    ("/api/book/BTC-USD?depth=0", 422),
])
async def test_book_errors(world: World, path: str, status: int) -> None:
    answer = await world.http.get(path)
    assert answer.status_code == status


async def test_status_strip(world: World) -> None:
    answer = await world.http.get("/api/status")
    body = answer.json()
    assert body["feeds"] == [{
        "venue": "sim", "connections": 1, "connections_open": 1,
        "messages": world.feed.stats()["events"], "reconnects": 0, "gaps": 0,
        "book_resyncs": 0,
    }]
    assert body["bus"]["dropped"] == 0 and body["bus"]["published"] == world.bus.published
    assert body["sse"]["epoch"] == world.app.hub.epoch
    assert body["loop_lag_seconds"] >= 0


def _metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


async def test_metrics_in_prometheus_text(world: World) -> None:
    world.bus.publish("fill.sim", models.Fill(
        venue="sim", symbol="BTC-USD", order_id="o1", trade_id=1, side=models.Side.BUY,
        price=Decimal("1.5"), size=Decimal("2"),
        liquidity=models.Liquidity.TAKER, ts=1))
    answer = await world.http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    metrics = _metrics(answer.text)
    stats = world.bus.stats()
    assert metrics["tickloop_bus_published_total"] == [({}, float(stats["published"]))]
    dropped = {labels["subscription"]: value
               for labels, value in metrics["tickloop_bus_dropped_total"]}
    assert set(dropped) == {s["name"] for s in stats["subscriptions"]}
    assert all(v == 0 for v in dropped.values())
    delivered = dict((labels["subscription"], v)
                     for labels, v in metrics["tickloop_bus_delivered_total"])
    events_sub = next(s for s in stats["subscriptions"] if s["name"].startswith("sse-events"))
    assert delivered[events_sub["name"]] == events_sub["delivered"] >= 1
    feed = world.feed.stats()
    assert metrics["tickloop_stream_messages_total"] == [({"venue": "sim"}, feed["events"])]
    assert metrics["tickloop_stream_reconnects_total"] == [({"venue": "sim"}, 0.0)]
    assert metrics["tickloop_stream_gaps_total"] == [({"venue": "sim"}, 0.0)]
    assert metrics["tickloop_stream_connections_open"] == [({"venue": "sim"}, 1.0)]
    assert metrics["tickloop_book_resyncs_total"] == [
        ({"venue": "sim", "symbol": "BTC-USD"}, 0.0)]
    assert metrics["tickloop_book_valid"] == [({"venue": "sim", "symbol": "BTC-USD"}, 1.0)]
    [(_, lag)] = metrics["tickloop_loop_lag_seconds"]
    assert lag >= 0
    assert metrics["tickloop_sse_clients"] == [({}, 0.0)]
    retained = dict((labels["ring"], v) for labels, v in metrics["tickloop_sse_replay_retained"])
    assert retained["events"] >= 1


# Each kind of status event (models.py: "a counter on /metrics") and where it is counted.
STATUS_METRICS = {
    models.Connected: "tickloop_stream_connects_total",
    models.Disconnected: "tickloop_stream_disconnects_total",
    models.Reconnected: "tickloop_stream_reconnects_total",
    models.Gap: "tickloop_stream_gaps_total",
    models.Stale: "tickloop_stream_stale_total",
    models.BookInvalid: "tickloop_book_invalidations_total",
    models.BookValid: "tickloop_book_validations_total",
    models.ConsumerDetached: "tickloop_stream_consumers_detached_total",
    models.ConsumerFailed: "tickloop_stream_handler_errors_total",
    models.Malformed: "tickloop_stream_malformed_total",
    models.Unconfirmed: "tickloop_stream_unconfirmed_total",
}


async def test_every_status_event_rest_and_book_counter_is_on_metrics(world: World) -> None:
    assert set(STATUS_METRICS) == set(typing.get_args(models.StatusEvent))
    await world.rest.markets()
    metrics = _metrics((await world.http.get("/metrics")).text)
    feed = world.feed.stats()
    for name in STATUS_METRICS.values():
        assert [labels for labels, _ in metrics[name]] == [{"venue": "sim"}], name
    assert metrics["tickloop_stream_connects_total"] == [({"venue": "sim"}, feed["connected"])]
    assert metrics["tickloop_book_validations_total"] == [
        ({"venue": "sim"}, feed["book_valid"])]
    assert feed["connected"] >= 1 and feed["book_valid"] >= 1
    stats = world.rest.stats
    assert metrics["tickloop_rest_requests_total"] == [({"venue": "sim"}, stats.requests)]
    assert stats.requests >= 1
    for name in ("attempts", "retries", "rate_limited", "network_errors", "timeouts"):
        assert metrics[f"tickloop_rest_{name}_total"] == [
            ({"venue": "sim"}, getattr(stats, name))], name
    assert metrics["tickloop_rest_in_flight"] == [({"venue": "sim"}, 0.0)]
    book = feed["books"]["BTC-USD"]
    labels = {"venue": "sim", "symbol": "BTC-USD"}
    (applied,) = metrics["tickloop_book_deltas_applied_total"]
    assert applied[0] == labels and 0 <= applied[1] <= book["applied"]  # book: read after
    for name in ("stale", "overflowed"):
        assert metrics[f"tickloop_book_deltas_{name}_total"][0][0] == labels
    assert metrics["tickloop_book_deltas_buffered"][0][0] == labels


async def test_each_app_has_its_own_registry() -> None:
    async with Bus(name="one") as one, Bus(name="two") as two:
        first = create_app(Platform(one), token="t")
        second = create_app(Platform(two), token="t")
        assert first.registry is not second.registry
        one.publish("fill.sim", models.Signal(bot="b", name="x", ts=1))
        for app, expected in ((first, 1.0), (second, 0.0)):
            async with app:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    metrics = _metrics((await http.get("/metrics")).text)
            assert metrics["tickloop_bus_published_total"] == [({}, expected)]


@pytest.mark.parametrize("path", [
    "/static/dashboard.js",
    "/static/dashboard.css",
    "/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.js",
    "/static/vendor/lightweight-charts-5.2.1/LICENSE",
    "/static/vendor/lightweight-charts-5.2.1/NOTICE",
])
async def test_the_dashboard_files_are_served(world: World, path: str) -> None:
    answer = await world.http.get(path)
    assert answer.status_code == 200
    assert answer.content == (STATIC_DIR / path.removeprefix("/static/")).read_bytes()


async def test_the_dashboard_page(world: World) -> None:
    page = await world.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for src in ("/static/dashboard.js",
                "/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone"
                ".production.js"):
        assert f'src="{src}"' in page.text
        assert (await world.http.get(src)).status_code == 200
    assert "TradingView" in page.text and "https://www.tradingview.com/" in page.text


def test_the_wheel_ships_the_dashboard() -> None:
    from pathlib import Path

    from hatchling.builders.wheel import WheelBuilder

    root = Path(__file__).resolve().parents[2]
    shipped = {f.distribution_path for f in WheelBuilder(str(root)).recurse_included_files()}
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            assert f"tickloop/server/static/{path.relative_to(STATIC_DIR)}" in shipped


async def test_openapi_documents_the_routes_and_models(world: World) -> None:
    docs = await world.http.get("/docs")
    assert docs.status_code == 200
    schema = (await world.http.get("/openapi.json")).json()
    paths = set(schema["paths"])
    assert {"/healthz", "/readyz", "/metrics", "/api/markets", "/api/book/{symbol}",
            "/api/status", "/api/events/stream", "/api/auth"} <= paths
    book = schema["paths"]["/api/book/{symbol}"]["get"]["responses"]["200"]
    assert "bids" in str(book) or "BookSnapshot" in str(schema["components"])
    assert schema["paths"]["/api/auth"]["get"].get("security")


async def test_platform_refuses_two_clients_of_one_venue() -> None:
    async with Bus() as bus:
        a, b = StreamClient("sim", url="ws://127.0.0.1:9/ws"), StreamClient(
            "sim", url="ws://127.0.0.1:9/ws")
        with pytest.raises(ConfigError) as err:
            Platform(bus, feeds=[a, b])
        assert err.value.field == "feeds"


async def test_absent_parts_bring_no_routes() -> None:
    async with Bus() as bus:
        app = create_app(Platform(bus), token="t")
        transport = httpx.ASGITransport(app=app)
        async with app, httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/api/markets")).status_code == 404
            assert (await http.get("/api/book/BTC-USD")).status_code == 404
            assert (await http.get("/api/status")).json()["feeds"] == []
            paths = set((await http.get("/openapi.json")).json()["paths"])
    assert "/api/markets" not in paths and "/api/book/{symbol}" not in paths
    assert {"/healthz", "/readyz", "/metrics", "/api/status", "/api/events/stream"} <= paths
