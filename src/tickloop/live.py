"""The live terminal view of ``tickloop run``: markets consumed through StreamClient.

With no arguments it starts the embedded exchange in-process and shows, per market, the last
trades, the top of book (from the ticker stream), the message rate, the connection's reconnects
and gaps, and a drawn depth ladder of the first market (from its synchronised local book),
refreshed a few times a second with rich. :class:`LiveView` holds the state
and renders it (no I/O, testable by feeding events); :func:`run_live` wires it to a StreamClient.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .client.stream import StreamClient
from .models import (
    BookInvalid,
    BookLevel,
    BookValid,
    Connected,
    Disconnected,
    Gap,
    Reconnected,
    Side,
    Stale,
    Ticker,
    Trade,
)

__all__ = ["LiveView", "MarketState", "run_live"]

DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
LADDER_LEVELS = 8  # levels a side in the depth ladder
LADDER_WIDTH = 40  # characters of the longest cumulative-size bar


@dataclass
class MarketState:
    symbol: str
    trades: deque[Trade] = field(default_factory=lambda: deque(maxlen=3))
    ticker: Ticker | None = None
    trade_count: int = 0
    volume: Decimal = Decimal(0)


class LiveView:
    """State of the live view, fed by StreamClient handlers, rendered on demand."""

    def __init__(self, symbols: Sequence[str], *, venue: str, url: str) -> None:
        self.venue = venue
        self.url = url
        self.markets = {s: MarketState(s) for s in symbols}
        self.status_log: deque[str] = deque(maxlen=4)
        self.reconnects = 0
        self.stale = 0
        self.gaps = 0
        self.gaps_recovered = 0
        self.connected = False
        self.started = time.monotonic()
        self._rate_mark: tuple[float, int] | None = None
        self.rate = 0.0
        self.focus = next(iter(self.markets), None)  # the market whose depth is drawn
        self.ladder: tuple[list[BookLevel], list[BookLevel]] | None = None
        self.book_sequence: int | None = None
        self.book_valid = False

    # ---------------------------------------------------------------------------- handlers
    def on_trade(self, trade: Trade) -> None:
        market = self.markets.get(trade.symbol)
        if market is not None:
            market.trades.appendleft(trade)
            market.trade_count += 1
            market.volume += trade.size

    def on_ticker(self, ticker: Ticker) -> None:
        market = self.markets.get(ticker.symbol)
        if market is not None:
            market.ticker = ticker

    def on_book(self, book: Any) -> None:
        """A synchronised book of the focus market (a ``BookView``): keep the top levels."""
        if book.symbol == self.focus:
            self.ladder = (list(book.bids(LADDER_LEVELS)), list(book.asks(LADDER_LEVELS)))
            self.book_sequence = book.sequence
            self.book_valid = True

    def on_status(self, event: Any) -> None:
        stamp = time.strftime("%H:%M:%S")
        match event:
            case Connected():
                self.connected = True
                self.status_log.appendleft(f"{stamp} connected to {event.url}")
            case Disconnected():
                self.connected = False
                self.status_log.appendleft(f"{stamp} disconnected: {event.reason}")
            case Reconnected():
                self.connected = True
                self.reconnects += 1
                self.status_log.appendleft(
                    f"{stamp} reconnected after {event.downtime * 1000:.0f} ms"
                )
            case Stale():
                self.stale += 1
                self.status_log.appendleft(f"{stamp} silent for {event.silent_for:.1f}s: replaced")
            case BookInvalid() if event.symbol == self.focus:
                self.book_valid = False
                self.status_log.appendleft(f"{stamp} {event.symbol} book invalid: {event.reason}")
            case BookValid() if event.symbol == self.focus:
                self.status_log.appendleft(
                    f"{stamp} {event.symbol} book valid at seq {event.sequence}"
                )
            case Gap():
                self.gaps += 1
                self.gaps_recovered += event.recovered
                how = "recovered" if event.recovered else "NOT recovered"
                self.status_log.appendleft(
                    f"{stamp} {event.symbol} trades {event.first_missing}..{event.last_missing} "
                    f"missed, {how}"
                )

    def sample_rate(self, frames: int, now: float) -> None:
        """Update the message rate from the client's frame counter."""
        mark = self._rate_mark
        if mark is not None and now > mark[0]:
            self.rate = (frames - mark[1]) / (now - mark[0])
        if mark is None or now - mark[0] >= 1.0:
            self._rate_mark = (now, frames)

    # ---------------------------------------------------------------------------- render
    def render(self, now: float | None = None) -> Group:
        now = time.monotonic() if now is None else now
        log = Text("\n".join(self.status_log), style="dim")
        return Group(self.render_markets(), self.render_footer(now), self.render_ladder(), log)

    def render_markets(self, title: str | None = None) -> Table:
        """The markets table: top of book, last trades, counts."""
        table = Table(title=title or f"tickloop live - {self.venue} {self.url}", expand=False)
        columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
            ("market", "left"),
            ("bid", "right"),
            ("ask", "right"),
            ("spread", "right"),
            ("last trades (newest first)", "left"),
            ("trades", "right"),
            ("volume", "right"),
        )
        for name, justify in columns:
            table.add_column(
                name, justify=justify, no_wrap=name == "market", min_width=len(name) // 2 + 1
            )
        for market in self.markets.values():
            t = market.ticker
            bid = f"{t.bid} x {t.bid_size}" if t and t.bid is not None else "-"
            ask = f"{t.ask} x {t.ask_size}" if t and t.ask is not None else "-"
            spread = str(t.ask - t.bid) if t and t.ask is not None and t.bid is not None else "-"
            last = Text()
            for i, trade in enumerate(market.trades):
                if i:
                    last.append("  ")
                style = "green" if trade.side is Side.BUY else "red"
                last.append(f"{trade.price}x{trade.size}", style=style)
            table.add_row(
                market.symbol, bid, ask, spread, last, str(market.trade_count), str(market.volume)
            )
        return table

    def render_footer(self, now: float) -> Text:
        """Connection state, message rate, reconnects, gaps, uptime."""
        state = "[green]connected[/]" if self.connected else "[yellow]connecting[/]"
        return Text.from_markup(
            f"{state}   {self.rate:,.0f} msgs/s   reconnects {self.reconnects}   "
            f"stale {self.stale}   gaps {self.gaps} ({self.gaps_recovered} recovered)   "
            f"up {now - self.started:,.0f}s   Ctrl-C to quit"
        )

    def render_ladder(self) -> Table:
        """The focus market's depth: asks above, bids below, bars of cumulative size."""
        title = f"{self.focus} depth"
        if self.book_sequence is not None:
            title += f" (seq {self.book_sequence}{'' if self.book_valid else ', RESYNCING'})"
        ladder = Table(title=title, show_header=True, box=None, padding=(0, 1))
        ladder.add_column("price", justify="right")
        ladder.add_column("size", justify="right")
        ladder.add_column("cumulative", justify="left", min_width=LADDER_WIDTH)
        if self.ladder is None:
            ladder.add_row("-", "-", Text("waiting for the book", style="dim"))
            return ladder
        bids, asks = self.ladder
        cum_bids = _cumulative(bids)
        cum_asks = _cumulative(asks)
        top = max([*cum_bids, *cum_asks, Decimal(0)])
        for level, cum in reversed(list(zip(asks, cum_asks, strict=True))):
            ladder.add_row(str(level.price), str(level.size), _bar(cum, top, "red"))
        for level, cum in zip(bids, cum_bids, strict=True):
            ladder.add_row(str(level.price), str(level.size), _bar(cum, top, "green"))
        return ladder


