"""The public venue contract: what a venue implements so tickloop's I/O shells can use it.

Three sans-I/O parts, put together as a :class:`tickloop.venues.Venue`
(docs/venues.md, *Adding your own venue*):

* :class:`Codec`, the WebSocket codec that the one WebSocket session class drives;
* :class:`PublicRest`, the REST codec that the one HTTP session class drives, with optional
  capability contracts (:class:`FieldSelectionRest`, :class:`MarketDataRest`,
  :class:`TradingRest`, :class:`AccountRest`) that enable more ``AsyncClient`` calls;
* :class:`Authorizer`, the signer of private requests, computing with a :class:`SigningKey`.

A codec turns the venue's frames into tickloop models and tickloop's wishes (subscribe,
unsubscribe, ping, login) into the venue's frames. It owns no socket, no task and no clock: the
session hands it each received frame with the local receive time, and sends what it returns.
Everything venue-specific lives in the codec; the session's reconnect, sharding and heartbeat
logic is the same for every venue, parameterised by the limits a codec declares.

Decoding rules every codec follows:

* ``decode`` returns a list of events (models from :mod:`tickloop.models` and the control
  messages below), usually one, possibly none (a message tickloop does not use).
* A frame that is not valid JSON, or valid JSON of a known type with missing or ill-typed fields,
  raises :class:`tickloop.exceptions.ProtocolError`; the session counts it, logs it and goes on.
* A well-formed message of a type the codec does not know is not an error: it returns ``[]`` and
  counts it in ``unknown``.
"""

from __future__ import annotations

import abc
import logging
import weakref
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec

from .._native import gc_native
from ..exceptions import ProtocolError, TickloopError
from ..limits import DEFAULT_LIMITS, LevelLimitError, Limits, parse_number
from ..models import (
    Balance,
    BookDelta,
    BookLevel,
    BookSnapshot,
    Candle,
    Fill,
    Instrument,
    Market,
    Order,
    OrderEvent,
    OrderType,
    Position,
    Quote,
    Side,
    Ticker,
    TimeInForce,
    Trade,
)

if TYPE_CHECKING:
    from ..fields import Selection

log = logging.getLogger("tickloop.venues")

__all__ = [
    "AccountRest",
    "Authorizer",
    "Channel",
    "Codec",
    "Control",
    "DecimalCache",
    "Decoded",
    "FieldSelectionRest",
    "Heartbeat",
    "LoggedIn",
    "MarketDataRest",
    "Pong",
    "PositiveDecimalCache",
    "PublicRest",
    "RestRequest",
    "SessionToken",
    "SigningKey",
    "Subscribed",
    "Subscription",
    "TradingRest",
    "Unsubscribed",
    "VenueError",
    "book_levels",
    "counted_levels",
    "interned_levels",
]


class Channel(StrEnum):
    TRADES = "trades"
    BOOK = "book"
    TICKER = "ticker"
    CANDLES = "candles"
    ORDERS = "orders"  # private
    FILLS = "fills"  # private

    @property
    def private(self) -> bool:
        return self in (Channel.ORDERS, Channel.FILLS)


class Subscription(msgspec.Struct, frozen=True, gc=False):
    """One upstream stream: a channel for one symbol (``symbol`` is None for private channels)."""

    channel: Channel
    symbol: str | None = None
    interval: str | None = None  # candles only
    depth: int | None = None  # book only, where the venue takes a depth


# ------------------------------------------------------------------ control messages (decoded)


class Subscribed(msgspec.Struct, frozen=True, gc=False):
    subscriptions: tuple[Subscription, ...]
    request_id: int | None = None


class Unsubscribed(msgspec.Struct, frozen=True, gc=False):
    subscriptions: tuple[Subscription, ...]
    request_id: int | None = None


class LoggedIn(msgspec.Struct, frozen=True, gc=False):
    expires_at: int | None = None
    request_id: int | None = None


class Pong(msgspec.Struct, frozen=True, gc=False):
    ts: int = 0
    request_id: int | None = None


class Heartbeat(msgspec.Struct, frozen=True, gc=False):
    symbol: str | None = None
    ts: int = 0


