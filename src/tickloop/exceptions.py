"""Every error tickloop raises, in one tree.

Lower layers' exceptions (aiohttp, picows, websockets, msgspec) are translated at the boundary
where they occur and never leak to user code; the original is kept as ``__cause__``. Errors carry
data (venue, symbol, field, codes) as attributes, and never carry secrets.

.. code-block:: text

    TickloopError
    ├── ConfigError            bad configuration or argument (names the field)
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
    │   └── ConsumerOverflow   a consumer fell too far behind a stream that must not drop data
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
    "NetworkError",
    "OrderRejected",
    "ProtocolError",
    "RateLimitError",
    "StoreError",
    "StreamError",
    "SubscriptionError",
    "TickloopError",
    "TimeoutError",
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
    pass


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


class BookError(TickloopError):
    def __init__(self, message: str, *, symbol: str | None = None, venue: str | None = None):
        super().__init__(message, venue=venue)
        self.symbol = symbol


class BusError(TickloopError):
    """The event bus cannot do what was asked: it is closed, or its backend failed (the
    backend's own exception, e.g. redis-py's, is kept as ``__cause__``)."""


class StoreError(TickloopError):
    """The runtime's SQLite store failed (sqlite3's exception is kept as ``__cause__``)."""
