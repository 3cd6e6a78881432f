"""tickloop: an asyncio toolkit and runtime for real-time market data and trading bots."""

from ._version import __version__
from .exceptions import (
    AuthError,
    BookError,
    ConfigError,
    ConsumerOverflow,
    ExchangeError,
    InvalidRequest,
    NetworkError,
    OrderRejected,
    ProtocolError,
    RateLimitError,
    StreamError,
    SubscriptionError,
    TickloopError,
    TimeoutError,
)

__all__ = [
    "AuthError",
    "BookError",
    "ConfigError",
    "ConsumerOverflow",
    "ExchangeError",
    "InvalidRequest",
    "NetworkError",
    "OrderRejected",
    "ProtocolError",
    "RateLimitError",
    "StreamError",
    "SubscriptionError",
    "TickloopError",
    "TimeoutError",
    "__version__",
]
