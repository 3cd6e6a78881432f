"""tickloop models returned from FastAPI routes as they are: exact, sparse, documented."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import msgspec
import pytest
from fastapi import FastAPI

from tickloop import AsyncClient, models
from tickloop.client.results import Market
from tickloop.fields import Selection
from tickloop.sim import SimExchange

TRADE = models.Trade(venue="sim", symbol="BTC-USD", id=7, price=Decimal("30000.10"),
                     size=Decimal("0.0100"), side=models.Side.SELL, ts=1)


@pytest.fixture
async def sim() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=5, symbols=["BTC-USD", "ETH-USD"]) as ex:
        yield ex


def _app(ex: SimExchange) -> FastAPI:
    app = FastAPI()

    @app.get("/trade")
    async def trade():  # type: ignore[no-untyped-def]  # no annotation: jsonable_encoder's path
        return TRADE

    @app.get("/trade-typed")
    async def trade_typed() -> models.Trade:  # annotated: pydantic's path
        return TRADE

    @app.get("/markets")
    async def markets():  # type: ignore[no-untyped-def]
        async with AsyncClient("sim", url=ex.rest_url) as client:
            return await client.markets(fields=Selection("symbol", "tick_size"))

    @app.get("/markets-typed")
    async def markets_typed() -> list[Market]:
        async with AsyncClient("sim", url=ex.rest_url) as client:
            return await client.markets()

    @app.get("/book")
    async def book():  # type: ignore[no-untyped-def]
        async with AsyncClient("sim", url=ex.rest_url) as client:
            return await client.book("BTC-USD", depth=3)

    @app.get("/order-event")
    async def order_event() -> models.OrderEvent:
        order = models.Order(venue="sim", symbol="BTC-USD", id="o1", side=models.Side.BUY,
                             type=models.OrderType.LIMIT, price=Decimal("1.10"),
                             size=Decimal("2"), status=models.OrderStatus.OPEN)
        return models.OrderEvent(venue="sim", kind=models.OrderEventKind.ACCEPTED, order=order,
                                 ts=3)

    return app


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path)


@pytest.mark.parametrize("path", ["/trade", "/trade-typed"])
async def test_a_model_is_returned_exactly(sim: SimExchange, path: str) -> None:
    answer = await _get(_app(sim), path)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == msgspec.to_builtins(TRADE)
    assert body["price"] == "30000.10" and body["size"] == "0.0100"  # the venue's digits
    assert msgspec.convert(body, models.Trade) == TRADE


async def test_client_results_from_the_sim_in_routes(sim: SimExchange) -> None:
    app = _app(sim)
    sparse = (await _get(app, "/markets")).json()
    assert [m["symbol"] for m in sparse] == ["BTC-USD", "ETH-USD"]
    assert set(sparse[0]) == {"venue", "symbol", "tick_size"}  # unset fields are left out
    full = (await _get(app, "/markets-typed")).json()
    assert full[0]["book"]["bids"] and isinstance(full[0]["book"]["bids"][0][0], str)
    book = (await _get(app, "/book")).json()
    assert book["model"] == "book_snapshot" and len(book["bids"]) == 3
    nested = (await _get(app, "/order-event")).json()
    assert nested["order"]["price"] == "1.10" and nested["kind"] == "accepted"


async def test_openapi_shows_the_models_fields(sim: SimExchange) -> None:
    spec = (await _get(_app(sim), "/openapi.json")).json()
    schema = spec["paths"]["/trade-typed"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    text = repr(schema) + repr(spec.get("components", {}))
    for field in ("price", "size", "side", "recv_ts"):
        assert field in text
    event = spec["paths"]["/order-event"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert "client_order_id" in repr(event) + repr(spec.get("components", {}))  # nested inlined


def test_vars_is_the_json_view() -> None:
    assert vars(TRADE)["price"] == "30000.10"
    assert TRADE.price == Decimal("30000.10")  # attributes are untouched
