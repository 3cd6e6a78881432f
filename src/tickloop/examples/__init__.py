"""Three example bots, each a small sans-I/O strategy core plus the :class:`~tickloop.runtime.Bot`
that feeds it and acts on it. They are examples, not advice: each trades a fixed size on one
symbol and keeps its logic short enough to read in a minute.

* :class:`SmaCross`: goes long when the fast simple moving average of the last trade price
  (sampled every tick) crosses above the slow one, and back to flat when it crosses below.
  :class:`SmaCandleCross` is the same strategy on the closes of candles (``candle_interval``,
  default 1m): it decides as each candle closes, as bar-by-bar backtesters do.
* :class:`MarketMaker`: every tick, cancels its quotes and quotes a bid and an ask around the
  mid, ``spread`` apart, both shifted against its inventory (``skew`` per unit held) so that
  fills pull the position back to zero; it stops quoting the side that would pass
  ``max_inventory``.
* :class:`MeanReversion`: buys when the price is ``entry`` standard deviations below its rolling
  mean, sells when as far above, and goes flat once it is back within ``exit`` of it.

The cores (:class:`SmaSignal`, :func:`skewed_quotes`, :class:`ZScore`) take numbers and return
decisions, so they are tested without a market.
"""

from __future__ import annotations

from collections import deque
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, ClassVar

import msgspec

from ..models import Candle, Side, Trade
from ..runtime.bot import Bot

__all__ = ["MarketMaker", "MeanReversion", "SmaCandleCross", "SmaCross", "SmaSignal", "ZScore",
           "skewed_quotes"]

_ZERO = Decimal(0)
_TWO = Decimal(2)
# Read on every tick: on Python 3.11 an enum member read off its class goes through the enum
# metaclass's __getattr__ hook, many times the cost of a module name.
_BUY = Side.BUY
_SELL = Side.SELL


# --------------------------------------------------------------------------- SMA crossover


class SmaSignal:
    """Fast and slow simple moving averages; :meth:`update` says when they cross."""

    def __init__(self, fast: int, slow: int) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast}, slow={slow}")
        self.fast = fast
        self.slow = slow
        self._prices: deque[Decimal] = deque()
        # running sums of the last ``fast`` and ``slow`` prices: O(1) a price, and exact
        # (Decimal sums of the venue's digits round nowhere)
        self._fast_sum = _ZERO
        self._slow_sum = _ZERO
        self._above: bool | None = None

    def update(self, price: Decimal) -> Side | None:
        """Add a price; BUY when the fast average just crossed above the slow one, SELL when
        it just crossed below, else None (also while there are fewer than ``slow`` prices)."""
        prices = self._prices
        prices.append(price)
        n = len(prices)
        fast_n = self.fast
        slow_n = self.slow
        # the sums in locals, stored once (a backtest calls this on every bar)
        fast_sum = self._fast_sum + price
        slow_sum = self._slow_sum + price
        if n > fast_n:
            fast_sum -= prices[-fast_n - 1]
        if n > slow_n:
            slow_sum -= prices.popleft()
            n -= 1
        self._fast_sum = fast_sum
        self._slow_sum = slow_sum
        if n < slow_n:
            return None
        # compare fast_sum / fast with slow_sum / slow without dividing
        fast = fast_sum * slow_n
        slow = slow_sum * fast_n
        if fast == slow:
            return None
        above = fast > slow
        previous, self._above = self._above, above
        if previous is None or previous == above:
            return None
        return _BUY if above else _SELL


class SmaParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fast: int = 5
    slow: int = 20
    size: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        if not 1 <= self.fast < self.slow:
            raise ValueError("fast must be >= 1 and below slow")
        if self.size <= 0:
            raise ValueError("size must be > 0")


class SmaCross(Bot):
    """Long on a golden cross, flat on a death cross (see the module docstring)."""

    symbols = ("BTC-USD",)
    every: float | None = 1.0
    Params: ClassVar[type[msgspec.Struct]] = SmaParams

    def __init__(self, id: str, **params: Any) -> None:
        super().__init__(id, **params)
        self.signal_core = SmaSignal(self.params.fast, self.params.slow)
        self.last: Decimal | None = None

    def on_trade(self, trade: Trade) -> None:
        self.last = trade.price

    async def tick(self) -> None:
        if self.last is not None:
            order = self.decide(self.last)
            if order is not None:
                await self.place(self.symbols[0], *order)

    def decide(self, price: Decimal) -> tuple[Side, Decimal] | None:
        """Add ``price`` to the averages: the order to place (side and size) on a golden cross
        when not long, on a death cross when long, with its signal published; else None."""
        side = self.signal_core.update(price)
        if side is None:
            return None
        symbol = self.symbols[0]
        held = self.position(symbol).size
        if side is _BUY and held <= 0:
            self.signal("sma_cross", "up", symbol=symbol)
            return _BUY, self.params.size - held
        if side is _SELL and held > 0:
            self.signal("sma_cross", "down", symbol=symbol)
            return _SELL, held
        return None


