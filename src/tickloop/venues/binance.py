"""Binance spot: sans-I/O codecs for the public WebSocket streams and the public REST calls.

WebSocket frames come in two wrappings: combined streams (``/stream``) send
``{"stream": "btcusdt@depth@100ms", "data": {...}}`` and raw streams (``/ws``) send the event
object alone (``{"e": "depthUpdate", ...}``; ``bookTicker`` has no ``e``). Binance writes the
``stream`` key (or ``e``) first, so the codec reads the stream name with a byte scan, maps it once
to a message kind (cached per stream), and decodes the whole frame with one reused typed decoder
for that kind: no per-message dict walking. A frame in another key order still decodes, through a
slower generic path. Prices and sizes are decoded as strings and turned into Decimals through one
:class:`DecimalCache` per codec, so the venue's digits (``"0.35130000"``) are kept.

Binance names symbols without a separator (``BTCUSDT``); the codec splits them at the longest
known quote asset that ends the name, or exactly, when it was given the venue's instruments
(``BinanceCodec(instruments=BinanceRest().parse_markets(body))``).

The same codecs serve Binance.US (``wss://stream.binance.us:9443``, ``https://api.binance.us``):
its streams and REST answers have the same format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Literal, Union

import msgspec

from ..exceptions import (
    ExchangeError,
    InvalidRequest,
    ProtocolError,
    RateLimitError,
    TickloopError,
)
from ..limits import DEFAULT_LIMITS, Limits
from ..models import (
    BookDelta,
    BookLevel,
    BookSnapshot,
    Candle,
    Instrument,
    Quote,
    Side,
    Ticker,
    Trade,
)
from .base import (
    Channel,
    Codec,
    DecimalCache,
    Decoded,
    PublicRest,
    RestRequest,
    Subscribed,
    Subscription,
    Unsubscribed,
    VenueError,
)
from .keys import colons, duplicate_keys, exact_keys, refuse_duplicates
from .levels import WireLevels, wire_level_decoder
from .registry import Venue

__all__ = ["PLUGIN", "QUOTE_ASSETS", "BinanceCodec", "BinanceRest", "split_binance_symbol"]

VENUE = "binance"
_MS = 1_000_000  # ns per ms
_SELL, _BUY = Side.SELL, Side.BUY  # (module constants: one lookup a trade, not two)

_MAX_PENDING = 1024  # subscribe requests remembered until their ack
_DECODE_ERRORS = (
    msgspec.DecodeError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    ArithmeticError,
    RecursionError,  # JSON nested deeper than the interpreter's recursion limit
)

# ------------------------------------------------------------------------------------ symbols

#: Quote assets Binance lists, matched longest first against the end of a symbol name.
QUOTE_ASSETS: tuple[str, ...] = tuple(
    sorted(
        {
            "USDT", "BUSD", "USDC", "FDUSD", "TUSD", "USDP", "DAI", "PAX", "UST", "USDS",
            "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "DOT", "SOL",
            "EUR", "GBP", "TRY", "BRL", "AUD", "USD", "JPY", "RUB", "UAH", "NGN", "ZAR",
            "IDRT", "BIDR", "BKRW", "VAI", "PLN", "RON", "ARS", "MXN", "COP", "CZK",
        },
        key=lambda q: (-len(q), q),
    )
)  # fmt: skip


def split_binance_symbol(venue_symbol: str) -> tuple[str, str]:
    """``"BTCUSDT"`` -> ``("BTC", "USDT")`` by the longest known quote asset ending the name."""
    name = venue_symbol.upper()
    for quote in QUOTE_ASSETS:
        if name.endswith(quote) and len(name) > len(quote):
            return name[: -len(quote)], quote
    raise ProtocolError(f"cannot split Binance symbol {venue_symbol!r}", venue=VENUE)


# ------------------------------------------------------------------------- WS message shapes


# Level arrays are read by a wire_level_decoder (tickloop.venues.levels): kept as their JSON text
# for the C decoder, so no string, pair or list is built for them.
class _Depth(msgspec.Struct, gc=False):
    E: int
    s: str
    U: int
    u: int
    b: WireLevels  # [[price, size], ...]
    a: WireLevels


class _Partial(msgspec.Struct, gc=False):  # <symbol>@depth<N>: a top-N snapshot
    lastUpdateId: int
    bids: WireLevels  # [[price, size], ...]
    asks: WireLevels


class _AggTrade(msgspec.Struct, gc=False):
    s: str
    a: int
    p: str
    q: str
    T: int
    m: bool  # buyer is the maker, so the aggressor sold


class _Trade(msgspec.Struct, gc=False):
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool


class _BookTicker(msgspec.Struct, gc=False):
    u: int
    s: str
    b: str
    B: str
    a: str
    A: str
    E: int | None = None


class _K(msgspec.Struct, gc=False):
    t: int
    T: int
    i: str
    o: str
    c: str
    h: str
    l: str  # noqa: E741 - Binance's name
    v: str
    n: int
    x: bool


class _Kline(msgspec.Struct, gc=False):
    E: int
    s: str
    k: _K


class _Ticker24(msgspec.Struct, gc=False):
    E: int
    s: str
    c: str
    b: str
    B: str
    a: str
    A: str
    v: str


# Keys of an event that its struct does not read, read by the hot path's struct all the same (as
# required fields) so that a frame giving exactly these keys needs no duplicate-key scan
# (keys.exact_keys); a frame without one of them takes the lenient path below the hot one.
# The numbers are decoded as floats, not ints, though Binance sends ints: they are only counted,
# and a float costs msgspec less to make than an int of 9-13 digits (CPython keeps spare floats,
# not spare ints): about 100 instructions a number (callgrind, 2026-12-04). Any JSON number is
# still required, so the count's argument holds.
_UNREAD: dict[str, list[tuple[str, type]]] = {
    "aggTrade": [("E", float), ("f", float), ("l", float), ("M", bool)],
    "trade": [("E", float), ("M", bool)],
}


def _tagged(data_type: type, event: str) -> Any:
    """``data_type`` told apart by its ``e`` field, for the one-pass raw-event decoder."""
    return msgspec.defstruct(
        f"_Event{data_type.__name__}",
        _UNREAD.get(event, []),
        bases=(data_type,),
        tag_field="e",
        tag=event,
        gc=False,
    )


def _wrapped(data_type: type) -> Any:
    return msgspec.defstruct(
        f"_Combined{data_type.__name__}", [("data", data_type)], gc=False, frozen=False
    )


class _Error(msgspec.Struct, gc=False):
    code: int | str
    msg: str


class _Head(msgspec.Struct, gc=False):
    """The generic path: enough to tell any frame's kind when the fast path cannot."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    e: str | None = None
    id: int | str | None = None
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    error: _Error | None = None
    code: int | str | None = None
    msg: str | None = None
    u: int | None = None
    s: str | None = None
    lastUpdateId: int | None = None


