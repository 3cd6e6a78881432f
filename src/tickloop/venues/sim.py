"""Sans-I/O WebSocket codec of the embedded exchange (venue ``sim``, docs/protocol.md).

Frames in, tickloop models out; tickloop's wishes in, frames out. Every server message is decoded
in one pass by one reused msgspec decoder over a tagged union of wire Structs (``gc=False``,
only the fields tickloop uses), then mapped onto :mod:`tickloop.models`. Prices and sizes are
exact: the wire strings go through a :class:`DecimalCache`, so a Decimal is built once per
distinct string, not once per message.

Invariants: ``decode`` never raises anything but :class:`ProtocolError`; a well-formed message of
an unknown ``type`` returns ``[]`` and counts in ``unknown``. The codec remembers which
subscriptions each request id carried (bounded), so a refused subscription is reported with its
channel and symbol even though the sim's ``error`` message names only the request id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from ..exceptions import ConfigError, ProtocolError
from ..limits import DEFAULT_LIMITS, Limits
from ..models import (
    BookDelta,
    BookLevel,
    BookSnapshot,
    Candle,
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
    TimeInForce,
    Trade,
)
from .base import (
    Channel,
    Codec,
    DecimalCache,
    Decoded,
    Heartbeat,
    LoggedIn,
    Pong,
    Subscribed,
    Subscription,
    Unsubscribed,
    VenueError,
)
from .keys import duplicate_keys, refuse_duplicates
from .levels import WireLevels, wire_level_decoder
from .registry import Venue
from .sim_auth import SimAuth
from .sim_rest import SimRest

__all__ = ["FATAL_ERROR_CODES", "PLUGIN", "SimCodec", "derive_rest_url"]

VENUE = "sim"

#: Error codes that refuse a subscription for good: retrying the same request cannot succeed.
FATAL_ERROR_CODES = frozenset(
    {"unknown_symbol", "unknown_channel", "invalid_request", "auth_required", "auth_failed"}
)

# ----------------------------------------------------------------------------- wire structs


class _Msg(msgspec.Struct, tag_field="type", gc=False):
    pass


class _Trade(_Msg, tag="trade", gc=False):
    symbol: str
    id: int
    price: str
    size: str
    side: Side
    ts: int


# Level arrays are read by a wire_level_decoder (tickloop.venues.levels).
class _BookSnapshot(_Msg, tag="book_snapshot", gc=False):
    symbol: str
    seq: int
    bids: WireLevels  # [[price, size], ...]
    asks: WireLevels
    checksum: int | None = None
    ts: int = 0


class _BookUpdate(_Msg, tag="book_update", gc=False):
    symbol: str
    seq: int
    bids: WireLevels  # [[price, size], ...]
    asks: WireLevels
    prev_seq: int | None = None
    checksum: int | None = None
    ts: int = 0


class _Candle(_Msg, tag="candle", gc=False):
    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int = 0
    closed: bool = False


class _Ticker(_Msg, tag="ticker", gc=False):
    symbol: str
    ts: int
    bid: str | None = None
    bid_size: str | None = None
    ask: str | None = None
    ask_size: str | None = None
    last: str | None = None
    volume: str | None = None


class _OrderBody(msgspec.Struct, gc=False):
    id: str | int
    symbol: str
    side: Side
    type: OrderType
    size: str
    status: OrderStatus
    client_order_id: str | None = None
    price: str | None = None
    filled_size: str | None = None
    avg_price: str | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reject_reason: str | None = None
    created_ts: int = 0
    updated_ts: int = 0


class _Order(_Msg, tag="order", gc=False):
    event: OrderEventKind
    order: _OrderBody
    ts: int = 0


class _Fill(_Msg, tag="fill", gc=False):
    order_id: str | int
    trade_id: int
    symbol: str
    side: Side
    price: str
    size: str
    liquidity: Liquidity
    ts: int
    client_order_id: str | None = None
    fee: str | None = None
    fee_asset: str | None = None


class _Subscribed(_Msg, tag="subscribed", gc=False):
    channel: str
    symbols: list[str] | None = None
    interval: str | None = None
    id: int | None = None


class _Unsubscribed(_Msg, tag="unsubscribed", gc=False):
    channel: str
    symbols: list[str] | None = None
    interval: str | None = None
    id: int | None = None


class _LoggedIn(_Msg, tag="logged_in", gc=False):
    expires_at: int | None = None
    id: int | None = None


class _Pong(_Msg, tag="pong", gc=False):
    ts: int = 0
    id: int | None = None


class _Heartbeat(_Msg, tag="heartbeat", gc=False):
    ts: int = 0


class _Error(_Msg, tag="error", gc=False):
    code: str
    message: str = ""
    id: int | None = None
    field: str | None = None


_Wire = (
    _Trade
    | _BookSnapshot
    | _BookUpdate
    | _Candle
    | _Ticker
    | _Order
    | _Fill
    | _Subscribed
    | _Unsubscribed
    | _LoggedIn
    | _Pong
    | _Heartbeat
    | _Error
)


class _Envelope(msgspec.Struct, gc=False):
    type: str


_KNOWN_TYPES = frozenset(
    {
        "trade",
        "book_snapshot",
        "book_update",
        "candle",
        "ticker",
        "order",
        "fill",
        "subscribed",
        "unsubscribed",
        "logged_in",
        "pong",
        "heartbeat",
        "error",
    }
)
_CHANNELS = {c.value: c for c in Channel}
_TAG_CHANNELS = {
    "trade": Channel.TRADES.value,
    "book_snapshot": Channel.BOOK.value,
    "book_update": Channel.BOOK.value,
    "candle": Channel.CANDLES.value,
    "ticker": Channel.TICKER.value,
    "order": Channel.ORDERS.value,
    "fill": Channel.FILLS.value,
}
_QUOTED = re.compile(r"'([^']+)'")
_MAX_PENDING = 4096
_ZERO = Decimal(0)

# Shared by every SimCodec: a Decoder holds no per-connection state.
_DECODER = msgspec.json.Decoder(_Wire)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_encode = msgspec.json.encode


class SimCodec(Codec):
    """The embedded exchange's WebSocket codec (see the module docstring)."""

    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "ws://127.0.0.1:8765/ws"
    # The sim declares no limits of its own; these keep one connection's work bounded and
    # make sharding observable with many symbols.
    max_streams_per_connection: ClassVar[int] = 1024
    max_messages_per_second: ClassVar[float] = 50.0
    max_streams_per_message: ClassVar[int] = 100
    channels: ClassVar[frozenset[Channel]] = frozenset(Channel)
    contiguous_trade_ids: ClassVar[bool] = True

    def __init__(
        self, *, decimals: DecimalCache | None = None, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        super().__init__(limits=limits)
        self.decimals = decimals if decimals is not None else DecimalCache(limits=limits)
        self._positive = self.decimals.positive
        self._levels = wire_level_decoder(self.decimals)
        self._pending: dict[int, tuple[Subscription, ...]] = {}

    # -- symbols -------------------------------------------------------------------------------
    def venue_symbol(self, symbol: str) -> str:
        return symbol.upper()

    def symbol(self, venue_symbol: str) -> str:
        return venue_symbol.upper()

    # -- outgoing ------------------------------------------------------------------------------
    def _requests(self, op: str, subscriptions: Sequence[Subscription]) -> list[bytes]:
        groups: dict[tuple[Channel, str | None], list[Subscription]] = {}
        for sub in subscriptions:
            groups.setdefault((sub.channel, sub.interval), []).append(sub)
        frames: list[bytes] = []
        for (channel, interval), subs in groups.items():
            request_id = self.next_request_id()
            message: dict[str, Any] = {"op": op, "channel": channel.value, "id": request_id}
            if not channel.private:
                message["symbols"] = [
                    self.venue_symbol(s.symbol) for s in subs if s.symbol is not None
                ]
            if interval is not None:
                message["interval"] = interval
            if len(self._pending) >= _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[request_id] = tuple(subs)
            frames.append(_encode(message))
        return frames

    def subscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        return self._requests("subscribe", subscriptions)

    def unsubscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        return self._requests("unsubscribe", subscriptions)

    def ping(self) -> bytes | None:
        return b'{"op":"ping"}'

    def login(self, token: str) -> bytes | None:
        return _encode({"op": "login", "token": token, "id": self.next_request_id()})

    @classmethod
    def rest_url(cls, stream_url: str) -> str | None:
        """The sim serves REST beside its stream: ``ws://h:p/ws`` -> ``http://h:p/api/v1``."""
        return derive_rest_url(stream_url)

    # -- incoming ------------------------------------------------------------------------------
    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Decoded]:
        try:
            msg = _DECODER.decode(frame)
        except msgspec.ValidationError as exc:
            return self._undecodable(frame, exc)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ProtocolError(f"malformed frame: {_short(exc)}", venue=VENUE) from exc
        if duplicate_keys(frame):  # a key given twice: msgspec kept the last value (keys.py)
            refuse_duplicates(frame, venue=VENUE, **_stream_of(msg))
        try:
            # The trade and the book update are the hot messages: tested first, built inline
            # (no call to _convert and its match per message). A trade's price and size must
            # be > 0 (the positive cache refuses "0" once per string; a hit is a dict lookup).
            if type(msg) is _Trade:
                p = self._positive
                return [
                    Trade(
                        venue=VENUE,
                        symbol=msg.symbol,
                        id=msg.id,
                        price=p[msg.price],
                        size=p[msg.size],
                        side=msg.side,
                        ts=msg.ts,
                        recv_ts=recv_ts,
                    )
                ]
            if type(msg) is _BookUpdate:
                # The level decoder refuses a zero price and a side over
                # limits.max_levels_per_message (levels.py); a size of 0 deletes a level.
                levels = self._levels
                return [
                    BookDelta(
                        venue=VENUE,
                        symbol=msg.symbol,
                        bids=levels(msg.bids),
                        asks=levels(msg.asks),
                        sequence=msg.seq,
                        prev_sequence=msg.prev_seq,
                        checksum=msg.checksum,
                        ts=msg.ts,
                        recv_ts=recv_ts,
                    )
                ]
            return self._convert(msg, recv_ts)
        except (msgspec.DecodeError, RecursionError) as exc:  # a level array, not [[p, q], ...]
            tag = type(msg).__struct_config__.tag
            raise ProtocolError(
                f"bad {tag} message: {_short(exc)}", venue=VENUE, **_stream_of(msg)
            ) from exc
        except ValueError as exc:  # a price or size that is not a valid decimal (limits.py)
            raise ProtocolError(
                f"bad number in {type(msg).__name__[1:]}: {exc}", venue=VENUE, **_stream_of(msg)
            ) from exc

    def _undecodable(
        self, frame: bytes | memoryview, exc: msgspec.ValidationError
    ) -> list[Decoded]:
        try:
            envelope = _ENVELOPE.decode(frame)
        except (msgspec.DecodeError, RecursionError):
            raise ProtocolError(f"malformed frame: {exc}", venue=VENUE) from exc
        if envelope.type in _KNOWN_TYPES:
            raise ProtocolError(f"bad {envelope.type} message: {exc}", venue=VENUE) from exc
        self.unknown += 1
        return []

    def _opt(self, text: str | None) -> Decimal | None:
        return None if text is None else self.decimals[text]

    def _subscriptions(
        self, channel_name: str, symbols: list[str] | None, interval: str | None
    ) -> tuple[Subscription, ...]:
        channel = _CHANNELS.get(channel_name)
        if channel is None:
            return ()
        if channel.private or not symbols:
            return (Subscription(channel),) if channel.private else ()
        return tuple(Subscription(channel, self.symbol(s), interval) for s in symbols)

    def _convert(self, msg: _Wire, recv_ts: int) -> list[Decoded]:
        d = self.decimals
        match msg:
            case _BookSnapshot():
                # A snapshot lists the levels there are: a size of 0 is not one of them.
                bids = _sized(self._levels(msg.bids))
                asks = _sized(self._levels(msg.asks))
                return [
                    BookSnapshot(
                        venue=VENUE,
                        symbol=msg.symbol,
                        bids=bids,
                        asks=asks,
                        sequence=msg.seq,
                        checksum=msg.checksum,
                        ts=msg.ts,
                        recv_ts=recv_ts,
                    )
                ]
            case _Ticker():
                return [
                    Ticker(
                        venue=VENUE,
                        symbol=msg.symbol,
                        bid=self._opt(msg.bid),
                        bid_size=self._opt(msg.bid_size),
                        ask=self._opt(msg.ask),
                        ask_size=self._opt(msg.ask_size),
                        last=self._opt(msg.last),
                        volume=self._opt(msg.volume),
                        ts=msg.ts,
                        recv_ts=recv_ts,
                    )
                ]
            case _Candle():
                return [
                    Candle(
                        venue=VENUE,
                        symbol=msg.symbol,
                        interval=msg.interval,
                        open_time=msg.open_time,
                        close_time=msg.close_time,
                        open=d[msg.open],
                        high=d[msg.high],
                        low=d[msg.low],
                        close=d[msg.close],
                        volume=d[msg.volume],
                        trades=msg.trades,
                        closed=msg.closed,
                        recv_ts=recv_ts,
                    )
                ]
            case _Order():
                o = msg.order
                order = Order(
                    venue=VENUE,
                    symbol=o.symbol,
                    id=str(o.id),
                    client_order_id=o.client_order_id,
                    side=o.side,
                    type=o.type,
                    price=None if o.price is None else self._positive[o.price],
                    size=self._positive[o.size],
                    filled_size=_ZERO if o.filled_size is None else d[o.filled_size],
                    avg_price=self._opt(o.avg_price),
                    status=o.status,
                    time_in_force=o.time_in_force,
                    post_only=o.post_only,
                    reject_reason=o.reject_reason,
                    created_ts=o.created_ts,
                    updated_ts=o.updated_ts,
                )
                return [
                    OrderEvent(venue=VENUE, kind=msg.event, order=order, ts=msg.ts, recv_ts=recv_ts)
                ]
            case _Fill():
                return [
                    Fill(
                        venue=VENUE,
                        symbol=msg.symbol,
                        order_id=str(msg.order_id),
                        client_order_id=msg.client_order_id,
                        trade_id=msg.trade_id,
                        side=msg.side,
                        price=self._positive[msg.price],
                        size=self._positive[msg.size],
                        fee=_ZERO if msg.fee is None else d[msg.fee],
                        fee_asset=msg.fee_asset,
                        liquidity=msg.liquidity,
                        ts=msg.ts,
                        recv_ts=recv_ts,
                    )
                ]
            case _Heartbeat():
                return [Heartbeat(ts=msg.ts)]
            case _Pong():
                return [Pong(ts=msg.ts, request_id=msg.id)]
            case _Subscribed():
                if msg.id is not None:
                    self._pending.pop(msg.id, None)
                subs = self._subscriptions(msg.channel, msg.symbols, msg.interval)
                return [Subscribed(subscriptions=subs, request_id=msg.id)]
            case _Unsubscribed():
                if msg.id is not None:
                    self._pending.pop(msg.id, None)
                subs = self._subscriptions(msg.channel, msg.symbols, msg.interval)
                return [Unsubscribed(subscriptions=subs, request_id=msg.id)]
            case _LoggedIn():
                return [LoggedIn(expires_at=msg.expires_at, request_id=msg.id)]
            case _Error():
                return [self._error(msg)]
            case _:  # _Trade and _BookUpdate are handled by decode()
                return []

    def _error(self, msg: _Error) -> VenueError:
        subs = self._pending.pop(msg.id, ()) if msg.id is not None else ()
        channel = subs[0].channel if subs else None
        symbol: str | None = None
        if len(subs) == 1:
            symbol = subs[0].symbol
        elif subs:
            # One request named several symbols: the message quotes the one refused.
            named = {s.symbol for s in subs}
            for candidate in _QUOTED.findall(msg.message):
                if self.symbol(candidate) in named:
                    symbol = self.symbol(candidate)
                    break
        return VenueError(
            code=msg.code,
            message=msg.message,
            request_id=msg.id,
            field=msg.field,
            symbol=symbol,
            channel=channel,
            fatal=msg.code in FATAL_ERROR_CODES,
        )