class VenueError(msgspec.Struct, frozen=True, gc=False):
    """An error message from the venue. ``fatal`` errors end the stream they concern
    (unknown symbol, auth failed) instead of being retried."""

    code: str
    message: str
    request_id: int | None = None
    field: str | None = None
    symbol: str | None = None
    channel: Channel | None = None
    fatal: bool = False


Control = Subscribed | Unsubscribed | LoggedIn | Pong | Heartbeat | VenueError
Decoded = Trade | Quote | Ticker | BookSnapshot | BookDelta | Candle | OrderEvent | Fill | Control


class DecimalCache(dict[str, Decimal]):
    """Interns venue price/size strings as Decimals: exactness paid once per distinct string.

    Index it on the hot path: ``cache[text]``. A hit is a plain C-level dict lookup (tens of
    nanoseconds); only a miss runs Python (``__missing__``) to validate the string against
    :func:`tickloop.limits.check_number_text` (ASCII digits, no sign, bounded length and
    exponent) and build the Decimal, so validation too is paid once per distinct string.
    Books and trades repeat a small set of prices and sizes, so nearly every lookup hits;
    docs/models.md has the measurements. Bounded: when full it is cleared (one rebuild, never
    unbounded memory). Calling it, ``cache(text)``, does the same at the cost of a Python call.

    The cycle collector never walks it (with the C module built): a cache holds strings and
    Decimals only, and its twin refers back to it weakly, so it can never be in a reference
    cycle, while a tracked cache of 100k entries made every full collection 10-16 ms longer
    (docs/runtime.md, "The garbage collector and the number caches").
    """

    __slots__ = ("__weakref__", "limits", "max_size", "positive")

    def __init__(self, max_size: int = 200_000, *, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__()
        self.max_size = max_size
        self.limits = limits
        #: The twin for fields that must be > 0 (a trade's price and size, a book level's
        #: price): zero is refused there once per string (docs/reliability.md has its cost).
        if not isinstance(self, PositiveDecimalCache):  # (whose twin is itself)
            self.positive: DecimalCache = PositiveDecimalCache(
                max_size, limits=limits, base=self
            )
        gc = gc_native()
        if gc is not None:
            gc.untrack(self)

    def __missing__(self, text: str) -> Decimal:
        if type(text) is not str:
            raise ValueError(f"not a decimal string: {type(text).__name__}")
        value = parse_number(text, self.limits)  # ValueError naming why
        if len(self) >= self.max_size:
            self.clear()
        self[text] = value
        return value

    def __call__(self, text: str) -> Decimal:
        return self[text]


class PositiveDecimalCache(DecimalCache):
    """A :class:`DecimalCache` that refuses zero too (``"0"``, ``"0.00000000"``): what no venue
    sends as a trade's price or size or as a book level's price. Every DecimalCache has one as
    ``.positive``."""

    __slots__ = ("_base",)

    def __init__(
        self,
        max_size: int = 200_000,
        *,
        limits: Limits = DEFAULT_LIMITS,
        base: DecimalCache | None = None,
    ) -> None:
        super().__init__(max_size, limits=limits)
        # The cache whose Decimals it shares (one Decimal per string, whichever field), held
        # weakly: the base holds its twin, and a cycle would keep both alive untracked.
        self._base = weakref.ref(base) if base is not None else None

    @property  # (a property, not the slot: an untracked cache must not refer to itself)
    def positive(self) -> DecimalCache:
        """Itself: a positive cache's twin."""
        return self

    @positive.setter
    def positive(self, value: DecimalCache) -> None:
        raise AttributeError("a PositiveDecimalCache is its own positive twin")

    @property
    def base(self) -> DecimalCache | None:
        """The cache whose Decimals it shares, or None (none given, or it is gone)."""
        return self._base() if self._base is not None else None

    def __missing__(self, text: str) -> Decimal:
        base = self._base() if self._base is not None else None
        if base is not None:
            value = base[text]  # validated and interned there
        elif type(text) is not str:
            raise ValueError(f"not a decimal string: {type(text).__name__}")
        else:
            value = parse_number(text, self.limits)
        if not value:
            raise ValueError(f"must be > 0, not {text!r}")
        if len(self) >= self.max_size:
            self.clear()
        self[text] = value
        return value


_new = tuple.__new__


def book_levels(pairs: Sequence[tuple[str, str]], cache: DecimalCache) -> tuple[BookLevel, ...]:
    """``[(price, size), ...]`` strings -> BookLevels of interned Decimals, in order
    (:func:`interned_levels` with the arguments the other way round)."""
    return interned_levels(cache, pairs)


def interned_levels(cache: DecimalCache, pairs: Sequence[tuple[str, str]]) -> tuple[BookLevel, ...]:
    """``[(price, size), ...]`` strings -> BookLevels of interned Decimals, in order. The cache
    comes first so a codec can bind it with ``functools.partial(interned_levels, cache)``, which
    calls through without a Python frame of its own.

    The per-level hot path of every diff a codec decodes. BookLevel is a NamedTuple, so it is
    built with ``tuple.__new__`` (its Python-level ``__new__`` costs about twice as much), and
    the short lists diffs carry (one to three levels a side, mostly) are unrolled: a list
    comprehension costs a function call of its own, more than one level's conversion on
    CPython 3.11. Measured in docs/streaming.md (the Binance depth decode).

    A price must be > 0 (looked up in ``cache.positive``), a size >= 0 (0 deletes a level);
    more than ``limits.max_levels_per_message`` pairs raise :class:`LevelLimitError` (checked
    where the unrolled cases end: :func:`tickloop.venues.levels.wire_level_decoder` checks
    every call when the bound is below 4).
    """
    n = len(pairs)
    pos = cache.positive
    if n == 1:
        ((p, q),) = pairs
        return (_new(BookLevel, (pos[p], cache[q])),)
    if n == 2:
        (p, q), (p2, q2) = pairs
        return (_new(BookLevel, (pos[p], cache[q])), _new(BookLevel, (pos[p2], cache[q2])))
    if n == 3:
        (p, q), (p2, q2), (p3, q3) = pairs
        return (
            _new(BookLevel, (pos[p], cache[q])),
            _new(BookLevel, (pos[p2], cache[q2])),
            _new(BookLevel, (pos[p3], cache[q3])),
        )
    if n == 0:
        return ()
    if n > cache.limits.max_levels_per_message:
        raise LevelLimitError(f"{n} levels on one side (limits.max_levels_per_message)")
    return tuple([_new(BookLevel, (pos[p], cache[q])) for p, q in pairs])


def counted_levels(cache: DecimalCache, pairs: Sequence[tuple[str, str]]) -> tuple[BookLevel, ...]:
    """:func:`interned_levels` with the level bound checked on every call (for a bound below
    4, which the unrolled cases do not check)."""
    if len(pairs) > cache.limits.max_levels_per_message:
        raise LevelLimitError(f"{len(pairs)} levels on one side (limits.max_levels_per_message)")
    return interned_levels(cache, pairs)


class Codec(abc.ABC):
    """A venue's sans-I/O WebSocket codec. One instance per connection (it may keep state, such
    as Kraken's channel ids); the session creates it with :meth:`create`."""

    venue: ClassVar[str]
    default_url: ClassVar[str]
    #: Most streams (channel x symbol) one connection may carry; the session shards beyond it.
    max_streams_per_connection: ClassVar[int] = 1024
    #: Most subscribe/unsubscribe messages per second on one connection.
    max_messages_per_second: ClassVar[float] = 5.0
    #: Most streams named in one subscribe message.
    max_streams_per_message: ClassVar[int] = 100
    #: Channels this venue offers.
    channels: ClassVar[frozenset[Channel]] = frozenset()
    #: Whether the venue's trades carry contiguous integer ids per symbol (backfill can dedupe).
    contiguous_trade_ids: ClassVar[bool] = False

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.unknown = 0  # well-formed messages of a type this codec does not use
        #: Symbol names decoded while the name cache was full (limits.max_symbols): each one is
        #: worked out again every time; counted so that a stream naming too many is visible.
        self.uncached_symbols = 0
        self._next_id = 0
        #: The bounds this codec applies (tickloop.limits): numbers, levels, symbol caches.
        self.limits = limits

    def _uncached(self, venue_symbol: str) -> None:
        """``venue_symbol`` was decoded with the name cache full (limits.max_symbols): count it,
        and log the first one (a stream that names this many symbols is hostile or the bound
        is too low for the venue; either way the operator should know)."""
        self.uncached_symbols += 1
        if self.uncached_symbols == 1:
            log.warning(
                "%s: more than limits.max_symbols=%d symbols seen; %r and later new names are "
                "not cached (counted in stats()['uncached_symbols'])",
                self.venue, self.limits.max_symbols, venue_symbol,
            )

    def next_request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- symbols -------------------------------------------------------------------------------
    @abc.abstractmethod
    def venue_symbol(self, symbol: str) -> str:
        """``"BTC-USD"`` -> the venue's name for it."""

    @abc.abstractmethod
    def symbol(self, venue_symbol: str) -> str:
        """The venue's name -> ``"BTC-USD"``."""

    # -- outgoing ------------------------------------------------------------------------------
    @abc.abstractmethod
    def subscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        """Frames that subscribe to ``subscriptions`` (already split by the declared limits)."""

    @abc.abstractmethod
    def unsubscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        """Frames that unsubscribe ``subscriptions``."""

    def ping(self) -> bytes | None:
        """An application-level ping frame, or None to rely on WebSocket ping frames."""
        return None

    def login(self, token: str) -> bytes | None:
        """A frame that authenticates this connection for private channels, or None."""
        return None

    def all_markets(self) -> frozenset[Channel]:
        """Channels this venue streams for every market in one stream: ``Subscription(channel,
        "*")`` subscribes that stream, whose events carry each market's symbol (what
        ``feed.tickers("*")`` uses). For the other channels, ``"*"`` is expanded by the client
        into one subscription per market of the venue's market list. None by default."""
        return frozenset()

    def url(self, base_url: str, subscriptions: Sequence[Subscription]) -> str:
        """The address to connect to for these subscriptions (most venues: ``base_url``)."""
        return base_url

    @classmethod
    def rest_url(cls, stream_url: str) -> str | None:
        """The REST base URL of the same venue instance as ``stream_url``, or None (the default)
        when the two are unrelated and the REST codec's ``default_url`` applies.

        For a venue that serves its stream and its REST API from one address (the sim, a local
        test server) this lets ``StreamClient(venue, url=...)`` find the REST API that trade
        backfill, book snapshots and private-stream logins need without a ``rest_url``."""
        return None

    # -- incoming ------------------------------------------------------------------------------
    @abc.abstractmethod
    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Decoded]:
        """Events in one received frame. Raises ProtocolError for a malformed frame.

        The session hands over the transport's view of the payload (picows gives a memoryview,
        valid only during the call): a codec that needs ``bytes`` methods converts it, one that
        only feeds msgspec decodes the view directly and saves the copy."""

    @classmethod
    def create(cls, **options: Any) -> Codec:
        return cls(**options)


