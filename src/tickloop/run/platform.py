"""The platform run: exchange (or venue), bus, store, bots and web server in one event loop.

:func:`run_platform` starts, in order and each shown as a progress step, the embedded exchange
(unless the venue has a URL), the bus, the venue's StreamClient and REST client, the
:class:`~tickloop.runtime.Engine` with the bots on paper (it opens the store), the market data
the dashboard needs beyond what the bots asked for, and the server; it prints the dashboard's
address and keeps a live summary until it is told to stop. Everything is entered in one
:class:`~contextlib.AsyncExitStack`, so shutdown runs the same steps backwards: the server
ends its event streams and closes its socket, the engine stops the bots (their open orders
cancelled), saves their states and flushes and closes the store, then the feed, the bus and
the exchange close. Every task started here is awaited there.

Stopping: SIGTERM, ``--duration`` and the first Ctrl-C stop it gracefully (exit status 0, 0
and 130); shutdown is bounded by ``shutdown_timeout`` seconds (5) after which what remains is
cancelled. A second Ctrl-C cancels at once. ``--duration`` counts from the start of the
command: when it ends during start-up (a venue that does not answer), the run fails with one
line saying which step was still under way.

Errors: anything wrong with the configuration, the venue, the store, the bus backend or the
address is one :class:`~tickloop.exceptions.TickloopError` line (the CLI prints it); the
venue's own errors are rephrased to say which venue, at which address, during which step.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from .._state import state_dir, write_private
from ..bus import Bus
from ..client.rest import AsyncClient
from ..client.stream import StreamClient
from ..exceptions import (
    ConfigError,
    NetworkError,
    StreamError,
    TickloopError,
)
from ..models import Disconnected
from ..runtime.engine import Engine
from ..runtime.store import Store
from ..server import Platform, create_app, serve
from ..server.auth import TOKEN_ENV
from ..venues import stream_codec
from .config import Prepared
from .summary import PlatformView

__all__ = ["DEFAULT_PORT", "PORT_TRIES", "RunOutcome", "instance_file", "run_platform"]

#: The server's port when none is given, and how many are tried from it when it is taken.
DEFAULT_PORT = 8000
PORT_TRIES = 20


def instance_file() -> Path:
    """Where a running ``tickloop run`` writes its address (for ``tickloop bots``, ...):
    ``$XDG_STATE_HOME/tickloop/instance.json``."""
    return state_dir() / "instance.json"


@dataclass
class RunOutcome:
    """How a run ended: ``exit_code`` (0 SIGTERM or --duration, 130 Ctrl-C) and why."""

    exit_code: int = 0
    reason: str = "duration"
    url: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Progress:
    step: str = ""  # the start-up step under way
    last_disconnect: str = ""  # why the venue's last connection attempt failed


class _Stopper:
    """Turns signals and the deadline into one stop request, remembered with its exit code."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.code = 0
        self.reason = ""
        self.starting: asyncio.Task[Any] | None = None  # the start-up, cancelled by a stop
        self.hard: asyncio.Task[Any] | None = None  # the whole run, cancelled by a 2nd Ctrl-C

    def stop(self, code: int, reason: str) -> None:
        if self.event.is_set():
            if reason == "interrupt" and self.hard is not None:
                self.hard.cancel()  # a second Ctrl-C: no more waiting
            return
        self.code, self.reason = code, reason
        self.event.set()
        if self.starting is not None and not self.starting.done():
            self.starting.cancel()


def _write_instance(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data))


