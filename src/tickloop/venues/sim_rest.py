"""The embedded exchange's REST codec (sans-I/O): requests out, bodies in, models out.

:class:`SimRest` implements the public :class:`~tickloop.venues.base.PublicRest` contract every
venue shares (markets, book, trades) and adds the sim's other endpoints: candles, ticker, field
selection, and the private trading calls (orders, fills, balances, positions). Every request is a
:class:`~tickloop.venues.base.RestRequest` carrying the endpoint's weight (docs/protocol.md,
*Rate limits*) and whether a retry is safe. Order placement is idempotent only with a client
order id, which the exchange deduplicates per key.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote

import msgspec

from ..exceptions import (
    AuthError,
    ExchangeError,
    InvalidRequest,
    OrderRejected,
    ProtocolError,
    RateLimitError,
    TickloopError,
)
from ..fields import Selection
from ..limits import DEFAULT_LIMITS, check_decimal
from ..models import (
    Balance,
    BookLevel,
    BookSnapshot,
    Candle,
    Fill,
    Instrument,
    Liquidity,
    Market,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Ticker,
    TimeInForce,
    Trade,
)
from .base import (
    AccountRest,
    FieldSelectionRest,
    MarketDataRest,
    PublicRest,
    RestRequest,
    TradingRest,
)
from .keys import duplicate_keys, refuse_duplicates

__all__ = ["MAX_CLIENT_ORDER_ID", "SimRest"]

MAX_CLIENT_ORDER_ID = 64
CANDLE_INTERVALS = ("1s", "1m", "5m", "15m", "1h", "1d")
VENUE = "sim"

# ------------------------------------------------------------------------ wire formats


class _Error(msgspec.Struct, frozen=True):
    code: str = "error"
    message: str = ""
    field: str | None = None


class _ErrorBody(msgspec.Struct, frozen=True):
    error: _Error


class _Market(msgspec.Struct, frozen=True):
    symbol: str
    base: str
    quote: str
    price_precision: int
    size_precision: int
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal = Decimal(0)
    status: str = "open"


class _Book(msgspec.Struct, frozen=True):
    seq: int
    bids: list[BookLevel]
    asks: list[BookLevel]
    checksum: int | None = None
    ts: int = 0


class _Trade(msgspec.Struct, frozen=True):
    id: int
    price: Decimal
    size: Decimal
    side: Side | None
    ts: int


class _Candle(msgspec.Struct, frozen=True):
    interval: str
    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int = 0
    closed: bool = False


class _Ticker(msgspec.Struct, frozen=True):
    bid: Decimal | None = None
    bid_size: Decimal | None = None
    ask: Decimal | None = None
    ask_size: Decimal | None = None
    last: Decimal | None = None
    volume: Decimal | None = None
    ts: int = 0


class _Order(msgspec.Struct, frozen=True):
    id: str | int
    symbol: str
    side: Side
    type: OrderType
    size: Decimal
    status: OrderStatus
    client_order_id: str | None = None
    price: Decimal | None = None
    filled_size: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reject_reason: str | None = None
    created_ts: int = 0
    updated_ts: int = 0


class _Fill(msgspec.Struct, frozen=True):
    order_id: str | int
    trade_id: int
    symbol: str
    side: Side
    price: Decimal
    size: Decimal
    liquidity: Liquidity
    ts: int
    client_order_id: str | None = None
    fee: Decimal = Decimal(0)
    fee_asset: str | None = None


class _Balance(msgspec.Struct, frozen=True):
    asset: str
    total: Decimal
    available: Decimal


class _Position(msgspec.Struct, frozen=True):
    symbol: str
    size: Decimal
    avg_price: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)


class _Time(msgspec.Struct, frozen=True):
    ts: int


_dec_error = msgspec.json.Decoder(_ErrorBody)
_dec_markets = msgspec.json.Decoder(list[_Market])
_dec_market_list = msgspec.json.Decoder(list[Market])
_dec_market = msgspec.json.Decoder(Market)
_dec_book = msgspec.json.Decoder(_Book)
_dec_trades = msgspec.json.Decoder(list[_Trade])
_dec_candles = msgspec.json.Decoder(list[_Candle])
_dec_ticker = msgspec.json.Decoder(_Ticker)
_dec_order = msgspec.json.Decoder(_Order)
_dec_orders = msgspec.json.Decoder(list[_Order])
_dec_fills = msgspec.json.Decoder(list[_Fill])
_dec_balances = msgspec.json.Decoder(list[_Balance])
_dec_positions = msgspec.json.Decoder(list[_Position])
_dec_time = msgspec.json.Decoder(_Time)
_encoder = msgspec.json.Encoder()


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes, what: str) -> Any:
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        text = str(exc)[:200]
        raise ProtocolError(f"malformed {what} answer: {text}", venue=VENUE) from None


def _checked_levels(levels: Any, what: str) -> tuple[BookLevel, ...]:
    """Levels of a REST answer, each number bounded (tickloop.limits): msgspec decoded them
    straight to Decimal, so no DecimalCache has seen them."""
    try:
        if len(levels) > DEFAULT_LIMITS.max_levels_per_message:
            raise ValueError(f"{len(levels)} levels (limits.max_levels_per_message)")
        for price, size in levels:
            check_decimal(price)
            check_decimal(size)
            if not price or not size:  # a snapshot lists the levels there are
                raise ValueError(f"a book level of price {price} and size {size}")
    except ValueError as exc:
        raise ProtocolError(f"malformed {what} answer: {exc}", venue=VENUE) from None
    return tuple(levels)


def _number(value: Decimal | str | int, name: str) -> str:
    """A price or size as the exchange wants it: plain decimal digits, validated here so the
    error names the field before anything is sent."""
    if isinstance(value, float):
        raise InvalidRequest(
            f"{name} must be a Decimal or a string, not a float (floats are inexact)", field=name
        )
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(f"{name} is not a number: {value!r}", field=name) from None
    if not number.is_finite() or number <= 0:
        raise InvalidRequest(f"{name} must be a positive number, got {value!r}", field=name)
    return format(number, "f")


def _symbol_path(symbol: str) -> str:
    return _id_path(symbol, "symbol")


def _id_path(value: str, name: str) -> str:
    """A path segment, percent-encoded: whatever the caller passes, it stays one segment (the
    exchange answers 404 for a name it does not know)."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string, got {value!r}", field=name)
    return quote(value, safe="")