class SmaCandleCross(SmaCross):
    """:class:`SmaCross` on candle closes: one decision as each candle of ``candle_interval``
    closes (``SmaCandleCross("b1", candle_interval="1s", fast=10, slow=30)``), no tick. A
    live stream also sends the candle still forming, at each trade: those are skipped."""

    channels = ("candles",)
    every = None

    async def on_candle(self, candle: Candle) -> None:
        if not candle.closed:
            return
        order = self.decide(candle.close)
        if order is not None:
            await self.place(self.symbols[0], *order)


# --------------------------------------------------------------------------- market maker


def skewed_quotes(mid: Decimal, position: Decimal, *, spread: Decimal, skew: Decimal,
                  tick: Decimal) -> tuple[Decimal, Decimal]:
    """Bid and ask ``spread`` (a fraction of the mid) apart around ``mid``, both moved down by
    ``skew`` (a fraction of the mid per unit held) times the position; the bid rounded down and
    the ask up to the tick, and always at least one tick apart."""
    centre = mid * (1 - skew * position)
    half = mid * spread / _TWO
    bid = ((centre - half) / tick).to_integral_value(ROUND_FLOOR) * tick
    ask = ((centre + half) / tick).to_integral_value(ROUND_CEILING) * tick
    if ask <= bid:
        ask = bid + tick
    return bid, ask


class MarketMakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    spread: Decimal = Decimal("0.002")
    skew: Decimal = Decimal("0.01")
    size: Decimal = Decimal("0.01")
    max_inventory: Decimal = Decimal("0.05")
    tick: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        for name in ("spread", "size", "max_inventory", "tick"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.skew < 0:
            raise ValueError("skew must be >= 0")


class MarketMaker(Bot):
    """Quotes both sides around the mid with an inventory skew (see the module docstring)."""

    symbols = ("BTC-USD",)
    every = 1.0
    Params: ClassVar[type[msgspec.Struct]] = MarketMakerParams

    async def tick(self) -> None:
        symbol = self.symbols[0]
        book = self.book(symbol)
        if book is None or not book.valid or book.mid is None:
            return
        p = self.params
        await self.cancel_all(symbol)
        held = self.position(symbol).size
        bid, ask = skewed_quotes(book.mid, held, spread=p.spread, skew=p.skew, tick=p.tick)
        if held + p.size <= p.max_inventory:
            await self.buy(symbol, p.size, bid, post_only=True)
        if held - p.size >= -p.max_inventory:
            await self.sell(symbol, p.size, ask, post_only=True)


# --------------------------------------------------------------------------- mean reversion


class ZScore:
    """Rolling mean and standard deviation of the last ``window`` values."""

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = window
        self._values: deque[Decimal] = deque(maxlen=window)

    def update(self, value: Decimal) -> Decimal | None:
        """Add a value; its z-score against the window (None until the window is full or
        while it has no spread)."""
        values = self._values
        values.append(value)
        if len(values) < self.window:
            return None
        mean = sum(values, _ZERO) / self.window
        var = sum(((v - mean) ** 2 for v in values), _ZERO) / (self.window - 1)
        if var <= 0:
            return None
        return (value - mean) / var.sqrt()


class MeanReversionParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window: int = 30
    entry: Decimal = Decimal("2")
    exit: Decimal = Decimal("0.5")
    size: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("window must be >= 2")
        if not 0 <= self.exit < self.entry:
            raise ValueError("need 0 <= exit < entry")
        if self.size <= 0:
            raise ValueError("size must be > 0")


class MeanReversion(Bot):
    """Fades moves of ``entry`` standard deviations (see the module docstring)."""

    symbols = ("BTC-USD",)
    every = 1.0
    Params: ClassVar[type[msgspec.Struct]] = MeanReversionParams

    def __init__(self, id: str, **params: Any) -> None:
        super().__init__(id, **params)
        self.z = ZScore(self.params.window)
        self.last: Decimal | None = None

    def on_trade(self, trade: Trade) -> None:
        self.last = trade.price

    async def tick(self) -> None:
        if self.last is None:
            return
        symbol = self.symbols[0]
        z = self.z.update(self.last)
        if z is None:
            return
        p = self.params
        held = self.position(symbol).size
        if z <= -p.entry and held <= 0:
            await self.buy(symbol, p.size - held)
        elif z >= p.entry and held >= 0:
            await self.sell(symbol, p.size + held)
        elif abs(z) <= p.exit and held != 0:
            if held > 0:
                await self.sell(symbol, held)
            else:
                await self.buy(symbol, -held)
