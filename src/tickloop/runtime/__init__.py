"""The bot runtime: many bots on one event loop, isolated, scheduled, risk-checked, executed on
paper and persisted.

.. code-block:: python

    from tickloop.runtime import Bot, Engine

    class MyBot(Bot):
        symbols = ["BTC-USD"]
        every = 1.0
        async def tick(self) -> None: ...
        async def on_trade(self, trade) -> None: ...

    async with Engine([MyBot("b1"), MyBot("b2")], venue="sim", url=ex.ws_url) as engine:
        await engine.run(seconds=10)

See docs/runtime.md, and the modules: :mod:`~tickloop.runtime.bot`,
:mod:`~tickloop.runtime.engine`, :mod:`~tickloop.runtime.clock`,
:mod:`~tickloop.runtime.scheduler`, :mod:`~tickloop.runtime.risk`,
:mod:`~tickloop.runtime.paper`, :mod:`~tickloop.runtime.executor`,
:mod:`~tickloop.runtime.portfolio`, :mod:`~tickloop.runtime.monitor`,
:mod:`~tickloop.runtime.store`.
"""

from .bot import Bot, NoParams
from .clock import Clock, LoopClock, SimClock
from .engine import BotStatus, Engine
from .executor import Executor, PaperExecutor
from .live import LiveExecutor
from .monitor import HandlerStats, LoopMonitor
from .notify import Notifier, TelegramNotifier, WebhookNotifier
from .paper import PaperMatcher
from .portfolio import Portfolio
from .risk import Exposure, OrderIntent, RiskDecision, RiskEngine, RiskLimits
from .scheduler import Cron, Interval, Scheduler, ScheduleRunner, stagger
from .store import Page, Store

__all__ = [
    "Bot",
    "BotStatus",
    "Clock",
    "Cron",
    "Engine",
    "Executor",
    "Exposure",
    "HandlerStats",
    "Interval",
    "LiveExecutor",
    "LoopClock",
    "LoopMonitor",
    "NoParams",
    "Notifier",
    "OrderIntent",
    "Page",
    "PaperExecutor",
    "PaperMatcher",
    "Portfolio",
    "RiskDecision",
    "RiskEngine",
    "RiskLimits",
    "ScheduleRunner",
    "Scheduler",
    "SimClock",
    "Store",
    "TelegramNotifier",
    "WebhookNotifier",
    "stagger",
]
