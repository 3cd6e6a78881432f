"""Positions, realised and unrealised PnL and equity of one account (a bot), from its fills.

A sans-I/O core: fills and mark prices in, :class:`~tickloop.models.Position` and
:class:`~tickloop.models.Equity` out; time is a parameter. Arithmetic is exact (Decimal).

Conventions and invariants:

* A position is signed (long > 0, short < 0) with the entry value of what is open (its
  average price times its size). A fill that reduces it realises the proceeds minus the
  closed share of the entry value (``(fill price - average) x closed size``, sign-adjusted
  for a short); a fill that flips it closes the whole position and opens the rest at the fill
  price.
* Fees are costs: each fill's fee is taken off the symbol's realised PnL and off the cash.
* Cash starts at ``cash`` and moves by every fill's notional and fee, so at all times
  ``equity == cash + sum(size x mark) == start cash + realised + unrealised`` (the property
  tests check it). Equity is in quote units: a portfolio assumes every symbol it trades shares
  one quote asset (``BTC-USD`` and ``ETH-USD``, not ``ETH-BTC`` beside them); a fill in any other
  quote asset is refused with :class:`~tickloop.exceptions.ConfigError`.
* Unrealised PnL uses the last mark of each symbol (:meth:`Portfolio.mark`), or the last fill
  price when no mark was given.
* Daily PnL is realised + unrealised minus their value when the UTC day began: the first
  reading on a new day (:meth:`Portfolio.daily_pnl` with that day's wall time) starts the day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ..exceptions import ConfigError
from ..models import Equity, Fill, Position, Side

__all__ = ["Portfolio", "PositionState"]

_ZERO = Decimal(0)
# enum members as module names: on Python 3.11 a member read off its class goes through
# EnumType.__getattr__ (~65 ns against ~5): the order path reads many
_BUY = Side.BUY
_DAY = 86_400


@dataclass(slots=True)
class PositionState:
    """``cost`` is the signed entry value of what is open (positive long, negative short):
    kept instead of the average price so that the books balance exactly (see the module
    docstring); ``avg_price`` is derived from it."""

    symbol: str
    size: Decimal = _ZERO
    cost: Decimal = _ZERO
    realized: Decimal = _ZERO
    mark: Decimal | None = None
    #: The :class:`~tickloop.models.Position` of the fields above, made at the first read
    #: after a fill (a bot reads its position on every tick; fills are rare).
    model: Position | None = field(default=None, repr=False, compare=False)

    @property
    def avg_price(self) -> Decimal | None:
        return self.cost / self.size if self.size else None

    @property
    def unrealized(self) -> Decimal:
        if not self.size or self.mark is None:
            return _ZERO
        return self.size * self.mark - self.cost


class Portfolio:
    """One account's book of positions (see the module docstring)."""

    __slots__ = ("_day", "_day_base", "_flat", "_positions", "bot", "cash", "fees", "quote",
                 "start_cash", "venue")

    def __init__(self, *, cash: Decimal = _ZERO, bot: str | None = None, venue: str = "sim",
                 quote: str | None = None) -> None:
        if not isinstance(cash, Decimal) or not cash.is_finite():
            raise ConfigError(f"cash must be a finite Decimal, got {cash!r}", field="cash")
        self.bot = bot
        self.venue = venue
        self.start_cash = cash
        self.cash = cash
        self.fees = _ZERO
        #: The quote asset of every symbol (set by the first fill when not given).
        self.quote = quote
        self._positions: dict[str, PositionState] = {}
        self._day: int | None = None
        self._day_base = _ZERO
        # (cash, cash + 0): the equity with nothing held, made once per cash value
        self._flat: tuple[Decimal | None, Decimal] = (None, _ZERO)

    # ------------------------------------------------------------------ updates

    def apply_fill(self, fill: Fill) -> Position:
        """Book one fill; returns the symbol's position after it."""
        quote = fill.symbol.rpartition("-")[2]
        if self.quote is None:
            self.quote = quote
        elif quote != self.quote:
            raise ConfigError(
                f"{fill.symbol} is quoted in {quote}, this portfolio in {self.quote}",
                field="symbol")
        pos = self._positions.get(fill.symbol)
        if pos is None:
            pos = self._positions[fill.symbol] = PositionState(fill.symbol)
        signed = fill.size if fill.side is _BUY else -fill.size
        price = fill.price
        old = pos.size
        if old == 0 or (old > 0) == (signed > 0):
            pos.cost += signed * price  # opening or adding
            pos.size = old + signed
        else:
            closed = min(abs(old), abs(signed))
            # the share of the entry value that is closed; exact when all of it is, and any
            # rounding stays inside the position (cost and realised move by the same amount)
            if closed == abs(old):
                closed_cost = pos.cost
            else:
                # rounded to the entry value's own decimals, so every sum stays exact
                exponent = pos.cost.as_tuple().exponent
                assert isinstance(exponent, int)
                closed_cost = (pos.cost * closed / abs(old)).quantize(Decimal(1).scaleb(exponent))
            direction = 1 if old > 0 else -1
            pos.realized += direction * closed * price - closed_cost
            pos.cost -= closed_cost
            pos.size = old + signed
            if pos.size and (pos.size > 0) != (old > 0):
                pos.cost = pos.size * price  # flipped: the rest opens at the fill price
        pos.realized -= fill.fee
        pos.model = None
        self.fees += fill.fee
        self.cash -= signed * price + fill.fee
        if pos.mark is None:
            pos.mark = price
        return self._position(pos)

    def mark(self, symbol: str, price: Decimal) -> None:
        """Set the mark price of ``symbol`` (the mid, or the last trade)."""
        pos = self._positions.get(symbol)
        if pos is None:
            pos = self._positions[symbol] = PositionState(symbol)
        pos.mark = price

    # ------------------------------------------------------------------ reading

    def position(self, symbol: str) -> Position:
        pos = self._positions.get(symbol)
        if pos is not None and pos.model is not None:  # made since the last fill
            return pos.model
        return self._position(pos if pos is not None else PositionState(symbol))

    def positions(self) -> list[Position]:
        """Every symbol traded (or marked), by symbol."""
        return [self._position(self._positions[s]) for s in sorted(self._positions)]

    def symbols(self) -> list[str]:
        """Every symbol traded (or marked), in the order first seen."""
        return list(self._positions)

    def size(self, symbol: str) -> Decimal:
        pos = self._positions.get(symbol)
        return pos.size if pos is not None else _ZERO

    @property
    def realized_pnl(self) -> Decimal:
        return sum((p.realized for p in self._positions.values()), _ZERO)

    @property
    def unrealized_pnl(self) -> Decimal:
        return sum((p.unrealized for p in self._positions.values()), _ZERO)

    @property
    def pnl(self) -> Decimal:
        """Realised (after fees) plus unrealised."""
        return self.realized_pnl + self.unrealized_pnl

    @property
    def equity_value(self) -> Decimal:
        holdings = sum((p.size * p.mark for p in self._positions.values()
                        if p.size and p.mark is not None), _ZERO)
        return self.cash + holdings

    def mark_equity(self, prices: Mapping[str, Decimal]) -> tuple[Decimal, bool]:
        """Mark every symbol held or marked to its price in ``prices`` (those it has), and
        return the equity then (:attr:`equity_value`) and whether any position is open: a
        backtest's reading at each bar close, in one pass."""
        holdings = _ZERO
        exposed = False
        for symbol, pos in self._positions.items():
            price = prices.get(symbol)
            if price is not None:
                pos.mark = price
            if pos.size:
                exposed = True
                if pos.mark is not None:
                    holdings += pos.size * pos.mark
        if holdings is _ZERO:
            # nothing held (or marked): cash + 0, the same object bar after bar until the cash
            # moves (a backtest reads this at every bar close; many bars are flat)
            flat = self._flat
            cash = self.cash
            if flat[0] is not cash:
                flat = self._flat = (cash, cash + holdings)
            return flat[1], exposed
        return self.cash + holdings, exposed

    def equity(self, ts: int) -> Equity:
        """An equity snapshot at ``ts`` (ns)."""
        return Equity(bot=self.bot, equity=self.equity_value, cash=self.cash,
                      realized_pnl=self.realized_pnl, unrealized_pnl=self.unrealized_pnl, ts=ts)

    def daily_pnl(self, wall: float) -> Decimal:
        """PnL since the UTC day of ``wall`` (epoch seconds) began (see the module docstring)."""
        day = int(wall // _DAY)
        pnl = self.pnl
        if self._day != day:
            if self._day is not None and day < self._day:
                return pnl - self._day_base
            self._day = day
            self._day_base = pnl
        return pnl - self._day_base

    def _position(self, pos: PositionState) -> Position:
        model = pos.model
        if model is None:
            model = pos.model = Position(venue=self.venue, symbol=pos.symbol, size=pos.size,
                                         avg_price=pos.avg_price, realized_pnl=pos.realized)
        return model
