"""The one model set every venue maps onto.

Every market-data and trading message tickloop hands to user code is one of the frozen msgspec
Structs below, whatever venue it came from. Invariants:

* Prices and sizes are :class:`decimal.Decimal` built from the venue's own digits, never a float
  rounding of them. ``Decimal`` keeps trailing zeros (``Decimal("0.10")`` prints ``0.10``), so a
  checksum computed from a model sees exactly the characters the venue sent. Codecs pay for the
  conversion once per distinct price string (see :class:`tickloop.venues.base.DecimalCache`), not
  once per level per message; ``docs/models.md`` has the measurements behind the choice.
* Timestamps are integers in nanoseconds since the Unix epoch: ``ts`` is the exchange's time,
  ``recv_ts`` the local wall clock when the frame arrived (``0`` when unknown).
* Symbols are written one way for every venue (``"BTC-USD"``); codecs map them to and from each
  venue's own names.
* Every struct is tagged (a ``model`` field in its encoding), so a mixed stream of models
  encodes and decodes through one msgspec decoder, which the bus and the server rely on.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from msgspec import UNSET, UnsetType

from ._web import WebStruct

__all__ = [
    "Balance",
    "BookDelta",
    "BookInvalid",
    "BookLevel",
    "BookSnapshot",
    "BookValid",
    "BotError",
    "BusDropped",
    "Candle",
    "CircuitBreakerFired",
    "Connected",
    "ConsumerDetached",
    "ConsumerFailed",
    "Disconnected",
    "Equity",
    "Fill",
    "Gap",
    "HandlerFailed",
    "Instrument",
    "Liquidity",
    "LoopBlocked",
    "Malformed",
    "Market",
    "MarketBook",
    "MarketEvent",
    "MarketTicker",
    "Order",
    "OrderEvent",
    "OrderEventKind",
    "OrderStatus",
    "OrderType",
    "PlatformEvent",
    "Position",
    "Quote",
    "Reconnected",
    "RiskRejected",
    "Side",
    "Signal",
    "Stale",
    "StatusEvent",
    "Ticker",
    "TimeInForce",
    "Trade",
    "Unconfirmed",
]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till cancelled
    IOC = "ioc"  # immediate or cancel: fill what can be filled now, cancel the rest
    FOK = "fok"  # fill or kill: fill entirely now or not at all


class OrderStatus(StrEnum):
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"  # IOC/FOK remainder that was not filled

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class OrderEventKind(StrEnum):
    ACCEPTED = "accepted"
    FILL = "fill"
    AMENDED = "amended"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"


class _Model(WebStruct, frozen=True, kw_only=True, gc=False, tag_field="model"):
    """Base of every model: immutable, keyword-only, no GC tracking (no reference cycles).
    A FastAPI route returns models as they are (see :mod:`tickloop._web`)."""


# --------------------------------------------------------------------------- reference data


class Instrument(_Model, frozen=True, kw_only=True, gc=False, tag="instrument"):
    venue: str
    symbol: str  # normalised, e.g. "BTC-USD"
    venue_symbol: str  # the venue's own name, e.g. "BTCUSDT", "XBT/USD"
    base: str
    quote: str
    price_precision: int  # decimal places of a price
    size_precision: int  # decimal places of a size
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal = Decimal(0)
    status: str = "open"


# --------------------------------------------------------------------------- market data


class Trade(_Model, frozen=True, kw_only=True, gc=False, tag="trade"):
    venue: str
    symbol: str
    id: int | None  # the venue's trade id; None only where a venue has none (Kraken v1)
    price: Decimal
    size: Decimal
    side: Side | None  # the aggressor's side, None when the venue does not say
    ts: int
    recv_ts: int = 0


class Quote(_Model, frozen=True, kw_only=True, gc=False, tag="quote"):
    """Best bid and offer."""

    venue: str
    symbol: str
    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None
    ts: int
    recv_ts: int = 0


class Ticker(_Model, frozen=True, kw_only=True, gc=False, tag="ticker"):
    """Best bid and offer plus last trade and rolling volume."""

    venue: str
    symbol: str
    bid: Decimal | None = None
    bid_size: Decimal | None = None
    ask: Decimal | None = None
    ask_size: Decimal | None = None
    last: Decimal | None = None
    volume: Decimal | None = None  # base volume over the venue's rolling window (24 h)
    ts: int
    recv_ts: int = 0


class BookLevel(NamedTuple):
    """One price level. A plain tuple underneath: ``level == (price, size)`` holds."""

    price: Decimal
    size: Decimal


class BookSnapshot(_Model, frozen=True, kw_only=True, gc=False, tag="book_snapshot"):
    venue: str
    symbol: str
    bids: tuple[BookLevel, ...]  # best (highest) first
    asks: tuple[BookLevel, ...]  # best (lowest) first
    sequence: int | None = None  # the venue sequence number this snapshot reflects
    checksum: int | None = None
    ts: int = 0
    recv_ts: int = 0


class BookDelta(_Model, frozen=True, kw_only=True, gc=False, tag="book_delta"):
    """Changed levels; a size of zero removes the level.

    ``sequence`` is the venue's number for this update (Binance ``u``); ``first_sequence`` the
    first number it covers where the venue sends a range (Binance ``U``); ``prev_sequence`` the
    number of the update before it where the venue links updates (sim ``prev_seq``).
    """

    venue: str
    symbol: str
    bids: tuple[BookLevel, ...] = ()
    asks: tuple[BookLevel, ...] = ()
    sequence: int | None = None
    first_sequence: int | None = None
    prev_sequence: int | None = None
    checksum: int | None = None
    ts: int = 0
    recv_ts: int = 0


class Candle(_Model, frozen=True, kw_only=True, gc=False, tag="candle"):
    venue: str
    symbol: str
    interval: str  # "1s", "1m", "5m", "15m", "1h", "1d"
    open_time: int  # ns, inclusive
    close_time: int  # ns, exclusive
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int = 0
    closed: bool = False  # True once the interval is over and the candle will not change
    recv_ts: int = 0


# --------------------------------------------------------------------------- market listings


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
    """One market of a venue as ``AsyncClient.markets`` returns it; with a field selection
    (``fields=``), only the selected fields are set and the others are :data:`msgspec.UNSET`
    (see :mod:`tickloop.client.results`)."""

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


# --------------------------------------------------------------------------- trading


class Order(_Model, frozen=True, kw_only=True, gc=False, tag="order"):
    venue: str
    symbol: str
    id: str
    client_order_id: str | None = None
    side: Side
    type: OrderType
    price: Decimal | None = None  # None for market orders
    size: Decimal
    filled_size: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    status: OrderStatus
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reject_reason: str | None = None
    created_ts: int = 0
    updated_ts: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.size - self.filled_size


class Fill(_Model, frozen=True, kw_only=True, gc=False, tag="fill"):
    venue: str
    symbol: str
    order_id: str
    client_order_id: str | None = None
    trade_id: int
    side: Side
    price: Decimal
    size: Decimal
    fee: Decimal = Decimal(0)
    fee_asset: str | None = None
    liquidity: Liquidity
    ts: int
    recv_ts: int = 0


class OrderEvent(_Model, frozen=True, kw_only=True, gc=False, tag="order_event"):
    """A change to one of the user's orders, as the private stream reports it."""

    venue: str
    kind: OrderEventKind
    order: Order
    fill: Fill | None = None  # set when kind is FILL
    ts: int
    recv_ts: int = 0


