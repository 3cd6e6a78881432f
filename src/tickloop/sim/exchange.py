"""``SimExchange``: the embedded exchange as one async context manager.

.. code-block:: python

    async with SimExchange(seed=7, symbols=["BTC-USD", "ETH-USD"]) as ex:
        ex.ws_url, ex.rest_url      # ws://127.0.0.1:PORT/ws, http://127.0.0.1:PORT/api/v1
        ex.book("BTC-USD")          # the true book: the ground truth tests compare clients with
        await ex.faults.disconnect_all()

It wires the sans-I/O engine and flow to the aiohttp server (server.py) and the fan-out hub
(feed.py). The exchange owns every task and socket it creates: leaving the ``async with`` (or
``stop()``) stops the flow, closes every client connection and the listening socket, and awaits
everything, leaving nothing behind.

The plain ``with`` runs the same exchange on an event loop in a thread of its own, so blocking
code (a sync :class:`~tickloop.Client`, a notebook cell) can talk to it without freezing the
loop that serves it. The attributes are the same; the ground-truth and control methods run on
the exchange's thread when called from another one, and :meth:`run` runs a coroutine there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from aiohttp import web

from .._state import state_dir, write_private
from ..checksums import sim_checksum
from ..exceptions import ConfigError
from ..models import BookLevel, BookSnapshot, Side, Trade
from .auth import KeyStore, SimApiKey
from .candles import CandleAggregator
from .engine import Engine
from .faults import Faults
from .feed import INTERVALS, ExchangeStats, Hub
from .flow import Flow
from .market import MarketSpec, market_for
from .server import API_PREFIX, SimServer

__all__ = ["ExchangeStats", "SimExchange"]

P = ParamSpec("P")
T = TypeVar("T")


def _on_own_thread(method: Callable[P, T]) -> Callable[P, T]:
    """Run ``method`` on the exchange's thread when it runs on one (``with``) and the caller is
    elsewhere: the engine and the hub are owned by that thread's loop."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        ex = args[0]
        assert isinstance(ex, SimExchange)
        loop = ex._thread_loop
        if loop is None or threading.get_ident() == ex._thread_id:
            return method(*args, **kwargs)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(method(*args, **kwargs))
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=30)

    return wrapper