# ------------------------------------------------------------------------------ REST codecs


class RestRequest(msgspec.Struct, frozen=True, gc=False):
    """One HTTP request, described without doing it. The HTTP session signs private requests,
    applies ``weight`` to the venue's rate limit, and retries only ``idempotent`` ones."""

    method: str
    path: str  # appended to the venue's base URL
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    weight: int = 1
    private: bool = False
    idempotent: bool = True


class PublicRest(abc.ABC):
    """A venue's sans-I/O codec for the public REST calls books and trade backfill need:
    requests out, bodies in, models out. Errors map to tickloop's tree in :meth:`error`.

    This is the REST codec every venue has. A codec may also implement the capability
    contracts below (:class:`FieldSelectionRest`, :class:`MarketDataRest`,
    :class:`TradingRest`, :class:`AccountRest`); :class:`tickloop.AsyncClient` offers a call
    for a venue exactly when its REST codec implements the contract that call needs, and
    otherwise raises a one-line ConfigError naming the contract."""

    venue: ClassVar[str]
    default_url: ClassVar[str]
    #: The venue's request budget: ``rate_limit[0]`` weight units per ``rate_limit[1]`` seconds.
    rate_limit: ClassVar[tuple[float, float]] = (10.0, 1.0)
    #: Answer header carrying the budget left in the current window, if the venue sends one
    #: (the HTTP session's throttle learns from it).
    remaining_header: ClassVar[str | None] = None
    #: Answer header carrying the key's budget per window, if the venue sends one.
    limit_header: ClassVar[str | None] = None

    @abc.abstractmethod
    def markets_request(self) -> RestRequest: ...

    @abc.abstractmethod
    def parse_markets(self, body: bytes) -> list[Instrument]: ...

    @abc.abstractmethod
    def book_request(self, symbol: str, depth: int | None = None) -> RestRequest: ...

    @abc.abstractmethod
    def parse_book(self, body: bytes, symbol: str, recv_ts: int = 0) -> BookSnapshot:
        """The snapshot, with ``sequence`` set to what the venue says it reflects."""

    @abc.abstractmethod
    def trades_request(
        self, symbol: str, since_id: int | None = None, limit: int | None = None
    ) -> RestRequest:
        """Trades after ``since_id`` (oldest first) where the venue supports it, else recent."""

    @abc.abstractmethod
    def parse_trades(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Trade]: ...

    @abc.abstractmethod
    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> TickloopError:
        """The tickloop error for a non-2xx answer (RateLimitError with retry_after on 429...)."""


