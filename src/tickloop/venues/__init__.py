"""Venues: one sans-I/O implementation per venue behind one public contract, and the registry.

A venue is a :class:`Venue`: a stream codec (:class:`Codec`), a REST codec
(:class:`PublicRest`, optionally with capability contracts such as :class:`TradingRest`) and a
request signer (:class:`Authorizer`). The built-in venues (``sim``, ``binance``, ``coinbase``,
``kraken``) are declared the same way as plug-ins; a plug-in package declares its venue as an
entry point of group ``tickloop.venues``, or a program calls :func:`register`. Venues are
imported on first use. docs/venues.md, *Adding your own venue*, walks through an example.
"""

from __future__ import annotations

from .base import (
    AccountRest,
    Authorizer,
    Channel,
    Codec,
    DecimalCache,
    Decoded,
    FieldSelectionRest,
    Heartbeat,
    LoggedIn,
    MarketDataRest,
    Pong,
    PublicRest,
    RestRequest,
    SessionToken,
    SigningKey,
    Subscribed,
    Subscription,
    TradingRest,
    Unsubscribed,
    VenueError,
    book_levels,
    interned_levels,
)
from .registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    Venue,
    authorizer,
    get,
    names,
    register,
    rest_codec,
    stream_codec,
    unregister,
)

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "AccountRest",
    "Authorizer",
    "Channel",
    "Codec",
    "DecimalCache",
    "Decoded",
    "FieldSelectionRest",
    "Heartbeat",
    "LoggedIn",
    "MarketDataRest",
    "Pong",
    "PublicRest",
    "RestRequest",
    "SessionToken",
    "SigningKey",
    "Subscribed",
    "Subscription",
    "TradingRest",
    "Unsubscribed",
    "Venue",
    "VenueError",
    "authorizer",
    "book_levels",
    "get",
    "interned_levels",
    "names",
    "register",
    "rest_codec",
    "stream_codec",
    "unregister",
]
