"""``serve(app, host, port)``: uvicorn as one task of the platform's own event loop.

uvicorn's signal handlers are not installed (the platform's owner decides what Ctrl-C does) and
its lifespan is off (the app is started here, not by uvicorn). The listening socket is bound here
first, so a bad address or a port in use is a :class:`~tickloop.exceptions.ConfigError` naming
``--host`` / ``--port`` rather than uvicorn's ``sys.exit``, and port 0 gives a free port that
the handle reports. A non-loopback host without a token the user chose is refused before
anything starts (:func:`tickloop.server.auth.check_bind`).

Shutdown, on leaving the ``async with``: the app ends every SSE stream first (so no connection
waits on an endless response), then uvicorn stops accepting, lets requests in flight finish
(at most ``shutdown_timeout`` seconds) and its task is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn

from ..exceptions import ConfigError
from .app import TickloopApp
from .auth import check_bind

__all__ = ["Served", "serve"]

log = logging.getLogger("tickloop.server")


class _Server(uvicorn.Server):
    """uvicorn's server without signal handlers, telling when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


class Served:
    """A running server: ``host``, ``port`` (the real one when 0 was asked), ``url``."""

    def __init__(self, app: TickloopApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Served {self.url}>"


def _bind(host: str, port: int) -> socket.socket:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {port!r}", field="--port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: {exc.strerror}", field="--host") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: already in use on {host}", field="--port") from None
        raise ConfigError(f"--host {host}: cannot listen there ({exc.strerror})",
                          field="--host") from None
    return sock


@contextlib.asynccontextmanager
async def serve(
    app: TickloopApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    shutdown_timeout: int = 5,
    log_level: str = "warning",
) -> AsyncIterator[Served]:
    """Serve ``app`` on ``host:port`` from the running loop until the block is left."""
    check_bind(host, app.token)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level=log_level,
        timeout_graceful_shutdown=shutdown_timeout,
        access_log=False,
    )
    server = _Server(config)
    try:
        await app.start()
        task = asyncio.get_running_loop().create_task(
            server.serve(sockets=[sock]), name=f"tickloop-server-{bound_port}"
        )
    except BaseException:
        sock.close()
        raise
    try:
        listening = asyncio.ensure_future(server.listening.wait())
        done, _ = await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            listening.cancel()
            task.result()  # raises what stopped uvicorn
            raise ConfigError(f"the server on {host}:{bound_port} stopped at start",
                              field="--host")
        log.info("serving on %s:%d", host, bound_port)
        if app.token.path is not None:
            log.info("control token written to %s", app.token.path)  # the path, never the token
        yield Served(app, host, bound_port)
    finally:
        await app.aclose()
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