class Balance(_Model, frozen=True, kw_only=True, gc=False, tag="balance"):
    venue: str
    asset: str
    total: Decimal
    available: Decimal

    @property
    def locked(self) -> Decimal:
        return self.total - self.available


class Position(_Model, frozen=True, kw_only=True, gc=False, tag="position"):
    """Net holding of an instrument's base asset with its average entry price."""

    venue: str
    symbol: str
    size: Decimal  # signed: positive long, negative short
    avg_price: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)


# --------------------------------------------------------------------------- status events
# Nothing silent: each of these is data a consumer can observe, and a counter of the streaming
# client's (feed.stats()) that the server exports on /metrics, one per kind (docs/server.md).


class Connected(_Model, frozen=True, kw_only=True, gc=False, tag="connected"):
    venue: str
    url: str
    connection: int  # which connection of a sharded session
    ts: int


class Disconnected(_Model, frozen=True, kw_only=True, gc=False, tag="disconnected"):
    venue: str
    url: str
    connection: int
    reason: str
    ts: int


class Reconnected(_Model, frozen=True, kw_only=True, gc=False, tag="reconnected"):
    venue: str
    url: str
    connection: int
    downtime: float  # seconds between losing the connection and being subscribed again
    attempts: int  # connection attempts it took
    ts: int


class Gap(_Model, frozen=True, kw_only=True, gc=False, tag="gap"):
    """Data that was missed. ``recovered`` says whether tickloop filled it in (REST backfill)."""

    venue: str
    symbol: str
    channel: str
    first_missing: int | None = None  # first missing id / sequence, when known
    last_missing: int | None = None
    start_ts: int | None = None  # time range of the gap, when ids are not known
    end_ts: int | None = None
    recovered: bool
    ts: int


class Stale(_Model, frozen=True, kw_only=True, gc=False, tag="stale"):
    """No data for longer than the watchdog allows; the connection is being replaced."""

    venue: str
    connection: int
    silent_for: float  # seconds
    ts: int


class BookInvalid(_Model, frozen=True, kw_only=True, gc=False, tag="book_invalid"):
    venue: str
    symbol: str
    reason: str  # "gap", "checksum", "crossed", "disconnected", ...
    sequence: int | None = None
    ts: int


class BookValid(_Model, frozen=True, kw_only=True, gc=False, tag="book_valid"):
    venue: str
    symbol: str
    sequence: int | None = None
    ts: int


