"""The bus's envelope, its event types and its topic patterns: the contract every backend shares.

An :class:`Event` wraps one payload (a tickloop model or a user's registered msgspec Struct)
with where it goes (``topic``), what it is (``type``), who sent it (``source``), its place in
that source's order (``id``: 1, 2, 3, ... per source, never reused) and when (``ts`` wall clock,
``mono`` monotonic clock, both in nanoseconds). ``(source, id)`` is unique across every process
that shares a bus, which is what the Redis backend deduplicates on and what the server's SSE
stream resumes from.

Types are not free strings: every payload class maps to exactly one :class:`EventType` member,
or to a name a user registered with :func:`register_event_type`. The type of an event is derived
from its payload, so a publisher never spells it.

Topics are dot-separated names (``trade.sim.BTC-USD``, ``order.bot-7``, ``status.reconnected``).
A pattern matches a topic as a glob over the whole name: ``*`` is any run of characters
(dots included), ``?`` any one character; anything else matches itself. ``*`` alone matches
every topic. :func:`topic_matcher` compiles a pattern once; backends cache, per topic, which
subscriptions match, so publishing costs O(matching subscriptions), not O(patterns).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgspec

from .. import models

__all__ = [
    "Event",
    "EventType",
    "event_type_of",
    "payload_class",
    "register_event_type",
    "topic_matcher",
]


class EventType(StrEnum):
    """The built-in event types; users add their own with :func:`register_event_type`."""

    TRADE = "trade"
    QUOTE = "quote"
    TICKER = "ticker"
    CANDLE = "candle"
    BOOK = "book"  # a BookSnapshot (the local book's top N levels)
    BOOK_DELTA = "book_delta"
    ORDER = "order"  # an OrderEvent
    FILL = "fill"
    BALANCE = "balance"
    POSITION = "position"
    STATUS = "status"  # Connected, Disconnected, Reconnected, Gap, Stale, BookInvalid, ...
    BUS_DROPPED = "bus_dropped"
    HANDLER_FAILED = "handler_failed"
    BOT_ERROR = "bot_error"
    CIRCUIT_BREAKER = "circuit_breaker"
    RISK_REJECTED = "risk_rejected"
    LOOP_BLOCKED = "loop_blocked"
    SIGNAL = "signal"
    EQUITY = "equity"


_BUILTIN: dict[type[Any], EventType] = {
    models.Trade: EventType.TRADE,
    models.Quote: EventType.QUOTE,
    models.Ticker: EventType.TICKER,
    models.Candle: EventType.CANDLE,
    models.BookSnapshot: EventType.BOOK,
    models.BookDelta: EventType.BOOK_DELTA,
    models.OrderEvent: EventType.ORDER,
    models.Order: EventType.ORDER,
    models.Fill: EventType.FILL,
    models.Balance: EventType.BALANCE,
    models.Position: EventType.POSITION,
    models.Connected: EventType.STATUS,
    models.Disconnected: EventType.STATUS,
    models.Reconnected: EventType.STATUS,
    models.Gap: EventType.STATUS,
    models.Stale: EventType.STATUS,
    models.BookInvalid: EventType.STATUS,
    models.BookValid: EventType.STATUS,
    models.ConsumerDetached: EventType.STATUS,
    models.BusDropped: EventType.BUS_DROPPED,
    models.HandlerFailed: EventType.HANDLER_FAILED,
    models.BotError: EventType.BOT_ERROR,
    models.CircuitBreakerFired: EventType.CIRCUIT_BREAKER,
    models.RiskRejected: EventType.RISK_REJECTED,
    models.LoopBlocked: EventType.LOOP_BLOCKED,
    models.Signal: EventType.SIGNAL,
    models.Equity: EventType.EQUITY,
}

# payload class -> type name; type name -> payload class (for decoding user types)
_TYPE_OF: dict[type[Any], str] = {cls: str(t) for cls, t in _BUILTIN.items()}
_USER_CLASSES: dict[str, type[msgspec.Struct]] = {}
_BUILTIN_NAMES = frozenset(str(t) for t in EventType)


def register_event_type(name: str, payload: type[msgspec.Struct]) -> str:
    """Register a user's msgspec Struct as the payload of event type ``name``.

    Registering the same pair again is a no-op; a name or class already taken by another is a
    :class:`~tickloop.exceptions.ConfigError`. Returns ``name``.
    """
    from ..exceptions import ConfigError

    if not isinstance(payload, type) or not issubclass(payload, msgspec.Struct):
        raise ConfigError(f"event type {name!r}: payload must be a msgspec Struct class",
                          field="payload")
    if not name or not re.fullmatch(r"[a-z][a-z0-9_.-]*", name):
        raise ConfigError(f"event type {name!r}: use lower-case letters, digits, '_', '-', '.'",
                          field="name")
    if name in _BUILTIN_NAMES:
        raise ConfigError(f"event type {name!r} is built in", field="name")
    known = _USER_CLASSES.get(name)
    if known is payload:
        return name
    if known is not None:
        raise ConfigError(f"event type {name!r} is registered for {known.__qualname__}",
                          field="name")
    if payload in _TYPE_OF:
        raise ConfigError(f"{payload.__qualname__} is registered as {_TYPE_OF[payload]!r}",
                          field="payload")
    _USER_CLASSES[name] = payload
    _TYPE_OF[payload] = name
    return name


def event_type_of(payload: object) -> str:
    """The event type of ``payload``; a :class:`~tickloop.exceptions.ConfigError` if its class
    is neither a tickloop model nor registered."""
    try:
        return _TYPE_OF[type(payload)]
    except KeyError:
        from ..exceptions import ConfigError

        raise ConfigError(
            f"{type(payload).__qualname__} is not an event payload: publish a tickloop model, "
            "or register your Struct with tickloop.bus.register_event_type(name, cls)",
            field="payload",
        ) from None


def payload_class(type_name: str) -> type[msgspec.Struct] | None:
    """The registered user class for ``type_name``; None for built-in types (their payloads
    are tagged tickloop models, decoded by tag) and for unknown names."""
    return _USER_CLASSES.get(type_name)


class Event(msgspec.Struct, frozen=True, gc=False):
    """One event on the bus. Immutable; made by ``bus.publish``, never by hand.

    Fields may also be given by position, in this order (the in-process bus does: it is
    measurably cheaper on the publish path)."""

    type: str  # an EventType value or a registered user type name
    topic: str
    id: int  # 1, 2, 3, ... per source
    source: str  # the publishing bus's name: unique per process sharing a bus
    ts: int  # wall clock, ns since the epoch
    mono: int  # monotonic clock, ns (meaningful within one host)
    payload: Any


def topic_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate telling whether a topic matches ``pattern`` (see the module docstring)."""
    if pattern == "*":
        return _match_all
    if "*" not in pattern and "?" not in pattern:
        return pattern.__eq__
    head = pattern[:-1]
    if pattern[-1] == "*" and "*" not in head and "?" not in head:
        # ``trade.*``, ``order.*``: the commonest patterns, and a Redis reader tests one per
        # entry it reads; a prefix test is several times cheaper than the regex.
        return lambda topic: topic.startswith(head)
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    compiled = re.compile("".join(parts), re.S)
    return lambda topic: compiled.fullmatch(topic) is not None


def _match_all(topic: str) -> bool:
    return True
