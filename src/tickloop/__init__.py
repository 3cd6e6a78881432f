"""tickloop: an asyncio toolkit and runtime for real-time market data and trading bots."""

from ._version import __version__
from .bus import Bus
from .client.auth import Credentials
from .client.rest import AsyncClient
from .client.results import UNSET, is_set
from .client.stream import StreamClient
from .client.sync import Client
from .exceptions import (
    AuthError,
    BookError,
    BusError,
    ConfigError,
    ConsumerOverflow,
    ExchangeError,
    InvalidRequest,
    LimitExceeded,
    NetworkError,
    OrderRejected,
    ProtocolError,
    RateLimitError,
    StoreError,
    StreamError,
    SubscriptionError,
    TickloopError,
    TimeoutError,
    UnknownVenue,
    VenueLoadError,
)
from .fields import Selection
from .limits import Limits
from .retry import retry

__all__ = [
    "UNSET",
    "AsyncClient",
    "AuthError",
    "BookError",
    "Bus",
    "BusError",
    "Client",
    "ConfigError",
    "ConsumerOverflow",
    "Credentials",
    "ExchangeError",
    "InvalidRequest",
    "LimitExceeded",
    "Limits",
    "NetworkError",
    "OrderRejected",
    "ProtocolError",
    "RateLimitError",
    "Selection",
    "StoreError",
    "StreamClient",
    "StreamError",
    "SubscriptionError",
    "TickloopError",
    "TimeoutError",
    "UnknownVenue",
    "VenueLoadError",
    "__version__",
    "is_set",
    "retry",
]