class SimExchange:
    """The embedded exchange: matching engine, synthetic flow, REST + WebSocket server, faults.

    ``rate`` is synthetic-flow steps per second per symbol (each step changes the book, so it is
    also book updates per second); 0 starts with no flow. ``port=0`` picks a free port.
    ``heartbeat`` is the idle interval in seconds before a subscribed connection gets a
    heartbeat; ``token_ttl`` the session-token lifetime in seconds; ``rate_limit_weight`` the
    REST weight budget per key (or client address) per second.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        symbols: Sequence[str] = ("BTC-USD", "ETH-USD"),
        rate: float = 20.0,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat: float = 1.0,
        token_ttl: float = 300.0,
        rate_limit_weight: int = 200,
    ) -> None:
        if isinstance(symbols, str):
            symbols = [s for s in symbols.split(",") if s]
        if not symbols:
            raise ConfigError("at least one symbol is needed", field="symbols")
        specs = []
        for symbol in dict.fromkeys(symbols):
            try:
                specs.append(market_for(symbol))
            except ValueError as exc:
                raise ConfigError(str(exc), field="symbols") from None
        if not rate >= 0:
            raise ConfigError(f"rate must be >= 0, got {rate!r}", field="rate")
        if not 0 <= port <= 65535:
            raise ConfigError(f"port must be within 0..65535, got {port!r}", field="port")
        if not heartbeat > 0:
            raise ConfigError(f"heartbeat must be > 0, got {heartbeat!r}", field="heartbeat")
        if not token_ttl > 0:
            raise ConfigError(f"token_ttl must be > 0, got {token_ttl!r}", field="token_ttl")
        if rate_limit_weight < 1:
            raise ConfigError(
                f"rate_limit_weight must be >= 1, got {rate_limit_weight!r}",
                field="rate_limit_weight",
            )
        self.seed = seed
        self.symbols = tuple(spec.symbol for spec in specs)
        self.host = host
        self.port = port
        self.rate = float(rate)
        rng = random.Random(seed)
        self._engine = Engine(specs)
        self._flow = Flow(self._engine, rng=rng, symbols=self.symbols)
        ts = time.time_ns()
        for symbol in self.symbols:
            self._flow.seed_book(symbol, ts)
        self.stats = ExchangeStats()
        self._keys = KeyStore(token_ttl=token_ttl)
        self.faults = Faults(
            disconnect=self._disconnect_all,
            skip=self._skip_sequence,
            clock=time.monotonic,
            rng=random.Random(rng.random()),
        )
        self._hub = Hub(
            self._engine,
            self._flow,
            self.faults,
            self.stats,
            symbols=self.symbols,
            rate=self.rate,
            heartbeat=heartbeat,
            candles=CandleAggregator(intervals=INTERVALS),
        )
        self._server = SimServer(
            self._engine,
            self._hub,
            self._keys,
            self.faults,
            self.stats,
            rate_limit_weight=rate_limit_weight,
        )
        self._runner: web.AppRunner | None = None
        # set while the exchange runs on a thread of its own (``with``)
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._thread_stop: asyncio.Event | None = None

    def __repr__(self) -> str:
        state = f"listening on {self.host}:{self.port}" if self._runner else "stopped"
        return f"SimExchange(symbols={list(self.symbols)}, seed={self.seed}, {state})"

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> SimExchange:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> SimExchange:
        """Start the exchange on an event loop in a thread of its own (for blocking code)."""
        if self._runner is not None or self._thread is not None:
            raise ConfigError("the exchange is already running", field="start")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name="tickloop-sim", daemon=True
        )
        self._thread.start()
        try:
            started.result(timeout=30)
        except BaseException:
            self._thread.join(5)
            self._thread = None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thread, loop, stop = self._thread, self._thread_loop, self._thread_stop
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        self._thread = None

    def _thread_main(self, started: concurrent.futures.Future[None]) -> None:
        async def main() -> None:
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                started.set_exception(exc)
                return
            self._thread_loop = asyncio.get_running_loop()
            self._thread_id = threading.get_ident()
            started.set_result(None)
            try:
                await self._thread_stop.wait()
            finally:
                self._thread_loop = None
                self._thread_id = None
                await self.stop()

        asyncio.run(main())

    def run(self, work: Awaitable[T]) -> T:
        """Run ``work`` (e.g. ``ex.faults.disconnect_all()``) on the exchange's own thread and
        return its result; for the ``with`` form, from blocking code."""
        loop = self._thread_loop
        if loop is None:
            if asyncio.iscoroutine(work):
                work.close()
            raise ConfigError(
                "run() is for an exchange started with `with SimExchange(...)`; "
                "in async code, await the call", field="run")

        async def wrap() -> T:
            return await work

        coro: Coroutine[Any, Any, T] = wrap()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    async def start(self) -> None:
        """Bind the server and start the flow."""
        if self._runner is not None:
            raise ConfigError("the exchange is already running", field="start")
        runner = web.AppRunner(
            self._server.app(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}", field="port"
            ) from None
        server = site._server
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or ()
            for sock in sockets:
                self.port = int(sock.getsockname()[1])
                break
        self._runner = runner
        self._hub.start()

    async def stop(self) -> None:
        """Stop the flow, close every connection and the listening socket (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            await self._hub.stop()
            await self._hub.close_all()
        finally:
            await runner.cleanup()

    @property
    def running(self) -> bool:
        return self._runner is not None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}/ws"

    @property
    def rest_url(self) -> str:
        return f"http://{self._url_host}:{self.port}{API_PREFIX}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    # -- ground truth ------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        return self._engine

    def _spec(self, symbol: str) -> MarketSpec:
        spec = self._engine.markets.get(symbol)
        if spec is None:
            raise ConfigError(f"unknown symbol {symbol!r}", field="symbol")
        return spec

    @_on_own_thread
    def trades(self, symbol: str) -> list[Trade]:
        """Every trade of ``symbol`` so far, in exchange order."""
        spec = self._spec(symbol)
        return [
            Trade(
                venue="sim",
                symbol=symbol,
                id=t.trade_id,
                price=Decimal(spec.price_text(t.price)),
                size=Decimal(spec.size_text(t.size)),
                side=Side(t.taker_side),
                ts=t.ts,
            )
            for t in self._engine.trades(symbol)
        ]

    @_on_own_thread
    def book(self, symbol: str) -> BookSnapshot:
        """The whole true book of ``symbol`` now, with its sequence number and checksum."""
        spec = self._spec(symbol)
        bids, asks = self._engine.depth(symbol)
        bid_text = [(spec.price_text(p), spec.size_text(s)) for p, s in bids]
        ask_text = [(spec.price_text(p), spec.size_text(s)) for p, s in asks]
        return BookSnapshot(
            venue="sim",
            symbol=symbol,
            bids=tuple(BookLevel(Decimal(p), Decimal(s)) for p, s in bid_text),
            asks=tuple(BookLevel(Decimal(p), Decimal(s)) for p, s in ask_text),
            sequence=self._engine.seq(symbol),
            checksum=sim_checksum(bid_text[:10], ask_text[:10]),
            ts=time.time_ns(),
        )

    # -- control -----------------------------------------------------------------------------
    @_on_own_thread
    def pause_flow(self) -> None:
        """Stop the synthetic order flow (the book stays as it is)."""
        self._hub.paused = True

    @_on_own_thread
    def resume_flow(self) -> None:
        self._hub.paused = False

    @property
    def flow_paused(self) -> bool:
        return self._hub.paused

    @_on_own_thread
    def step(self, symbol: str, n: int = 1) -> None:
        """Run ``n`` synthetic-flow steps on ``symbol`` now (handy with the flow paused)."""
        self._spec(symbol)
        for _ in range(n):
            self._hub.step(symbol, time.time_ns())

    @_on_own_thread
    def create_api_key(self) -> SimApiKey:
        """A new API key whose account holds 1,000,000 of each quote and 100 of each base asset."""
        key = self._keys.create()
        self._engine.open_account(key.key_id)  # the engine's default funding is the protocol's
        return key

    def _skip_sequence(self, symbol: str) -> None:
        self._spec(symbol)
        self._engine.skip_sequence(symbol)

    async def _disconnect_all(self) -> int:
        return await self._hub.disconnect_all()


