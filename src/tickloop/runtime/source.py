"""Where the engine's market data comes from: a :class:`MarketSource` publishes the streams the
bots asked for on the engine's bus and keeps each traded symbol's local book.

The engine consumes only this interface. :class:`StreamSource` is the live one (a
:class:`~tickloop.StreamClient` attached to the bus, one upstream subscription per symbol and
channel); the backtest's candle feed (:mod:`tickloop.backtest.feed`) is another, publishing on
the same topics (``trade.<venue>.<symbol>``, ``book.<venue>.<symbol>``,
``ticker.<venue>.<symbol>``, ``candle.<venue>.<symbol>.<interval>``) so that a bot cannot tell
them apart.

Invariant: :meth:`MarketSource.wire` is called once, after :meth:`MarketSource.start`, with
every symbol and channel the engine's bots declared; :meth:`MarketSource.close` releases what
either made (the engine calls it at shutdown, whoever made the source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..book.engine import OrderBook
from ..bus import Bus
from ..client.stream import StreamClient

__all__ = ["MarketSource", "MarketWants", "StreamSource"]


@dataclass(frozen=True, slots=True)
class MarketWants:
    """What the engine's bots declared: symbols per channel (sorted), candle symbols per
    interval, every symbol traded (the executor and the marks need their trades and book), and
    the book depth published on ``book.*`` topics."""

    trades: tuple[str, ...] = ()
    books: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    candles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    traded: tuple[str, ...] = ()
    depth: int = 10


class MarketSource(Protocol):
    """What the engine needs of its market data (see the module docstring)."""

    async def start(self) -> None: ...

    async def wire(self, bus: Bus, wants: MarketWants) -> None:
        """Publish the wanted streams on ``bus`` from now on."""
        ...

    def book(self, symbol: str) -> OrderBook | None:
        """The local book of a traded symbol (valid or not), None when there is none."""
        ...

    async def close(self) -> None: ...


def _keep_book(book: OrderBook) -> None:
    """The live books are read through ``feed.book(symbol)``; the handler needs do nothing."""


class StreamSource:
    """The live source: ``feed`` (a :class:`~tickloop.StreamClient`) attached to the bus.
    ``own``: close the client with the source (True when the engine made it)."""

    def __init__(self, feed: StreamClient, *, own: bool = False) -> None:
        self.feed = feed
        self.own = own
        self._links: list[Any] = []

    async def start(self) -> None:
        await self.feed.start()

    async def wire(self, bus: Bus, wants: MarketWants) -> None:
        feed = self.feed
        # the paper executor and the marks need every traded symbol's trades and live book
        trades = sorted(set(wants.trades) | set(wants.traded))
        traded = set(wants.traded)
        # A traded symbol's published book is also its live book: one subscription, kept whole
        # (full_books) so that the executor walks every level, not a book whose snapshot was cut
        # to the published depth. Untraded books stay at that depth (a smaller REST snapshot).
        read = [s for s in wants.books if s not in traded]
        kept = [s for s in wants.books if s in traded]
        self._links.append(await bus.attach(feed, trades=trades, books=read,
                                            depth=wants.depth, tickers=list(wants.tickers)))
        if kept:
            self._links.append(await bus.attach(feed, books=kept, depth=wants.depth,
                                                full_books=True, status=False))
        for interval, symbols in sorted(wants.candles.items()):
            self._links.append(await bus.attach(feed, candles=list(symbols), interval=interval,
                                                status=False))
        # A traded symbol whose book the link above already publishes has its live book kept
        # by that subscription; a second consumer would only cost a call per book update.
        unbooked = [s for s in wants.traded if s not in wants.books]
        if unbooked:
            await feed.subscribe_books(unbooked, _keep_book, live=True)

    def book(self, symbol: str) -> OrderBook | None:
        return self.feed.book(symbol)

    async def close(self) -> None:
        links, self._links = self._links, []
        for link in links:
            await link.aclose()
        if self.own:
            await self.feed.aclose()
