"""The engine's market fan-out step: one market event to the bots of its topic, in one pass.

:class:`Fanout` holds the bots of one topic in the order they were started, one :class:`Slot`
each (its handler, whether the handler is a coroutine function, the handler's
:class:`HandlerStats`, and the bot's :class:`Gate`), in a tuple that is replaced, never
changed, when a bot joins or leaves, so a dispatch in progress is never disturbed.
:meth:`Fanout.deliver` calls each bot's handler with the payload, in order:

* a bot whose gate is shut (not running) is skipped; one whose gate says ``busy`` (a coroutine
  handler of it is suspended) has the payload queued behind it (``queue``);
* a plain function handler is called inline; a coroutine handler is started inline and run
  to its first wait with no StopIteration made and caught (by the C module ``_coro_native``
  where it is built, else by a ``for`` loop over its ``__await__``); if it yields, the rest of
  it is handed to ``suspended`` with what it yielded;
* a handler that raises is handed to ``failed`` with the exception, and the next bot is called;
* the :class:`Running` slot names the bot during its call, and one ``perf_counter`` read after
  each call both ends that call's accounting (count, total, max; the longest call the loop
  monitor looks at) and starts the next one's. The time ``queue``, ``failed`` and
  ``suspended`` take is no bot's. The slot's previous occupant is restored at the end.

:class:`Running` and :class:`HandlerStats` live here (re-exported by
:mod:`tickloop.runtime.monitor`) so that the compiled step reads and writes them as C fields.
This is the step every market event takes once per interested bot, so it is kept in plain typed
Python with no asyncio in it, and compiled with mypyc where the install can
(:mod:`tickloop._native`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

from .._native import native_extension, native_module

# (NATIVE, PureFanout and PureRouter are set after the compiled part, so the compiled copy has
# none of them: as in tickloop.book.engine, they are not in __all__.)
__all__ = ["Fanout", "Gate", "HandlerStats", "Router", "Running", "Slot"]

#: What ``for yielded in coro.__await__()`` leaves when the coroutine never yielded.
_NOTHING: Final[Any] = object()
#: A C static in the compiled copy (a module global would be a dict lookup per read).
_perf: Final = perf_counter
_CORO: Final = CoroutineType
_coro_native = native_extension(
    "tickloop.runtime._coro_native", str(Path(__file__).with_name("_coro_native.c"))
)
#: ``first_step(coro, nothing)`` of the C module ``_coro_native`` (a coroutine's first step
#: with no object made: its opening comment), when it is built and current.
_first_step: Final[Callable[[Any, Any], Any] | None] = (
    None if _coro_native is None else _coro_native.first_step
)


@dataclass(slots=True)
class HandlerStats:
    """One bot handler's calls: how many, their total and longest duration (s), errors."""

    count: int = 0
    total: float = 0.0
    max: float = 0.0
    errors: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "total": self.total, "max": self.max, "errors": self.errors}


class Running:
    """The slot naming the bot handler running now (see :mod:`tickloop.runtime.monitor`)."""

    __slots__ = ("bot", "handler", "longest", "longest_bot", "longest_handler", "started")

    def __init__(self) -> None:
        self.bot: str | None = None
        self.handler: str | None = None
        self.started: float = 0.0
        self.longest: float = 0.0
        self.longest_bot: str | None = None
        self.longest_handler: str | None = None

    def enter(self, bot: str, handler: str) -> tuple[str | None, str | None, float]:
        """Mark ``bot``'s ``handler`` as running; returns what to hand to :meth:`leave`
        (the previous occupant, so nested calls restore it)."""
        previous = (self.bot, self.handler, self.started)
        self.bot = bot
        self.handler = handler
        self.started = perf_counter()
        return previous

    def leave(self, previous: tuple[str | None, str | None, float], stats: HandlerStats) -> float:
        """End the call :meth:`enter` began; account it to ``stats``; returns its duration."""
        elapsed = perf_counter() - self.started
        stats.total += elapsed
        if elapsed > stats.max:
            stats.max = elapsed
        if elapsed > self.longest:
            self.longest = elapsed
            self.longest_bot = self.bot
            self.longest_handler = self.handler
        self.bot, self.handler, self.started = previous
        return elapsed

    def take_longest(self) -> tuple[float, str | None, str | None]:
        """The longest call since the last time this was asked, and reset it."""
        out = (self.longest, self.longest_bot, self.longest_handler)
        self.longest = 0.0
        self.longest_bot = None
        self.longest_handler = None
        return out


class Gate:
    """What the fan-out reads of one bot before calling it: whether it is running, and whether
    a coroutine handler of it is suspended (``busy``: its events then wait in its mailbox).
    The engine keeps it in step with the bot's status."""

    __slots__ = ("busy", "running")

    def __init__(self) -> None:
        self.running = False
        self.busy = False


