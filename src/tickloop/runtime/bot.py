"""The ``Bot`` base class: what a strategy declares, the handlers it may define, and the calls
it makes (orders, positions, state, CPU offload). An :class:`~tickloop.runtime.engine.Engine`
hosts it.

Declared on the class (all optional):

* ``symbols``: the symbols it trades and hears about (``Bot("b1", symbols=[...])`` overrides
  them for one instance); ``channels``: which market streams it
  gets for them (``"trades"``, ``"books"``, ``"candles"``, ``"tickers"``; default trades);
  ``candle_interval`` for candles (default ``"1m"``; like ``1s``, ``5m``, ``1h``, ``1d``);
* ``every`` (seconds) or ``cron`` (a cron expression, UTC): when ``tick()`` runs (also
  keywords of the constructor, for one instance, as ``candle_interval`` is; ``symbols``,
  ``every``, ``cron`` and ``candle_interval`` are therefore not parameter names);
* ``Params``: a :class:`msgspec.Struct` of typed parameters with defaults, given as keyword
  arguments at construction (``SmaCross("b1", fast=5)``) and validated there: a wrong type, a
  missing or unknown parameter is a one-line :class:`~tickloop.exceptions.ConfigError` naming it.
  The validated values are ``self.params``;
* ``risk``: the bot's own :class:`~tickloop.runtime.risk.RiskLimits`.

Handlers, each sync or async, each optional: ``on_start``, ``on_stop``, ``tick``, ``on_trade``,
``on_book`` (a :class:`~tickloop.models.BookSnapshot` of the top levels), ``on_candle``,
``on_ticker``, ``on_order`` (the bot's :class:`~tickloop.models.OrderEvent` s), ``on_fill``,
``on_event`` (any other bus event the bot subscribed to through ``topics``). An exception in any
of them becomes a :class:`~tickloop.models.BotError` and the bot carries on.

Invariant: a bot never talks to a venue itself; every order goes through the engine's risk
checks and executor, so a rejected order never reaches the venue.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from ..book.engine import OrderBook
from ..exceptions import ConfigError
from ..models import Order, OrderType, Position, Side, TimeInForce
from .risk import RiskLimits

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["CHANNELS", "Bot", "BotLogger", "NoParams"]

#: The market streams a bot may declare in ``channels``.
CHANNELS = frozenset({"trades", "books", "candles", "tickers"})
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INTERVAL = re.compile(r"[1-9][0-9]{0,5}[smhd]")
_R = TypeVar("_R")
# read on every order: an enum member read off its class costs ~65 ns on Python 3.11
_BUY = Side.BUY
_SELL = Side.SELL


class NoParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A bot without parameters."""


class BotLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``self.log``: a logger whose records carry the bot's id (``record.bot``) and start with
    it."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        bot = (self.extra or {}).get("bot")
        extra.setdefault("bot", bot)
        kwargs["extra"] = extra
        return f"[{bot}] {msg}", kwargs


def _params_error(bot_id: str, cls: type, exc: msgspec.ValidationError) -> ConfigError:
    text = str(exc)
    match = re.search(r"at `\$\.([^`\[]+)", text)
    field = match.group(1) if match else None
    missing = re.search(r"missing required field `([^`]+)`", text)
    unknown = re.search(r"unknown field `([^`]+)`", text)
    if missing:
        field = missing.group(1)
        text = f"parameter {field!r} is required"
    elif unknown:
        field = unknown.group(1)
        text = f"unknown parameter {field!r}"
    else:
        text = text.split(" - at ")[0]
        if field is not None:
            text = f"parameter {field!r}: {text}"
    return ConfigError(f"bot {bot_id!r} ({cls.__name__}): {text}", field=field)