def _stream_of(msg: Any) -> dict[str, str | None]:
    """The stream a decoded but invalid message belonged to (ProtocolError's keywords)."""
    tag = type(msg).__struct_config__.tag
    channel = _TAG_CHANNELS.get(tag) if isinstance(tag, str) else None
    return {"symbol": getattr(msg, "symbol", None), "channel": channel}


def _sized(levels: tuple[BookLevel, ...]) -> tuple[BookLevel, ...]:
    """A snapshot's levels, each with a size > 0 (ValueError otherwise)."""
    for level in levels:
        if not level.size:
            raise ValueError(f"a snapshot level of size 0 (at price {level.price})")
    return levels


def _short(exc: BaseException) -> str:
    """An error's message, bounded (a RecursionError's or a huge value's can be long)."""
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def derive_rest_url(ws_url: str) -> str:
    """The sim's REST base from its WebSocket address: ``ws://h:p/ws`` -> ``http://h:p/api/v1``."""
    scheme, sep, rest = ws_url.partition("://")
    if not sep:
        raise ConfigError(f"not a WebSocket URL: {ws_url!r}", field="url")
    host = rest.split("/", 1)[0]
    http = {"ws": "http", "wss": "https"}.get(scheme.lower())
    if http is None:
        raise ConfigError(f"not a WebSocket URL: {ws_url!r}", field="url")
    return f"{http}://{host}/api/v1"


#: The sim's implementation of the venue contract (tickloop.venues.registry.BUILTIN).
PLUGIN = Venue(VENUE, stream=SimCodec, rest=SimRest, authorizer=SimAuth)