def _remove_instance(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def _engine_channels(prepared: Prepared) -> dict[str, set[str]]:
    """What the engine publishes on the bus for its bots (it attaches the feed itself): every
    traded symbol's trades, and the books and tickers bots ask for. The platform attaches the
    rest, since two attachments of one stream would publish each event twice."""
    out: dict[str, set[str]] = {"trades": set(), "books": set(), "tickers": set()}
    for bot in prepared.bots:
        for symbol in bot.symbols:
            out["trades"].add(symbol)
            for ch in bot.channels:
                if ch in ("books", "tickers"):
                    out[ch].add(symbol)
    return out


@contextlib.asynccontextmanager
async def _step(console: Console, text: str, current: _Progress) -> AsyncIterator[None]:
    current.step = text
    started = time.monotonic()
    with console.status(text + " ...", spinner="dots"):
        yield
    console.print(f"[green]✓[/] {text} [dim]({time.monotonic() - started:.1f} s)[/]",
                  soft_wrap=True)


def _venue_error(exc: TickloopError, venue: str, url: str, timeout: float,
                 current: _Progress) -> TickloopError:
    """A venue's failure at start as one line naming the venue and the address."""
    if isinstance(exc, StreamError):
        return type(exc)(f"venue {venue} at {url} refused: {exc.message}")
    why = f" (last: {current.last_disconnect})" if current.last_disconnect else ""
    if isinstance(exc, NetworkError):
        hint = " - is `tickloop sim` running there?" if venue == "sim" else ""
        return NetworkError(f"cannot reach venue {venue} at {url}: no answer within "
                            f"{timeout:g} s{why}{hint}")
    return exc


async def run_platform(
    prepared: Prepared,
    *,
    duration: float | None = None,
    console: Console | None = None,
    refresh: float = 4.0,
    line_every: float = 5.0,
    shutdown_timeout: float = 5.0,
    install_signals: bool = True,
    on_ready: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run the platform until SIGTERM, Ctrl-C, ``duration`` seconds, or cancellation."""
    console = console or Console()
    loop = asyncio.get_running_loop()
    stopper = _Stopper()
    outcome = RunOutcome()
    current = _Progress()
    started_at = loop.time()
    if install_signals:
        loop.add_signal_handler(signal.SIGTERM, stopper.stop, 0, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, stopper.stop, 130, "interrupt")
    deadline = None
    if duration is not None:
        deadline = loop.call_at(started_at + duration, stopper.stop, 0, "duration")
    stopper.hard = asyncio.current_task()
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(console.print, "[dim]stopped[/]")
            starting = asyncio.ensure_future(_start(prepared, stack, console, current,
                                                    duration, started_at))
            stopper.starting = starting
            try:
                view = await starting
            except asyncio.CancelledError:
                if not stopper.event.is_set():
                    raise
                if stopper.reason == "duration":
                    why = f"; last: {current.last_disconnect}" if current.last_disconnect \
                        else ""
                    raise NetworkError(f"--duration {duration:g} s ended before the platform "
                                       f"had started ({current.step}{why})") from None
                outcome.exit_code, outcome.reason = stopper.code, stopper.reason
                return outcome
            stopper.starting = None
            outcome.url = view.dashboard
            outcome.timings["start"] = loop.time() - started_at
            if on_ready is not None:
                on_ready(view.dashboard)
            await _show(view, console, stopper.event, refresh, line_every)
            outcome.exit_code, outcome.reason = stopper.code, stopper.reason
            console.print(f"stopping ({stopper.reason}) ...")
            stopped_at = loop.time()
            # bounded shutdown: the exit stack's steps run under one timeout
            try:
                async with asyncio.timeout(shutdown_timeout):
                    await stack.aclose()
            except TimeoutError:
                console.print(f"[red]shutdown took over {shutdown_timeout:g} s: the rest was "
                              "cancelled[/]")
            outcome.timings["stop"] = loop.time() - stopped_at
    finally:
        if deadline is not None:
            deadline.cancel()
        if install_signals:
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)
    return outcome


async def _start(prepared: Prepared, stack: contextlib.AsyncExitStack, console: Console,
                 current: _Progress, duration: float | None,
                 started_at: float) -> PlatformView:
    config = prepared.config
    venue = config.venue
    symbols = config.symbols
    loop = asyncio.get_running_loop()

    ws_url = venue.url or ""
    rest_url = venue.rest_url
    if prepared.embedded:
        from ..sim import SimExchange

        async with _step(console, "starting the embedded exchange", current):
            ex = SimExchange(seed=venue.seed, symbols=symbols, rate=venue.rate)
            await stack.enter_async_context(ex)
        ws_url, rest_url = ex.ws_url, ex.rest_url
    elif not ws_url:
        ws_url = StreamClient(venue.name).url
    elif rest_url is None:
        # where the venue serves REST beside its stream (the sim: ws://h:p/ws -> .../api/v1)
        rest_url = stream_codec(venue.name).rest_url(ws_url)

    async with _step(console, "opening the bus", current):
        try:
            bus = Bus(config.bus.url or None, name="tickloop-run")
        except ConfigError as exc:
            raise ConfigError(f"bus.url: {exc.message}", field="bus.url") from None
        await stack.enter_async_context(bus)

    timeout = venue.connect_timeout
    if duration is not None:  # never wait past the deadline
        timeout = max(0.1, min(timeout, duration - (loop.time() - started_at)))
    feed = StreamClient(venue.name, url=ws_url, connect_timeout=timeout,
                        subscribe_timeout=timeout)
    def remember(event: Any) -> None:
        if isinstance(event, Disconnected):
            current.last_disconnect = event.reason

    await stack.enter_async_context(feed)
    await feed.subscribe_status(remember)
    rest: list[AsyncClient] = []
    if rest_url:
        client = AsyncClient(venue.name, url=rest_url, timeout=timeout)
        await stack.enter_async_context(client)
        rest.append(client)

    try:
        prepared.store_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"store.path: cannot make {prepared.store_path.parent} "
                          f"({exc.strerror})", field="store.path") from None
    async with _step(console, f"opening the store {prepared.store_path}", current):
        store = Store(prepared.store_path)
        await stack.enter_async_context(store)  # closed after the engine flushed it
    engine_config = config.engine
    engine = Engine(
        prepared.bots, venue=venue.name, feed=feed, bus=bus, store=store,
        risk=prepared.risk, cash=engine_config.cash, equity_every=engine_config.equity_every,
        breaker_errors=engine_config.breaker_errors,
        breaker_window=engine_config.breaker_window,
        call_timeout=engine_config.call_timeout, stagger=engine_config.stagger,
    )
    for bot_id, limits in prepared.bot_risk.items():
        engine.risk.set_limits(bot_id, limits)
    server = config.server
    # the app is built before the bots run: building FastAPI's routes takes the loop a while
    app = create_app(
        Platform(bus, feeds=[feed], rest=rest, engine=engine, store=store),
        token=server.token or None,
        token_file=prepared.token_file,
        replay=server.replay,
    )
    names = ", ".join(b.id for b in prepared.bots) or "no bots"
    async with _step(console, f"connecting to {venue.name} at {ws_url} and starting the "
                     f"bots ({names}) on paper", current):
        try:
            await stack.enter_async_context(engine)
        except TickloopError as exc:
            raise _venue_error(exc, venue.name, ws_url, timeout, current) from None

    async with _step(console, "subscribing the dashboard's market data", current):
        taken = _engine_channels(prepared)
        try:
            link = await bus.attach(
                feed,
                trades=[s for s in symbols if s not in taken["trades"]],
                books=[s for s in symbols if s not in taken["books"]],
                tickers=[s for s in symbols if s not in taken["tickers"]],
                book_interval=250, status=False)
        except TickloopError as exc:
            raise _venue_error(exc, venue.name, ws_url, timeout, current) from None
        stack.push_async_callback(link.aclose)

    async with _step(console, f"starting the server on {server.host}", current):
        served = None
        first = DEFAULT_PORT if server.port is None else server.port
        tries = PORT_TRIES if server.port is None else 1
        for n in range(tries):
            try:
                served = await stack.enter_async_context(
                    serve(app, server.host, first + n, shutdown_timeout=2))
                break
            except ConfigError as exc:
                if exc.field != "--port" or "in use" not in exc.message or n == tries - 1:
                    if exc.field == "--port" and server.port is None:
                        raise ConfigError(f"--port: {first}..{first + n} are all in use on "
                                          f"{server.host}", field="--port") from None
                    raise
        assert served is not None
    if served.port != first and server.port is None:
        console.print(f"[yellow]port {first} is taken: serving on {served.port}[/]")

    where = instance_file()
    token_path = app.token.path
    with contextlib.suppress(OSError):
        _write_instance(where, {"url": served.url, "pid": os.getpid(),
                                "token_file": str(token_path) if token_path else None})
        stack.callback(_remove_instance, where)

    # Everything start-up made (imports, the app, the bots) is long-lived: moved out of the
    # collector's generations, a full collection no longer walks it and stalls the loop for
    # tens of ms (docs/bus-redis.md measured it).
    gc.freeze()
    stack.callback(gc.unfreeze)

    console.print(f"[bold]dashboard: {served.url}[/]")
    if token_path is not None:
        console.print(f"control token: in {token_path} (only you can read it)")
    else:
        origin = TOKEN_ENV if str(app.token.origin) == "environment" else "server.token"
        console.print(f"control token: from {origin}")
    console.print(f"store: {prepared.store_path}   Ctrl-C stops")

    view = PlatformView(symbols, venue=venue.name, url=ws_url, engine=engine, feed=feed,
                        dashboard=served.url)
    view.connected = all(s.connected for s in feed.sessions)
    subs = [
        bus.subscribe(f"trade.{venue.name}.*", handler=view.on_trade_event,
                      name="tickloop-summary-trades"),
        bus.subscribe(f"ticker.{venue.name}.*", handler=view.on_ticker_event,
                      name="tickloop-summary-tickers"),
        bus.subscribe("status.*", handler=view.on_status_event,
                      name="tickloop-summary-status"),
    ]
    for sub in subs:
        stack.callback(sub.close)
    return view


async def _show(view: PlatformView, console: Console, stop: asyncio.Event, refresh: float,
                line_every: float) -> None:
    """The live summary until ``stop``: rich Live on a terminal, else a line now and then."""
    feed = view.feed

    async def wait(seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
        return stop.is_set()

    if console.is_terminal:
        with Live(view.render(), console=console, refresh_per_second=refresh,
                  transient=False) as live:
            while not await wait(1.0 / refresh):
                now = time.monotonic()
                view.sample_rate(feed.stats()["frames"], now)
                live.update(view.render(now))
        return
    while not await wait(line_every):
        view.sample_rate(feed.stats()["frames"], time.monotonic())
        console.print(view.line(), highlight=False, soft_wrap=True)
    sys.stdout.flush()
