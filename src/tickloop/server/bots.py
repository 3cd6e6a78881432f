"""The bot runtime as a part of the server: bots, their control, the store's history, metrics.

Present when the :class:`~tickloop.server.Platform` has an ``engine`` (a started
:class:`~tickloop.runtime.Engine`); the history routes also need its ``store``.

* ``GET /api/bots``, ``GET /api/bots/{id}``: :class:`BotInfo` (status, parameters, PnL,
  errors and the last one, handler time, order latency);
* ``POST /api/bots/{id}/pause`` / ``resume``, ``POST /api/kill`` / ``revive`` (the kill
  switch, of one bot with ``?bot=`` or of all), ``POST /api/cancel-all``: behind the control
  token;
* ``GET /api/orders/open``: the bots' open orders now (``Order`` models as they are);
* ``GET /api/orders``, ``/api/fills``, ``/api/equity``, ``/api/events``: pages of the store
  (keyset paging: ``after=`` the previous page's ``next``), ``GET /api/positions``.

:class:`BotTracker` follows ``bot.error.*`` and ``bot.order.*`` on the bus with plain
handlers called by ``publish`` (no buffer, nothing dropped): each bot's last error, and the
latency from an order's creation to its acceptance (the executor's round trip), kept as
histogram buckets so its memory does not grow. :class:`BotCollector` puts per-bot errors,
handler time, status, PnL and that latency on /metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from .._web import WebStruct
from ..exceptions import ConfigError, TickloopError
from ..models import BotError, Order, OrderEvent, OrderEventKind
from .auth import require_token

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..bus import Bus, Event, Subscription
    from ..runtime.engine import Engine
    from ..runtime.store import Page, Store
    from .app import TickloopApp

__all__ = ["LATENCY_BUCKETS", "BotCollector", "BotInfo", "BotTracker", "StorePage",
           "bots_router", "history_router"]

#: Upper bounds (s) of the order latency histogram's buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)

_Authorized = Annotated[None, Depends(require_token)]


class BotInfo(WebStruct, frozen=True, kw_only=True, gc=False):
    """One bot as the server shows it."""

    id: str
    cls: str = msgspec.field(name="class")
    status: str  # running, paused, stopped, error
    killed: bool  # its kill switch (or the engine's) refuses new orders
    symbols: list[str]
    every: float | None = None
    cron: str | None = None
    params: dict[str, Any]
    pnl: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    equity: Decimal
    cash: Decimal
    positions: dict[str, Decimal]  # symbol -> signed size (only symbols traded)
    open_orders: int
    errors: int
    last_error: str | None = None
    handler_calls: int
    handler_seconds: float  # total time in its handlers
    handler_max_seconds: float  # its longest single call
    overruns: int
    dropped: int
    orders_accepted: int
    order_latency_seconds: float | None = None  # mean creation -> acceptance


class StorePage(WebStruct, frozen=True, kw_only=True, gc=False):
    """A page of store rows; ask for ``after=next`` to get the following one."""

    items: list[dict[str, Any]]
    next: int | None = None


class _Latency:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.count = 0
        self.sum = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break


class BotTracker:
    """Per-bot facts the engine does not keep: the last error, order acceptance latency."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last_error: dict[str, str] = {}
        self.latency: dict[str, _Latency] = {}
        self._subs: list[Subscription] = []

    def start(self, bus: Bus) -> None:
        if self._subs:
            return
        self._subs = [
            bus.subscribe("bot.error.*", handler=self._on_error, name="tickloop-server-errors"),
            bus.subscribe("bot.order.*", handler=self._on_order, name="tickloop-server-orders"),
        ]

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []

    def _on_error(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, BotError):
            self.last_error[payload.bot] = f"{payload.handler}: {payload.error}"[:500]

    def _on_order(self, event: Event) -> None:
        payload = event.payload
        if not isinstance(payload, OrderEvent) or payload.kind is not OrderEventKind.ACCEPTED:
            return
        created = payload.order.created_ts
        if created <= 0 or payload.ts < created:
            return
        bot = event.topic.rpartition(".")[2]
        if bot not in self.latency:
            if bot not in {b.id for b in self.engine.bots}:
                return  # labels stay bounded: only the engine's bots
            self.latency[bot] = _Latency()
        self.latency[bot].add((payload.ts - created) / 1e9)

    def info(self, bot_id: str) -> BotInfo:
        """The bot's :class:`BotInfo`; ConfigError for an unknown id."""
        engine = self.engine
        stats = engine.stats(bot_id)
        bot = next(b for b in engine.bots if b.id == bot_id)
        portfolio = engine.portfolio(bot_id)
        handlers = stats["handlers"].values()
        latency = self.latency.get(bot_id)
        return BotInfo(
            id=bot_id,
            cls=type(bot).__name__,
            status=stats["status"],
            killed=engine.risk.killed(bot_id),
            symbols=list(bot.symbols),
            every=bot.every,
            cron=bot.cron,
            params=msgspec.to_builtins(bot.params),
            pnl=portfolio.pnl,
            realized_pnl=portfolio.realized_pnl,
            unrealized_pnl=portfolio.unrealized_pnl,
            equity=portfolio.equity_value,
            cash=portfolio.cash,
            positions={p.symbol: p.size for p in portfolio.positions()},
            open_orders=len(engine.open_orders(bot_id)),
            errors=stats["errors"],
            last_error=self.last_error.get(bot_id),
            handler_calls=sum(int(h["count"]) for h in handlers),
            handler_seconds=sum(float(h["total"]) for h in handlers),
            handler_max_seconds=max((float(h["max"]) for h in handlers), default=0.0),
            overruns=stats["overruns"],
            dropped=stats["dropped"],
            orders_accepted=latency.count if latency else 0,
            order_latency_seconds=latency.sum / latency.count if latency else None,
        )


