"""The platform's web server: REST, a resumable Server-Sent Events stream, /metrics and a live
dashboard, in the same event loop as the bus and the feeds.

.. code-block:: python

    from tickloop.server import Platform, create_app, serve

    app = create_app(Platform(bus, feeds=[feed], rest=[rest]))   # token: $TICKLOOP_TOKEN or a file
    async with serve(app, "127.0.0.1", 8000) as served:           # uvicorn as a task of this loop
        ...                                                       # dashboard at served.url

See :mod:`tickloop.server.app` (the routes), :mod:`tickloop.server.events` (the SSE stream and
its replay rings), :mod:`tickloop.server.metrics`, :mod:`tickloop.server.auth` (the control
token), :mod:`tickloop.server.serve`, and docs/server.md.
"""

from .app import STATIC_DIR, Platform, TickloopApp, create_app
from .auth import (
    TOKEN_ENV,
    ControlToken,
    TokenOrigin,
    check_bind,
    default_token_file,
    is_loopback,
    require_token,
    resolve_token,
)
from .events import MARKET_PATTERNS, EventFilter, EventHub, EventStreamResponse, ReplayRing
from .metrics import LoopLagMonitor, PlatformCollector, make_registry
from .serve import Served, serve

__all__ = [
    "MARKET_PATTERNS",
    "STATIC_DIR",
    "TOKEN_ENV",
    "ControlToken",
    "EventFilter",
    "EventHub",
    "EventStreamResponse",
    "LoopLagMonitor",
    "Platform",
    "PlatformCollector",
    "ReplayRing",
    "Served",
    "TickloopApp",
    "TokenOrigin",
    "check_bind",
    "create_app",
    "default_token_file",
    "is_loopback",
    "make_registry",
    "require_token",
    "resolve_token",
    "serve",
]