# kinds of stream, keyed by the event type (``e``) and by the stream-name suffix; _TICKER_ARR is
# the all-market 24 h ticker stream (``!ticker@arr``: a list of 24hrTicker payloads)
_DEPTH, _PARTIAL, _AGG, _TRADE, _BOOK_TICKER, _KLINE, _TICKER, _TICKER_ARR = range(8)
#: The all-market 24 h ticker stream's name.
ALL_TICKERS = "!ticker@arr"
_KIND_BY_EVENT = {
    "depthUpdate": _DEPTH,
    "aggTrade": _AGG,
    "trade": _TRADE,
    "kline": _KLINE,
    "24hrTicker": _TICKER,
}
_TYPES: tuple[type, ...] = (_Depth, _Partial, _AggTrade, _Trade, _BookTicker, _Kline, _Ticker24)
#: Raw-stream events (``{"e": "depthUpdate", ...}``) decoded in one pass, the kind told by ``e``
#: inside msgspec: event type -> kind.
_EVENT_DEPTH: type[_Depth] = _tagged(_Depth, "depthUpdate")
_EVENT_TYPES: dict[type, int] = {
    _EVENT_DEPTH if kind == _DEPTH else _tagged(_TYPES[kind], event): kind
    for event, kind in _KIND_BY_EVENT.items()
}
#: Colons in a raw event frame that leave no room for a key given twice (keys.exact_keys), by
#: the type the hot path decoded; in a combined-stream frame two more (``stream``, ``data``).
#: -1 and -2 match no count.
_RAW_KEYS: dict[type, int] = {t: exact_keys(t) for t in _EVENT_TYPES}
_COMBINED_KEYS: dict[type, int] = {t: k + 2 if k >= 0 else -2 for t, k in _RAW_KEYS.items()}


def _stream_kind(stream: str) -> int | None:
    """``"btcusdt@depth@100ms"`` -> the kind of its messages (None for streams not handled)."""
    if stream == ALL_TICKERS:
        return _TICKER_ARR
    _, _, rest = stream.partition("@")
    name = rest.partition("@")[0]
    if name == "depth":
        return _DEPTH
    if name.startswith("depth") and name[5:].isdigit():
        return _PARTIAL
    if name.startswith("kline_"):
        return _KLINE
    return {"aggTrade": _AGG, "trade": _TRADE, "bookTicker": _BOOK_TICKER, "ticker": _TICKER}.get(
        name
    )