class BotCollector(Collector):
    """Per-bot metric families, read from the engine and the tracker at each scrape."""

    def __init__(self, tracker: BotTracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterable[Metric]:
        engine = self.tracker.engine
        errors = CounterMetricFamily("tickloop_bot_errors", "Exceptions in a bot's handlers.",
                                     labels=["bot"])
        calls = CounterMetricFamily("tickloop_bot_handler_calls", "Calls of a bot's handler.",
                                    labels=["bot", "handler"])
        seconds = CounterMetricFamily("tickloop_bot_handler_seconds",
                                      "Time spent in a bot's handler.",
                                      labels=["bot", "handler"])
        longest = GaugeMetricFamily("tickloop_bot_handler_max_seconds",
                                    "The longest call of a bot's handler.",
                                    labels=["bot", "handler"])
        overruns = CounterMetricFamily("tickloop_bot_tick_overruns",
                                       "Ticks skipped because the previous one still ran.",
                                       labels=["bot"])
        dropped = CounterMetricFamily("tickloop_bot_dropped",
                                      "Events a bot's full mailbox dropped.", labels=["bot"])
        status = GaugeMetricFamily("tickloop_bot_status", "1 for the bot's current status.",
                                   labels=["bot", "status"])
        pnl = GaugeMetricFamily("tickloop_bot_pnl", "Realised plus unrealised PnL (quote).",
                                labels=["bot"])
        latency = HistogramMetricFamily(
            "tickloop_order_latency_seconds",
            "From an order's creation to the executor's acceptance.", labels=["bot"])
        for bot in engine.bots:
            stats = engine.stats(bot.id)
            errors.add_metric([bot.id], stats["errors"])
            for name, h in sorted(stats["handlers"].items()):
                calls.add_metric([bot.id, name], h["count"])
                seconds.add_metric([bot.id, name], h["total"])
                longest.add_metric([bot.id, name], h["max"])
            overruns.add_metric([bot.id], stats["overruns"])
            dropped.add_metric([bot.id], stats["dropped"])
            for state in ("running", "paused", "stopped", "error"):
                status.add_metric([bot.id, state], 1.0 if stats["status"] == state else 0.0)
            pnl.add_metric([bot.id], float(engine.portfolio(bot.id).pnl))
            lat = self.tracker.latency.get(bot.id) or _Latency()
            cumulative, buckets = 0, []
            for bound, n in zip(LATENCY_BUCKETS, lat.buckets, strict=True):
                cumulative += n
                buckets.append((repr(bound), float(cumulative)))
            buckets.append(("+Inf", float(lat.count)))
            latency.add_metric([bot.id], buckets, lat.sum)
        yield from (errors, calls, seconds, longest, overruns, dropped, status, pnl, latency)


def _app(request: Request) -> TickloopApp:
    from .app import TickloopApp

    app = request.app
    assert isinstance(app, TickloopApp)
    return app


def _tracker(request: Request) -> BotTracker:
    tracker = _app(request).bots
    assert tracker is not None
    return tracker


def _known(tracker: BotTracker, bot_id: str) -> None:
    if bot_id not in {b.id for b in tracker.engine.bots}:
        raise HTTPException(404, f"no bot {bot_id!r}")


def bots_router() -> APIRouter:
    """Present when the platform has an engine."""
    router = APIRouter(prefix="/api", tags=["bots"])

    @router.get("/bots")
    async def bots(request: Request) -> list[BotInfo]:
        """Every bot: status, parameters, PnL, errors, handler time, order latency."""
        tracker = _tracker(request)
        return [tracker.info(b.id) for b in tracker.engine.bots]

    @router.get("/bots/{bot_id}")
    async def bot(request: Request, bot_id: str) -> BotInfo:
        tracker = _tracker(request)
        _known(tracker, bot_id)
        return tracker.info(bot_id)

    @router.post("/bots/{bot_id}/pause")
    async def pause(request: Request, bot_id: str, _: _Authorized) -> BotInfo:
        """Stop delivering events and ticks to the bot (its open orders stay)."""
        tracker = _tracker(request)
        _known(tracker, bot_id)
        tracker.engine.pause(bot_id)
        return tracker.info(bot_id)

    @router.post("/bots/{bot_id}/resume")
    async def resume(request: Request, bot_id: str, _: _Authorized) -> BotInfo:
        """Resume a paused bot, or one whose circuit breaker fired."""
        tracker = _tracker(request)
        _known(tracker, bot_id)
        tracker.engine.resume(bot_id)
        return tracker.info(bot_id)

    @router.post("/kill")
    async def kill(request: Request, _: _Authorized,
                   bot: Annotated[str | None, Query()] = None) -> dict[str, Any]:
        """The kill switch: refuse every new order of ``bot`` (all bots without it) and cancel
        their open orders. ``POST /api/revive`` turns it off."""
        tracker = _tracker(request)
        if bot is not None:
            _known(tracker, bot)
        try:
            await tracker.engine.kill(bot, reason="kill switch (API)")
        except TickloopError as exc:
            raise HTTPException(502, exc.message) from None
        return {"killed": True, "bot": bot}

    @router.post("/revive")
    async def revive(request: Request, _: _Authorized,
                     bot: Annotated[str | None, Query()] = None) -> dict[str, Any]:
        """Turn the kill switch of ``bot`` (of the engine without it) off."""
        tracker = _tracker(request)
        if bot is not None:
            _known(tracker, bot)
        tracker.engine.risk.revive(bot)
        return {"killed": tracker.engine.risk.killed(bot), "bot": bot}

    @router.post("/cancel-all")
    async def cancel_all(request: Request, _: _Authorized,
                         bot: Annotated[str | None, Query()] = None,
                         symbol: Annotated[str | None, Query()] = None) -> list[Order]:
        """Cancel the open orders of ``bot`` (every bot without it), of ``symbol`` if given;
        returns the orders cancelled."""
        tracker = _tracker(request)
        engine = tracker.engine
        if bot is not None:
            _known(tracker, bot)
        ids = [bot] if bot is not None else [b.id for b in engine.bots]
        out: list[Order] = []
        for bot_id in ids:
            try:
                out.extend(await engine.cancel_all(bot_id, symbol.upper() if symbol else None))
            except TickloopError as exc:
                raise HTTPException(502, f"{bot_id}: {exc.message}") from None
        return out

    @router.get("/orders/open")
    async def open_orders(request: Request,
                          bot: Annotated[str | None, Query()] = None) -> list[Order]:
        """The bots' open orders now, oldest first per bot."""
        tracker = _tracker(request)
        if bot is not None:
            _known(tracker, bot)
        ids = [bot] if bot is not None else [b.id for b in tracker.engine.bots]
        return [o for bot_id in ids for o in tracker.engine.open_orders(bot_id)]

    return router


def _store(request: Request) -> Store:
    store = _app(request).platform.store
    assert store is not None
    return store


def _page(page: Page) -> StorePage:
    return StorePage(items=page.items, next=page.next)


_Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page.")]
_After = Annotated[int | None, Query(description="The previous page's `next`.")]
_Since = Annotated[int | None, Query(description="From this time (ns since the epoch).")]
_Until = Annotated[int | None, Query(description="Before this time (ns since the epoch).")]


def history_router() -> APIRouter:
    """Present when the platform has a store."""
    router = APIRouter(prefix="/api", tags=["history"])

    async def query(coro: Any) -> Any:
        try:
            return await coro
        except ConfigError as exc:
            raise HTTPException(422, exc.message) from None
        except TickloopError as exc:
            raise HTTPException(503, exc.message) from None

    @router.get("/orders")
    async def orders(request: Request, bot: str | None = None, symbol: str | None = None,
                     status: Annotated[str | None, Query(
                         description="Comma-separated statuses.")] = None,
                     since: _Since = None, until: _Until = None, limit: _Limit = 100,
                     after: _After = None) -> StorePage:
        """Orders in their latest state, oldest first."""
        statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
        return _page(await query(_store(request).orders(
            bot=bot, symbol=symbol, status=statuses, since=since, until=until, limit=limit,
            after=after)))

    @router.get("/fills")
    async def fills(request: Request, bot: str | None = None, symbol: str | None = None,
                    since: _Since = None, until: _Until = None, limit: _Limit = 100,
                    after: _After = None) -> StorePage:
        """Every fill, oldest first."""
        return _page(await query(_store(request).fills(
            bot=bot, symbol=symbol, since=since, until=until, limit=limit, after=after)))

    @router.get("/equity")
    async def equity(request: Request, bot: str | None = None, since: _Since = None,
                     until: _Until = None, limit: _Limit = 100,
                     after: _After = None) -> StorePage:
        """Equity snapshots, oldest first."""
        return _page(await query(_store(request).equity(
            bot=bot, since=since, until=until, limit=limit, after=after)))

    @router.get("/events")
    async def events(request: Request, bot: str | None = None,
                     type: Annotated[str | None, Query(
                         description="An event type, e.g. bot_error.")] = None,
                     since: _Since = None, until: _Until = None, limit: _Limit = 100,
                     after: _After = None) -> StorePage:
        """The store's event history (bot, risk and loop events), oldest first."""
        return _page(await query(_store(request).events(
            bot=bot, type=type, since=since, until=until, limit=limit, after=after)))

    @router.get("/positions")
    async def positions(request: Request, bot: str | None = None) -> list[dict[str, Any]]:
        """The latest position per bot and market."""
        rows: list[dict[str, Any]] = await query(_store(request).positions(bot=bot))
        return rows

    return router
