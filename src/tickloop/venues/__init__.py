"""Sans-I/O venue codecs: one module per venue, all behind the contracts in
:mod:`tickloop.venues.base`. The registry maps a venue name to its codecs, imported on first use
so that a program that only talks to the sim never imports the others."""

from __future__ import annotations

import importlib
from typing import Any

from ..exceptions import ConfigError
from .base import Codec, PublicRest

__all__ = ["VENUES", "rest_codec", "stream_codec"]

#: venue name -> (stream codec, REST codec), as "module:Class" paths.
VENUES: dict[str, tuple[str, str]] = {
    "sim": ("tickloop.venues.sim:SimCodec", "tickloop.venues.sim_rest:SimRest"),
    "binance": ("tickloop.venues.binance:BinanceCodec", "tickloop.venues.binance:BinanceRest"),
    "coinbase": (
        "tickloop.venues.coinbase:CoinbaseCodec",
        "tickloop.venues.coinbase:CoinbaseRest",
    ),
    "kraken": ("tickloop.venues.kraken:KrakenCodec", "tickloop.venues.kraken:KrakenRest"),
}


def _load(venue: str, which: int) -> Any:
    try:
        path = VENUES[venue][which]
    except KeyError:
        known = ", ".join(sorted(VENUES))
        raise ConfigError(f"unknown venue {venue!r} (known: {known})", field="venue") from None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def stream_codec(venue: str) -> type[Codec]:
    """The WebSocket codec class of ``venue``."""
    cls: type[Codec] = _load(venue, 0)
    return cls


def rest_codec(venue: str) -> type[PublicRest]:
    """The REST codec class of ``venue``."""
    cls: type[PublicRest] = _load(venue, 1)
    return cls
