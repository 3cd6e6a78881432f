"""The stored backtests over HTTP (:mod:`tickloop.server.backtests`): a real backtest saved in
a store, served by the app over httpx's ASGI transport (no socket)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tickloop.backtest import Backtest
from tickloop.backtest.report import save
from tickloop.bus import Bus
from tickloop.examples import SmaCross
from tickloop.models import Candle
from tickloop.runtime.store import Store
from tickloop.server import Platform, create_app
from tickloop.server.backtests import drawdowns, sample


def walk(n: int, seed: int = 1) -> list[Candle]:
    """``n`` one-second candles: a seeded random walk in cents."""
    rng = random.Random(seed)
    p, out, cents = 1_000_000, [], Decimal("0.01")
    for i in range(n):
        o = h = lo = p
        for _ in range(3):
            p += rng.randint(-5, 5)
            h, lo = max(h, p), min(lo, p)
        t = (1_767_225_600 + i) * 10**9
        out.append(Candle(venue="backtest", symbol="BTC-USD", interval="1s", open_time=t,
                          close_time=t + 10**9, open=o * cents, high=h * cents, low=lo * cents,
                          close=p * cents, volume=Decimal(10), closed=True))
    return out


@pytest.fixture
async def stored(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, object]]]:
    result = await Backtest(SmaCross("sma", fast=3, slow=10), walk(600), cash=500,
                            fee="0.0005").run()
    async with Bus(name="bt") as bus, Store(tmp_path / "runs.db") as store:
        (run_id,) = await save(result, store)
        app = create_app(Platform(bus, store=store), token="t")
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://test") as client:
            yield client, {"id": run_id, "result": result}


async def test_the_runs_and_one_run_with_its_equity_and_drawdown(
        stored: tuple[httpx.AsyncClient, dict[str, object]]) -> None:
    client, info = stored
    result = info["result"]
    report = result.report()  # type: ignore[attr-defined]
    runs = (await client.get("/api/backtests")).json()
    assert [r["id"] for r in runs] == [info["id"]]
    assert runs[0]["bot"] == "sma" and runs[0]["class"] == "tickloop.examples:SmaCross"
    assert runs[0]["params"] == {"fast": 3, "slow": 10, "size": "0.01"}
    assert runs[0]["metrics"] == report.metrics

    full = (await client.get(f"/api/backtests/{info['id']}?points=100000&rows=100000")).json()
    assert full["points"] == len(report.equity) == 601
    assert [p["equity"] for p in full["equity"]] == [str(e) for e in report.equity]
    assert [p["ts"] for p in full["equity"]] == report.equity_ts
    # the deepest point of the curve is the run's max drawdown metric
    assert max(p["drawdown"] for p in full["equity"]) == pytest.approx(
        report.metrics["max_drawdown"], rel=1e-12)
    assert len(full["fills"]) == report.metrics["fills"] > 0
    assert [f["price"] for f in full["fills"]] == [str(f.price) for f in report.fills]
    assert len(full["orders"]) == report.metrics["orders"]
    assert [(p["symbol"], Decimal(p["size"])) for p in full["positions"]] == [
        (p.symbol, p.size) for p in report.positions]

    small = (await client.get(f"/api/backtests/{info['id']}?points=50&rows=3")).json()
    assert 50 <= len(small["equity"]) <= 51  # 50 evenly spaced, and the deepest drawdown
    assert small["equity"][0] == full["equity"][0]
    assert small["equity"][-1] == full["equity"][-1]
    assert max(p["drawdown"] for p in small["equity"]) == max(
        p["drawdown"] for p in full["equity"])
    assert len(small["fills"]) == len(small["orders"]) == 3


async def test_unknown_run_and_bad_query(
        stored: tuple[httpx.AsyncClient, dict[str, object]]) -> None:
    client, _ = stored
    r = await client.get("/api/backtests/999")
    assert r.status_code == 404 and "no backtest run 999" in r.text
    assert (await client.get("/api/backtests/1?points=1")).status_code == 422
    assert (await client.get("/api/backtests/x")).status_code == 422


async def test_no_store_no_backtest_routes() -> None:
    async with Bus(name="bare") as bus:
        app = create_app(Platform(bus), token="t")
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://test") as client:
            assert (await client.get("/api/backtests")).status_code == 404


def test_drawdowns_and_sampling() -> None:
    assert drawdowns([100.0, 110.0, 99.0, 121.0, 60.5]) == pytest.approx(
        [0.0, 0.0, 0.1, 0.0, 0.5])
    assert drawdowns([0.0, -1.0]) == [0.0, 0.0]
    assert sample(5, 10) == [0, 1, 2, 3, 4]
    assert sample(101, 3) == [0, 50, 100]
    assert sample(101, 3, keep=7) == [0, 7, 50, 100]