class ConsumerDetached(_Model, frozen=True, kw_only=True, gc=False, tag="consumer_detached"):
    """One consumer fell ``dropped`` events behind on a stream that never drops silently
    (trades, orders, fills, raw book deltas) and was detached. The stream itself went on; only
    this consumer missed data. An ``async for`` consumer also gets ConsumerOverflow at its next
    read; an async handler learns of it only here."""

    venue: str
    channel: str
    consumer: str  # its name (the handler's, or the channel's)
    symbols: tuple[str, ...] = ()
    dropped: int
    ts: int


class ConsumerFailed(_Model, frozen=True, kw_only=True, gc=False, tag="consumer_failed"):
    """A consumer's own handler raised (a bug in user code, not bad input from the venue):
    the event was skipped for that consumer only, the stream and its other consumers went on.
    Published for a consumer's 1st, 2nd, 4th, 8th... failure; ``count`` is its failures so far
    (every one is counted in the client's ``stats()["handler_errors"]``). ``error`` is the
    exception's type and message, cut to 200 characters."""

    venue: str
    channel: str
    consumer: str  # its name (the handler's, or the channel's)
    symbols: tuple[str, ...] = ()
    error: str
    count: int
    ts: int


class Malformed(_Model, frozen=True, kw_only=True, gc=False, tag="malformed"):
    """A message from the venue was skipped: it could not be decoded, or it broke a bound of
    :class:`tickloop.limits.Limits` (``limit`` names which). ``symbol``/``channel`` say which
    stream it belonged to when that could be told (a book that missed it is resynchronised).
    ``count`` is the number skipped on this connection so far."""

    venue: str
    connection: int
    reason: str
    limit: str | None = None
    symbol: str | None = None
    channel: str | None = None
    count: int = 1
    ts: int


class Unconfirmed(_Model, frozen=True, kw_only=True, gc=False, tag="unconfirmed"):
    """A subscription sent ``waited`` seconds ago has not been confirmed by the venue (it is
    asked again; an ``async for`` over it raised TimeoutError). Once per stream per
    connection."""

    venue: str
    connection: int
    channel: str
    symbol: str | None = None
    waited: float
    ts: int


MarketEvent = Trade | Quote | Ticker | BookSnapshot | BookDelta | Candle
StatusEvent = (
    Connected
    | Disconnected
    | Reconnected
    | Gap
    | Stale
    | BookInvalid
    | BookValid
    | ConsumerDetached
    | Malformed
    | Unconfirmed
    | ConsumerFailed
)


# --------------------------------------------------------------------------- platform events
# Published on the bus by the bus itself and by the runtime (bots, risk, loop monitor). They are
# models like the others (tagged, frozen), so one decoder reads any payload a bus carries.


class BusDropped(_Model, frozen=True, kw_only=True, gc=False, tag="bus_dropped"):
    """A bus subscription dropped events (coalesced: one per subscription per interval)."""

    subscription: str  # the subscription's name
    pattern: str  # the topic pattern it subscribed to
    policy: str  # its overflow policy
    dropped: int  # dropped since the previous BusDropped of this subscription
    total: int  # dropped since the subscription was made
    ts: int


class HandlerFailed(_Model, frozen=True, kw_only=True, gc=False, tag="handler_failed"):
    """A bus handler raised; the event is counted as handled and the other handlers go on."""

    subscription: str
    handler: str
    topic: str
    error: str  # the exception's type and message
    traceback: str = ""
    ts: int


class BotError(_Model, frozen=True, kw_only=True, gc=False, tag="bot_error"):
    bot: str
    handler: str  # "tick", "on_trade", ...
    error: str
    traceback: str = ""
    ts: int


class CircuitBreakerFired(_Model, frozen=True, kw_only=True, gc=False, tag="circuit_breaker"):
    bot: str
    errors: int  # errors within the window that fired it
    window: float  # seconds
    ts: int


class RiskRejected(_Model, frozen=True, kw_only=True, gc=False, tag="risk_rejected"):
    bot: str
    check: str  # the check that refused, e.g. "max_position"
    reason: str
    symbol: str | None = None
    side: Side | None = None
    price: Decimal | None = None
    size: Decimal | None = None
    ts: int


class LoopBlocked(_Model, frozen=True, kw_only=True, gc=False, tag="loop_blocked"):
    """The event loop did not run for ``duration`` seconds; ``bot``/``handler`` name what was
    running when it stalled (None when no bot handler was)."""

    duration: float
    bot: str | None = None
    handler: str | None = None
    ts: int


class Signal(_Model, frozen=True, kw_only=True, gc=False, tag="signal"):
    bot: str
    symbol: str | None = None
    name: str
    value: Decimal | float | str | None = None
    ts: int


class Equity(_Model, frozen=True, kw_only=True, gc=False, tag="equity"):
    bot: str | None = None  # None for the whole engine
    equity: Decimal
    cash: Decimal
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    ts: int


PlatformEvent = (
    BusDropped
    | HandlerFailed
    | BotError
    | CircuitBreakerFired
    | RiskRejected
    | LoopBlocked
    | Signal
    | Equity
)