def _cumulative(levels: Sequence[BookLevel]) -> list[Decimal]:
    total = Decimal(0)
    out = []
    for level in levels:
        total += level.size
        out.append(total)
    return out


def _bar(value: Decimal, top: Decimal, style: str) -> Text:
    width = 0 if not top else max(1, round(float(value / top) * LADDER_WIDTH))
    return Text("█" * width + f" {value}", style=style)


@contextlib.asynccontextmanager
async def _exchange(
    url: str | None, venue: str, symbols: Sequence[str], seed: int | None, rate: float
) -> AsyncIterator[str]:
    if url is not None or venue != "sim":
        yield url or StreamClient(venue).url
        return
    from .sim import SimExchange

    async with SimExchange(seed=seed, symbols=list(symbols), rate=rate) as ex:
        yield ex.ws_url


async def run_live(
    *,
    venue: str = "sim",
    url: str | None = None,
    symbols: Sequence[str] | None = None,
    seed: int | None = None,
    rate: float = 20.0,
    duration: float | None = None,
    refresh: float = 4.0,
    console: Console | None = None,
) -> LiveView:
    """Show the live view until ``duration`` seconds passed (None: until cancelled).

    Without ``url`` (venue ``sim``) the embedded exchange runs in-process. Returns the view's
    final state.
    """
    symbols = list(symbols or DEFAULT_SYMBOLS)
    console = console or Console()
    async with _exchange(url, venue, symbols, seed, rate) as ws_url:
        view = LiveView(symbols, venue=venue, url=ws_url)
        async with StreamClient(venue, url=ws_url) as feed:
            await feed.subscribe_status(view.on_status)
            await feed.subscribe_trades(symbols, handler=view.on_trade)
            await feed.subscribe_tickers(symbols, handler=view.on_ticker)
            await feed.subscribe_books(symbols[0], view.on_book, depth=LADDER_LEVELS, conflate=250)
            loop = asyncio.get_running_loop()
            deadline = None if duration is None else loop.time() + duration
            with Live(view.render(), console=console, refresh_per_second=refresh) as live:
                while deadline is None or loop.time() < deadline:
                    await asyncio.sleep(1.0 / refresh)
                    now = time.monotonic()
                    view.sample_rate(feed.stats()["frames"], now)
                    live.update(view.render(now))
    return view
