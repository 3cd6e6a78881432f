"""Coinbase Exchange: sans-I/O codecs for the public WebSocket feed and the public REST calls.

Every feed message is an object whose first key is ``type`` (``{"type":"l2update",...}``); the
codec reads the type with a byte scan and decodes the frame once with the typed decoder of that
type (a generic path handles any other key order). Prices and sizes stay strings until one
:class:`DecimalCache` per codec turns them into Decimals, keeping the venue's digits.

Two Coinbase conventions the models undo:

* ``side`` of a ``match`` (and of a REST trade) is the **maker** order's side; a
  :class:`~tickloop.models.Trade` carries the aggressor's, so the codec inverts it.
* ``l2update`` changes are ``[side, price, size]`` with side ``buy`` (bids) or ``sell`` (asks);
  the feed's level2 messages carry no sequence number, while the REST book does.

The venue answers a subscribe with a ``subscriptions`` message that lists **every** channel and
product the connection is subscribed to at that point; it is decoded as one
:class:`~tickloop.venues.base.Subscribed` with that whole set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar, Literal

import msgspec

from ..exceptions import (
    ExchangeError,
    InvalidRequest,
    ProtocolError,
    RateLimitError,
    TickloopError,
)
from ..limits import DEFAULT_LIMITS, LevelLimitError, Limits
from ..models import BookDelta, BookLevel, BookSnapshot, Instrument, Side, Ticker, Trade
from .base import (
    Channel,
    Codec,
    DecimalCache,
    Decoded,
    Heartbeat,
    PublicRest,
    RestRequest,
    Subscribed,
    Subscription,
    VenueError,
)
from .keys import duplicate_keys, refuse_duplicates, stream_of
from .registry import Venue

__all__ = ["PLUGIN", "CoinbaseCodec", "CoinbaseRest"]

VENUE = "coinbase"
# BookLevel is a NamedTuple: building it with tuple.__new__ skips its Python-level __new__
# (about 90 ns a level, which is most of a level's cost after the decode).
_new = tuple.__new__

_DECODE_ERRORS = (
    msgspec.DecodeError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    ArithmeticError,
    RecursionError,  # JSON nested deeper than the interpreter's recursion limit
)
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(value: datetime) -> int:
    """An aware datetime -> ns since the epoch, in integers (no float)."""
    if value.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    delta = value - _UTC_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_MAKER_TO_AGGRESSOR = {"buy": Side.SELL, "sell": Side.BUY}

# ------------------------------------------------------------------------- WS message shapes


class _Match(msgspec.Struct, gc=False):
    trade_id: int
    side: str
    size: str
    price: str
    product_id: str
    time: datetime


class _Level(msgspec.Struct, array_like=True, gc=False):
    price: str
    size: str  # the REST book adds a third element (order count), ignored


class _Snapshot(msgspec.Struct, gc=False):
    product_id: str
    bids: list[_Level]
    asks: list[_Level]
    time: datetime | None = None


class _Change(msgspec.Struct, array_like=True, gc=False):
    side: str
    price: str
    size: str


class _L2Update(msgspec.Struct, gc=False):
    product_id: str
    changes: list[_Change]
    time: datetime


class _Ticker(msgspec.Struct, gc=False):
    product_id: str
    price: str | None = None
    best_bid: str | None = None
    best_bid_size: str | None = None
    best_ask: str | None = None
    best_ask_size: str | None = None
    volume_24h: str | None = None
    time: datetime | None = None


class _Heartbeat(msgspec.Struct, gc=False):
    product_id: str | None = None
    time: datetime | None = None


class _ChannelSpec(msgspec.Struct, gc=False):
    name: str
    product_ids: list[str] = []


class _Subscriptions(msgspec.Struct, gc=False):
    channels: list[_ChannelSpec]


class _Error(msgspec.Struct, gc=False):
    message: str
    reason: str | None = None


class _Head(msgspec.Struct, gc=False):
    type: str


class _StreamHead(msgspec.Struct, gc=False):
    type: str
    product_id: str | None = None


_CHANNEL_BY_TYPE = {
    "match": Channel.TRADES.value,
    "last_match": Channel.TRADES.value,
    "l2update": Channel.BOOK.value,
    "snapshot": Channel.BOOK.value,
    "ticker": Channel.TICKER.value,
}


_KIND_BY_CHANNEL = {
    "matches": Channel.TRADES,
    "level2": Channel.BOOK,
    "level2_batch": Channel.BOOK,
    "level2_50": Channel.BOOK,
    "ticker": Channel.TICKER,
    "ticker_batch": Channel.TICKER,
}


class CoinbaseCodec(Codec):
    """Coinbase Exchange WebSocket feed: ``matches``, ``level2`` (or ``level2_batch``),
    ``ticker`` and ``heartbeat``."""

    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "wss://ws-feed.exchange.coinbase.com"
    max_streams_per_connection: ClassVar[int] = 500
    max_messages_per_second: ClassVar[float] = 5.0
    max_streams_per_message: ClassVar[int] = 100
    channels: ClassVar[frozenset[Channel]] = frozenset(
        {Channel.TRADES, Channel.BOOK, Channel.TICKER}
    )
    contiguous_trade_ids: ClassVar[bool] = True

    def __init__(
        self,
        *,
        book_channel: Literal["level2", "level2_batch", "level2_50"] = "level2",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(limits=limits)
        self.book_channel = book_channel
        self._d = DecimalCache(limits=limits)
        self._match = msgspec.json.Decoder(_Match)
        self._snapshot = msgspec.json.Decoder(_Snapshot)
        self._l2update = msgspec.json.Decoder(_L2Update)
        self._ticker = msgspec.json.Decoder(_Ticker)
        self._heartbeat = msgspec.json.Decoder(_Heartbeat)
        self._subscriptions = msgspec.json.Decoder(_Subscriptions)
        self._error = msgspec.json.Decoder(_Error)
        self._head = msgspec.json.Decoder(_Head)
        self._stream_head = msgspec.json.Decoder(_StreamHead)
        self._handlers: dict[bytes, Callable[[bytes, int], list[Decoded]]] = {
            b"l2update": self._on_l2update,
            b"match": self._on_match,
            b"last_match": self._on_match,
            b"snapshot": self._on_snapshot,
            b"ticker": self._on_ticker,
            b"heartbeat": self._on_heartbeat,
            b"subscriptions": self._on_subscriptions,
            b"error": self._on_error,
        }

    # -- symbols: Coinbase already writes "BTC-USD" ---------------------------------------------
    def venue_symbol(self, symbol: str) -> str:
        base, sep, quote = symbol.partition("-")
        if not sep or not base or not quote or "-" in quote:
            raise InvalidRequest(f"not a symbol: {symbol!r}", field="symbol", venue=VENUE)
        return symbol

    def symbol(self, venue_symbol: str) -> str:
        return venue_symbol

    # -- outgoing ------------------------------------------------------------------------------
    def _channel_name(self, sub: Subscription) -> str:
        if sub.symbol is None or sub.channel not in self.channels:
            raise InvalidRequest(
                f"Coinbase has no public channel {sub.channel.value!r}",
                field="channel",
                venue=VENUE,
            )
        if sub.channel is Channel.TRADES:
            return "matches"
        if sub.channel is Channel.BOOK:
            return self.book_channel
        return "ticker"

    def _requests(self, kind: str, subscriptions: Sequence[Subscription]) -> list[bytes]:
        groups: dict[str, list[str]] = defaultdict(list)
        for sub in subscriptions:
            name = self._channel_name(sub)
            groups[name].append(self.venue_symbol(sub.symbol or ""))
        frames = []
        step = self.max_streams_per_message
        for name, products in groups.items():
            for start in range(0, len(products), step):
                message = {
                    "type": kind,
                    "product_ids": products[start : start + step],
                    "channels": [name],
                }
                frames.append(msgspec.json.encode(message))
        return frames

    def subscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        return self._requests("subscribe", subscriptions)

    def unsubscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        return self._requests("unsubscribe", subscriptions)

    # -- incoming ------------------------------------------------------------------------------
    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Decoded]:
        if type(frame) is not bytes:
            # The session hands over picows' memoryview of the payload (valid only during the
            # call); the byte scans below need bytes.
            frame = bytes(frame)
        try:
            if frame.startswith(b'{"type":"'):
                kind = frame[9 : frame.find(b'"', 9)]
            else:
                kind = self._head.decode(frame).type.encode()
            handler = self._handlers.get(kind)
            if handler is None:
                self._head.decode(frame)  # well-formed JSON with a type, or ProtocolError
                self.unknown += 1
                return []
            events = handler(frame, recv_ts)
        except _DECODE_ERRORS as exc:
            raise ProtocolError(
                f"malformed Coinbase frame: {_short(exc)}", venue=VENUE, **self._stream(frame)
            ) from exc
        if duplicate_keys(frame):  # a key given twice: msgspec kept the last (keys.py)
            refuse_duplicates(frame, venue=VENUE, **stream_of(events))
        return events

    def _stream(self, frame: bytes) -> dict[str, str | None]:
        """The stream a frame that could not be decoded belonged to, when it tells (its
        ``type`` and ``product_id``): a book that missed an l2update must not stay valid."""
        try:
            head = self._stream_head.decode(frame)
        except _DECODE_ERRORS:
            return {}
        return {"symbol": head.product_id, "channel": _CHANNEL_BY_TYPE.get(head.type)}

    def _levels(self, levels: list[_Level]) -> tuple[BookLevel, ...]:
        """A snapshot's levels: price > 0, size > 0 (a snapshot lists the levels there are),
        at most limits.max_levels_per_message a side."""
        if len(levels) > self.limits.max_levels_per_message:
            raise LevelLimitError(
                f"{len(levels)} levels on one side (limits.max_levels_per_message)"
            )
        p = self._d.positive
        return tuple([_new(BookLevel, (p[lv.price], p[lv.size])) for lv in levels])

    def _on_l2update(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        msg = self._l2update.decode(frame)
        d = self._d
        p = d.positive  # a price is > 0; a size of 0 deletes the level
        bids = []
        asks = []
        for change in msg.changes:
            level = _new(BookLevel, (p[change.price], d[change.size]))
            if change.side == "buy":
                bids.append(level)
            elif change.side == "sell":
                asks.append(level)
            else:
                raise ProtocolError(
                    f"l2update side {change.side!r}",
                    venue=VENUE,
                    symbol=msg.product_id,
                    channel=Channel.BOOK.value,
                )
        bound = self.limits.max_levels_per_message
        if len(bids) > bound or len(asks) > bound:
            raise LevelLimitError(
                f"{max(len(bids), len(asks))} levels on one side (limits.max_levels_per_message)"
            )
        return [
            BookDelta(
                venue=VENUE,
                symbol=msg.product_id,
                bids=tuple(bids),
                asks=tuple(asks),
                ts=_ns(msg.time),
                recv_ts=recv_ts,
            )
        ]

    def _on_match(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        msg = self._match.decode(frame)
        side = _MAKER_TO_AGGRESSOR.get(msg.side)
        if side is None:
            raise ProtocolError(
                f"match side {msg.side!r}",
                venue=VENUE,
                symbol=msg.product_id,
                channel=Channel.TRADES.value,
            )
        p = self._d.positive  # a trade's price and size are > 0
        return [
            Trade(
                venue=VENUE,
                symbol=msg.product_id,
                id=msg.trade_id,
                price=p[msg.price],
                size=p[msg.size],
                side=side,
                ts=_ns(msg.time),
                recv_ts=recv_ts,
            )
        ]

    def _on_snapshot(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        msg = self._snapshot.decode(frame)
        return [
            BookSnapshot(
                venue=VENUE,
                symbol=msg.product_id,
                bids=self._levels(msg.bids),
                asks=self._levels(msg.asks),
                ts=_ns(msg.time) if msg.time is not None else 0,
                recv_ts=recv_ts,
            )
        ]

    def _on_ticker(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        msg = self._ticker.decode(frame)
        d = self._d
        return [
            Ticker(
                venue=VENUE,
                symbol=msg.product_id,
                bid=d[msg.best_bid] if msg.best_bid is not None else None,
                bid_size=d[msg.best_bid_size] if msg.best_bid_size is not None else None,
                ask=d[msg.best_ask] if msg.best_ask is not None else None,
                ask_size=d[msg.best_ask_size] if msg.best_ask_size is not None else None,
                last=d[msg.price] if msg.price is not None else None,
                volume=d[msg.volume_24h] if msg.volume_24h is not None else None,
                ts=_ns(msg.time) if msg.time is not None else recv_ts,
                recv_ts=recv_ts,
            )
        ]

    def _on_heartbeat(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        msg = self._heartbeat.decode(frame)
        return [
            Heartbeat(symbol=msg.product_id, ts=_ns(msg.time) if msg.time is not None else recv_ts)
        ]

    def _on_subscriptions(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        msg = self._subscriptions.decode(frame)
        subs: list[Subscription] = []
        for spec in msg.channels:
            kind = _KIND_BY_CHANNEL.get(spec.name)
            if kind is not None:
                subs.extend(Subscription(kind, product) for product in spec.product_ids)
        return [Subscribed(tuple(subs))]

    def _on_error(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        msg = self._error.decode(frame)
        reason = msg.reason or ""
        unknown_product = "not a valid product" in reason or "not a valid product" in msg.message
        symbol = reason.partition(" ")[0] if unknown_product else None
        return [
            VenueError(
                code="error",
                message=f"{msg.message}: {reason}" if reason else msg.message,
                field="product_ids" if unknown_product else None,
                symbol=symbol or None,
                fatal=unknown_product,
            )
        ]


# ------------------------------------------------------------------------------------- REST


class _Product(msgspec.Struct, gc=False):
    id: str
    base_currency: str
    quote_currency: str
    quote_increment: str
    base_increment: str
    base_min_size: str | None = None
    status: str = "online"
    trading_disabled: bool = False


class _RestBook(msgspec.Struct, gc=False):
    bids: list[_Level]
    asks: list[_Level]
    sequence: int
    time: datetime | None = None


class _RestTrade(msgspec.Struct, gc=False):
    time: datetime
    trade_id: int
    price: str
    size: str
    side: str


class _Message(msgspec.Struct, gc=False):
    message: str


def _plain(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


class CoinbaseRest(PublicRest):
    """Coinbase Exchange public REST: products, level-2 book (with ``sequence``), trades.

    Trades are paginated newest first with ``after`` (trade ids below the cursor). Trade ids are
    contiguous per product, so the trades after ``since_id`` are requested as the page below
    ``after = since_id + limit + 1``; :meth:`parse_trades` returns them oldest first.
    """

    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "https://api.exchange.coinbase.com"
    rate_limit: ClassVar[tuple[float, float]] = (10.0, 1.0)
    default_trades_limit: ClassVar[int] = 1000

    def __init__(self) -> None:
        self._d = DecimalCache()
        self._products = msgspec.json.Decoder(list[_Product])
        self._book = msgspec.json.Decoder(_RestBook)
        self._trades = msgspec.json.Decoder(list[_RestTrade])
        self._message = msgspec.json.Decoder(_Message)

    @staticmethod
    def _product(symbol: str) -> str:
        base, sep, quote = symbol.partition("-")
        if not sep or not base or not quote or "/" in symbol:
            raise InvalidRequest(f"not a symbol: {symbol!r}", field="symbol", venue=VENUE)
        return symbol

    def markets_request(self) -> RestRequest:
        return RestRequest("GET", "/products")

    def book_request(self, symbol: str, depth: int | None = None) -> RestRequest:
        # level 2 is the aggregated full book; Coinbase takes no depth for it
        return RestRequest("GET", f"/products/{self._product(symbol)}/book", (("level", "2"),))

    def trades_request(
        self, symbol: str, since_id: int | None = None, limit: int | None = None
    ) -> RestRequest:
        params: list[tuple[str, str]] = []
        if since_id is not None:
            page = limit or self.default_trades_limit
            params.append(("after", str(since_id + page + 1)))
        if limit is not None:
            params.append(("limit", str(limit)))
        elif since_id is not None:
            params.append(("limit", str(self.default_trades_limit)))
        return RestRequest("GET", f"/products/{self._product(symbol)}/trades", tuple(params))

    def parse_markets(self, body: bytes) -> list[Instrument]:
        try:
            out = []
            for p in self._products.decode(body):
                tick = _plain(p.quote_increment)
                lot = _plain(p.base_increment)
                out.append(
                    Instrument(
                        venue=VENUE,
                        symbol=p.id,
                        venue_symbol=p.id,
                        base=p.base_currency,
                        quote=p.quote_currency,
                        price_precision=len(tick.partition(".")[2]),
                        size_precision=len(lot.partition(".")[2]),
                        tick_size=Decimal(tick),
                        lot_size=Decimal(lot),
                        min_size=Decimal(_plain(p.base_min_size))
                        if p.base_min_size
                        else Decimal(0),
                        status="open"
                        if p.status == "online" and not p.trading_disabled
                        else p.status,
                    )
                )
            return out
        except _DECODE_ERRORS as exc:
            raise ProtocolError(f"malformed Coinbase products: {exc}", venue=VENUE) from exc

    def parse_book(self, body: bytes, symbol: str, recv_ts: int = 0) -> BookSnapshot:
        try:
            book = self._book.decode(body)
            if duplicate_keys(body):
                refuse_duplicates(body, venue=VENUE, symbol=symbol, channel=Channel.BOOK.value)
            p = self._d.positive  # a snapshot's prices and sizes are > 0
            return BookSnapshot(
                venue=VENUE,
                symbol=symbol,
                bids=tuple([BookLevel(p[lv.price], p[lv.size]) for lv in book.bids]),
                asks=tuple([BookLevel(p[lv.price], p[lv.size]) for lv in book.asks]),
                sequence=book.sequence,
                ts=_ns(book.time) if book.time is not None else 0,
                recv_ts=recv_ts,
            )
        except _DECODE_ERRORS as exc:
            raise ProtocolError(f"malformed Coinbase book: {exc}", venue=VENUE) from exc

    def parse_trades(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Trade]:
        try:
            rows = self._trades.decode(body)
            if duplicate_keys(body):
                refuse_duplicates(body, venue=VENUE, symbol=symbol, channel=Channel.TRADES.value)
            d = self._d.positive  # a trade's price and size are > 0
            out = []
            for t in rows:
                side = _MAKER_TO_AGGRESSOR.get(t.side)
                if side is None:
                    raise ProtocolError(f"trade side {t.side!r}", venue=VENUE)
                out.append(
                    Trade(
                        venue=VENUE,
                        symbol=symbol,
                        id=t.trade_id,
                        price=d[t.price],
                        size=d[t.size],
                        side=side,
                        ts=_ns(t.time),
                        recv_ts=recv_ts,
                    )
                )
            out.sort(key=lambda t: t.id or 0)
            return out
        except _DECODE_ERRORS as exc:
            raise ProtocolError(f"malformed Coinbase trades: {exc}", venue=VENUE) from exc

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> TickloopError:
        try:
            message = self._message.decode(body).message
        except msgspec.DecodeError:
            message = f"Coinbase HTTP {status}"
        if status == 429:
            retry_after = None
            for key, value in headers.items():
                if key.lower() == "retry-after":
                    try:
                        retry_after = float(value)
                    except ValueError:
                        retry_after = None
            return RateLimitError(message, retry_after=retry_after, venue=VENUE)
        if status == 404 or message in ("NotFound", "Not Found"):
            return InvalidRequest(message, field="symbol", code=str(status), venue=VENUE)
        if status == 400:
            return InvalidRequest(message, code=str(status), venue=VENUE)
        return ExchangeError(message, code=str(status), status=status, venue=VENUE)


def _short(exc: BaseException) -> str:
    """An error's message, bounded (a RecursionError's or a huge value's can be long)."""
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


#: Coinbase's implementation of the venue contract (tickloop.venues.registry.BUILTIN).
#: No authorizer: tickloop makes only public calls to Coinbase.
PLUGIN = Venue(VENUE, stream=CoinbaseCodec, rest=CoinbaseRest)
