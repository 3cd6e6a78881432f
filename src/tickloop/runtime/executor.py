"""Executors: where an order that passed the risk checks goes. The engine talks to one
:class:`Executor`; :class:`PaperExecutor` fills against the engine's live local books.

An executor reports everything that happens to an order (accepted, fills, cancels, expiries)
through the ``emit(bot, event)`` callback it is bound with, in the order it happened, whether
it happened during a call (a market order's fills) or later (a resting order filled by a
trade). ``place`` returns the order as it stands when the call returns.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from ..book.engine import OrderBook
from ..exceptions import ConfigError
from ..models import Order, OrderEvent, OrderStatus, OrderType, Side, TimeInForce, Trade
from .clock import Clock
from .paper import PaperMatcher
from .store import Store

__all__ = ["Emit", "Executor", "PaperExecutor"]

Emit = Callable[[str, OrderEvent], None]
BookOf = Callable[[str], OrderBook | None]
_ZERO = Decimal(0)
# enum members as module names: on Python 3.11 a member read off its class goes through
# EnumType.__getattr__ (~65 ns against ~5): the order path reads many
_BUY = Side.BUY
_STATUS_CANCELED = OrderStatus.CANCELED


class Executor(Protocol):
    """What the engine needs of an executor."""

    name: str

    def bind(self, *, emit: Emit, book: BookOf, clock: Clock, venue: str) -> None: ...

    async def start(self, store: Store | None) -> None:
        """Called once the engine's bus, store and feed are up."""
        ...

    async def place(self, bot: str, *, symbol: str, side: Side, type: OrderType, size: Decimal,
                    price: Decimal | None, time_in_force: TimeInForce, post_only: bool,
                    client_order_id: str) -> Order: ...

    async def cancel(self, bot: str, order_id: str) -> Order | None: ...

    async def cancel_all(self, bot: str, symbol: str | None = None) -> list[Order]: ...

    def open_orders(self, bot: str) -> list[Order]: ...

    def open_size(self, bot: str, symbol: str) -> tuple[Decimal, Decimal]:
        """Remaining size of the bot's open (buy, sell) orders of ``symbol``."""
        ...

    def on_trade(self, trade: Trade) -> None: ...

    async def close(self) -> None: ...


class PaperExecutor:
    """Paper trading on the live books (:class:`~tickloop.runtime.paper.PaperMatcher`: the
    fill rules are there). One matcher for every bot, so two bots never take the same
    liquidity; each order remembers its bot. ``latency`` (seconds of the engine's clock) delays
    each placement and cancel, as a venue round trip would."""

    name = "paper"
    #: Its calls need no task of their own: the engine runs their first step in the bot's
    #: (:meth:`tickloop.runtime.Engine._timed`), so an order without latency is matched at
    #: once, on the book the bot just saw.
    eager = True

    def __init__(self, *, maker_fee: Decimal = Decimal("0.001"),
                 taker_fee: Decimal = Decimal("0.002"), latency: float = 0.0,
                 fill_at_touch: bool = False) -> None:
        if not latency >= 0:
            raise ConfigError(f"latency must be >= 0 seconds, got {latency!r}", field="latency")
        self.latency = float(latency)
        self._matcher_options = {"maker_fee": maker_fee, "taker_fee": taker_fee,
                                 "fill_at_touch": fill_at_touch}
        PaperMatcher(**self._matcher_options)  # type: ignore[arg-type]  # validates
        self._matcher: PaperMatcher | None = None
        self._emit: Emit | None = None
        self._book: BookOf | None = None
        self._clock: Clock | None = None
        self._bot_of: dict[str, str] = {}

    def bind(self, *, emit: Emit, book: BookOf, clock: Clock, venue: str) -> None:
        self._emit = emit
        self._book = book
        self._clock = clock
        self._matcher = PaperMatcher(venue=venue, **self._matcher_options)  # type: ignore[arg-type]

    async def start(self, store: Store | None) -> None:
        """Nothing to connect: paper orders live in memory."""

    @property
    def matcher(self) -> PaperMatcher:
        if self._matcher is None:
            raise ConfigError("the paper executor is not bound to an engine", field="executor")
        return self._matcher

    def _send(self, events: list[OrderEvent]) -> None:
        emit = self._emit
        assert emit is not None
        for event in events:
            bot = self._bot_of.get(event.order.id)
            if bot is not None:
                emit(bot, event)

    async def place(self, bot: str, *, symbol: str, side: Side, type: OrderType, size: Decimal,
                    price: Decimal | None, time_in_force: TimeInForce, post_only: bool,
                    client_order_id: str) -> Order:
        clock = self._clock
        assert clock is not None and self._book is not None
        if self.latency:
            await clock.sleep(self.latency)
        matcher = self.matcher
        book = self._book(symbol) or OrderBook(matcher.venue, symbol)
        events = matcher.submit(symbol=symbol, side=side, type=type, size=size, book=book,
                                ts=clock.now_ns(), price=price, time_in_force=time_in_force,
                                post_only=post_only, client_order_id=client_order_id)
        known = matcher.order_by_client_id(client_order_id)
        assert known is not None
        self._bot_of.setdefault(known.id, bot)
        self._send(events)
        return known.to_model(matcher.venue)

    async def cancel(self, bot: str, order_id: str) -> Order | None:
        clock = self._clock
        assert clock is not None
        if self._bot_of.get(order_id) != bot:
            return None
        if self.latency:
            await clock.sleep(self.latency)
        events = self.matcher.cancel(order_id, ts=clock.now_ns())
        self._send(events)
        order = self.matcher.order(order_id)
        return None if order is None or order.status is not _STATUS_CANCELED or not events \
            else order.to_model(self.matcher.venue)

    async def cancel_all(self, bot: str, symbol: str | None = None) -> list[Order]:
        out = []
        for order in self.open_orders(bot):
            if symbol is None or order.symbol == symbol:
                done = await self.cancel(bot, order.id)
                if done is not None:
                    out.append(done)
        return out

    def open_orders(self, bot: str) -> list[Order]:
        if self._matcher is None:
            return []
        venue = self._matcher.venue
        bot_of = self._bot_of
        return [o.to_model(venue) for o in self._matcher.open_orders() if bot_of.get(o.id) == bot]

    def open_size(self, bot: str, symbol: str) -> tuple[Decimal, Decimal]:
        buy = sell = _ZERO
        if self._matcher is None:
            return buy, sell
        bot_of = self._bot_of
        for o in self._matcher.open_orders(symbol):
            if bot_of.get(o.id) == bot:
                if o.side is _BUY:
                    buy += o.remaining
                else:
                    sell += o.remaining
        return buy, sell

    def open_count(self, bot: str) -> int:
        if self._matcher is None:
            return 0
        bot_of = self._bot_of
        return sum(1 for o in self._matcher.open_orders() if bot_of.get(o.id) == bot)

    def on_trade(self, trade: Trade) -> None:
        matcher = self._matcher
        # every trade of every traded symbol comes here: most find nothing resting (and
        # with nothing resting at all, the matcher's table is empty: no call is made)
        if matcher is not None and matcher._resting and matcher.has_resting(trade.symbol):
            self._send(matcher.on_trade(trade))

    async def close(self) -> None:
        """Nothing to release: paper orders live in memory."""
