"""REST results that support field selection: only the selected fields are set.

``client.markets(fields=Selection("symbol", book=Selection("bids")))`` returns :class:`Market`
objects whose other fields are :data:`msgspec.UNSET`, so what was not asked for is visible in
the type (``Decimal | UnsetType``) and in the value, instead of a misleading default. Test a
field with ``if market.tick_size is not UNSET`` (or :func:`is_set`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from msgspec import UNSET, UnsetType

from .._web import WebStruct
from ..models import BookLevel

__all__ = ["UNSET", "Market", "MarketBook", "MarketTicker", "UnsetType", "is_set"]


def is_set(value: Any) -> bool:
    """Whether a field of a sparse result was selected (is not :data:`msgspec.UNSET`)."""
    return value is not UNSET


class MarketBook(WebStruct, frozen=True, kw_only=True, gc=False):
    """The top of a market's book as the market listing carries it (10 levels a side)."""

    seq: int | UnsetType = UNSET
    bids: tuple[BookLevel, ...] | UnsetType = UNSET  # best (highest) first
    asks: tuple[BookLevel, ...] | UnsetType = UNSET  # best (lowest) first


class MarketTicker(WebStruct, frozen=True, kw_only=True, gc=False):
    bid: Decimal | UnsetType | None = UNSET
    ask: Decimal | UnsetType | None = UNSET
    last: Decimal | UnsetType | None = UNSET
    volume: Decimal | UnsetType | None = UNSET


class Market(WebStruct, frozen=True, kw_only=True, gc=False):
    """One market of a venue; with a field selection, only the selected fields are set."""

    venue: str = "sim"
    symbol: str | UnsetType = UNSET
    base: str | UnsetType = UNSET
    quote: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    price_precision: int | UnsetType = UNSET
    size_precision: int | UnsetType = UNSET
    tick_size: Decimal | UnsetType = UNSET
    lot_size: Decimal | UnsetType = UNSET
    min_size: Decimal | UnsetType = UNSET
    book: MarketBook | UnsetType = UNSET
    ticker: MarketTicker | UnsetType = UNSET