def _positive(value: int | None, name: str, maximum: int) -> None:
    if value is not None and not 1 <= value <= maximum:
        raise InvalidRequest(f"{name} must be between 1 and {maximum}, got {value}", field=name)


# ------------------------------------------------------------------------ the codec


class SimRest(PublicRest, FieldSelectionRest, MarketDataRest, TradingRest, AccountRest):
    """REST codec of the embedded exchange (docs/protocol.md): the public contract and every
    capability contract (field selection, market data, trading, account)."""

    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "http://127.0.0.1:8765/api/v1"
    rate_limit: ClassVar[tuple[float, float]] = (200.0, 1.0)
    #: Header carrying the budget left in the current window (the HTTP session watches it).
    remaining_header: ClassVar[str | None] = "TL-RateLimit-Remaining"
    #: Header carrying the key's budget per window, which may be below ``rate_limit``.
    limit_header: ClassVar[str | None] = "TL-RateLimit-Limit"

    # -- public: the PublicRest contract ---------------------------------------------------------
    def markets_request(self, fields: Selection | None = None) -> RestRequest:
        params = (("fields", fields.render()),) if fields is not None else ()
        return RestRequest("GET", "/markets", params=params, weight=10)

    def parse_markets(self, body: bytes) -> list[Instrument]:
        return [
            Instrument(
                venue=VENUE,
                symbol=m.symbol,
                venue_symbol=m.symbol,
                base=m.base,
                quote=m.quote,
                price_precision=m.price_precision,
                size_precision=m.size_precision,
                tick_size=m.tick_size,
                lot_size=m.lot_size,
                min_size=m.min_size,
                status=m.status,
            )
            for m in _decode(_dec_markets, body, "markets")
        ]

    def book_request(self, symbol: str, depth: int | None = None) -> RestRequest:
        _positive(depth, "depth", 1000)
        params = (("depth", str(depth)),) if depth is not None else ()
        weight = 5 if depth is not None and depth > 100 else 1
        return RestRequest("GET", f"/book/{_symbol_path(symbol)}", params=params, weight=weight)

    def parse_book(self, body: bytes, symbol: str, recv_ts: int = 0) -> BookSnapshot:
        book: _Book = _decode(_dec_book, body, "book")
        if duplicate_keys(body):
            refuse_duplicates(body, venue=VENUE, symbol=symbol, channel="book")
        return BookSnapshot(
            venue=VENUE,
            symbol=symbol,
            bids=_checked_levels(book.bids, "book"),
            asks=_checked_levels(book.asks, "book"),
            sequence=book.seq,
            checksum=book.checksum,
            ts=book.ts,
            recv_ts=recv_ts,
        )

    def trades_request(
        self, symbol: str, since_id: int | None = None, limit: int | None = None
    ) -> RestRequest:
        if since_id is not None and since_id < 0:
            raise InvalidRequest("since_id must be >= 0", field="since_id")
        _positive(limit, "limit", 1000)
        params: list[tuple[str, str]] = []
        if since_id is not None:
            params.append(("since_id", str(since_id)))
        if limit is not None:
            params.append(("limit", str(limit)))
        return RestRequest("GET", f"/trades/{_symbol_path(symbol)}", params=tuple(params))

    def parse_trades(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Trade]:
        trades = _decode(_dec_trades, body, "trades")
        if duplicate_keys(body):
            refuse_duplicates(body, venue=VENUE, symbol=symbol, channel="trades")
        try:
            for t in trades:
                check_decimal(t.price)
                check_decimal(t.size)
                if not t.price or not t.size:
                    raise ValueError("a trade's price and size must be > 0")
        except ValueError as exc:
            raise ProtocolError(f"malformed trades answer: {exc}", venue=VENUE) from None
        return [
            Trade(
                venue=VENUE,
                symbol=symbol,
                id=t.id,
                price=t.price,
                size=t.size,
                side=t.side,
                ts=t.ts,
                recv_ts=recv_ts,
            )
            for t in trades
        ]

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> TickloopError:
        try:
            err = _dec_error.decode(body).error
        except msgspec.DecodeError:
            err = _Error(code=f"http_{status}", message=body[:200].decode("utf-8", "replace"))
        text = f"{err.code}: {err.message}" if err.message else err.code
        if status == 429:
            return RateLimitError(text, retry_after=_retry_after(headers), venue=VENUE)
        if status == 401:
            return AuthError(text, venue=VENUE)
        if status == 400:
            return InvalidRequest(err.message or text, field=err.field, code=err.code, venue=VENUE)
        if status == 422 and err.code == "order_rejected":
            return OrderRejected(err.message or err.code, code=err.code, venue=VENUE)
        return ExchangeError(text, code=err.code, status=status, venue=VENUE)

    # -- public: sim extras ----------------------------------------------------------------------
    def time_request(self) -> RestRequest:
        return RestRequest("GET", "/time")

    def parse_time(self, body: bytes) -> int:
        answer: _Time = _decode(_dec_time, body, "time")
        return answer.ts

    def market_list_request(self, fields: Selection | None = None) -> RestRequest:
        return self.markets_request(fields)

    def market_request(self, symbol: str, fields: Selection | None = None) -> RestRequest:
        params = (("fields", fields.render()),) if fields is not None else ()
        return RestRequest("GET", f"/markets/{_symbol_path(symbol)}", params=params)

    def parse_market_list(self, body: bytes) -> list[Market]:
        """Markets with only the fields the request selected set (the others are UNSET)."""
        markets: list[Market] = _decode(_dec_market_list, body, "markets")
        return markets

    def parse_market(self, body: bytes) -> Market:
        market: Market = _decode(_dec_market, body, "market")
        return market

    def candles_request(
        self, symbol: str, interval: str = "1m", limit: int | None = None
    ) -> RestRequest:
        if interval not in CANDLE_INTERVALS:
            raise InvalidRequest(
                f"interval must be one of {', '.join(CANDLE_INTERVALS)}", field="interval"
            )
        _positive(limit, "limit", 1000)
        params = [("interval", interval)]
        if limit is not None:
            params.append(("limit", str(limit)))
        return RestRequest("GET", f"/candles/{_symbol_path(symbol)}", params=tuple(params))

    def parse_candles(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Candle]:
        return [
            Candle(
                venue=VENUE,
                symbol=symbol,
                interval=c.interval,
                open_time=c.open_time,
                close_time=c.close_time,
                open=c.open,
                high=c.high,
                low=c.low,
                close=c.close,
                volume=c.volume,
                trades=c.trades,
                closed=c.closed,
                recv_ts=recv_ts,
            )
            for c in _decode(_dec_candles, body, "candles")
        ]

    def ticker_request(self, symbol: str) -> RestRequest:
        return RestRequest("GET", f"/ticker/{_symbol_path(symbol)}")

    def parse_ticker(self, body: bytes, symbol: str, recv_ts: int = 0) -> Ticker:
        t: _Ticker = _decode(_dec_ticker, body, "ticker")
        return Ticker(
            venue=VENUE,
            symbol=symbol,
            bid=t.bid,
            bid_size=t.bid_size,
            ask=t.ask,
            ask_size=t.ask_size,
            last=t.last,
            volume=t.volume,
            ts=t.ts,
            recv_ts=recv_ts,
        )

    # -- private ---------------------------------------------------------------------------------
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
    ) -> RestRequest:
        """POST /orders. Idempotent (safe to retry) only with a client order id."""
        try:
            side = Side(side)
        except ValueError:
            raise InvalidRequest("side must be 'buy' or 'sell'", field="side") from None
        try:
            otype = OrderType(type)
        except ValueError:
            raise InvalidRequest("type must be 'limit' or 'market'", field="type") from None
        body: dict[str, Any] = {
            "symbol": _symbol_path(symbol),
            "side": str(side),
            "type": str(otype),
            "size": _number(size, "size"),
        }
        if otype is OrderType.LIMIT:
            if price is None:
                raise InvalidRequest("price is required for a limit order", field="price")
            body["price"] = _number(price, "price")
        elif price is not None:
            raise InvalidRequest("a market order takes no price", field="price")
        if time_in_force is not None:
            try:
                body["time_in_force"] = str(TimeInForce(time_in_force))
            except ValueError:
                raise InvalidRequest(
                    "time_in_force must be 'gtc', 'ioc' or 'fok'", field="time_in_force"
                ) from None
        if post_only:
            body["post_only"] = True
        if client_order_id is not None:
            if not client_order_id or len(client_order_id) > MAX_CLIENT_ORDER_ID:
                raise InvalidRequest(
                    f"client_order_id must be 1 to {MAX_CLIENT_ORDER_ID} characters",
                    field="client_order_id",
                )
            body["client_order_id"] = client_order_id
        return RestRequest(
            "POST",
            "/orders",
            body=_encoder.encode(body),
            private=True,
            idempotent=client_order_id is not None,
        )

    def order_request(self, order_id: str) -> RestRequest:
        return RestRequest("GET", f"/orders/{_id_path(order_id, 'order_id')}", private=True)

    def order_by_client_id_request(self, client_order_id: str) -> RestRequest:
        cid = _id_path(client_order_id, "client_order_id")
        return RestRequest("GET", f"/orders/by-client-id/{cid}", private=True)

    def orders_request(self, symbol: str | None = None, status: str = "open") -> RestRequest:
        if status not in ("open", "all"):
            raise InvalidRequest("status must be 'open' or 'all'", field="status")
        params: list[tuple[str, str]] = []
        if symbol is not None:
            params.append(("symbol", symbol))
        params.append(("status", status))
        return RestRequest("GET", "/orders", params=tuple(params), private=True)

    def amend_order_request(self, order_id: str, size: Decimal | str | int) -> RestRequest:
        # setting the size twice to the same value changes nothing: safe to retry
        return RestRequest(
            "PATCH",
            f"/orders/{_id_path(order_id, 'order_id')}",
            body=_encoder.encode({"size": _number(size, "size")}),
            private=True,
        )

    def cancel_order_request(self, order_id: str) -> RestRequest:
        # not retried after a lost answer: the second try would fail on the canceled order
        return RestRequest(
            "DELETE", f"/orders/{_id_path(order_id, 'order_id')}", private=True, idempotent=False
        )

    def cancel_all_request(self, symbol: str | None = None) -> RestRequest:
        params = (("symbol", symbol),) if symbol is not None else ()
        return RestRequest("DELETE", "/orders", params=params, private=True)

    def fills_request(self, symbol: str | None = None, limit: int | None = None) -> RestRequest:
        _positive(limit, "limit", 1000)
        params: list[tuple[str, str]] = []
        if symbol is not None:
            params.append(("symbol", symbol))
        if limit is not None:
            params.append(("limit", str(limit)))
        return RestRequest("GET", "/fills", params=tuple(params), private=True)

    def balances_request(self) -> RestRequest:
        return RestRequest("GET", "/balances", private=True)

    def positions_request(self) -> RestRequest:
        return RestRequest("GET", "/positions", private=True)

    def parse_order(self, body: bytes) -> Order:
        return _order(_decode(_dec_order, body, "order"))

    def parse_orders(self, body: bytes) -> list[Order]:
        return [_order(o) for o in _decode(_dec_orders, body, "orders")]

    def parse_fills(self, body: bytes, recv_ts: int = 0) -> list[Fill]:
        return [
            Fill(
                venue=VENUE,
                symbol=f.symbol,
                order_id=str(f.order_id),
                client_order_id=f.client_order_id,
                trade_id=f.trade_id,
                side=f.side,
                price=f.price,
                size=f.size,
                fee=f.fee,
                fee_asset=f.fee_asset,
                liquidity=f.liquidity,
                ts=f.ts,
                recv_ts=recv_ts,
            )
            for f in _decode(_dec_fills, body, "fills")
        ]

    def parse_balances(self, body: bytes) -> list[Balance]:
        return [
            Balance(venue=VENUE, asset=b.asset, total=b.total, available=b.available)
            for b in _decode(_dec_balances, body, "balances")
        ]

    def parse_positions(self, body: bytes) -> list[Position]:
        return [
            Position(
                venue=VENUE,
                symbol=p.symbol,
                size=p.size,
                avg_price=p.avg_price,
                realized_pnl=p.realized_pnl,
            )
            for p in _decode(_dec_positions, body, "positions")
        ]


def _order(o: _Order) -> Order:
    return Order(
        venue=VENUE,
        symbol=o.symbol,
        id=str(o.id),
        client_order_id=o.client_order_id,
        side=o.side,
        type=o.type,
        price=o.price,
        size=o.size,
        filled_size=o.filled_size,
        avg_price=o.avg_price,
        status=o.status,
        time_in_force=o.time_in_force,
        post_only=o.post_only,
        reject_reason=o.reject_reason,
        created_ts=o.created_ts,
        updated_ts=o.updated_ts,
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: the exact ``TL-Retry-After-Ms`` when present, else ``Retry-After``."""
    ms = headers.get("TL-Retry-After-Ms")
    if ms is not None:
        try:
            return max(0.0, int(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    return None
