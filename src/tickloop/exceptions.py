"""Every error tickloop raises, in one tree.

Lower layers' exceptions (aiohttp, picows, websockets, msgspec) are translated at the boundary
where they occur and never leak to user code; the original is kept as ``__cause__``. Errors carry
data (venue, symbol, field, codes) as attributes, and never carry secrets.

.. code-block:: text

    TickloopError
    ├── ConfigError            bad configuration or argument (names the field)
    │   ├── UnknownVenue       no built-in, registered or plug-in venue of that name
    │   └── VenueLoadError     a venue plug-in failed to load (names the venue, the entry point)
    ├── InvalidRequest         a request the venue or tickloop refuses (names the field)
    ├── NetworkError           the connection failed, closed or could not be made
    │   └── TimeoutError       a call or connection timed out (also a builtin TimeoutError)
    ├── RateLimitError         the venue said slow down (``retry_after`` seconds)
    ├── AuthError              credentials missing, wrong, stale or expired
    ├── ExchangeError          the venue answered with an error (``code``, ``message``)
    │   └── OrderRejected      an order was refused (``reason``)
    ├── ProtocolError          a message that cannot be decoded or breaks the venue's protocol
    ├── StreamError            a stream ended for good
    │   ├── SubscriptionError  the venue refused a subscription (unknown symbol, auth): not retried
    │   ├── ConsumerOverflow   a consumer fell too far behind a stream that must not drop data
    │   └── LimitExceeded      the venue broke one of tickloop's bounds (``limit``, tickloop.limits)
    ├── BookError              a local order book cannot be (re)built
    ├── BusError               the event bus is closed, or its backend failed (Redis)
    └── StoreError             the runtime's store cannot be opened, migrated or written
"""

from __future__ import annotations

import builtins

__all__ = [
    "AuthError",
    "BookError",
    "BusError",
    "ConfigError",
    "ConsumerOverflow",
    "ExchangeError",
    "InvalidRequest",
    "LimitExceeded",
    "NetworkError",
    "OrderRejected",
    "ProtocolError",
    "RateLimitError",
    "StoreError",
    "StreamError",
    "SubscriptionError",
    "TickloopError",
    "TimeoutError",
    "UnknownVenue",
    "VenueLoadError",
]


class TickloopError(Exception):
    """Root of every tickloop error. ``venue`` is set when one venue is concerned."""

    def __init__(self, message: str, *, venue: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.venue = venue

    def __str__(self) -> str:
        return f"[{self.venue}] {self.message}" if self.venue else self.message


class ConfigError(TickloopError):
    def __init__(self, message: str, *, field: str | None = None, venue: str | None = None):
        super().__init__(message, venue=venue)
        self.field = field


class UnknownVenue(ConfigError):
    """No venue of this name: not built in, not registered in code, no ``tickloop.venues``
    entry point. ``venue`` is the name asked for (the message names it too)."""

    def __init__(self, message: str, *, venue: str) -> None:
        super().__init__(message, field="venue", venue=venue)

    def __str__(self) -> str:
        return self.message


class VenueLoadError(ConfigError):
    """A venue plug-in (an entry point of group ``tickloop.venues``, or a built-in venue's
    module) could not be loaded, or is not a :class:`tickloop.venues.Venue`. ``venue`` is the
    venue, ``target`` what was loaded (``package.module:attribute``); the message names both
    and the loader's own error, on one line (the original is kept as ``__cause__``)."""

    def __init__(self, message: str, *, venue: str, target: str | None = None) -> None:
        super().__init__(message, field="venue", venue=venue)
        self.target = target

    def __str__(self) -> str:
        return self.message


class InvalidRequest(TickloopError):
    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        venue: str | None = None,
    ) -> None:
        super().__init__(message, venue=venue)
        self.field = field
        self.code = code


class NetworkError(TickloopError):
    pass


class TimeoutError(NetworkError, builtins.TimeoutError):
    pass


class RateLimitError(TickloopError):
    def __init__(
        self, message: str, *, retry_after: float | None = None, venue: str | None = None
    ) -> None:
        super().__init__(message, venue=venue)
        self.retry_after = retry_after


class AuthError(TickloopError):
    pass


class ExchangeError(TickloopError):
    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        venue: str | None = None,
    ) -> None:
        super().__init__(message, venue=venue)
        self.code = code
        self.status = status


class OrderRejected(ExchangeError):
    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        client_order_id: str | None = None,
        venue: str | None = None,
    ) -> None:
        super().__init__(f"order rejected: {reason}", code=code, status=None, venue=venue)
        self.reason = reason
        self.client_order_id = client_order_id


class ProtocolError(TickloopError):
    """``symbol`` and ``channel`` are set when the codec could tell which stream the bad
    message belonged to (a book that misses a message must not stay valid). ``limit`` names the
    field of :class:`tickloop.limits.Limits` the message broke, if it broke one: given, or that
    of the :class:`~tickloop.limits.BoundError` it was raised from."""

    def __init__(
        self,
        message: str,
        *,
        venue: str | None = None,
        symbol: str | None = None,
        channel: str | None = None,
        limit: str | None = None,
    ) -> None:
        super().__init__(message, venue=venue)
        self.symbol = symbol
        self.channel = channel
        self._limit = limit

    @property
    def limit(self) -> str | None:
        if self._limit is not None:
            return self._limit
        cause = getattr(self.__cause__, "limit", None)
        return cause if isinstance(cause, str) else None


class StreamError(TickloopError):
    pass


class SubscriptionError(StreamError):
    def __init__(
        self,
        message: str,
        *,
        channel: str | None = None,
        symbol: str | None = None,
        venue: str | None = None,
    ) -> None:
        super().__init__(message, venue=venue)
        self.channel = channel
        self.symbol = symbol


class ConsumerOverflow(StreamError):
    def __init__(self, message: str, *, dropped: int = 0, venue: str | None = None) -> None:
        super().__init__(message, venue=venue)
        self.dropped = dropped


class LimitExceeded(StreamError):
    """The venue broke a bound of :class:`tickloop.limits.Limits` (``limit`` names the field)
    in a way the stream cannot recover from by itself, e.g. every connection sends a message
    larger than ``max_message_size``."""

    def __init__(self, message: str, *, limit: str, venue: str | None = None) -> None:
        super().__init__(message, venue=venue)
        self.limit = limit


class BookError(TickloopError):
    def __init__(self, message: str, *, symbol: str | None = None, venue: str | None = None):
        super().__init__(message, venue=venue)
        self.symbol = symbol


class BusError(TickloopError):
    """The event bus cannot do what was asked: it is closed, or its backend failed (the
    backend's own exception, e.g. redis-py's, is kept as ``__cause__``)."""


class StoreError(TickloopError):
    """The runtime's SQLite store failed (sqlite3's exception is kept as ``__cause__``)."""