class FieldSelectionRest(abc.ABC):
    """Capability: the venue itself selects which fields of a market it returns
    (``AsyncClient.markets(fields=...)``, ``AsyncClient.market``). Without it, ``markets``
    applies a selection client-side and ``market`` is not offered."""

    @abc.abstractmethod
    def market_list_request(self, fields: Selection | None = None) -> RestRequest: ...

    @abc.abstractmethod
    def parse_market_list(self, body: bytes) -> list[Market]:
        """Markets with only the selected fields set (the others are ``msgspec.UNSET``)."""

    @abc.abstractmethod
    def market_request(self, symbol: str, fields: Selection | None = None) -> RestRequest: ...

    @abc.abstractmethod
    def parse_market(self, body: bytes) -> Market: ...


class MarketDataRest(abc.ABC):
    """Capability: the venue's clock, candles and ticker over REST (``AsyncClient.server_time``,
    ``candles``, ``ticker``)."""

    @abc.abstractmethod
    def time_request(self) -> RestRequest: ...

    @abc.abstractmethod
    def parse_time(self, body: bytes) -> int:
        """The venue's clock, nanoseconds since the epoch."""

    @abc.abstractmethod
    def candles_request(
        self, symbol: str, interval: str = "1m", limit: int | None = None
    ) -> RestRequest: ...

    @abc.abstractmethod
    def parse_candles(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Candle]: ...

    @abc.abstractmethod
    def ticker_request(self, symbol: str) -> RestRequest: ...

    @abc.abstractmethod
    def parse_ticker(self, body: bytes, symbol: str, recv_ts: int = 0) -> Ticker: ...


