"""The backtest's market data and fills: candles published on the engine's bus as if they were
live, and the paper matcher filling orders on prices the candles printed.

:class:`CandleFeed` is a :class:`~tickloop.runtime.source.MarketSource`. The backtest driver
calls it at two moments of each candle, on the simulated clock:

* :meth:`CandleFeed.open_bar` at the candle's open time: the symbol's book becomes one level
  each side of the open (``open x (1 -/+ slippage)``, each of the candle's volume), the orders
  waiting for a price are submitted against that book (a market order fills at the open plus
  slippage, never more than the candle's volume), then the open prints;
* :meth:`CandleFeed.close_bar` at its close time: the two extremes print (low first when the
  candle closed up, high first when it closed down), then the close; the book moves to the
  close, and the closed candle is published.

Each print carries a quarter of the candle's volume. Resting limit orders fill through all four
by the paper matcher's rule (only when a print passes through the limit, at the limit, for at
most the print's size). Bots on ``trades`` hear the close print, on ``trade.<venue>.<symbol>``:
one trade per candle, the last price (the other three go to the matcher alone, and only while
an order rests, which keeps a candle cheap). Candles go to
``candle.<venue>.<symbol>.<interval>``, books (for bots on ``books``) to
``book.<venue>.<symbol>``. Tickers are not in candles: a bot asking for them is refused.

:class:`CandleExecutor` is the runtime's :class:`~tickloop.runtime.PaperExecutor` (the same
:class:`~tickloop.runtime.PaperMatcher`, fees and wiring) with one difference: an order is held
until the next open of its symbol, so that nothing trades on a price the bot already saw, and
``place`` returns once that open has priced it. An order placed after the last candle is never
sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

from ..book.engine import OrderBook
from ..bus import Bus
from ..exceptions import ConfigError
from ..models import BookLevel, BookSnapshot, Candle, Order, OrderType, Side, TimeInForce, Trade
from ..runtime.executor import PaperExecutor
from ..runtime.paper import PaperMatcher
from ..runtime.source import MarketWants

__all__ = ["CandleExecutor", "CandleFeed"]

_ZERO = Decimal(0)
_FOUR = Decimal(4)


class CandleFeed:
    """Candles as the engine's market data (see the module docstring)."""

    def __init__(self, candles: Sequence[Candle], *, venue: str = "backtest",
                 slippage: Decimal = _ZERO) -> None:
        if not (isinstance(slippage, Decimal) and slippage.is_finite() and 0 <= slippage < 1):
            raise ConfigError(f"slippage must be a Decimal in [0, 1), got {slippage!r}",
                              field="slippage")
        self.venue = venue
        self.slippage = slippage
        self._down = 1 - slippage
        self._up = 1 + slippage
        self.intervals = {c.symbol: c.interval for c in candles}
        self._bus: Bus | None = None
        self._trade_topics: dict[str, str] = {}
        self._candle_topics: dict[str, str] = {}
        self._book_topics: dict[str, str] = {}
        # the price and size each symbol's book is built from, and the book once built
        self._price: dict[str, tuple[Decimal, Decimal]] = {}
        #: The last price of each symbol (the latest open or close): the equity marks.
        self.prices: dict[str, Decimal] = {}
        self._books: dict[str, OrderBook] = {}
        self._stale: set[str] = set()
        self._sequence = 0
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._trade_ids = 0
        #: The executor whose matcher hears the prints that are not published.
        self.executor: PaperExecutor | None = None
        self._matcher: PaperMatcher | None = None

    async def start(self) -> None:
        """Nothing to connect: the candles are in memory."""

    async def wire(self, bus: Bus, wants: MarketWants) -> None:
        if wants.tickers:
            raise ConfigError(f"candles have no tickers (asked for {', '.join(wants.tickers)})",
                              field="channels")
        known = self.intervals
        for symbol in sorted({*wants.trades, *wants.books, *wants.traded,
                              *(s for ss in wants.candles.values() for s in ss)}):
            if symbol not in known:
                raise ConfigError(f"no candles of {symbol} in the data (it has "
                                  f"{', '.join(sorted(known)) or 'none'})", field="symbols")
        for interval, symbols in wants.candles.items():
            for symbol in symbols:
                if known[symbol] != interval:
                    raise ConfigError(f"a bot wants {interval} candles of {symbol}, the data "
                                      f"are {known[symbol]} candles", field="candle_interval")
                self._candle_topics[symbol] = f"candle.{self.venue}.{symbol}.{interval}"
        for symbol in {*wants.trades, *wants.traded}:
            self._trade_topics[symbol] = f"trade.{self.venue}.{symbol}"
        for symbol in wants.books:
            self._book_topics[symbol] = f"book.{self.venue}.{symbol}"
        self._bus = bus
        # the engine binds its executor before it wires its source
        self._matcher = self.executor.matcher if self.executor is not None else None

    def book(self, symbol: str) -> OrderBook | None:
        book = self._books.get(symbol)
        if symbol not in self._stale:
            return book
        priced = self._price.get(symbol)
        if priced is None:
            return None
        price, size = priced
        self._sequence += 1
        self._stale.discard(symbol)
        # each change of price is a new book state: the matcher's "liquidity already taken"
        # memory is per state, so two orders on one bar share its volume
        if book is None:
            book = self._books[symbol] = OrderBook(self.venue, symbol)
        book.apply_snapshot(BookSnapshot(
            venue=self.venue, symbol=symbol, bids=(BookLevel(price * self._down, size),),
            asks=(BookLevel(price * self._up, size),), sequence=self._sequence))
        return book

    def last(self, symbol: str) -> Decimal | None:
        """The last price of ``symbol`` (the latest open or close)."""
        priced = self._price.get(symbol)
        return priced[0] if priced is not None else None

    async def close(self) -> None:
        for waiters in self._waiting.values():
            for w in waiters:
                w.cancel()
        self._waiting.clear()

    # ------------------------------------------------------------------ the driver's calls

    def wait_open(self, symbol: str) -> asyncio.Future[None]:
        """A future resolved at the next open of ``symbol`` (after its book is set)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(symbol, []).append(future)
        return future

    def _set(self, symbol: str, price: Decimal, size: Decimal) -> None:
        self._price[symbol] = (price, size)
        self.prices[symbol] = price
        self._stale.add(symbol)

    def _publish_book(self, symbol: str) -> None:
        topic = self._book_topics.get(symbol)
        if topic is None or self._bus is None:
            return
        book = self.book(symbol)
        if book is not None:
            self._bus.publish(topic, book.snapshot())

    def _hidden(self, candle: Candle, price: Decimal, size: Decimal, ts: int) -> None:
        """A print only the resting orders hear."""
        executor = self.executor
        if executor is not None and executor.matcher.has_resting(candle.symbol):
            self._trade_ids += 1
            executor.on_trade(Trade(venue=self.venue, symbol=candle.symbol, id=self._trade_ids,
                                    price=price, size=size, side=None, ts=ts))

    def open_bar(self, candle: Candle) -> bool:
        """The candle opens: its book, the waiting orders released; True when some were (the
        driver then lets them run, then calls :meth:`print_open`); else the open prints
        here (:meth:`print_open`: one call a candle the less)."""
        symbol = candle.symbol
        price = candle.open
        # _set, inline (every candle)
        self._price[symbol] = (price, candle.volume)
        self.prices[symbol] = price
        self._stale.add(symbol)
        waiters = self._waiting.pop(symbol, None) if self._waiting else None
        if not waiters:
            # print_open, inline
            if self._book_topics:
                self._publish_book(symbol)
            matcher = self._matcher
            if matcher is not None and matcher._resting and matcher.has_resting(symbol):
                self._hidden(candle, price, candle.volume / _FOUR, candle.open_time)
            return False
        for w in waiters:
            if not w.done():
                w.set_result(None)
        return True

    def print_open(self, candle: Candle) -> None:
        """The open prints (after the orders released at the open were submitted)."""
        if self._book_topics:
            self._publish_book(candle.symbol)
        matcher = self._matcher
        # only the resting orders hear it (most candles: none, and no print is made)
        if matcher is not None and matcher._resting and matcher.has_resting(candle.symbol):
            self._hidden(candle, candle.open, candle.volume / _FOUR, candle.open_time)

    def close_bar(self, candle: Candle) -> None:
        symbol = candle.symbol
        ts = candle.close_time
        matcher = self._matcher
        quarter: Decimal | None = None
        # the two extremes reach the matcher only while an order rests (most candles: none)
        if matcher is not None and matcher._resting and matcher.has_resting(symbol):
            quarter = candle.volume / _FOUR
            if candle.close >= candle.open:
                self._hidden(candle, candle.low, quarter, ts)
                self._hidden(candle, candle.high, quarter, ts)
            else:
                self._hidden(candle, candle.high, quarter, ts)
                self._hidden(candle, candle.low, quarter, ts)
        bus = self._bus
        topic = self._trade_topics.get(symbol)
        if topic is not None and bus is not None:
            self._trade_ids += 1
            bus.publish(topic, Trade(venue=self.venue, symbol=symbol, id=self._trade_ids,
                                     price=candle.close,
                                     size=candle.volume / _FOUR if quarter is None else quarter,
                                     side=None, ts=ts))
        close = candle.close
        self._price[symbol] = (close, candle.volume)
        self.prices[symbol] = close
        self._stale.add(symbol)
        if self._book_topics:
            self._publish_book(symbol)
        topic = self._candle_topics.get(symbol)
        if topic is not None and bus is not None:
            bus.publish(topic, candle)


class CandleExecutor(PaperExecutor):
    """The paper executor, each order held until its symbol's next open (module docstring)."""

    name = "backtest"

    def __init__(self, feed: CandleFeed, *, maker_fee: Decimal = Decimal("0.001"),
                 taker_fee: Decimal = Decimal("0.002"), fill_at_touch: bool = False) -> None:
        super().__init__(maker_fee=maker_fee, taker_fee=taker_fee, fill_at_touch=fill_at_touch)
        self.feed = feed
        feed.executor = self

    async def place(self, bot: str, *, symbol: str, side: Side, type: OrderType, size: Decimal,
                    price: Decimal | None, time_in_force: TimeInForce, post_only: bool,
                    client_order_id: str) -> Order:
        await self.feed.wait_open(symbol)
        return await super().place(bot, symbol=symbol, side=side, type=type, size=size,
                                   price=price, time_in_force=time_in_force,
                                   post_only=post_only, client_order_id=client_order_id)
