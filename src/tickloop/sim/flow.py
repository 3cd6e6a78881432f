"""Synthetic order flow for the embedded exchange, sans-I/O and deterministic for a given seed.

Each symbol has a fair value that follows a random walk (in ticks). Market makers (accounts
``mm-0``, ``mm-1``, ...) keep a ladder of post-only quotes on both sides around it, one level
``spacing`` ticks apart; takers (``taker-0``, ...) hit the book with market and IOC orders.
:meth:`Flow.step` is one action on one symbol: a taker order (with probability ``taker_rate``),
or a maker placing, requoting (cancel and place) or cancelling a quote.

Guarantees, relied on by the server (a caller wanting N book updates a second calls ``step`` N
times a second) and checked by tests:

* every step changes the book, so it yields at least one :class:`BookUpdate`;
* the book stays two-sided: a taker never takes a whole side, a maker never cancels when its
  side is thin, and a step that finds a side empty (a user swept it) refills it first;
* makers never trade with each other (post-only, priced inside the opposite best), so every
  trade the flow makes has a taker account on one side;
* all randomness comes from the injected ``random.Random``: same seed, same calls, same events.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal

from ..models import OrderType, Side, TimeInForce
from .engine import BookUpdate, Engine, EngineEvent, Rejected

__all__ = ["DEFAULT_START_PRICES", "Flow"]

#: Starting fair values (in the quote asset) of the default markets; others start at 100.
DEFAULT_START_PRICES: dict[str, Decimal] = {
    "BTC-USD": Decimal(60000),
    "ETH-USD": Decimal(3000),
    "SOL-USD": Decimal(150),
}
# Flow accounts hold this much of every asset: far more than a long run can move.
_FUNDING = Decimal(10**12)
# A typical order is worth about this much of the quote asset.
_TYPICAL_NOTIONAL = 5000
# A side this thin (levels) is never thinned further by a plain cancel.
_MIN_LEVELS = 3

_BUY, _SELL = Side.BUY, Side.SELL
_MARKET, _LIMIT = OrderType.MARKET, OrderType.LIMIT
_IOC = TimeInForce.IOC


class _Symbol:
    __slots__ = (
        "fair",
        "half_spread",
        "min_fair",
        "quotes",
        "sigma",
        "spacing",
        "symbol",
        "typical",
    )

    def __init__(self, symbol: str, start: int, typical: int, makers: int, levels: int) -> None:
        self.symbol = symbol
        self.fair = float(start)  # ticks
        self.spacing = max(1, round(start * 0.0001))  # 1 bp between ladder levels
        self.half_spread = max(1, self.spacing // 2)
        self.sigma = self.spacing * 0.25  # fair value move per step, ticks
        self.min_fair = float(self.half_spread + 2 * levels * self.spacing + 1)
        self.typical = max(1, typical)  # lots
        # quotes[maker][0 bid / 1 ask]: order id -> price, oldest first
        self.quotes: list[tuple[dict[str, int], dict[str, int]]] = [({}, {}) for _ in range(makers)]


class Flow:
    """Market makers and takers on a random-walk fair value (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        rng: random.Random,
        symbols: Sequence[str],
        start_prices: Mapping[str, int] | None = None,
        makers: int = 3,
        levels: int = 20,
        taker_rate: float = 0.3,
        takers: int = 2,
    ) -> None:
        if makers < 1 or takers < 1 or levels < _MIN_LEVELS:
            raise ValueError(f"need makers >= 1, takers >= 1 and levels >= {_MIN_LEVELS}")
        if not 0.0 <= taker_rate <= 1.0:
            raise ValueError("taker_rate must be within [0, 1]")
        self.engine = engine
        self.rng = rng
        self.levels = levels
        self.taker_rate = taker_rate
        self.makers = [f"mm-{i}" for i in range(makers)]
        self.takers = [f"taker-{i}" for i in range(takers)]
        assets: dict[str, Decimal] = {}
        for market in engine.markets.values():
            assets[market.base] = assets[market.quote] = _FUNDING
        for account in self.makers + self.takers:
            engine.open_account(account, assets, track_positions=False)
        self._symbols: dict[str, _Symbol] = {}
        for symbol in symbols:
            spec = engine.markets.get(symbol)
            if spec is None:
                raise ValueError(f"symbol {symbol!r} is not a market of the engine")
            if start_prices is not None and symbol in start_prices:
                start = int(start_prices[symbol])
            else:
                price = DEFAULT_START_PRICES.get(symbol, Decimal(100))
                start = int(price.scaleb(spec.price_precision))
            if start <= 0:
                raise ValueError(f"start price of {symbol} must be > 0 ticks")
            scale = 10 ** (spec.size_precision + spec.price_precision)
            typical = round(_TYPICAL_NOTIONAL * scale / start)
            self._symbols[symbol] = _Symbol(symbol, start, typical, makers, levels)

    def fair_value(self, symbol: str) -> float:
        """The current fair value of ``symbol``, in ticks."""
        return self._symbols[symbol].fair

    # ------------------------------------------------------------------ public actions

    def seed_book(self, symbol: str, ts: int) -> list[EngineEvent]:
        """Place the initial ladder: ``levels`` quotes a side for each maker."""
        st = self._symbols[symbol]
        events: list[EngineEvent] = []
        for maker in range(len(self.makers)):
            for level in range(self.levels):
                for side in (_BUY, _SELL):
                    self._quote(st, maker, side, level, ts, events)
        return events

    def step(self, symbol: str, ts: int) -> list[EngineEvent]:
        """One action on ``symbol``; always changes the book and leaves it two-sided."""
        st = self._symbols[symbol]
        rng = self.rng
        fair = st.fair + rng.gauss(0.0, st.sigma)
        st.fair = fair if fair > st.min_fair else st.min_fair
        events: list[EngineEvent] = []
        bids, asks = self.engine.level_counts(symbol)
        if bids == 0 or asks == 0:
            # A user emptied a side (or both): refill before anything else.
            for side, count in ((_BUY, bids), (_SELL, asks)):
                if count == 0:
                    self._quote(st, rng.randrange(len(self.makers)), side, 0, ts, events)
            return events
        if rng.random() < self.taker_rate and self._take(st, bids, asks, ts, events):
            return events
        maker = rng.randrange(len(self.makers))
        side = _BUY if rng.random() < 0.5 else _SELL
        quotes = st.quotes[maker][0 if side is _BUY else 1]
        if len(quotes) >= self.levels:
            # Quotes filled by a taker (ours or a user's) are still listed: drop them first.
            # Only the open quotes and their order decide what follows, so the filled ones
            # need not be dropped sooner, and the flow needs no order events.
            quotes = self._live_quotes(st, maker, side)
        action = rng.random()
        thin = (bids if side is _BUY else asks) <= _MIN_LEVELS
        if len(quotes) >= self.levels and not thin:
            self._cancel_farthest(st, maker, side, ts, events)
            if action < 0.5:
                return events  # a plain cancel
        # place (after a cancel: a requote), more often near the touch than deep in the book
        self._quote(st, maker, side, int(self.levels * rng.random() ** 4), ts, events)
        return events

    # ------------------------------------------------------------------ actions

    def _live_quotes(self, st: _Symbol, maker: int, side: Side) -> dict[str, int]:
        quotes = st.quotes[maker][0 if side is _BUY else 1]
        open_ids = self.engine.open_order_ids(self.makers[maker])
        for oid in [oid for oid in quotes if oid not in open_ids]:
            del quotes[oid]
        return quotes

    def _quote(
        self, st: _Symbol, maker: int, side: Side, level: int, ts: int, events: list[EngineEvent]
    ) -> None:
        """Place a post-only quote ``level`` steps from the fair value, kept inside the opposite
        best so that it rests; if that side cannot take a quote (no room), quote the other."""
        engine = self.engine
        best_bid, best_ask = engine.best(st.symbol)
        offset = st.half_spread + level * st.spacing
        price: int | None = None
        if side is _BUY:
            price = math.floor(st.fair - offset)
            if best_ask is not None:
                price = min(price, best_ask - 1)
            if price <= 0:
                side, price = _SELL, None
        if side is _SELL:
            price = math.ceil(st.fair + offset)
            if best_bid is not None:
                price = max(price, best_bid + 1)
        assert price is not None and price > 0
        size = self.rng.randint(1, 2 * st.typical)
        account = self.makers[maker]
        order, new = engine.place(
            account, st.symbol, side, _LIMIT, size, price, post_only=True, ts=ts
        )
        st.quotes[maker][0 if side is _BUY else 1][order.id] = price
        events.extend(new)

    def _cancel_farthest(
        self, st: _Symbol, maker: int, side: Side, ts: int, events: list[EngineEvent]
    ) -> None:
        quotes = st.quotes[maker][0 if side is _BUY else 1]
        # The quote farthest from where the middle of this maker's ladder should be.
        middle = st.half_spread + (self.levels - 1) / 2 * st.spacing
        centre = st.fair - middle if side is _BUY else st.fair + middle
        oid = max(quotes, key=lambda o: abs(quotes[o] - centre))
        del quotes[oid]
        _, new = self.engine.cancel(self.makers[maker], oid, ts=ts)
        events.extend(new)

    def _take(self, st: _Symbol, bids: int, asks: int, ts: int, events: list[EngineEvent]) -> bool:
        """A taker order that fills at least one lot and leaves the side it hits non-empty."""
        rng = self.rng
        side = _BUY if rng.random() < 0.5 else _SELL
        if (asks if side is _BUY else bids) < 2:
            side = side.opposite
            if (asks if side is _BUY else bids) < 2:
                return False
        engine = self.engine
        book_bids, book_asks = engine.depth(st.symbol, 3)
        levels = book_asks if side is _BUY else book_bids
        # Never more than all but the last of the top levels: the side keeps a level.
        room = sum(size for _, size in levels[: len(levels) - 1])
        size = min(room, rng.randint(1, 2 * st.typical))
        account = self.takers[rng.randrange(len(self.takers))]
        try:
            if rng.random() < 0.5:
                _, new = engine.place(account, st.symbol, side, _MARKET, size, ts=ts)
            else:
                # IOC limited to the second level: never walks further than a market order would.
                price = levels[1][0] if len(levels) > 1 else levels[0][0]
                _, new = engine.place(
                    account, st.symbol, side, _LIMIT, size, price, time_in_force=_IOC, ts=ts
                )
        except Rejected:
            return False
        events.extend(new)
        return any(type(ev) is BookUpdate for ev in new)
