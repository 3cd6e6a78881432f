"""The FastAPI app: REST, the SSE event stream, /metrics and the dashboard, over one platform.

:class:`Platform` is what the server shows and controls: the bus (required), the stream
clients whose local books and counters it reads, and the venues' REST clients for markets.
Each part that is present brings its routes (one router per concern); a part that is absent
brings none. The bot runtime plugs in so: with ``engine=`` (a started
:class:`~tickloop.runtime.Engine`) come the bot routes and per-bot metrics, with its store the
history routes (:mod:`tickloop.server.bots`) and the stored backtests
(:mod:`tickloop.server.backtests`).

The app has no lifespan: it runs in the loop of whoever owns the bus and the feeds.
``async with app:`` (or ``await app.start()`` / ``await app.aclose()``) starts the event hub and
the loop-lag monitor, and ends every SSE stream on the way out; :func:`tickloop.server.serve`
does that around a uvicorn server started as a task of the same loop. Routes return tickloop
models as they are (``Market``, ``BookSnapshot``): their JSON is msgspec's (exact prices as
strings) and /docs shows their fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .._version import __version__
from ..bus import Bus
from ..client.rest import AsyncClient
from ..client.stream import StreamClient
from ..exceptions import ConfigError, TickloopError
from ..exceptions import TimeoutError as TickloopTimeout
from ..models import BookSnapshot, Market
from ..runtime.engine import Engine
from ..runtime.store import Store
from .auth import ControlToken, require_token, resolve_token
from .backtests import backtests_router
from .bots import BotCollector, BotTracker, bots_router, history_router
from .events import EventFilter, EventHub, EventStreamResponse
from .metrics import LoopLagMonitor, PlatformCollector, make_registry

__all__ = ["STATIC_DIR", "Platform", "TickloopApp", "create_app"]

#: The dashboard's page, script and vendored libraries (package data).
STATIC_DIR = Path(str(resources.files("tickloop.server") / "static"))

_Authorized = Annotated[None, Depends(require_token)]


@dataclass
class Platform:
    """The parts of a running platform the server reads.

    ``bus`` carries the events the SSE stream and the dashboard show; ``feeds`` are the
    StreamClients attached to it (``bus.attach``), read for their local books and counters;
    ``rest`` are the venues' REST clients, one per venue, for markets; ``engine`` is the bot
    runtime (on the same bus, started before the app starts), and ``store`` the store its
    history is read from (by default the engine's, if it was started when the platform was
    made).
    """

    bus: Bus
    feeds: Sequence[StreamClient] = ()
    rest: Sequence[AsyncClient] = ()
    engine: Engine | None = None
    store: Store | None = None
    #: Seconds a REST call made on behalf of a request may take.
    rest_timeout: float = 10.0
    _feeds_by_venue: dict[str, StreamClient] = field(init=False, repr=False)
    _rest_by_venue: dict[str, AsyncClient] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.feeds = tuple(self.feeds)
        self.rest = tuple(self.rest)
        self._feeds_by_venue = {}
        for feed in self.feeds:
            if feed.venue in self._feeds_by_venue:
                raise ConfigError(f"two stream clients of venue {feed.venue!r}", field="feeds")
            self._feeds_by_venue[feed.venue] = feed
        self._rest_by_venue = {}
        for client in self.rest:
            if client.venue in self._rest_by_venue:
                raise ConfigError(f"two REST clients of venue {client.venue!r}", field="rest")
            self._rest_by_venue[client.venue] = client
        if self.engine is not None and self.store is None:
            self.store = self.engine.store  # None before the engine started: give store=
        if not self.rest_timeout > 0:
            raise ConfigError("rest_timeout must be > 0", field="rest_timeout")

    def feed(self, venue: str) -> StreamClient | None:
        return self._feeds_by_venue.get(venue)

    def rest_client(self, venue: str) -> AsyncClient | None:
        return self._rest_by_venue.get(venue)


class TickloopApp(FastAPI):
    """The server's ASGI app (made by :func:`create_app`); ``async with app:`` runs it."""

    platform: Platform
    hub: EventHub
    lag: LoopLagMonitor
    token: ControlToken

    def __init__(self, platform: Platform, hub: EventHub, lag: LoopLagMonitor,
                 token: ControlToken, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform
        self.hub = hub
        self.lag = lag
        self.token = token
        self.state.token = token
        self.registry = make_registry(
            PlatformCollector(platform.bus, platform.feeds, hub, lag, rest=platform.rest)
        )
        self.bots: BotTracker | None = None
        if platform.engine is not None:
            self.bots = BotTracker(platform.engine)
            self.registry.register(BotCollector(self.bots))
            if _bus_started(platform.bus):  # follow the bots from now, not from the start
                self.bots.start(platform.bus)
        self._started = False
        self._closed = False

    @property
    def running(self) -> bool:
        return self._started and not self._closed

    async def start(self) -> None:
        """Start the event hub (subscribes to the bus, which must be open) and the lag monitor."""
        if self._closed:
            raise ConfigError("this app was closed", field="app")
        if self._started:
            return
        if self.platform.bus.closed:
            raise ConfigError("the bus is closed", field="bus")
        engine = self.platform.engine
        if engine is not None and engine.bus is not self.platform.bus:
            raise ConfigError("the engine runs on another bus (or is not started)",
                              field="engine")
        await self.hub.start()
        self.lag.start()
        if self.bots is not None:
            self.bots.start(self.platform.bus)
        self._started = True

    async def aclose(self) -> None:
        """End every SSE stream, leave the bus and stop the lag monitor. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.bots is not None:
            self.bots.close()
        await self.hub.aclose()
        await self.lag.aclose()

    async def __aenter__(self) -> TickloopApp:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _app(request: Request) -> TickloopApp:
    app = request.app
    assert isinstance(app, TickloopApp)
    return app


def _bus_started(bus: Bus) -> bool:
    # The bus has no public "started" flag yet (asked of the bus's owner): read its own.
    return bool(getattr(bus, "_started", False)) and not bus.closed


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        """200 while the server runs (its event hub is started and not closed)."""
        app = _app(request)
        if not app.running:
            return JSONResponse({"status": "stopped"}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """200 when the bus is started and every feed has all its connections open."""
        app = _app(request)
        checks: dict[str, bool] = {
            "server": app.running,
            "bus": _bus_started(app.platform.bus),
        }
        for feed in app.platform.feeds:
            sessions = feed.sessions
            checks[f"feed:{feed.venue}"] = (
                not feed.closed and bool(sessions) and all(s.connected for s in sessions)
            )
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks},
                            status_code=200 if ready else 503)

    @router.get("/metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        """The platform's counters in Prometheus' text format."""
        return Response(generate_latest(_app(request).registry),
                        media_type=CONTENT_TYPE_LATEST)

    return router


def _markets_router() -> APIRouter:
    """Present when the platform has REST clients."""
    router = APIRouter(prefix="/api", tags=["market"])

    @router.get("/markets")
    async def markets(
        request: Request, venue: Annotated[str | None, Query()] = None
    ) -> list[Market]:
        """Every market of every venue with a REST client (or of ``venue``)."""
        platform = _app(request).platform
        clients = platform.rest
        if venue is not None:
            client = platform.rest_client(venue)
            if client is None:
                raise HTTPException(404, f"no REST client for venue {venue!r}")
            clients = (client,)
        out: list[Market] = []
        for client in clients:
            try:
                async with asyncio.timeout(platform.rest_timeout):
                    out.extend(await client.markets())
            except (TimeoutError, TickloopTimeout):
                raise HTTPException(504, f"{client.venue}: markets timed out") from None
            except TickloopError as exc:
                raise HTTPException(502, f"{client.venue}: {exc.message}") from None
        return out

    return router


def _books_router() -> APIRouter:
    """Present when the platform has stream clients."""
    router = APIRouter(prefix="/api", tags=["market"])

    @router.get("/book/{symbol}")
    async def book(
        request: Request,
        symbol: str,
        venue: Annotated[str | None, Query()] = None,
        depth: Annotated[int, Query(ge=1, le=1000)] = 10,
    ) -> BookSnapshot:
        """The top ``depth`` levels a side of the local book of ``symbol`` (kept by a feed
        attached with ``books=``); 404 when no feed keeps it, 503 while it resynchronises."""
        platform = _app(request).platform
        name = symbol.upper()
        feeds = platform.feeds
        if venue is not None:
            feed = platform.feed(venue)
            if feed is None:
                raise HTTPException(404, f"no stream client for venue {venue!r}")
            feeds = (feed,)
        for feed in feeds:
            local = feed.book(name)
            if local is None:
                continue
            if not local.valid:
                raise HTTPException(503, f"the {feed.venue} book of {name} is resynchronising")
            return local.snapshot(depth)
        raise HTTPException(404, f"no local book of {name} is kept (attach a feed with books=)")

    return router


def _status_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["health"])

    @router.get("/status")
    async def status(request: Request) -> JSONResponse:
        """What the dashboard's health strip shows: feeds' connections, reconnects, gaps and
        book resyncs, bus drops, loop lag and event stream clients."""
        app = _app(request)
        feeds = []
        for feed in app.platform.feeds:
            stats = feed.stats()
            feeds.append({
                "venue": feed.venue,
                "connections": stats["connections"],
                "connections_open": stats["connections_open"],
                "messages": stats["events"],
                "reconnects": stats["reconnects"],
                "gaps": stats["gaps"],
                "book_resyncs": sum(b["resyncs"] for b in stats["books"].values()),
            })
        bus = app.platform.bus.stats()
        hub = app.hub.stats()
        return JSONResponse({
            "feeds": feeds,
            "bus": {
                "published": bus["published"],
                "dropped": sum(s["dropped"] for s in bus["subscriptions"]),
                "conflated": sum(s["conflated"] for s in bus["subscriptions"]),
            },
            "loop_lag_seconds": app.lag.last,
            "loop_lag_max_seconds": app.lag.max,
            "sse": {"clients": hub["clients"], "epoch": hub["epoch"], "seq": hub["seq"]},
        })

    return router


def _events_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["events"])

    @router.get("/events/stream", response_class=EventStreamResponse)
    async def stream(
        request: Request,
        types: Annotated[str | None, Query(description="Comma-separated event types.")] = None,
        topics: Annotated[
            str | None, Query(description="Comma-separated topic patterns (globs).")
        ] = None,
        backlog: Annotated[
            bool, Query(description="Start from the oldest retained event.")
        ] = False,
        limit: Annotated[int | None, Query(ge=1, description="End after N events.")] = None,
        last_event_id: Annotated[
            str | None, Query(description="Resume after this id (as the header).")
        ] = None,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventStreamResponse:
        """Server-Sent Events: every bus event (type/topic filters), resumable with
        ``Last-Event-ID``; see docs/server.md."""
        hub = _app(request).hub
        if not hub.running:
            raise HTTPException(503, "the event stream is not running")
        resume = last_event_id_header if last_event_id_header is not None else last_event_id
        chunks = hub.open(
            last_event_id=resume,
            backlog=backlog,
            filter=EventFilter.parse(types, topics),
            limit=limit,
        )
        if chunks is None:
            raise HTTPException(503, f"{hub.max_clients} event streams are open already",
                                headers={"Retry-After": "5"})
        return EventStreamResponse(chunks)

    return router


def _control_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["control"])

    @router.get("/auth")
    async def auth(request: Request, _: _Authorized) -> JSONResponse:
        """200 with a valid control token, 401 without: the dashboard checks a pasted token
        here before it enables control buttons."""
        return JSONResponse({"authenticated": True,
                             "token_origin": str(_app(request).token.origin)})

    return router


def _dashboard_router() -> APIRouter:
    router = APIRouter(tags=["dashboard"])

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return router


def create_app(
    platform: Platform,
    *,
    token: str | ControlToken | None = None,
    token_file: Path | None = None,
    replay: int = 10_000,
    ping_interval: float = 15.0,
    retry: float = 1.0,
    lag_interval: float = 0.25,
    max_clients: int = 256,
) -> TickloopApp:
    """The server's app over ``platform``.

    ``token``: the control token (else ``$TICKLOOP_TOKEN``, else one generated and written to
    ``token_file``; see :mod:`tickloop.server.auth`); ``replay``: events each SSE replay ring
    keeps; ``ping_interval``: seconds of silence before an SSE keep-alive; ``retry``: the
    browsers' reconnect delay (s); ``lag_interval``: how often the loop's lag is sampled (s);
    ``max_clients``: how many event streams may be open at once (more get a 503).
    """
    control = token if isinstance(token, ControlToken) else resolve_token(
        token, token_file=token_file)
    hub = EventHub(platform.bus, replay=replay, ping_interval=ping_interval, retry=retry,
                   max_clients=max_clients)
    lag = LoopLagMonitor(interval=lag_interval)
    app = TickloopApp(
        platform, hub, lag, control,
        title="tickloop",
        version=__version__,
        description="The tickloop platform's REST API, event stream and dashboard.",
    )
    app.include_router(_health_router())
    app.include_router(_status_router())
    if platform.rest:
        app.include_router(_markets_router())
    if platform.feeds:
        app.include_router(_books_router())
    if platform.engine is not None:
        app.include_router(bots_router())
    if platform.store is not None:
        app.include_router(history_router())
        app.include_router(backtests_router())
    app.include_router(_events_router())
    app.include_router(_control_router())
    app.include_router(_dashboard_router())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
