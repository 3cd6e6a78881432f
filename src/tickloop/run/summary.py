"""The terminal summary of a running platform: markets, bots and PnL.

:class:`PlatformView` is the live view of :mod:`tickloop.live` (top of book, last trades,
message rate, reconnects, gaps) fed from the bus instead of a StreamClient's handlers, plus a
table of the bots (status, PnL, position, orders, errors) read from the engine when rendered.
It renders for rich's ``Live`` on a terminal, and as one plain line (:meth:`line`) when the
output is a file or a pipe. No I/O: tests feed it events and read what it renders.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..bus import Event
from ..live import LiveView

if TYPE_CHECKING:
    from ..client.stream import StreamClient
    from ..runtime.engine import Engine

__all__ = ["PlatformView"]

_STATUS_STYLE = {"running": "green", "paused": "yellow", "error": "red", "stopped": "dim"}


class PlatformView(LiveView):
    """What ``tickloop run`` shows in the terminal."""

    def __init__(self, symbols: Sequence[str], *, venue: str, url: str, engine: Engine,
                 feed: StreamClient, dashboard: str) -> None:
        super().__init__(symbols, venue=venue, url=url)
        self.engine = engine
        self.feed = feed
        self.dashboard = dashboard

    # bus handlers (plain functions, called by publish)
    def on_trade_event(self, event: Event) -> None:
        self.on_trade(event.payload)

    def on_ticker_event(self, event: Event) -> None:
        self.on_ticker(event.payload)

    def on_status_event(self, event: Event) -> None:
        self.on_status(event.payload)

    def render_bots(self) -> Table:
        table = Table(title="bots (paper)", expand=False)
        for name, justify in (("bot", "left"), ("class", "left"), ("status", "left"),
                              ("pnl", "right"), ("position", "right"), ("open orders", "right"),
                              ("errors", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        engine = self.engine
        for bot in engine.bots:
            stats = engine.stats(bot.id)
            portfolio = engine.portfolio(bot.id)
            held = ", ".join(f"{p.symbol} {p.size}" for p in portfolio.positions() if p.size)
            status = stats["status"] + (" (killed)" if engine.risk.killed(bot.id) else "")
            table.add_row(
                bot.id, type(bot).__name__,
                Text(status, style=_STATUS_STYLE.get(stats["status"], "")),
                f"{portfolio.pnl:.2f}", held or "flat", str(len(engine.open_orders(bot.id))),
                str(stats["errors"]),
            )
        return table

    def render(self, now: float | None = None) -> Group:
        now = time.monotonic() if now is None else now
        head = Text.from_markup(f"dashboard [bold]{self.dashboard}[/]   venue {self.venue} "
                                f"{self.url}")
        log = Text("\n".join(self.status_log), style="dim")
        return Group(head, self.render_markets(title="markets"), self.render_bots(),
                     self.render_footer(now), log)

    def line(self) -> str:
        """One plain line: last prices, then each bot's status and PnL."""
        prices = []
        for market in self.markets.values():
            last = market.trades[0].price if market.trades else "-"
            prices.append(f"{market.symbol} {last}")
        bots = []
        for bot in self.engine.bots:
            status = self.engine.status(bot.id)
            bots.append(f"{bot.id} {status} pnl {self.engine.portfolio(bot.id).pnl:.2f}")
        stamp = time.strftime("%H:%M:%S")
        return f"{stamp} {'  '.join(prices)} | {'  '.join(bots) or 'no bots'} | " \
               f"{self.rate:,.0f} msgs/s, reconnects {self.reconnects}, gaps {self.gaps}"
