"""REST results that support field selection: only the selected fields are set.

``client.markets(fields=Selection("symbol", book=Selection("bids")))`` returns :class:`Market`
objects whose other fields are :data:`msgspec.UNSET`, so what was not asked for is visible in
the type (``Decimal | UnsetType``) and in the value, instead of a misleading default. Test a
field with ``if market.tick_size is not UNSET`` (or :func:`is_set`).
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, UnsetType

# The structs live in tickloop.models (the venues' REST codecs build them); re-exported here,
# where they were first, so existing imports keep working.
from ..models import Market, MarketBook, MarketTicker

__all__ = ["UNSET", "Market", "MarketBook", "MarketTicker", "UnsetType", "is_set"]


def is_set(value: Any) -> bool:
    """Whether a field of a sparse result was selected (is not :data:`msgspec.UNSET`)."""
    return value is not UNSET
