"""Stored backtests over HTTP, for the dashboard's backtest view.

Present when the platform has a store. ``GET /api/backtests`` lists the runs the store holds
(``tickloop backtest --store``, :func:`tickloop.backtest.report.save`), oldest first: what was
run and its metrics. ``GET /api/backtests/{id}`` is one run: that row, its equity curve with
the drawdown at each point (the fall from the running peak, as a fraction of the peak: the
``max_drawdown`` metric is the largest of them), its final positions and its first orders and
fills.

A long run has a point per bar (a million for a million candles), more than a chart shows:
``points`` (default 2,000) bounds the curve to that many points evenly spaced over the run (the
first and the last included), plus the deepest drawdown point, so the view never loses the
worst moment. ``rows`` bounds the orders and fills returned (the metrics count them all).
Equity values are the store's exact text; drawdowns are floats.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from ..exceptions import TickloopError
from ..runtime.store import Store

__all__ = ["backtests_router", "drawdowns", "sample"]


def drawdowns(equity: list[float]) -> list[float]:
    """The fall from the running peak at each point, as a fraction of the peak (0 at a peak,
    and wherever the peak is not positive)."""
    out: list[float] = []
    peak = float("-inf")
    for e in equity:
        if e > peak:
            peak = e
        out.append((peak - e) / peak if peak > 0 else 0.0)
    return out


def sample(n: int, points: int, keep: int | None = None) -> list[int]:
    """At most ``points`` indices of ``n`` evenly spaced (first and last included), plus
    ``keep`` if given, in order."""
    chosen = set(range(n)) if n <= points else {i * (n - 1) // (points - 1)
                                                 for i in range(points)}
    if keep is not None and 0 <= keep < n:
        chosen.add(keep)
    return sorted(chosen)


def _store(request: Request) -> Store:
    store: Store | None = request.app.platform.store
    if store is None:  # the router is only mounted with a store
        raise HTTPException(404, "this server has no store")
    return store


def backtests_router() -> APIRouter:
    """Present when the platform has a store."""
    router = APIRouter(prefix="/api", tags=["backtests"])

    @router.get("/backtests")
    async def runs(request: Request) -> list[dict[str, Any]]:
        """Every stored backtest run, oldest first (parameters, span and metrics)."""
        try:
            rows: list[dict[str, Any]] = await _store(request).backtest_runs()
        except TickloopError as exc:
            raise HTTPException(503, exc.message) from None
        return rows

    @router.get("/backtests/{run_id}")
    async def run(
        request: Request,
        run_id: int,
        points: Annotated[int, Query(ge=2, le=100_000,
                                     description="Equity points at most (plus the deepest "
                                     "drawdown).")] = 2000,
        rows: Annotated[int, Query(ge=0, le=100_000,
                                   description="Orders and fills at most.")] = 200,
    ) -> dict[str, Any]:
        """One run: its row, equity curve and drawdown, final positions, first orders and
        fills."""
        store = _store(request)
        try:
            found = [r for r in await store.backtest_runs() if r["id"] == run_id]
            if not found:
                raise HTTPException(404, f"no backtest run {run_id}")
            curve = await store.backtest_rows("equity", run_id)
            orders = await store.backtest_rows("orders", run_id)
            fills = await store.backtest_rows("fills", run_id)
            positions = await store.backtest_rows("positions", run_id)
        except TickloopError as exc:
            raise HTTPException(503, exc.message) from None
        values = [float(p["equity"]) for p in curve]
        falls = drawdowns(values)
        deepest = max(range(len(falls)), key=falls.__getitem__) if falls else None
        picked = sample(len(curve), points, deepest)
        return {
            "run": found[0],
            "points": len(curve),
            "equity": [{"ts": curve[i]["ts"], "equity": curve[i]["equity"],
                        "drawdown": falls[i], "exposed": bool(curve[i]["exposed"])}
                       for i in picked],
            "positions": [_strip(p) for p in positions],
            "orders": [_strip(o) for o in orders[:rows]],
            "fills": [_strip(f) for f in fills[:rows]],
        }

    return router


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "run"}