class Slot:
    """One bot on a topic's route: who (``bot``, the id the running slot names; ``host``, what
    the callbacks are given), its handler and how to call it, its stats and its gate."""

    __slots__ = ("bot", "fn", "gate", "host", "is_async", "stats")

    def __init__(
        self,
        host: object,
        bot: str,
        fn: Callable[[Any], Any],
        is_async: bool,
        stats: HandlerStats,
        gate: Gate,
    ) -> None:
        self.host = host
        self.bot = bot
        self.fn = fn
        self.is_async = is_async
        self.stats = stats
        self.gate = gate


class Fanout:
    """The bots of one topic and their handler ``name`` (module docstring). ``queue(host, name,
    payload)`` takes an event for a busy bot, ``failed(host, name, exc)`` a handler's
    exception, ``suspended(host, name, coro, yielded)`` a coroutine handler that waits."""

    def __init__(
        self,
        name: str,
        running: Running,
        queue: Callable[[Any, str, Any], None],
        failed: Callable[[Any, str, Exception], None],
        suspended: Callable[[Any, str, Any, Any], None],
    ) -> None:
        self.name = name
        self.running = running
        self.queue = queue
        self.failed = failed
        self.suspended = suspended
        #: Replaced (never changed in place) when the bots change.
        self.slots: tuple[Slot, ...] = ()

    def deliver(self, payload: Any) -> None:
        running = self.running
        name = self.name
        previous_bot = running.bot
        previous_handler = running.handler
        previous_started = running.started
        running.handler = name
        t0 = _perf()
        try:
            for slot in self.slots:
                gate = slot.gate
                if not gate.running:
                    continue
                if gate.busy:
                    self.queue(slot.host, name, payload)
                    continue
                running.bot = slot.bot
                stats = slot.stats
                stats.count += 1
                try:
                    if slot.is_async:
                        coro: Any = slot.fn(payload)
                        yielded: Any = _NOTHING
                        if _first_step is not None and type(coro) is _CORO:
                            yielded = _first_step(coro, _NOTHING)
                        else:
                            for yielded in coro.__await__():  # noqa: B007
                                break
                        if yielded is not _NOTHING:  # it waits: the rest of it runs elsewhere
                            _account(running, slot, _perf() - t0)
                            self.suspended(slot.host, name, coro, yielded)
                            running.handler = name
                            t0 = _perf()
                            continue
                    else:
                        slot.fn(payload)
                except Exception as exc:
                    _account(running, slot, _perf() - t0)
                    self.failed(slot.host, name, exc)
                    running.handler = name
                    t0 = _perf()
                    continue
                # _account, inlined: the common case, and a Python call each in the pure build
                t1 = _perf()
                elapsed = t1 - t0
                t0 = t1
                stats.total += elapsed
                if elapsed > stats.max:
                    stats.max = elapsed
                if elapsed > running.longest:
                    running.longest = elapsed
                    running.longest_bot = slot.bot
                    running.longest_handler = name
        finally:
            running.bot = previous_bot
            running.handler = previous_handler
            running.started = previous_started


class Router:
    """The engine's one bus subscription to market data (``on_event`` is its handler): each
    event to the :class:`Fanout` of its topic in ``routes`` (none: dropped), when its payload
    is of the exact ``model`` class that fan-out was made for; any other payload goes to
    ``other(event)`` (the engine's generic path)."""

    def __init__(self, other: Callable[[Any], None]) -> None:
        #: topic -> its fan-out and the payload class it takes.
        self.routes: dict[str, tuple[Fanout, type]] = {}
        self.other = other

    def on_event(self, event: Any) -> None:
        route = self.routes.get(event.topic)
        if route is None:
            return
        payload = event.payload
        if type(payload) is route[1]:
            route[0].deliver(payload)
        else:
            self.other(event)


def _account(running: Running, slot: Slot, elapsed: float) -> None:
    """One call of ``slot``'s handler took ``elapsed`` seconds (as :meth:`Running.leave`)."""
    stats = slot.stats
    stats.total += elapsed
    if elapsed > stats.max:
        stats.max = elapsed
    if elapsed > running.longest:
        running.longest = elapsed
        running.longest_bot = slot.bot
        running.longest_handler = running.handler


# -- compiled copy (see tickloop._native); nothing below is compiled --

#: The pure-Python classes, whichever ones the public names are (tests run both).
PureFanout = Fanout
PureRouter = Router
#: True when :class:`Fanout` and its companions are this module's classes compiled by mypyc.
NATIVE = False
_compiled = native_module(__name__, __file__)
if _compiled is not None and not TYPE_CHECKING:
    HandlerStats = _compiled.HandlerStats
    Running = _compiled.Running
    Gate = _compiled.Gate
    Slot = _compiled.Slot
    Fanout = _compiled.Fanout
    Router = _compiled.Router
    NATIVE = True