class TradingRest(abc.ABC):
    """Capability: orders (``AsyncClient.place_order``, ``order``, ``order_by_client_id``,
    ``orders``, ``amend_order``, ``cancel_order``, ``cancel_all``). Every request is
    ``private=True``; the HTTP session has the venue's :class:`Authorizer` sign it.
    ``place_order_request`` must be ``idempotent`` only when the venue deduplicates the
    ``client_order_id`` it carries (AsyncClient always passes one)."""

    @abc.abstractmethod
    def place_order_request(
        self,
        symbol: str,
        *,
        side: Side | str,
        type: OrderType | str,
        size: Decimal | str | int,
        price: Decimal | str | int | None = None,
        time_in_force: TimeInForce | str | None = None,
        post_only: bool = False,
        client_order_id: str | None = None,
    ) -> RestRequest: ...

    @abc.abstractmethod
    def order_request(self, order_id: str) -> RestRequest: ...

    @abc.abstractmethod
    def order_by_client_id_request(self, client_order_id: str) -> RestRequest: ...

    @abc.abstractmethod
    def orders_request(self, symbol: str | None = None, status: str = "open") -> RestRequest: ...

    @abc.abstractmethod
    def amend_order_request(self, order_id: str, size: Decimal | str | int) -> RestRequest: ...

    @abc.abstractmethod
    def cancel_order_request(self, order_id: str) -> RestRequest: ...

    @abc.abstractmethod
    def cancel_all_request(self, symbol: str | None = None) -> RestRequest: ...

    @abc.abstractmethod
    def parse_order(self, body: bytes) -> Order: ...

    @abc.abstractmethod
    def parse_orders(self, body: bytes) -> list[Order]: ...


