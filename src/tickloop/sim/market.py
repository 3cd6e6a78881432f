"""Markets of the embedded exchange: integer ticks and lots inside, exact text at the edges.

A :class:`MarketSpec` fixes a market's decimals. Inside the engine a price is an integer number
of ticks (``10**-price_precision``) and a size an integer number of lots
(``10**-size_precision``); text and Decimals exist only where the protocol meets the engine, so
equal values always print as the same string (``"100.10"``, never ``"100.1"``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..models import Instrument

__all__ = ["DEFAULT_MARKETS", "MarketSpec", "market_for"]

# Beyond this many integer digits a price or size is refused rather than turned into a huge int.
_MAX_ADJUSTED_EXPONENT = 24
_SYMBOL = re.compile(r"([A-Z0-9]{1,16})-([A-Z0-9]{1,16})")
_PLAIN = re.compile(r"[0-9]+(?:\.([0-9]+))?", re.ASCII)
_MAX_TEXT = 40


@functools.lru_cache(maxsize=1 << 16)
def fixed_text(value: int, decimals: int) -> str:
    """``value * 10**-decimals`` with exactly ``decimals`` decimals (``1500, 4 -> "0.1500"``).

    Memoised: the sim writes the same few hundred prices and sizes of each book over and over
    (levels, checksums, trades), and a hit in the C cache is several times cheaper than the
    divmod and format. A miss (most sizes: a level's total is seldom seen twice) cuts the
    digits of ``str(value)`` rather than formatting a divmod, half the time."""
    if decimals <= 0:
        return str(value * 10**-decimals)
    if value < 0:
        return "-" + fixed_text(-value, decimals)
    digits = str(value)
    if len(digits) <= decimals:
        digits = digits.rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}"


def _parse_units(text: str, decimals: int, what: str, unit: str) -> int:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string of decimal digits, not {type(text).__name__}")
    if len(text) > _MAX_TEXT:
        raise ValueError(f"{what} is longer than {_MAX_TEXT} characters")
    # The protocol's grammar, not Decimal()'s: ASCII digits and at most one point. Decimal()
    # would also take "١" (an Arabic-Indic one), "1_0", " 1", "+1", "1e3".
    match = _PLAIN.fullmatch(text)
    if match is None:
        if text[:1] == "-" and _PLAIN.fullmatch(text[1:]):
            raise ValueError(f"{what} {text!r} must be > 0")
        raise ValueError(
            f"{what} {text!r} is not a number of plain decimal digits (such as '100.50')"
        )
    if len(match.group(1) or "") > decimals:
        raise ValueError(
            f"{what} {text!r} is not a multiple of the {unit} {fixed_text(1, decimals)} "
            f"(more than the market's {decimals} decimals)"
        )
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{what} {text!r} is not a number")
    if value <= 0:
        raise ValueError(f"{what} {text!r} must be > 0")
    if value.adjusted() > _MAX_ADJUSTED_EXPONENT:
        raise ValueError(f"{what} {text!r} is too large")
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{what} {text!r} is not a multiple of the {unit} {fixed_text(1, decimals)}"
        )
    return int(scaled)


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market: ``BASE-QUOTE`` with its tick (``10**-price_precision``) and lot sizes."""

    symbol: str
    base: str
    quote: str
    price_precision: int
    size_precision: int
    min_size_lots: int = 1

    def __post_init__(self) -> None:
        if self.symbol != f"{self.base}-{self.quote}":
            raise ValueError(f"symbol {self.symbol!r} must be {self.base}-{self.quote}")
        if not 0 <= self.price_precision <= 12 or not 0 <= self.size_precision <= 12:
            raise ValueError("price_precision and size_precision must be within 0..12")
        if self.min_size_lots < 1:
            raise ValueError("min_size_lots must be >= 1")

    def price_text(self, ticks: int) -> str:
        """``10012 -> "100.12"`` (always ``price_precision`` decimals)."""
        return fixed_text(ticks, self.price_precision)

    def size_text(self, lots: int) -> str:
        """``1500 -> "0.1500"`` (always ``size_precision`` decimals)."""
        return fixed_text(lots, self.size_precision)

    def price_decimal(self, ticks: int) -> Decimal:
        return Decimal(ticks).scaleb(-self.price_precision)

    def size_decimal(self, lots: int) -> Decimal:
        return Decimal(lots).scaleb(-self.size_precision)

    def parse_price(self, text: str) -> int:
        """``"100.12" -> 10012``; ValueError naming why (not a number, <= 0, not a tick
        multiple)."""
        return _parse_units(text, self.price_precision, "price", "tick size")

    def parse_size(self, text: str) -> int:
        """``"0.15" -> 1500``; ValueError naming why (not a number, <= 0, not a lot multiple, below
        the minimum size)."""
        lots = _parse_units(text, self.size_precision, "size", "lot size")
        if lots < self.min_size_lots:
            raise ValueError(
                f"size {text!r} is below the minimum size {self.size_text(self.min_size_lots)}"
            )
        return lots

    def instrument(self, venue: str = "sim") -> Instrument:
        return Instrument(
            venue=venue,
            symbol=self.symbol,
            venue_symbol=self.symbol,
            base=self.base,
            quote=self.quote,
            price_precision=self.price_precision,
            size_precision=self.size_precision,
            tick_size=Decimal(1).scaleb(-self.price_precision),
            lot_size=Decimal(1).scaleb(-self.size_precision),
            min_size=self.size_decimal(self.min_size_lots),
        )


DEFAULT_MARKETS: dict[str, MarketSpec] = {
    spec.symbol: spec
    for spec in (
        MarketSpec("BTC-USD", "BTC", "USD", price_precision=2, size_precision=4),
        MarketSpec("ETH-USD", "ETH", "USD", price_precision=2, size_precision=4),
        MarketSpec("SOL-USD", "SOL", "USD", price_precision=3, size_precision=2),
    )
}


def market_for(symbol: str) -> MarketSpec:
    """The :data:`DEFAULT_MARKETS` entry, or a generated spec (2 price and 4 size decimals) for
    any other ``BASE-QUOTE`` symbol in upper case. ValueError for anything else."""
    spec = DEFAULT_MARKETS.get(symbol)
    if spec is not None:
        return spec
    match = _SYMBOL.fullmatch(symbol) if isinstance(symbol, str) else None
    if match is None or match.group(1) == match.group(2):
        raise ValueError(f"symbol {symbol!r} is not BASE-QUOTE in upper case")
    return MarketSpec(symbol, match.group(1), match.group(2), price_precision=2, size_precision=4)