_INTERVALS = frozenset(
    {"1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d"}
    | {"1w", "1M"}
)


class BinanceCodec(Codec):
    """Binance spot WebSocket market streams: trades, diff depth, book ticker, klines, tickers."""

    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "wss://stream.binance.com:9443/stream"
    max_streams_per_connection: ClassVar[int] = 1024
    max_messages_per_second: ClassVar[float] = 5.0
    max_streams_per_message: ClassVar[int] = 200
    channels: ClassVar[frozenset[Channel]] = frozenset(
        {Channel.TRADES, Channel.BOOK, Channel.TICKER, Channel.CANDLES}
    )
    contiguous_trade_ids: ClassVar[bool] = True  # aggTrade ``a`` and trade ``t`` both are

    def __init__(
        self,
        *,
        trade_stream: Literal["aggTrade", "trade"] = "aggTrade",
        depth_speed: Literal["100ms", "1000ms"] = "100ms",
        ticker_stream: Literal["ticker", "bookTicker"] = "ticker",
        instruments: Iterable[Instrument] = (),
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(limits=limits)
        self.trade_stream = trade_stream
        # "bookTicker": Channel.TICKER is the real-time best bid/offer, decoded as a Ticker
        # (no last price or volume); "ticker": the 24 h rolling ticker, once a second.
        self.ticker_stream = ticker_stream
        self._book_ticker_as_ticker = ticker_stream == "bookTicker"
        self.depth_speed = depth_speed
        self._d = DecimalCache(limits=limits)
        self._levels = wire_level_decoder(self._d)
        self._symbols: dict[str, str] = {i.venue_symbol: i.symbol for i in instruments}
        self._venue_symbols: dict[str, str] = {s: v for v, s in self._symbols.items()}
        # stream name (bytes) -> (kind, symbol or None); bounded by the streams subscribed
        self._streams: dict[bytes, tuple[int, str | None]] = {}
        self._combined: list[msgspec.json.Decoder[Any]] = [
            msgspec.json.Decoder(_wrapped(t)) for t in _TYPES
        ]
        self._raw: list[msgspec.json.Decoder[Any]] = [msgspec.json.Decoder(t) for t in _TYPES]
        self._combined_tickers = msgspec.json.Decoder(_wrapped(list[_Ticker24]))
        self._raw_tickers = msgspec.json.Decoder(list[_Ticker24])
        self._head = msgspec.json.Decoder(_Head)
        events = Union[tuple(_EVENT_TYPES)]  # type: ignore[valid-type]  # noqa: UP007
        self._events: msgspec.json.Decoder[Any] = msgspec.json.Decoder(events)
        # Only ``data`` is decoded from the wrapper: its ``stream`` is skipped (no string made),
        # and the count of colons still leaves no room for a key given twice. This decoder is
        # used only for a frame whose third byte is ``s``: a JSON object whose first key starts
        # with ``s``, so not ``data``; with ``data`` required, the wrapper holds at least those
        # two keys, each with its colon, so a frame of exactly exact_keys(type(data)) + 2
        # colons (_COMBINED_KEYS) gives every key once (keys.exact_keys).
        self._combined_events: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            msgspec.defstruct("_CombinedEvent", [("data", events)], gc=False)
        )
        # Combined-stream frames are tried as events first until a stream whose payload has no
        # ``e`` (bookTicker, partial depth) is subscribed or seen: those would fail the tagged
        # decode on every frame.
        self._events_first = True
        # request id -> (subscribe?, subscriptions): answered by {"result": null, "id": n}
        self._pending: dict[int, tuple[bool, tuple[Subscription, ...]]] = {}

    # -- symbols -------------------------------------------------------------------------------
    def venue_symbol(self, symbol: str) -> str:
        try:
            return self._venue_symbols[symbol]
        except KeyError:
            base, sep, quote = symbol.partition("-")
            if not sep or not base or not quote or "-" in quote:
                raise InvalidRequest(
                    f"not a symbol: {symbol!r}", field="symbol", venue=VENUE
                ) from None
            return f"{base}{quote}".upper()

    def symbol(self, venue_symbol: str) -> str:
        try:
            return self._symbols[venue_symbol]
        except KeyError:
            base, quote = split_binance_symbol(venue_symbol)
            symbol = f"{base}-{quote}"
            # Bounded (limits.max_symbols): beyond it a name is worked out each time it is seen.
            if len(self._symbols) < self.limits.max_symbols:
                self._symbols[venue_symbol] = symbol
            else:
                self._uncached(venue_symbol)
            return symbol

    # -- outgoing ------------------------------------------------------------------------------
    def all_markets(self) -> frozenset[Channel]:
        # Binance streams every market's 24 h ticker at once (!ticker@arr); its all-market book
        # ticker stream was withdrawn, and trades, depth and klines have none.
        return frozenset({Channel.TICKER}) if self.ticker_stream == "ticker" else frozenset()

    def stream_name(self, sub: Subscription) -> str:
        """The Binance stream name of one subscription (``btcusdt@depth@100ms``)."""
        if sub.symbol == "*":
            if sub.channel in self.all_markets():
                return ALL_TICKERS
            raise InvalidRequest(
                f"Binance has no all-market {sub.channel.value} stream"
                + (" with ticker_stream='bookTicker'" if sub.channel is Channel.TICKER else ""),
                field="symbol",
                venue=VENUE,
            )
        if sub.symbol is None or sub.channel not in self.channels:
            raise InvalidRequest(
                f"Binance has no public channel {sub.channel.value!r}", field="channel", venue=VENUE
            )
        name = self.venue_symbol(sub.symbol).lower()
        if sub.channel is Channel.TRADES:
            return f"{name}@{self.trade_stream}"
        if sub.channel is Channel.BOOK:
            return f"{name}@depth@{self.depth_speed}"
        if sub.channel is Channel.TICKER:
            return f"{name}@{self.ticker_stream}"
        if sub.interval not in _INTERVALS:
            raise InvalidRequest(
                f"Binance kline interval {sub.interval!r} is not one of {sorted(_INTERVALS)}",
                field="interval",
                venue=VENUE,
            )
        return f"{name}@kline_{sub.interval}"

    def _requests(self, method: str, subscriptions: Sequence[Subscription]) -> list[bytes]:
        names = [self.stream_name(sub) for sub in subscriptions]
        frames = []
        step = self.max_streams_per_message
        for start in range(0, len(names), step):
            request_id = self.next_request_id()
            if len(self._pending) >= _MAX_PENDING:  # acks that never came: forget the oldest
                del self._pending[next(iter(self._pending))]
            self._pending[request_id] = (
                method == "SUBSCRIBE",
                tuple(subscriptions[start : start + step]),
            )
            message = {"method": method, "params": names[start : start + step], "id": request_id}
            frames.append(msgspec.json.encode(message))
        return frames

    def subscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        if self._book_ticker_as_ticker and any(s.channel is Channel.TICKER for s in subscriptions):
            self._events_first = False  # bookTicker payloads carry no "e"
        return self._requests("SUBSCRIBE", subscriptions)

    def unsubscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        return self._requests("UNSUBSCRIBE", subscriptions)

    # -- incoming ------------------------------------------------------------------------------
    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Decoded]:
        # The hot path: an event (``{"e":...``), raw or wrapped as a combined-stream message,
        # decoded in one pass straight from the payload (picows hands over a memoryview, valid
        # only during the call) by a union tagged by ``e``. Anything else (acks, errors, streams
        # without ``e``), or an event this codec does not know, takes the paths below.
        data: Any = None
        keys = _RAW_KEYS
        if len(frame) > 2:
            lead = frame[2]
            if lead == 101:  # {"e":
                try:  # noqa: SIM105 - contextlib.suppress costs a call on the hot path
                    data = self._events.decode(frame)
                except (msgspec.DecodeError, RecursionError):
                    pass  # unknown event type or malformed: the paths below tell which
            elif lead == 115 and self._events_first:  # {"stream":
                keys = _COMBINED_KEYS
                try:  # noqa: SIM105
                    data = self._combined_events.decode(frame).data
                except (msgspec.DecodeError, RecursionError):
                    pass
        if data is not None:
            wire = type(data)
            # a key given twice (msgspec kept the last, keys.py) is ruled out by the count of
            # colons when the frame gives exactly the keys decoded, else by the scan
            if colons(frame) != keys[wire] and duplicate_keys(frame):
                refuse_duplicates(frame, venue=VENUE, **_stream_of(data, self.symbol))
            try:
                if wire is _EVENT_DEPTH:
                    return [self._delta(data, recv_ts)]
                return [self._convert(_EVENT_TYPES[wire], data, None, recv_ts)]
            except _DECODE_ERRORS as exc:
                raise ProtocolError(
                    f"malformed Binance frame: {exc}", venue=VENUE, **_stream_of(data, self.symbol)
                ) from exc
        if type(frame) is not bytes:
            frame = bytes(frame)  # the byte scans below need bytes
        if duplicate_keys(frame):
            self._refuse_duplicates(frame)
        try:
            if frame.startswith(b'{"stream":"'):
                end = frame.find(b'"', 11)
                stream = frame[11:end]
                known = self._streams.get(stream)
                if known is None:
                    known = self._learn_stream(stream)
                kind, symbol = known
                if kind < 0:
                    return self._slow(frame, recv_ts)
                if kind == _TICKER_ARR:
                    return self._tickers(self._combined_tickers.decode(frame).data, recv_ts)
                if kind in (_PARTIAL, _BOOK_TICKER):
                    self._events_first = False  # a stream without "e": see __init__
                data = self._combined[kind].decode(frame).data
                if kind == _DEPTH:
                    return [self._delta(data, recv_ts)]
                return [self._convert(kind, data, symbol, recv_ts)]
            if frame.startswith(b'{"e":"'):
                end = frame.find(b'"', 6)
                event_kind = _KIND_BY_EVENT.get(frame[6:end].decode())
                if event_kind is None:
                    return self._slow(frame, recv_ts)
                data = self._raw[event_kind].decode(frame)
                return [self._convert(event_kind, data, None, recv_ts)]
            return self._slow(frame, recv_ts)
        except _DECODE_ERRORS as exc:
            raise ProtocolError(
                f"malformed Binance frame: {_short(exc)}",
                venue=VENUE,
                **_stream_of(data, self.symbol),
            ) from exc

    def _refuse_duplicates(self, frame: bytes) -> None:
        """ProtocolError when an object of ``frame`` gives a key twice, naming the stream when
        the frame tells it (``stream``, or ``e`` and ``s``); returns when none does."""
        stream: dict[str, str | None] = {}
        try:
            head = self._head.decode(frame)
            kind = _stream_kind(head.stream) if head.stream else None
            name = head.stream.partition("@")[0] if head.stream else None
            if kind is None:  # no stream, or one no stream is called (given twice?): the event
                event = self._head.decode(head.data) if head.data else head
                kind, name = _KIND_BY_EVENT.get(event.e or ""), event.s
            symbol = self.symbol(name.upper()) if name else None
            channel = None
            if kind in (_DEPTH, _PARTIAL):
                channel = Channel.BOOK.value
            elif kind in (_AGG, _TRADE):
                channel = Channel.TRADES.value
            stream = {"symbol": symbol, "channel": channel}
        except (*_DECODE_ERRORS, ProtocolError):
            pass  # not a frame the stream can be told from: refused all the same
        refuse_duplicates(frame, venue=VENUE, **stream)

    def _learn_stream(self, stream: bytes) -> tuple[int, str | None]:
        name = stream.decode()
        kind = _stream_kind(name)
        symbol = None
        if kind == _PARTIAL:  # the only payload without ``s``
            symbol = self.symbol(name.partition("@")[0].upper())
        known = (-1 if kind is None else kind, symbol)
        if len(self._streams) < 4 * self.max_streams_per_connection:
            self._streams[stream] = known
        return known

    def _tickers(self, tickers: list[_Ticker24], recv_ts: int) -> list[Decoded]:
        # Not inline in decode: a comprehension there would make its locals closure cells,
        # created on every call of the hot path (Python 3.11)
        return [self._convert(_TICKER, t, None, recv_ts) for t in tickers]

    def _slow(self, frame: bytes, recv_ts: int) -> list[Decoded]:
        head = self._head.decode(frame)
        if head.stream is not None and head.data:
            kind = _stream_kind(head.stream)
            if kind is None:
                self.unknown += 1
                return []
            if kind == _TICKER_ARR:
                return self._tickers(self._raw_tickers.decode(head.data), recv_ts)
            symbol = self.symbol(head.stream.partition("@")[0].upper())
            data = self._raw[kind].decode(head.data)
            return [self._convert(kind, data, symbol, recv_ts)]
        if head.error is not None or head.code is not None:
            return [self._venue_error(head)]
        if head.result:
            return self._ack(head)
        if head.e is not None:
            kind = _KIND_BY_EVENT.get(head.e)
            if kind is None:
                self.unknown += 1
                return []
            return [self._convert(kind, self._raw[kind].decode(frame), None, recv_ts)]
        if head.u is not None and head.s is not None:
            ticker = self._raw[_BOOK_TICKER].decode(frame)
            return [self._convert(_BOOK_TICKER, ticker, None, recv_ts)]
        self.unknown += 1
        return []

    def _ack(self, head: _Head) -> list[Decoded]:
        if bytes(head.result) != b"null" or not isinstance(head.id, int):
            self.unknown += 1  # e.g. the answer to LIST_SUBSCRIPTIONS
            return []
        pending = self._pending.pop(head.id, None)
        if pending is None:
            return [Subscribed((), request_id=head.id)]
        subscribe, subs = pending
        if subscribe:
            return [Subscribed(subs, request_id=head.id)]
        return [Unsubscribed(subs, request_id=head.id)]

    def _venue_error(self, head: _Head) -> VenueError:
        if head.error is not None:
            code, message = head.error.code, head.error.msg
        else:
            code, message = head.code or "", head.msg or ""
        request_id = head.id if isinstance(head.id, int) else None
        if request_id is not None:
            self._pending.pop(request_id, None)
        return VenueError(code=str(code), message=message, request_id=request_id)

    def _delta(self, data: _Depth, recv_ts: int) -> BookDelta:
        """A ``depthUpdate`` event as a BookDelta (the per-diff hot path)."""
        levels = self._levels
        # The level decoder refuses a zero price and a side over limits.max_levels_per_message
        # (levels.py); a size of 0 deletes a level.
        return BookDelta(
            venue=VENUE,
            symbol=self._symbols.get(data.s) or self.symbol(data.s),
            bids=levels(data.b),
            asks=levels(data.a),
            sequence=data.u,
            first_sequence=data.U,
            ts=data.E * _MS,
            recv_ts=recv_ts,
        )

    def _convert(self, kind: int, data: Any, symbol: str | None, recv_ts: int) -> Decoded:
        d = self._d
        if kind == _DEPTH:
            return self._delta(data, recv_ts)
        if kind in (_AGG, _TRADE):
            # A trade's price and size are > 0: checked on the Decimals of the shared cache
            # (cheaper on this hot path than a second, positive-only cache's lookups).
            price = d[data.p]
            size = d[data.q]
            if not price or not size:
                raise ValueError(f"must be > 0, not {data.p if not price else data.q!r}")
            return Trade(
                venue=VENUE,
                symbol=self._symbols.get(data.s) or self.symbol(data.s),
                id=data.a if kind == _AGG else data.t,
                price=price,
                size=size,
                side=_SELL if data.m else _BUY,
                ts=data.T * _MS,
                recv_ts=recv_ts,
            )
        if kind == _BOOK_TICKER:
            if self._book_ticker_as_ticker:
                return Ticker(
                    venue=VENUE,
                    symbol=self.symbol(data.s),
                    bid=d[data.b],
                    bid_size=d[data.B],
                    ask=d[data.a],
                    ask_size=d[data.A],
                    ts=data.E * _MS if data.E is not None else recv_ts,
                    recv_ts=recv_ts,
                )
            return Quote(
                venue=VENUE,
                symbol=self.symbol(data.s),
                bid=d[data.b],
                bid_size=d[data.B],
                ask=d[data.a],
                ask_size=d[data.A],
                ts=data.E * _MS if data.E is not None else recv_ts,  # spot sends no time
                recv_ts=recv_ts,
            )
        if kind == _KLINE:
            k = data.k
            return Candle(
                venue=VENUE,
                symbol=self.symbol(data.s),
                interval=k.i,
                open_time=k.t * _MS,
                close_time=(k.T + 1) * _MS,  # Binance gives the last ms of the interval
                open=d[k.o],
                high=d[k.h],
                low=d[k.l],
                close=d[k.c],
                volume=d[k.v],
                trades=k.n,
                closed=k.x,
                recv_ts=recv_ts,
            )
        if kind == _TICKER:
            return Ticker(
                venue=VENUE,
                symbol=self.symbol(data.s),
                bid=d[data.b],
                bid_size=d[data.B],
                ask=d[data.a],
                ask_size=d[data.A],
                last=d[data.c],
                volume=d[data.v],
                ts=data.E * _MS,
                recv_ts=recv_ts,
            )
        # _PARTIAL: a top-N snapshot; its symbol comes from the stream name
        if symbol is None:
            raise ProtocolError("partial depth without a stream name", venue=VENUE)
        try:
            bids = _sized(self._levels(data.bids))
            asks = _sized(self._levels(data.asks))
        except _DECODE_ERRORS as exc:  # its payload has no "s": name the stream's symbol
            raise ProtocolError(
                f"bad Binance partial depth: {_short(exc)}",
                venue=VENUE,
                symbol=symbol,
                channel=Channel.BOOK.value,
            ) from exc
        return BookSnapshot(
            venue=VENUE,
            symbol=symbol,
            bids=bids,
            asks=asks,
            sequence=data.lastUpdateId,
            recv_ts=recv_ts,
        )