class AccountRest(abc.ABC):
    """Capability: the key's account (``AsyncClient.balances``, ``positions``, ``fills``).
    Every request is ``private=True``."""

    @abc.abstractmethod
    def balances_request(self) -> RestRequest: ...

    @abc.abstractmethod
    def parse_balances(self, body: bytes) -> list[Balance]: ...

    @abc.abstractmethod
    def positions_request(self) -> RestRequest: ...

    @abc.abstractmethod
    def parse_positions(self, body: bytes) -> list[Position]: ...

    @abc.abstractmethod
    def fills_request(self, symbol: str | None = None, limit: int | None = None) -> RestRequest: ...

    @abc.abstractmethod
    def parse_fills(self, body: bytes, recv_ts: int = 0) -> list[Fill]: ...


# ---------------------------------------------------------------------------- authorization


class SessionToken(msgspec.Struct, frozen=True, gc=False):
    """A session token the venue issued, valid for ``ttl`` seconds from when it was asked for.
    Its repr hides the token."""

    token: str
    ttl: float

    def __repr__(self) -> str:
        return f"SessionToken(token=<hidden>, ttl={self.ttl!r})"


class SigningKey(Protocol):
    """What an :class:`Authorizer` may use of an API key: its id and HMACs keyed with its
    secret. The secret itself is never handed out; :class:`tickloop.Credentials` is one."""

    @property
    def key_id(self) -> str: ...

    def hmac_digest(self, payload: bytes, algorithm: str = "sha256") -> bytes:
        """The raw HMAC of ``payload`` keyed with the secret (``algorithm``: a hashlib name)."""
        ...


class Authorizer(abc.ABC):
    """A venue's sans-I/O request signer: which headers make a private request acceptable.

    The HTTP session drives it for every ``private`` :class:`RestRequest`; the key's
    :class:`tickloop.Credentials` cache the session token. Two shapes of venue fit:

    * every private request is signed on its own (most exchanges): leave
      :meth:`login_request` returning None and sign in :meth:`authorize` (``token`` is None);
    * the venue trades one signed login for a session token (the sim): return that request
      from :meth:`login_request` and read its answer in :meth:`parse_login`. The session sends
      the login with ``token=None``, every other private request with the cached token, logs in
      again shortly before the token expires, and once more when :meth:`token_refused` says an
      answer refused it. Private WebSocket streams log in with the same token
      (:meth:`Codec.login`).

    No I/O, no clock but the ``ts_ms``/nonce a subclass draws; never put the secret or the
    token in an exception message.
    """

    venue: ClassVar[str]

    def login_request(self) -> RestRequest | None:
        """The request that obtains a session token, or None (the default): no tokens."""
        return None

    def parse_login(self, body: bytes) -> SessionToken:
        """The token in the answer to :meth:`login_request`; ProtocolError if malformed."""
        raise ProtocolError(f"{type(self).__name__} has no login request", venue=self.venue)

    @abc.abstractmethod
    def authorize(
        self,
        request: RestRequest,
        target: str,
        body: bytes,
        key: SigningKey,
        token: str | None,
    ) -> dict[str, str]:
        """Headers that authorize ``request``. ``target`` is the path and query exactly as
        sent (``/api/v1/orders?symbol=BTC-USD``), ``body`` the exact bytes; ``token`` is the
        session token, or None for the login request itself and for venues without tokens."""

    def token_refused(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether this non-2xx answer to a token-carrying request means the token is no
        longer accepted (the session then logs in again once and retries)."""
        return status == 401
