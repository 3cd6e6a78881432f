"""The ``Engine``: hosts many bots on one event loop, each isolated, scheduled and risk-checked.

.. code-block:: python

    async with Engine([MyBot("b1"), MyBot("b2")], venue="sim", url=ex.ws_url) as engine:
        await engine.run(seconds=10)
        engine.status("b1")         # "running", "paused", "stopped" or "error"

Theory of operation.

* **One feed, one bus.** The engine opens one :class:`~tickloop.StreamClient` for its venue and
  publishes its streams on the bus (:meth:`tickloop.bus.Bus.attach`): one upstream subscription
  per symbol and channel, whatever the number of bots. It also keeps the live local book of
  every symbol a bot trades (the paper executor fills against it; ``bot.book(symbol)``).
  That is the live :class:`~tickloop.runtime.source.StreamSource`; ``source=`` gives the engine
  another :class:`~tickloop.runtime.source.MarketSource` instead (the backtest's candle feed),
  publishing on the same topics.
* **Fan-out without a task per event.** The engine subscribes once per market channel and
  routes each event to the bots of its topic in order, in one pass over a tuple made when the
  bots started (per bot: its handler, whether it is a coroutine function, its stats), with one
  clock read per bot call that ends one call's accounting and starts the next (that pass is
  :mod:`tickloop.runtime.fanout`, compiled with mypyc where the install can). A plain
  function handler is called inline. A coroutine handler is started inline too and driven
  eagerly: if it finishes without waiting on anything (the common case: a bot that updates
  its indicators) it costs no task at all; if it waits (an order placed, a sleep), the rest
  of it runs in a task, and the bot's later events wait in its own bounded mailbox
  (``bot_buffer`` events; full, it drops its oldest, counted in ``stats(bot)["dropped"]`` and
  announced as :class:`~tickloop.models.BusDropped` naming the bot) until that handler is
  done, so each bot sees its events in order and a slow bot never delays the others. A bot's
  own order events and fills take the same path.
* **Isolation.** Every handler call is made the same way (inline in the market fan-out, through
  one wrapper elsewhere): it names the running bot in the loop monitor's slot (for an async
  handler, around each step of the coroutine), accounts the call's time to the bot, and turns
  an exception into a :class:`~tickloop.models.BotError` on ``bot.error.<id>`` with the
  traceback; the bot carries on. ``breaker_errors`` errors within
  ``breaker_window`` seconds trip the bot's circuit breaker: the bot stops receiving events and
  ticks (status ``"error"``), :class:`~tickloop.models.CircuitBreakerFired` is published on
  ``bot.breaker.<id>``, and :meth:`Engine.resume` restarts it.
* **Schedule.** ``tick()`` runs on the bot's ``every``/``cron`` schedule
  (:mod:`tickloop.runtime.scheduler`) on the engine's clock; the first ticks of the bots are
  spread over ``stagger`` seconds. An async ``tick()`` is driven eagerly, as handlers are (a
  task only once it waits). A tick still running when the next is due is not started twice
  (counted in ``stats(bot)["overruns"]``).
* **Orders.** ``bot.buy/sell/place`` go through :class:`~tickloop.runtime.risk.RiskEngine`
  first; a refusal is a :class:`~tickloop.models.RiskRejected` on ``risk.rejected.<id>`` and the
  order never reaches the executor. Accepted orders go to the executor (paper by default)
  within ``call_timeout`` seconds. Order events and fills are published on ``bot.order.<id>``
  and ``bot.fill.<id>``, positions on ``bot.position.<id>``, equity snapshots (every
  ``equity_every`` seconds) on ``bot.equity.<id>``, signals on ``bot.signal.<id>``.
* **Loop health.** :class:`~tickloop.runtime.monitor.LoopMonitor` publishes
  :class:`~tickloop.models.LoopBlocked` on ``loop.blocked`` naming the bot whose handler stalled
  the loop.
* **Store.** With ``store=path``, every ``bot.*``, ``risk.*`` and ``loop.*`` event is written
  by a lossless subscriber in batched transactions, bot states are saved with each equity
  snapshot and at shutdown, and at start states are reloaded into ``bot.state`` and stored
  fills replayed into the bots' portfolios. :meth:`Engine.flush` waits for the writer.
* **Notifiers** (``notifiers=[WebhookNotifier(...), TelegramNotifier(...)]``) are started on
  the bus and closed at shutdown (:mod:`tickloop.runtime.notify`).
* **Client order ids** of orders placed without one are ``<bot>-<random hex>``, or what
  ``client_ids(bot)`` returns (a backtest passes a counter, so that its runs are identical).
* **Shutdown** (leaving ``async with``): ticks stop, each bot's open orders are cancelled
  (``cancel_on_stop``), ``on_stop`` runs, states are saved, the feed is closed, the store
  flushed and closed, the process pool shut down; every task the engine started is awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import multiprocessing
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..book.engine import OrderBook
from ..bus import Bus, Event, Subscription
from ..client.stream import StreamClient
from ..exceptions import ConfigError, TimeoutError
from ..models import (
    BookSnapshot,
    BotError,
    BusDropped,
    Candle,
    CircuitBreakerFired,
    Fill,
    LoopBlocked,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    Position,
    RiskRejected,
    Side,
    Signal,
    Ticker,
    TimeInForce,
    Trade,
)
from .bot import Bot, declared_handlers
from .clock import Clock, LoopClock
from .executor import Executor, PaperExecutor
from .fanout import Fanout, Gate, Router, Slot
from .monitor import HandlerStats, LoopMonitor, Running
from .notify import Notifier
from .portfolio import Portfolio
from .risk import Exposure, OrderIntent, RiskEngine, RiskLimits
from .scheduler import Cron, Due, Interval, Scheduler, ScheduleRunner, stagger
from .source import MarketSource, MarketWants, StreamSource
from .store import Record, Store

__all__ = ["BotStatus", "Engine"]

log = logging.getLogger("tickloop.runtime")
_R = TypeVar("_R")
_ZERO = Decimal(0)

_HANDLER_OF: dict[type[Any], str] = {
    Trade: "on_trade",
    BookSnapshot: "on_book",
    Candle: "on_candle",
    Ticker: "on_ticker",
    OrderEvent: "on_order",
    Fill: "on_fill",
}
#: The payload class each market handler takes (what a market topic's fan-out is made for).
_MODEL_OF: dict[str, type[Any]] = {
    "on_trade": Trade,
    "on_book": BookSnapshot,
    "on_candle": Candle,
    "on_ticker": Ticker,
}
_EQUITY_JOB = ("tickloop", "equity")
#: Engine-wide limits that check nothing (compared with on every order: made once).
_NO_LIMITS = RiskLimits()
#: What an order's risk check is given when its limits read no exposure (RiskEngine.reads).
_NO_EXPOSURE = Exposure(position=_ZERO, open_buy=_ZERO, open_sell=_ZERO, open_orders=0,
                        daily_pnl=_ZERO)
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET


class BotStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # paused by the user: resume() restarts it
    STOPPED = "stopped"
    ERROR = "error"  # the circuit breaker fired (or on_start failed): resume() restarts it


_RUNNING = BotStatus.RUNNING  # read on every event and tick: a module constant is cheaper


_NOTHING: Any = object()  # _Attributed: no eager first step was taken


class _Attributed:
    """Drives a bot's coroutine step by step, naming the bot in the monitor's slot during each
    step (a stall inside any step is then the bot's), and accounting each step's time."""

    __slots__ = ("bot", "coro", "first", "handler", "running", "stats")

    def __init__(self, coro: Coroutine[Any, Any, Any], running: Running, bot: str,
                 handler: str, stats: HandlerStats, first: Any = _NOTHING) -> None:
        self.coro = coro
        self.running = running
        self.bot = bot
        self.handler = handler
        self.stats = stats
        self.first = first  # what the coroutine yielded at an eager first step, if it ran

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        running = self.running
        send: Any = None
        error: BaseException | None = None
        if self.first is not _NOTHING:
            try:
                send = yield self.first
            except BaseException as exc:
                error = exc
        while True:
            previous = running.enter(self.bot, self.handler)
            try:
                yielded = coro.throw(error) if error is not None else coro.send(send)
            except StopIteration as stop:
                return stop.value
            finally:
                running.leave(previous, self.stats)
            try:
                send = yield yielded
                error = None
            except BaseException as exc:  # delivered into the coroutine at the next step
                send = None
                error = exc


class _Host:
    """Everything the engine keeps for one bot."""

    __slots__ = (
        "_status",
        "announced",
        "bot",
        "dropped",
        "errors",
        "gate",
        "handlers",
        "id",
        "is_async",
        "overruns",
        "pending",
        "portfolio",
        "stats",
        "subscription",
        "tasks",
        "tick",
        "tick_task",
    )

    def __init__(self, bot: Bot, cash: Decimal, venue: str) -> None:
        self.bot = bot
        self.id = bot.id
        self.handlers = dict(declared_handlers(bot))
        self.is_async = {name: inspect.iscoroutinefunction(fn)
                         for name, fn in self.handlers.items()}
        #: What the market fan-out reads of the bot: kept in step by ``status`` and ``busy``.
        self.gate = Gate()
        self._status = BotStatus.STOPPED
        self.stats: dict[str, HandlerStats] = {name: HandlerStats() for name in self.handlers}
        #: ``tick``'s handler, whether it is a coroutine function, and its stats (read on every
        #: tick: one attribute instead of three dict lookups); None without a ``tick``.
        self.tick: tuple[Callable[[], Any], bool, HandlerStats] | None = (
            (self.handlers["tick"], self.is_async["tick"], self.stats["tick"])
            if "tick" in self.handlers else None)
        self.errors: deque[float] = deque()
        self.portfolio = Portfolio(cash=cash, bot=bot.id, venue=venue)
        self.subscription: Subscription | None = None
        self.tick_task: asyncio.Task[bool] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.overruns = 0
        self.pending: deque[tuple[str, Any]] = deque()
        self.dropped = 0
        self.announced = 0

    @property
    def status(self) -> BotStatus:
        return self._status

    @status.setter
    def status(self, value: BotStatus) -> None:
        self._status = value
        self.gate.running = value is BotStatus.RUNNING

    @property
    def busy(self) -> bool:
        """A coroutine handler is suspended: events wait in ``pending``."""
        return self.gate.busy

    @busy.setter
    def busy(self, value: bool) -> None:
        self.gate.busy = value


class _TopicRoute:
    """The bots of one market topic, in the order they were started, and the fan-out that
    calls them (:class:`~tickloop.runtime.fanout.Fanout`; its ``slots``, a tuple rebuilt on
    every change, so a dispatch in progress is never disturbed by a bot joining or leaving)."""

    __slots__ = ("fanout", "hosts", "name")

    def __init__(self, name: str, fanout: Fanout) -> None:
        self.name = name
        self.hosts: list[_Host] = []
        self.fanout = fanout

    def add(self, host: _Host) -> None:
        if host not in self.hosts:
            self.hosts.append(host)
            self._rebuild()

    def remove(self, host: _Host) -> None:
        if host in self.hosts:
            self.hosts.remove(host)
            self._rebuild()

    def _rebuild(self) -> None:
        name = self.name
        self.fanout.slots = tuple(
            Slot(h, h.id, h.handlers[name], h.is_async[name], h.stats[name], h.gate)
            for h in self.hosts)


class Engine:
    """Hosts bots on one loop (see the module docstring for what it does, in order)."""

    def __init__(
        self,
        bots: Iterable[Bot],
        *,
        venue: str = "sim",
        url: str | None = None,
        feed: StreamClient | None = None,
        feed_options: dict[str, Any] | None = None,
        source: MarketSource | None = None,
        bus: Bus | None = None,
        clock: Clock | None = None,
        executor: Executor | str = "paper",
        store: str | Path | Store | None = None,
        risk: RiskLimits | None = None,
        default_risk: RiskLimits | None = None,
        cash: Decimal | str | int = 10_000,
        stagger: float = 1.0,
        call_timeout: float = 30.0,
        breaker_errors: int = 5,
        breaker_window: float = 60.0,
        bot_buffer: int = 10_000,
        book_depth: int = 10,
        equity_every: float = 60.0,
        monitor_interval: float = 0.05,
        block_threshold: float = 0.1,
        cancel_on_stop: bool = True,
        offload_workers: int | None = None,
        notifiers: Iterable[Notifier] = (),
        client_ids: Callable[[str], str] | None = None,
    ) -> None:
        hosts: dict[str, _Host] = {}
        if source is not None and (feed is not None or url is not None or feed_options):
            raise ConfigError("give a market source, or a feed / url / feed_options, not both",
                              field="source")
        try:
            start_cash = Decimal(str(cash))
        except InvalidOperation:
            raise ConfigError(f"cash {cash!r} is not a number", field="cash") from None
        for bot in bots:
            if not isinstance(bot, Bot):
                raise ConfigError(f"{bot!r} is not a Bot", field="bots")
            if bot.id in hosts:
                raise ConfigError(f"two bots have the id {bot.id!r}", field="bots")
            if bot._engine is not None:
                raise ConfigError(f"bot {bot.id!r} already belongs to an engine", field="bots")
            hosts[bot.id] = _Host(bot, start_cash, venue)
        for name, value in (("stagger", stagger), ("equity_every", equity_every)):
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value!r}", field=name)
        if not call_timeout > 0:
            raise ConfigError(f"call_timeout must be > 0, got {call_timeout!r}",
                              field="call_timeout")
        if breaker_errors < 1:
            raise ConfigError(f"breaker_errors must be >= 1, got {breaker_errors!r}",
                              field="breaker_errors")
        if not breaker_window > 0:
            raise ConfigError(f"breaker_window must be > 0, got {breaker_window!r}",
                              field="breaker_window")
        if isinstance(executor, str):
            if executor != "paper":
                raise ConfigError(f"unknown executor {executor!r}: 'paper', or an Executor "
                                  "such as tickloop.runtime.LiveExecutor(credentials, ...)",
                                  field="executor")
            executor = PaperExecutor()
        self.venue = venue
        self.url = url
        self._hosts = hosts
        self._feed = feed
        self._own_feed = feed is None
        self._source: MarketSource | None = source
        self._client_ids = client_ids
        self._feed_options = dict(feed_options or {})
        self._bus = bus
        self._own_bus = bus is None
        self._clock = clock
        self.executor = executor
        self._eager = bool(getattr(executor, "eager", False))
        self._store_arg = store
        self.store: Store | None = None
        self.risk = RiskEngine(default_limits=default_risk, global_limits=risk)
        for host in hosts.values():
            if host.bot.risk is not None:
                self.risk.set_limits(host.id, host.bot.risk)
        self.stagger = float(stagger)
        self.call_timeout = float(call_timeout)
        self.breaker_errors = breaker_errors
        self.breaker_window = float(breaker_window)
        self.bot_buffer = bot_buffer
        self.book_depth = book_depth
        self.equity_every = float(equity_every)
        self.cancel_on_stop = cancel_on_stop
        self._offload_workers = offload_workers
        self.notifiers = list(notifiers)
        self._pool: ProcessPoolExecutor | None = None
        self.running = Running()
        self._monitor_options = {"interval": monitor_interval, "threshold": block_threshold}
        self.monitor: LoopMonitor | None = None
        self._runner: ScheduleRunner | None = None
        self._links: list[Any] = []
        self._internal: list[Subscription] = []
        self._store_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_price: dict[str, Decimal] = {}
        self._routes: dict[str, _TopicRoute] = {}
        self._router = Router(self._route_other)
        self._drop_timer: asyncio.TimerHandle | None = None
        self._started = False
        self._closed = False
        self._done: asyncio.Event | None = None

    # ------------------------------------------------------------------ properties

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise ConfigError("the engine is not started", field="bus")
        return self._bus

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            raise ConfigError("the engine is not started", field="clock")
        return self._clock

    @property
    def feed(self) -> StreamClient:
        """The live StreamClient (an engine on another :class:`MarketSource` has none)."""
        if self._feed is None:
            raise ConfigError("the engine is not started" if self._source is None else
                              "this engine's market data come from a source, not a feed",
                              field="feed")
        return self._feed

    @property
    def source(self) -> MarketSource:
        """Where the engine's market data come from (:mod:`tickloop.runtime.source`)."""
        if self._source is None:
            raise ConfigError("the engine is not started", field="source")
        return self._source

    @property
    def bots(self) -> list[Bot]:
        return [h.bot for h in self._hosts.values()]

    def _host(self, bot_id: str) -> _Host:
        try:
            return self._hosts[bot_id]
        except KeyError:
            raise ConfigError(f"no bot {bot_id!r} in this engine", field="bot") from None

    def status(self, bot_id: str) -> str:
        """``"running"``, ``"paused"``, ``"stopped"`` or ``"error"``."""
        return str(self._host(bot_id).status)

    def stats(self, bot_id: str | None = None) -> dict[str, Any]:
        """One bot's handler accounting (per handler: count, total and max seconds, errors),
        tick overruns, and its mailbox (events waiting, events dropped). Without ``bot_id``:
        every bot's, and the loop's lag (p50, p99, max, in seconds) and stalls."""
        if bot_id is None:
            monitor = self.monitor
            p50, p99 = monitor.percentiles(50, 99) if monitor is not None else (0.0, 0.0)
            return {
                "bots": {h.id: self.stats(h.id) for h in self._hosts.values()},
                "loop": {"lag_p50": p50, "lag_p99": p99,
                         "lag_max": monitor.max_lag if monitor is not None else 0.0,
                         "blocked": monitor.blocked if monitor is not None else 0},
                "executor": self.executor.name,
            }
        host = self._host(bot_id)
        return {
            "status": str(host.status),
            "handlers": {name: s.as_dict() for name, s in host.stats.items()},
            "errors": sum(s.errors for s in host.stats.values()),
            "overruns": host.overruns,
            "dropped": host.dropped,
            "pending": len(host.pending),
        }

    def portfolio(self, bot_id: str) -> Portfolio:
        """The bot's portfolio, marked to the latest mid (or trade) prices."""
        portfolio = self._host(bot_id).portfolio
        for symbol in portfolio.symbols():
            price = self._mark_price(symbol)
            if price is not None:
                portfolio.mark(symbol, price)
        return portfolio

    def position(self, bot_id: str, symbol: str) -> Position:
        """The bot's position in ``symbol`` (size, average price, realised PnL: no mark
        needed, so none is taken)."""
        host = self._hosts.get(bot_id)
        if host is None:
            host = self._host(bot_id)  # raises: no such bot
        return host.portfolio.position(symbol)

    def book(self, symbol: str) -> OrderBook | None:
        source = self._source
        return source.book(symbol) if source is not None else None

    def open_orders(self, bot_id: str) -> list[Order]:
        self._host(bot_id)
        return self.executor.open_orders(bot_id)

    def _mark_price(self, symbol: str) -> Decimal | None:
        book = self.book(symbol)
        if book is not None and book.valid:
            mid = book.mid
            if mid is not None:
                return mid
        return self._last_price.get(symbol)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the bus, store and feed, wire every bot, run ``on_start`` and start the
        schedule (``async with`` does it)."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        if self._clock is None:
            self._clock = LoopClock(loop)
        clock = self._clock
        if self._bus is None:
            # A LoopClock's wall time is the system's: then the bus's own derived wall clock
            # (monotonic + an offset it re-reads every few seconds) gives the same stamps for
            # one clock read a publish instead of a Python call and two reads.
            self._bus = Bus() if type(clock) is LoopClock else Bus(wall_clock=clock.now_ns)
        await self._bus.start()
        bus = self._bus
        try:
            for notifier in self.notifiers:
                await notifier.start(bus)
            await self._open_store()
            if self._source is None:
                if self._feed is None:
                    self._feed = StreamClient(self.venue, url=self.url, **self._feed_options)
                self._source = StreamSource(self._feed, own=self._own_feed)
            await self._source.start()
            self.executor.bind(emit=self._on_order_event, book=self.book, clock=clock,
                               venue=self.venue)
            if self.store is not None:
                for host in self._hosts.values():  # the positions the stored fills make
                    for fill in await self.store.fill_models(bot=host.id):
                        host.portfolio.apply_fill(fill)
            await self.executor.start(self.store)
            await self._wire_feed()
            self.monitor = LoopMonitor(self.running, clock, self._on_block,
                                       interval=self._monitor_options["interval"],
                                       threshold=self._monitor_options["threshold"])
            self.monitor.start()
            self._runner = ScheduleRunner(Scheduler(), clock, self._on_due)
            self._runner.start()
            hosts = list(self._hosts.values())
            offsets = stagger(len(hosts), self.stagger)
            for host, offset in zip(hosts, offsets, strict=True):
                await self._start_bot(host, offset)
            if self.equity_every > 0:
                self._runner.add(_EQUITY_JOB, Interval(self.equity_every),
                                 offset=self.equity_every)
        except BaseException:
            await self.close()
            raise
        log.info("engine started: %d bots on %s (bus %s)", len(hosts), self.venue, bus.source)

    async def _open_store(self) -> None:
        arg = self._store_arg
        if arg is None:
            return
        store = arg if isinstance(arg, Store) else Store(arg)
        await store.start()
        self.store = store
        sub = self.bus.subscribe(["bot.*", "risk.*", "loop.*"], maxsize=10_000,
                                 policy="lossless", name="tickloop-store")
        self._store_task = asyncio.get_running_loop().create_task(
            store.consume(sub, bot_of=_bot_of_event), name="tickloop-store")
        self._internal.append(sub)

    async def _wire_feed(self) -> None:
        bus = self.bus
        channels: dict[str, set[str]] = {"trades": set(), "books": set(), "tickers": set()}
        candles: dict[str, set[str]] = {}
        traded: set[str] = set()
        for host in self._hosts.values():
            bot = host.bot
            for symbol in bot.symbols:
                traded.add(symbol)
                for ch in bot.channels:
                    if ch == "candles":
                        candles.setdefault(bot.candle_interval, set()).add(symbol)
                    else:
                        channels[ch].add(symbol)
        await self.source.wire(bus, MarketWants(
            trades=tuple(sorted(channels["trades"])), books=tuple(sorted(channels["books"])),
            tickers=tuple(sorted(channels["tickers"])),
            candles={i: tuple(sorted(s)) for i, s in sorted(candles.items())},
            traded=tuple(sorted(traded)), depth=self.book_depth))
        # trades drive resting paper orders and the last-price marks, before any bot sees them
        self._internal.append(bus.subscribe(f"trade.{self.venue}.*", handler=self._on_trade,
                                            name="tickloop-engine-trades"))
        self._internal.append(bus.subscribe(
            [f"trade.{self.venue}.*", f"book.{self.venue}.*", f"ticker.{self.venue}.*",
             f"candle.{self.venue}.*"], handler=self._router.on_event,
            name="tickloop-engine-bots"))

    async def _start_bot(self, host: _Host, offset: float) -> None:
        bot = host.bot
        bot._engine = self
        # Engine.position(bot.id, ...) without the two calls: a host and its portfolio last as
        # long as the engine
        bot._position_of = host.portfolio.position
        if self.store is not None:
            saved = await self.store.load_state(host.id)
            if isinstance(saved, dict):
                bot.state = saved
        routes = self._routes
        for symbol in bot.symbols:
            for ch in bot.channels:
                if ch == "trades":
                    topic, name = f"trade.{self.venue}.{symbol}", "on_trade"
                elif ch == "books":
                    topic, name = f"book.{self.venue}.{symbol}", "on_book"
                elif ch == "tickers":
                    topic, name = f"ticker.{self.venue}.{symbol}", "on_ticker"
                else:
                    topic = f"candle.{self.venue}.{symbol}.{bot.candle_interval}"
                    name = "on_candle"
                if name in host.handlers:
                    route = routes.get(topic)
                    if route is None:
                        fanout = Fanout(name, self.running, self._queue, self._error,
                                        self._suspended)
                        route = routes[topic] = _TopicRoute(name, fanout)
                        self._router.routes[topic] = (fanout, _MODEL_OF[name])
                    route.add(host)
        if bot.topics and "on_event" in host.handlers:
            deliver = self._deliver

            def on_event(event: Event) -> None:
                if host.status is BotStatus.RUNNING:
                    deliver(host, "on_event", event)

            on_event.__qualname__ = f"bot:{host.id}"
            host.subscription = self.bus.subscribe(list(bot.topics), handler=on_event,
                                                   name=host.id)
        host.status = BotStatus.RUNNING
        if "on_start" in host.handlers and not await self._call(host, "on_start"):
            host.status = BotStatus.ERROR
        schedule: Interval | Cron | None = None
        if bot.every is not None:
            schedule = Interval(bot.every)
        elif bot.cron is not None:
            schedule = Cron(bot.cron)
        if schedule is not None and "tick" in host.handlers:
            assert self._runner is not None
            self._runner.add(host.id, schedule, offset=offset)
            if host.status is not BotStatus.RUNNING:
                self._runner.scheduler.pause(host.id)

    async def run(self, seconds: float | None = None) -> None:
        """Run for ``seconds`` of the engine's clock, or until :meth:`shutdown` (None)."""
        if not self._started:
            await self.start()
        assert self._done is not None
        if seconds is None:
            await self._done.wait()
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waiter = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waiter):
                task.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)

    def shutdown(self) -> None:
        """Make :meth:`run` return (closing is left to ``async with`` / :meth:`close`)."""
        if self._done is not None:
            self._done.set()

    async def close(self) -> None:
        """Graceful shutdown (module docstring). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.shutdown()
        if self._runner is not None:
            self._runner.stop()
        for host in self._hosts.values():
            if host.status is not BotStatus.STOPPED and host.bot._engine is self:
                await self._stop_bot(host)
        await self._save_states()
        for sub in self._internal:
            if sub.name != "tickloop-store":
                sub.close()
        for link in self._links:
            await link.aclose()
        if self._source is not None:
            await self._source.close()
        if self.monitor is not None:
            await self.monitor.stop()
        if self._drop_timer is not None:
            self._drop_timer.cancel()
            self._announce_drops()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for sub in self._internal:
            sub.close()
        if self._store_task is not None:
            await self._store_task
        if self.store is not None and not isinstance(self._store_arg, Store):
            await self.store.close()
        await self.executor.close()
        for notifier in self.notifiers:
            await notifier.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        if self._bus is not None and self._own_bus:
            await self._bus.aclose()

    async def _stop_bot(self, host: _Host) -> None:
        if self._runner is not None and host.id in self._runner.scheduler:
            self._runner.remove(host.id)
        for route in self._routes.values():
            route.remove(host)
        host.pending.clear()
        tick = host.tick_task
        if tick is not None and not tick.done():
            tick.cancel()
        for task in host.tasks:
            task.cancel()
        pending = [t for t in (tick, *host.tasks) if t is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.cancel_on_stop:
            try:
                await self._timed(self.executor.cancel_all(host.id), "cancel_all")
            except Exception as exc:
                self._error(host, "cancel_all", exc)
        if host.subscription is not None:
            await host.subscription.aclose()
        if "on_stop" in host.handlers:
            await self._call(host, "on_stop")
        host.status = BotStatus.STOPPED

    async def _save_states(self) -> None:
        store = self.store
        if store is None or store.db is None:
            return
        ts = self.clock.now_ns()
        await store.write([Record(h.id, h.bot.state, ts=ts, state=True)
                           for h in self._hosts.values()])

    async def flush(self) -> None:
        """Wait until the store has committed every event published so far."""
        store = self.store
        subs = [s for s in self._internal if s.name == "tickloop-store"]
        if store is None or not subs:
            return
        await store.wait_drained(subs[0])

    # ------------------------------------------------------------------ control

    def pause(self, bot_id: str) -> None:
        """Stop delivering events and ticks to the bot (its orders stay)."""
        host = self._host(bot_id)
        if host.status is BotStatus.RUNNING:
            host.status = BotStatus.PAUSED
            if self._runner is not None and host.id in self._runner.scheduler:
                self._runner.scheduler.pause(host.id)

    def resume(self, bot_id: str) -> None:
        """Resume a paused bot, or one whose circuit breaker fired."""
        host = self._host(bot_id)
        if host.status in (BotStatus.PAUSED, BotStatus.ERROR):
            host.status = BotStatus.RUNNING
            host.errors.clear()
            if self._runner is not None and host.id in self._runner.scheduler:
                self._runner.scheduler.resume(host.id)

    async def stop(self, bot_id: str) -> None:
        """Stop one bot for good: ticks end, orders are cancelled (``cancel_on_stop``),
        ``on_stop`` runs."""
        host = self._host(bot_id)
        if host.status is not BotStatus.STOPPED:
            await self._stop_bot(host)

    async def kill(self, bot_id: str | None = None, reason: str = "kill switch") -> None:
        """The kill switch: refuse every new order of ``bot_id`` (every bot when None) and
        cancel their open orders."""
        self.risk.kill(bot_id, reason)
        hosts = [self._host(bot_id)] if bot_id is not None else list(self._hosts.values())
        for host in hosts:
            try:
                await self._timed(self.executor.cancel_all(host.id), "cancel_all")
            except Exception as exc:
                self._error(host, "cancel_all", exc)

    # ------------------------------------------------------------------ calling bots

    def _error(self, host: _Host, handler: str, exc: BaseException) -> None:
        stats = host.stats.get(handler)
        if stats is not None:
            stats.errors += 1
        clock = self.clock
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = f"{type(exc).__name__}: {exc}"
        bus = self._bus
        if bus is not None and not bus.closed:
            bus.publish(f"bot.error.{host.id}", BotError(
                bot=host.id, handler=handler, error=error, traceback=tb, ts=clock.now_ns()))
        now = clock.monotonic()
        errors = host.errors
        errors.append(now)
        while errors and errors[0] <= now - self.breaker_window:
            errors.popleft()
        if len(errors) >= self.breaker_errors and host.status is BotStatus.RUNNING:
            host.status = BotStatus.ERROR
            if self._runner is not None and host.id in self._runner.scheduler:
                self._runner.scheduler.pause(host.id)
            if bus is not None and not bus.closed:
                bus.publish(f"bot.breaker.{host.id}", CircuitBreakerFired(
                    bot=host.id, errors=len(errors), window=self.breaker_window,
                    ts=clock.now_ns()))
            log.warning("bot %s: circuit breaker fired after %d errors in %.0f s", host.id,
                        len(errors), self.breaker_window)

    def _call_sync(self, host: _Host, name: str, *args: Any) -> None:
        stats = host.stats[name]
        stats.count += 1
        running = self.running
        previous = running.enter(host.id, name)
        try:
            host.handlers[name](*args)
        except Exception as exc:
            running.leave(previous, stats)
            self._error(host, name, exc)
        else:
            running.leave(previous, stats)

    async def _call(self, host: _Host, name: str, *args: Any) -> bool:
        """Call one handler, sync or async, isolated; True when it did not raise."""
        stats = host.stats[name]
        if not host.is_async[name]:
            errors = stats.errors
            self._call_sync(host, name, *args)
            return stats.errors == errors
        stats.count += 1
        try:
            await _Attributed(host.handlers[name](*args), self.running, host.id, name, stats)
        except Exception as exc:
            self._error(host, name, exc)
            return False
        return True

    def _route_other(self, event: Event) -> None:
        """A market topic's event whose payload is not the model its bots' handler takes
        (the engine's one market subscription, :class:`~tickloop.runtime.fanout.Router`,
        hands each event of the right model to the topic's fan-out, the hot path, compiled
        where the install can): to each running bot of the topic with a handler for it."""
        route = self._routes[event.topic]
        payload = event.payload
        name = _HANDLER_OF[type(payload)]
        for host in route.hosts:
            if host.status is BotStatus.RUNNING and name in host.handlers:
                self._deliver(host, name, payload)

    def _queue(self, host: _Host, name: str, payload: Any) -> None:
        """``host`` has a suspended handler: the event waits in its bounded mailbox."""
        pending = host.pending
        if len(pending) >= self.bot_buffer:
            pending.popleft()
            host.dropped += 1
            if self._drop_timer is None:
                self._drop_timer = asyncio.get_running_loop().call_later(
                    1.0, self._announce_drops)
        pending.append((name, payload))

    def _suspended(self, host: _Host, name: str, coro: Coroutine[Any, Any, Any],
                   yielded: Any) -> None:
        """A coroutine handler waits on something: the rest of it, then the bot's mailbox,
        in a task."""
        host.busy = True
        task = asyncio.get_running_loop().create_task(
            self._finish(host, name, coro, yielded), name=f"{name}:{host.id}")
        host.tasks.add(task)
        task.add_done_callback(host.tasks.discard)

    def _deliver(self, host: _Host, name: str, payload: Any) -> None:
        """Call ``host``'s handler ``name`` now, or queue it behind a suspended one."""
        if host.busy:
            self._queue(host, name, payload)
            return
        if not host.is_async[name]:
            self._call_sync(host, name, payload)
            return
        stats = host.stats[name]
        stats.count += 1
        coro = host.handlers[name](payload)
        running = self.running
        previous = running.enter(host.id, name)
        try:
            yielded = coro.send(None)
        except StopIteration:
            running.leave(previous, stats)
            return
        except Exception as exc:
            running.leave(previous, stats)
            self._error(host, name, exc)
            return
        running.leave(previous, stats)
        self._suspended(host, name, coro, yielded)

    async def _finish(self, host: _Host, name: str, coro: Coroutine[Any, Any, Any],
                      yielded: Any) -> None:
        """The rest of a suspended handler, then the bot's mailbox, in order."""
        try:
            try:
                await _Attributed(coro, self.running, host.id, name, host.stats[name],
                                  first=yielded)
            except Exception as exc:
                self._error(host, name, exc)
            pending = host.pending
            while pending:
                next_name, payload = pending.popleft()
                if host.status is BotStatus.RUNNING:
                    await self._call(host, next_name, payload)
        finally:
            host.busy = False

    def _announce_drops(self) -> None:
        self._drop_timer = None
        bus = self._bus
        if bus is None or bus.closed:
            return
        for host in self._hosts.values():
            delta = host.dropped - host.announced
            if delta > 0:
                host.announced = host.dropped
                bus.publish(f"bus.dropped.{host.id}", BusDropped(
                    subscription=host.id, pattern=f"bot:{host.id}", policy="drop_oldest",
                    dropped=delta, total=host.dropped, ts=self.clock.now_ns()))

    def _on_due(self, due: Due) -> None:
        key = due.key
        host = self._hosts.get(key) if type(key) is str else None
        if host is None:
            if key == _EQUITY_JOB:
                self._snapshot_equity()
            return
        if host.status is not _RUNNING:
            return
        # a bot has a job only when it has a tick (Engine._start_bot)
        tick, is_async, stats = host.tick  # type: ignore[misc]
        if not is_async:
            self._call_sync(host, "tick")
            return
        task = host.tick_task
        if task is not None and not task.done():
            host.overruns += 1
            return
        # driven eagerly, as event handlers are: a tick that never waits costs no task
        stats.count += 1
        coro = tick()
        running = self.running
        previous = running.enter(host.id, "tick")
        # Driven by a for loop, as the pure fanout.Fanout.deliver does: a tick that returns
        # without waiting (most of them) ends the loop without a StopIteration made and caught.
        yielded: Any = _NOTHING
        try:
            for yielded in coro.__await__():  # noqa: B007
                break
        except Exception as exc:
            running.leave(previous, stats)
            self._error(host, "tick", exc)
            return
        running.leave(previous, stats)
        if yielded is _NOTHING:
            return
        host.tick_task = asyncio.get_running_loop().create_task(
            self._finish_tick(host, coro, yielded), name=f"tick:{host.id}")

    async def _finish_tick(self, host: _Host, coro: Coroutine[Any, Any, Any],
                           yielded: Any) -> bool:
        try:
            await _Attributed(coro, self.running, host.id, "tick", host.stats["tick"],
                              first=yielded)
        except Exception as exc:
            self._error(host, "tick", exc)
            return False
        return True

    def _snapshot_equity(self) -> None:
        ts = self.clock.now_ns()
        bus = self.bus
        for host in self._hosts.values():
            if host.status is BotStatus.STOPPED:
                continue
            bus.publish(f"bot.equity.{host.id}", self.portfolio(host.id).equity(ts))
        if self.store is not None:
            self._spawn(self._save_states())

    def _spawn(self, aw: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ market and orders

    def _on_trade(self, event: Event) -> None:
        trade: Trade = event.payload
        self._last_price[trade.symbol] = trade.price
        self.executor.on_trade(trade)

    def _on_order_event(self, bot_id: str, event: OrderEvent) -> None:
        host = self._hosts.get(bot_id)
        if host is None:
            return
        bus = self.bus
        bus.publish(f"bot.order.{bot_id}", event)
        fill = event.fill
        if fill is not None:
            position = host.portfolio.apply_fill(fill)
            bus.publish(f"bot.fill.{bot_id}", fill)
            bus.publish(f"bot.position.{bot_id}", position)
        if host.status is BotStatus.RUNNING:
            if "on_order" in host.handlers:
                self._deliver(host, "on_order", event)
            if fill is not None and "on_fill" in host.handlers:
                self._deliver(host, "on_fill", fill)

    def _on_block(self, duration: float, bot: str | None, handler: str | None) -> None:
        bus = self._bus
        if bus is not None and not bus.closed:
            bus.publish("loop.blocked", LoopBlocked(duration=duration, bot=bot, handler=handler,
                                                    ts=self.clock.now_ns()))
        log.warning("event loop blocked for %.3f s (bot %s, %s)", duration, bot, handler)

    def signal(self, bot_id: str, name: str, value: Decimal | float | str | None = None, *,
               symbol: str | None = None) -> None:
        self._host(bot_id)
        self.bus.publish(f"bot.signal.{bot_id}", Signal(bot=bot_id, symbol=symbol, name=name,
                                                         value=value, ts=self.clock.now_ns()))

    def _open_count(self, bot_id: str) -> int:
        """How many orders of the bot are open (without making their models, when the
        executor can count them: the paper executors can)."""
        count = getattr(self.executor, "open_count", None)
        if callable(count):
            return int(count(bot_id))
        return len(self.executor.open_orders(bot_id))

    def _exposure(self, host: _Host, symbol: str, wall: float) -> Exposure:
        buy, sell = self.executor.open_size(host.id, symbol)
        portfolio = self.portfolio(host.id)
        return Exposure(position=portfolio.size(symbol), open_buy=buy, open_sell=sell,
                        open_orders=self._open_count(host.id),
                        daily_pnl=portfolio.daily_pnl(wall))

    async def place(
        self,
        bot_id: str,
        symbol: str,
        side: Side | str,
        size: Decimal | str | int,
        price: Decimal | str | None = None,
        *,
        type: OrderType | str | None = None,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
        post_only: bool = False,
        client_order_id: str | None = None,
    ) -> Order:
        """Risk-check and place an order for ``bot_id`` (what ``bot.place`` calls)."""
        host = self._host(bot_id)
        try:
            # the members themselves pass as they are (calling an enum class costs several
            # hundred ns: a backtest places thousands of orders)
            if side.__class__ is not Side:
                side = Side(side)
            tif = time_in_force if time_in_force.__class__ is TimeInForce \
                else TimeInForce(time_in_force)
            if type is None:
                kind = _LIMIT if price is not None else _MARKET
            else:
                kind = type if type.__class__ is OrderType else OrderType(type)
        except ValueError as exc:
            raise ConfigError(f"bot {bot_id!r}: {exc}", field="order") from None
        amount = size if size.__class__ is Decimal else _decimal(size, "size")
        if price is None:
            limit = None
        else:
            limit = price if price.__class__ is Decimal else _decimal(price, "price")
        if client_order_id:
            cid = client_order_id
        elif self._client_ids is not None:
            cid = self._client_ids(bot_id)
        else:
            cid = f"{bot_id}-{uuid.uuid4().hex[:16]}"
        intent = OrderIntent(bot=bot_id, symbol=symbol, side=side, size=amount, type=kind,
                             price=limit)
        clock = self.clock
        risk = self.risk
        # what the limits set read, worked out (the exposures mark the portfolio and walk the
        # open orders; the mid may rebuild a book): neither, with no limit set
        reads_exposure, reads_mid = risk.reads(bot_id)
        if not reads_exposure:
            mine = total = _NO_EXPOSURE
        elif risk.global_limits == _NO_LIMITS:
            mine = total = self._exposure(host, symbol, clock.now())
        else:
            wall = clock.now()
            mine = self._exposure(host, symbol, wall)
            parts = [mine if h is host else self._exposure(h, symbol, wall)
                     for h in self._hosts.values()]
            total = Exposure(position=sum((p.position for p in parts), _ZERO),
                             open_buy=sum((p.open_buy for p in parts), _ZERO),
                             open_sell=sum((p.open_sell for p in parts), _ZERO),
                             open_orders=sum(p.open_orders for p in parts),
                             daily_pnl=sum((p.daily_pnl for p in parts), _ZERO))
        decision = risk.check(intent, bot=mine, total=total,
                              mid=self._mark_price(symbol) if reads_mid else None,
                              now=clock.monotonic())
        if not decision.accepted:
            check = decision.check or "risk"
            self.bus.publish(f"risk.rejected.{bot_id}", RiskRejected(
                bot=bot_id, check=check, reason=decision.reason, symbol=symbol, side=side,
                price=limit, size=amount, ts=clock.now_ns()))
            now = clock.now_ns()
            return Order(venue=self.venue, symbol=symbol, id=cid, client_order_id=cid,
                         side=side, type=kind, price=limit, size=amount,
                         status=OrderStatus.REJECTED, time_in_force=tif, post_only=post_only,
                         reject_reason=f"risk: {check}: {decision.reason}", created_ts=now,
                         updated_ts=now)
        return await self._timed(self.executor.place(
            bot_id, symbol=symbol, side=side, type=kind, size=amount, price=limit,
            time_in_force=tif, post_only=post_only, client_order_id=cid), "place")

    async def cancel(self, bot_id: str, order_id: str) -> Order | None:
        self._host(bot_id)
        return await self._timed(self.executor.cancel(bot_id, order_id), "cancel")

    async def cancel_all(self, bot_id: str, symbol: str | None = None) -> list[Order]:
        self._host(bot_id)
        return await self._timed(self.executor.cancel_all(bot_id, symbol), "cancel_all")

    async def _timed(self, aw: Awaitable[_R], what: str) -> _R:
        """Await a venue call within ``call_timeout`` seconds of the engine's clock.

        An executor that says so (``eager = True``: the paper executors, whose calls need no
        task of their own) has its call's first step run in the caller's step: a paper order
        that needs no wait is matched against the book the bot decided on, before the next
        market event, live as on a replay; what waits goes on in the caller's task
        (:class:`_TimedRest`), under the timeout. Any other call runs in a task of its own,
        cancelled at the timeout.
        """
        clock = self.clock
        if self._eager and inspect.iscoroutine(aw):
            try:
                first = aw.send(None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            rest = _TimedRest(aw, first)
            handle = clock.call_at(clock.monotonic() + self.call_timeout, rest.expire)
            try:
                result: _R = await rest
                return result
            except asyncio.CancelledError:
                if rest.expired and not _cancelling():
                    raise TimeoutError(f"{what} took longer than {self.call_timeout} s",
                                       venue=self.venue) from None
                raise
            finally:
                handle.cancel()
        task = asyncio.ensure_future(aw)
        expired = False

        def expire() -> None:
            nonlocal expired
            if not task.done():
                expired = True
                task.cancel()

        handle = clock.call_at(clock.monotonic() + self.call_timeout, expire)
        try:
            return await task
        except asyncio.CancelledError:
            if expired and not _cancelling():
                raise TimeoutError(f"{what} took longer than {self.call_timeout} s",
                                   venue=self.venue) from None
            raise
        finally:
            handle.cancel()

    async def offload(self, fn: Callable[..., _R], *args: Any) -> _R:
        """Run ``fn(*args)`` in the engine's process pool (made at first use)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._offload_workers,
                mp_context=multiprocessing.get_context("forkserver"))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)


class _TimedRest:
    """The rest of an eager venue call whose first step yielded ``first``, driven in the
    caller's task (no task of its own: a backtest's every order waits once, for the next
    open), and cut as a task would be: :meth:`expire` cancels the future the call waits on
    (what ``Task.cancel`` does to the future its task waits on), or, when it waits on none,
    throws ``CancelledError`` into the call when it is next resumed. :attr:`expired` tells the
    caller that the ``CancelledError`` coming out is the timeout's."""

    __slots__ = ("coro", "done", "expired", "pending", "waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        #: What the call waits on now (what its last step yielded).
        self.waiting = first
        self.expired = False
        #: A CancelledError to throw at the next resumption (expired with no future cancelled).
        self.pending = False
        self.done = False

    def expire(self) -> None:
        if self.done:
            return
        self.expired = True
        cancel = getattr(self.waiting, "cancel", None)
        if not (callable(cancel) and cancel()):
            self.pending = True

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        yielded = self.waiting
        try:
            while True:
                error: BaseException | None = None
                send: Any = None
                try:
                    send = yield yielded
                except BaseException as exc:  # delivered into the call
                    error = exc
                if error is None and self.pending:
                    self.pending = False
                    error = asyncio.CancelledError()
                try:
                    yielded = coro.throw(error) if error is not None else coro.send(send)
                except StopIteration as stop:
                    return stop.value
                self.waiting = yielded
        finally:
            self.done = True


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, (float, bool)):
        raise ConfigError(f"{field} must be a Decimal, str or int (a float is inexact), "
                          f"got {value!r}", field=field)
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{field} {value!r} is not a number", field=field) from None


def _bot_of_event(event: Event) -> str | None:
    bot = getattr(event.payload, "bot", None)
    if isinstance(bot, str):
        return bot
    topic = event.topic
    if topic.startswith(("bot.", "risk.")):
        return topic.rpartition(".")[2]
    return None