class Bot:
    """Subclass it; see the module docstring. ``Bot("b1", **params)``."""

    symbols: Sequence[str] = ()
    channels: ClassVar[Sequence[str]] = ("trades",)
    candle_interval: str = "1m"
    #: Extra bus topic patterns delivered to ``on_event``.
    topics: ClassVar[Sequence[str]] = ()
    every: float | None = None
    cron: str | None = None
    Params: ClassVar[type[msgspec.Struct]] = NoParams
    risk: ClassVar[RiskLimits | None] = None

    def __init__(self, id: str, *, symbols: Sequence[str] | None = None,
                 every: float | None = None, cron: str | None = None,
                 candle_interval: str | None = None, **params: Any) -> None:
        cls = type(self)
        if every is not None:
            self.every = every
        if cron is not None:
            self.cron = cron
        if candle_interval is not None:
            self.candle_interval = candle_interval
        if symbols is not None:
            if isinstance(symbols, str):
                raise ConfigError(f"bot {id!r}: symbols must be a list, not a string",
                                  field="symbols")
            self.symbols = tuple(symbols)  # this instance's own, instead of the class's
        if not isinstance(id, str) or not _ID.fullmatch(id):
            raise ConfigError(f"bot id {id!r} must be 1-64 letters, digits, '_' or '-'",
                              field="id")
        for ch in cls.channels:
            if ch not in CHANNELS:
                raise ConfigError(f"bot {id!r}: unknown channel {ch!r} (one of "
                                  f"{', '.join(sorted(CHANNELS))})", field="channels")
        if self.every is not None and self.cron is not None:
            raise ConfigError(f"bot {id!r}: give every or cron, not both", field="every")
        if not isinstance(self.candle_interval, str) or not _INTERVAL.fullmatch(
                self.candle_interval):
            raise ConfigError(f"bot {id!r}: candle_interval {self.candle_interval!r} is not "
                              "like 1s, 5m, 1h or 1d", field="candle_interval")
        if isinstance(self.symbols, str):
            raise ConfigError(f"bot {id!r}: symbols must be a list, not a string",
                              field="symbols")
        known = cls.Params.__struct_fields__
        for name in params:
            if name not in known:
                raise ConfigError(f"bot {id!r} ({cls.__name__}): unknown parameter {name!r}"
                                  + (f" (one of {', '.join(known)})" if known else ""),
                                  field=name)
        try:
            self.params: Any = msgspec.convert(params, cls.Params, strict=False)
        except msgspec.ValidationError as exc:
            raise _params_error(id, cls, exc) from None
        self.id = id
        self.log = BotLogger(logging.getLogger(f"tickloop.bot.{cls.__name__}"), {"bot": id})
        #: Persisted across restarts when the engine has a store (JSON-able values only).
        self.state: dict[str, Any] = {}
        self._engine: Engine | None = None
        #: Its portfolio's position reader, bound by the engine that starts it (a bot reads its
        #: position every tick: one call instead of three).
        self._position_of: Callable[[str], Position] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    # ------------------------------------------------------------------ engine access

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise ConfigError(f"bot {self.id!r} is not hosted by an Engine", field="engine")
        return self._engine

    # ------------------------------------------------------------------ trading

    async def place(
        self,
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
        """Place an order (a limit when ``price`` is given, else market). It passes the risk
        checks first; a refused order comes back with status ``rejected`` (and a
        :class:`~tickloop.models.RiskRejected` event), never reaching the venue."""
        return await self.engine.place(
            self.id, symbol, side, size, price, type=type, time_in_force=time_in_force,
            post_only=post_only, client_order_id=client_order_id)

    async def buy(self, symbol: str, size: Decimal | str | int,
                  price: Decimal | str | None = None, **options: Any) -> Order:
        return await self.place(symbol, _BUY, size, price, **options)

    async def sell(self, symbol: str, size: Decimal | str | int,
                   price: Decimal | str | None = None, **options: Any) -> Order:
        return await self.place(symbol, _SELL, size, price, **options)

    async def cancel(self, order_id: str) -> Order | None:
        """Cancel one of this bot's open orders; None when it is not open."""
        return await self.engine.cancel(self.id, order_id)

    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        return await self.engine.cancel_all(self.id, symbol)

    def position(self, symbol: str) -> Position:
        read = self._position_of
        if read is not None:
            return read(symbol)  # what Engine.position gives for this bot
        return self.engine.position(self.id, symbol)  # raises when not hosted

    @property
    def orders(self) -> list[Order]:
        """This bot's open orders, oldest first."""
        return self.engine.open_orders(self.id)

    @property
    def pnl(self) -> Decimal:
        """Realised (after fees) plus unrealised PnL."""
        return self.engine.portfolio(self.id).pnl

    def book(self, symbol: str) -> OrderBook | None:
        """The engine's live local book of ``symbol`` (valid or not: check ``valid``)."""
        return self.engine.book(symbol)

    def signal(self, name: str, value: Decimal | float | str | None = None, *,
               symbol: str | None = None) -> None:
        """Publish a :class:`~tickloop.models.Signal` on ``bot.signal.<id>``."""
        self.engine.signal(self.id, name, value, symbol=symbol)

    async def offload(self, fn: Callable[..., _R], *args: Any) -> _R:
        """Run ``fn(*args)`` in the engine's process pool (CPU-bound work that would block the
        loop); ``fn`` and its arguments must be picklable (module-level functions)."""
        return await self.engine.offload(fn, *args)

    # ------------------------------------------------------------------ declared handlers
    # The base class defines none of the handlers: the engine calls those a subclass defines.


def declared_handlers(bot: Bot) -> Mapping[str, Callable[..., Any]]:
    """The handlers ``bot``'s class defines, by name."""
    names = ("on_start", "on_stop", "tick", "on_trade", "on_book", "on_candle", "on_ticker",
             "on_order", "on_fill", "on_event")
    out: dict[str, Callable[..., Any]] = {}
    for name in names:
        fn = getattr(bot, name, None)
        if fn is not None and callable(fn):
            out[name] = fn
    return out