def _sized(levels: tuple[BookLevel, ...]) -> tuple[BookLevel, ...]:
    """A snapshot's levels, each with a size > 0 (a snapshot lists the levels there are)."""
    for level in levels:
        if not level.size:
            raise ValueError(f"a snapshot level of size 0 (at price {level.price})")
    return levels


# ------------------------------------------------------------------------------------- REST


class _Filter(msgspec.Struct, gc=False):
    filterType: str
    tickSize: str | None = None
    stepSize: str | None = None
    minQty: str | None = None


class _SymbolInfo(msgspec.Struct, gc=False):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: list[_Filter] = []
    baseAssetPrecision: int = 8
    quotePrecision: int = 8


class _ExchangeInfo(msgspec.Struct, gc=False):
    symbols: list[_SymbolInfo]


class _RestTrade(msgspec.Struct, gc=False):
    """Either shape: ``/api/v3/aggTrades`` (``a p q T m``) or ``/api/v3/trades``."""

    a: int | None = None
    id: int | None = None
    p: str | None = None
    price: str | None = None
    q: str | None = None
    qty: str | None = None
    T: int | None = None
    time: int | None = None
    m: bool | None = None
    isBuyerMaker: bool | None = None


def _plain(text: str) -> str:
    """``"0.01000000"`` -> ``"0.01"``: a filter value without its padding zeros."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def _decimals(text: str) -> int:
    plain = _plain(text)
    return len(plain.partition(".")[2])


def _depth_weight(limit: int | None) -> int:
    if limit is None or limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class BinanceRest(PublicRest):
    """Binance spot public REST: exchangeInfo, depth snapshot, aggTrades (or trades)."""

    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "https://api.binance.com"
    rate_limit: ClassVar[tuple[float, float]] = (6000.0, 60.0)  # request weight per minute

    def __init__(self, *, trades: Literal["aggTrades", "trades"] = "aggTrades") -> None:
        self.trades = trades
        self._d = DecimalCache()
        self._levels = wire_level_decoder(self._d)
        self._info = msgspec.json.Decoder(_ExchangeInfo)
        self._book = msgspec.json.Decoder(_Partial)
        self._trades = msgspec.json.Decoder(list[_RestTrade])
        self._error = msgspec.json.Decoder(_Error)
        self._symbols: dict[str, str] = {}

    def _venue_symbol(self, symbol: str) -> str:
        base, sep, quote = symbol.partition("-")
        if not sep or not base or not quote:
            raise InvalidRequest(f"not a symbol: {symbol!r}", field="symbol", venue=VENUE)
        return f"{base}{quote}".upper()

    def markets_request(self) -> RestRequest:
        return RestRequest("GET", "/api/v3/exchangeInfo", weight=20)

    def book_request(self, symbol: str, depth: int | None = None) -> RestRequest:
        params = [("symbol", self._venue_symbol(symbol))]
        if depth is not None:
            params.append(("limit", str(depth)))
        return RestRequest("GET", "/api/v3/depth", tuple(params), weight=_depth_weight(depth))

    def trades_request(
        self, symbol: str, since_id: int | None = None, limit: int | None = None
    ) -> RestRequest:
        params = [("symbol", self._venue_symbol(symbol))]
        if self.trades == "aggTrades":
            if since_id is not None:
                params.append(("fromId", str(since_id + 1)))  # fromId is inclusive
            path, weight = "/api/v3/aggTrades", 4
        else:
            # /api/v3/trades only returns the most recent trades; ids come from historicalTrades
            if since_id is not None:
                params.append(("fromId", str(since_id + 1)))
                path, weight = "/api/v3/historicalTrades", 25
            else:
                path, weight = "/api/v3/trades", 25
        if limit is not None:
            params.append(("limit", str(limit)))
        return RestRequest("GET", path, tuple(params), weight=weight)

    def parse_markets(self, body: bytes) -> list[Instrument]:
        try:
            info = self._info.decode(body)
            out = []
            for s in info.symbols:
                tick = step = min_qty = None
                for f in s.filters:
                    if f.filterType == "PRICE_FILTER":
                        tick = f.tickSize
                    elif f.filterType == "LOT_SIZE":
                        step, min_qty = f.stepSize, f.minQty
                tick_text = _plain(tick) if tick else f"1E-{s.quotePrecision}"
                step_text = _plain(step) if step else f"1E-{s.baseAssetPrecision}"
                out.append(
                    Instrument(
                        venue=VENUE,
                        symbol=f"{s.baseAsset}-{s.quoteAsset}",
                        venue_symbol=s.symbol,
                        base=s.baseAsset,
                        quote=s.quoteAsset,
                        price_precision=_decimals(tick) if tick else s.quotePrecision,
                        size_precision=_decimals(step) if step else s.baseAssetPrecision,
                        tick_size=Decimal(tick_text),
                        lot_size=Decimal(step_text),
                        min_size=Decimal(_plain(min_qty)) if min_qty else Decimal(0),
                        status="open" if s.status == "TRADING" else s.status.lower(),
                    )
                )
            return out
        except _DECODE_ERRORS as exc:
            raise ProtocolError(f"malformed Binance exchangeInfo: {exc}", venue=VENUE) from exc

    def parse_book(self, body: bytes, symbol: str, recv_ts: int = 0) -> BookSnapshot:
        try:
            book = self._book.decode(body)
            if duplicate_keys(body):
                refuse_duplicates(body, venue=VENUE, symbol=symbol, channel=Channel.BOOK.value)
            return BookSnapshot(
                venue=VENUE,
                symbol=symbol,
                bids=_sized(self._levels(book.bids)),
                asks=_sized(self._levels(book.asks)),
                sequence=book.lastUpdateId,
                recv_ts=recv_ts,
            )
        except _DECODE_ERRORS as exc:
            raise ProtocolError(f"malformed Binance depth: {exc}", venue=VENUE) from exc

    def parse_trades(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Trade]:
        try:
            rows = self._trades.decode(body)
            if duplicate_keys(body):
                refuse_duplicates(body, venue=VENUE, symbol=symbol, channel=Channel.TRADES.value)
            d = self._d.positive  # a trade's price and size are > 0
            out = []
            for r in rows:
                trade_id = r.a if r.a is not None else r.id
                price = r.p if r.p is not None else r.price
                size = r.q if r.q is not None else r.qty
                ts = r.T if r.T is not None else r.time
                maker = r.m if r.m is not None else r.isBuyerMaker
                if trade_id is None or price is None or size is None or ts is None:
                    raise ProtocolError("Binance trade without id, price, size or time")
                out.append(
                    Trade(
                        venue=VENUE,
                        symbol=symbol,
                        id=trade_id,
                        price=d[price],
                        size=d[size],
                        side=None if maker is None else (Side.SELL if maker else Side.BUY),
                        ts=ts * _MS,
                        recv_ts=recv_ts,
                    )
                )
            return out
        except _DECODE_ERRORS as exc:
            raise ProtocolError(f"malformed Binance trades: {exc}", venue=VENUE) from exc

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> TickloopError:
        retry_after = None
        for key, value in headers.items():
            if key.lower() == "retry-after":
                try:
                    retry_after = float(value)
                except ValueError:
                    retry_after = None
        try:
            err: _Error | None = self._error.decode(body)
        except msgspec.DecodeError:
            err = None
        code = str(err.code) if err is not None else None
        message = err.msg if err is not None else f"Binance HTTP {status}"
        if status in (418, 429) or code == "-1003":
            text = "Binance IP ban (418)" if status == 418 else "Binance rate limit"
            return RateLimitError(f"{text}: {message}", retry_after=retry_after, venue=VENUE)
        if code == "-1121":
            return InvalidRequest(message, field="symbol", code=code, venue=VENUE)
        return ExchangeError(message, code=code, status=status, venue=VENUE)


def _stream_of(data: Any, normalise: Any) -> dict[str, str | None]:
    """The stream a decoded but invalid event belonged to (ProtocolError's keywords)."""
    if data is None:
        return {}
    channel = None
    if isinstance(data, _Depth | _Partial):
        channel = Channel.BOOK.value
    elif isinstance(data, _AggTrade | _Trade):
        channel = Channel.TRADES.value
    venue_symbol = getattr(data, "s", None)
    symbol = None
    if isinstance(venue_symbol, str):
        try:
            symbol = normalise(venue_symbol)
        except (ProtocolError, *_DECODE_ERRORS):  # a name that is no symbol: none to report
            symbol = None
    return {"symbol": symbol, "channel": channel}


def _short(exc: BaseException) -> str:
    """An error's message, bounded (a RecursionError's or a huge value's can be long)."""
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


#: Binance's implementation of the venue contract (tickloop.venues.registry.BUILTIN).
#: No authorizer: tickloop makes only public calls to Binance.
PLUGIN = Venue(VENUE, stream=BinanceCodec, rest=BinanceRest)