# ------------------------------------------------------------------------------ command line


def run_cli(
    *,
    host: str,
    port: int,
    seed: int | None,
    symbols: str,
    rate: float,
    heartbeat: float,
    faults: Sequence[str] = (),
) -> None:
    """``tickloop sim``: run an exchange until Ctrl-C. A bad argument raises ConfigError whose
    message names the option (the CLI prints it on one line and exits 2)."""
    try:
        ex = SimExchange(
            seed=seed,
            symbols=[s.strip() for s in symbols.split(",") if s.strip()],
            rate=rate,
            host=host,
            port=port,
            heartbeat=heartbeat,
        )
        for spec in faults:
            ex.faults.apply_spec(spec)
    except ConfigError as exc:
        option = "--" + (exc.field or "option").replace("_", "-")
        raise ConfigError(f"{option}: {exc.message}", field=exc.field) from None
    try:
        asyncio.run(_serve(ex))
    except KeyboardInterrupt:
        print("tickloop sim: stopped", file=sys.stderr)


async def _serve(ex: SimExchange) -> None:
    try:
        await ex.start()
    except ConfigError as exc:
        raise ConfigError(f"--{exc.field}: {exc.message}", field=exc.field) from None
    try:
        key = ex.create_api_key()
        print(f"tickloop sim: {', '.join(ex.symbols)} (seed {ex.seed}, {ex.rate:g} steps/s)")
        print(f"  WebSocket  {ex.ws_url}")
        print(f"  REST       {ex.rest_url}")
        # The secret goes to a file only the user can read, never to the terminal or a log.
        key_file = state_dir() / "sim-key.json"
        write_private(key_file, json.dumps({"key_id": key.key_id, "secret": key.secret}))
        print(f"  demo key   {key.key_id}  secret in {key_file} (only you can read it)")
        print("Ctrl-C stops it.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):  # SIGTERM stops it cleanly too
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await ex.stop()
