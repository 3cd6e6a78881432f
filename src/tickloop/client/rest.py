"""``AsyncClient``: typed REST calls to one venue over one :class:`.http.HttpSession`.

Every call is a venue codec's request, sent by the HTTP session (throttle, retries, timeouts,
error translation, signing by the venue's authorizer) and parsed back into tickloop models.
Public market data (markets, book, trades) works for every venue through the
:class:`~tickloop.venues.base.PublicRest` contract; the other calls work for a venue whose REST
codec implements the capability contract they need (:class:`~tickloop.venues.FieldSelectionRest`,
:class:`~tickloop.venues.MarketDataRest`, :class:`~tickloop.venues.TradingRest`,
:class:`~tickloop.venues.AccountRest`; the embedded exchange ``"sim"`` implements them all), and
otherwise raise a ConfigError naming the contract.

The sync twin :class:`tickloop.Client` is generated from this class by ``scripts/gen_sync.py``:
every public coroutine method here becomes a blocking method there with the same signature.
Keep public methods ``async def`` with full annotations; helpers start with ``_``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from types import TracebackType
from typing import Any, NoReturn

import msgspec

from ..exceptions import ConfigError
from ..fields import Selection
from ..models import (
    Balance,
    BookSnapshot,
    Candle,
    Fill,
    Instrument,
    Market,
    Order,
    OrderType,
    Position,
    Side,
    Ticker,
    TimeInForce,
    Trade,
)
from ..venues import get as get_venue
from ..venues.base import (
    AccountRest,
    FieldSelectionRest,
    MarketDataRest,
    PublicRest,
    TradingRest,
)
from .auth import Credentials
from .http import HttpSession, HttpStats

__all__ = ["AsyncClient"]


class AsyncClient:
    """REST client of one venue. Use ``async with AsyncClient(...) as client`` or call
    :meth:`close`. Safe for many concurrent calls from one event loop.

    ``venue``: ``"sim"`` (default), ``"binance"``, ``"coinbase"``, ``"kraken"``, or any venue
    registered with :mod:`tickloop.venues` (a plug-in). ``url``: the
    venue's REST root (the sim's is ``SimExchange.rest_url``); defaults to the venue's public
    address. ``credentials``: shared by every client and stream of the same key; needed only for
    private calls. ``rate_limit``: ``(units, seconds)``, defaults to the venue's published budget.
    ``max_concurrency``: requests in flight at once. ``timeout``: seconds a whole call may take,
    retries included; ``attempt_timeout``: seconds one HTTP exchange may take. ``max_retries``:
    retries of one call.
    """

    #: The venue's name.
    venue: str
    #: The credentials private calls use (None: public calls only).
    credentials: Credentials | None
    #: The venue's REST codec (sans-I/O).
    codec: PublicRest
    #: The one HTTP session (connection pool, throttle, retries) of this client.
    http: HttpSession

    def __init__(
        self,
        venue: str = "sim",
        *,
        url: str | None = None,
        credentials: Credentials | None = None,
        rate_limit: tuple[float, float] | None = None,
        max_concurrency: int = 16,
        timeout: float = 30.0,
        attempt_timeout: float = 10.0,
        max_retries: int = 5,
    ) -> None:
        definition = get_venue(venue)
        codec_cls = definition.rest
        if codec_cls is None:
            raise ConfigError(f"venue {venue!r} has no REST codec", field="venue", venue=venue)
        self.venue = venue
        self.codec: PublicRest = codec_cls()
        self.credentials = credentials
        self.http = HttpSession(
            url or codec_cls.default_url,
            venue=venue,
            credentials=credentials,
            authorizer=definition.authorizer() if definition.authorizer is not None else None,
            error_mapper=self.codec.error,
            rate_limit=rate_limit or codec_cls.rate_limit,
            max_concurrency=max_concurrency,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            max_retries=max_retries,
            remaining_header=codec_cls.remaining_header,
            limit_header=codec_cls.limit_header,
            owner=f"AsyncClient({venue!r})",
        )

    def __repr__(self) -> str:
        state = "closed" if self.http.closed else "open"
        return f"<AsyncClient {self.venue} {self.http.base_url} {state}>"

    @property
    def stats(self) -> HttpStats:
        """Request counters of this client's HTTP session."""
        return self.http.stats

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool. Idempotent."""
        await self.http.close()

    # The capability gates: the REST codec as the contract a call needs, or a ConfigError
    # naming the operation and the contract the venue's codec lacks.
    def _selection(self, operation: str) -> FieldSelectionRest:
        codec = self.codec
        if isinstance(codec, FieldSelectionRest):
            return codec
        self._refuse(operation, "FieldSelectionRest")

    def _market_data(self, operation: str) -> MarketDataRest:
        codec = self.codec
        if isinstance(codec, MarketDataRest):
            return codec
        self._refuse(operation, "MarketDataRest")

    def _trading(self, operation: str) -> TradingRest:
        codec = self.codec
        if isinstance(codec, TradingRest):
            return codec
        self._refuse(operation, "TradingRest")

    def _account(self, operation: str) -> AccountRest:
        codec = self.codec
        if isinstance(codec, AccountRest):
            return codec
        self._refuse(operation, "AccountRest")

    def _refuse(self, operation: str, contract: str) -> NoReturn:
        raise ConfigError(
            f"{operation} is not available for venue {self.venue!r}: its REST codec "
            f"{type(self.codec).__name__} does not implement tickloop.venues.{contract} "
            "(markets, book and trades are available for every venue)",
            field="venue",
        )

    # -- public market data (every venue) ----------------------------------------------------------
    async def instruments(self) -> list[Instrument]:
        """Every instrument of the venue, normalised (``BTC-USD``, exact tick and lot sizes)."""
        response = await self.http.request(self.codec.markets_request())
        return self.codec.parse_markets(response.body)

    async def markets(self, *, fields: Selection | None = None) -> list[Market]:
        """Every market; with ``fields``, only the selected fields are set (others are UNSET)."""
        codec = self.codec
        if isinstance(codec, FieldSelectionRest):
            response = await self.http.request(codec.market_list_request(fields))
            return codec.parse_market_list(response.body)
        markets = [_market(i) for i in await self.instruments()]
        return [_select(m, fields) for m in markets] if fields is not None else markets

    async def market(self, symbol: str, *, fields: Selection | None = None) -> Market:
        """One market; with ``fields``, only the selected fields are set."""
        codec = self._selection("market")
        response = await self.http.request(codec.market_request(symbol, fields))
        return codec.parse_market(response.body)

    async def book(self, symbol: str, *, depth: int | None = None) -> BookSnapshot:
        """A snapshot of the order book, with the venue sequence number it reflects."""
        response = await self.http.request(self.codec.book_request(symbol, depth))
        return self.codec.parse_book(response.body, symbol, response.recv_ts)

    async def trades(
        self, symbol: str, *, since_id: int | None = None, limit: int | None = None
    ) -> list[Trade]:
        """Trades after ``since_id``, oldest first (recent trades where the venue has no ids)."""
        response = await self.http.request(self.codec.trades_request(symbol, since_id, limit))
        return self.codec.parse_trades(response.body, symbol, response.recv_ts)

    # -- public market data (MarketDataRest) -------------------------------------------------------
    async def server_time(self) -> int:
        """The exchange's clock, nanoseconds since the epoch."""
        codec = self._market_data("server_time")
        response = await self.http.request(codec.time_request())
        return codec.parse_time(response.body)

    async def candles(
        self, symbol: str, *, interval: str = "1m", limit: int | None = None
    ) -> list[Candle]:
        """Candles oldest first; the last may still be open (``closed`` False)."""
        codec = self._market_data("candles")
        response = await self.http.request(codec.candles_request(symbol, interval, limit))
        return codec.parse_candles(response.body, symbol, response.recv_ts)

    async def ticker(self, symbol: str) -> Ticker:
        """Best bid and ask, last price and volume."""
        codec = self._market_data("ticker")
        response = await self.http.request(codec.ticker_request(symbol))
        return codec.parse_ticker(response.body, symbol, response.recv_ts)

    # -- trading (TradingRest) and the account (AccountRest) ---------------------------------------
    async def place_order(
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
    ) -> Order:
        """Place an order. Without ``client_order_id`` one is generated, so the call can be
        retried after a lost answer and still creates at most one order; the returned order
        carries it. Raises OrderRejected (``reason``) or InvalidRequest (``field``)."""
        codec = self._trading("place_order")
        if client_order_id is None:
            client_order_id = f"tl-{uuid.uuid4().hex}"
        request = codec.place_order_request(
            symbol,
            side=side,
            type=type,
            size=size,
            price=price,
            time_in_force=time_in_force,
            post_only=post_only,
            client_order_id=client_order_id,
        )
        response = await self.http.request(request)
        return codec.parse_order(response.body)

    async def order(self, order_id: str) -> Order:
        """One of the key's orders by exchange id."""
        codec = self._trading("order")
        response = await self.http.request(codec.order_request(order_id))
        return codec.parse_order(response.body)

    async def order_by_client_id(self, client_order_id: str) -> Order:
        """One of the key's orders by client order id."""
        codec = self._trading("order_by_client_id")
        response = await self.http.request(codec.order_by_client_id_request(client_order_id))
        return codec.parse_order(response.body)

    async def orders(self, symbol: str | None = None, *, status: str = "open") -> list[Order]:
        """The key's orders: ``status="open"`` (default) or ``"all"``."""
        codec = self._trading("orders")
        response = await self.http.request(codec.orders_request(symbol, status))
        return codec.parse_orders(response.body)

    async def amend_order(self, order_id: str, *, size: Decimal | str | int) -> Order:
        """Reduce an open order's size (it keeps its priority)."""
        codec = self._trading("amend_order")
        response = await self.http.request(codec.amend_order_request(order_id, size))
        return codec.parse_order(response.body)

    async def cancel_order(self, order_id: str) -> Order:
        """Cancel one order; the canceled order."""
        codec = self._trading("cancel_order")
        response = await self.http.request(codec.cancel_order_request(order_id))
        return codec.parse_order(response.body)

    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        """Cancel every open order (of ``symbol``, or of every symbol); the canceled orders."""
        codec = self._trading("cancel_all")
        response = await self.http.request(codec.cancel_all_request(symbol))
        return codec.parse_orders(response.body)

    async def fills(self, symbol: str | None = None, *, limit: int | None = None) -> list[Fill]:
        """The key's fills, newest last."""
        codec = self._account("fills")
        response = await self.http.request(codec.fills_request(symbol, limit))
        return codec.parse_fills(response.body, response.recv_ts)

    async def balances(self) -> list[Balance]:
        """The key's balance of every asset."""
        codec = self._account("balances")
        response = await self.http.request(codec.balances_request())
        return codec.parse_balances(response.body)

    async def positions(self) -> list[Position]:
        """The key's net position in every symbol it traded."""
        codec = self._account("positions")
        response = await self.http.request(codec.positions_request())
        return codec.parse_positions(response.body)


def _market(instrument: Instrument) -> Market:
    return Market(
        venue=instrument.venue,
        symbol=instrument.symbol,
        base=instrument.base,
        quote=instrument.quote,
        status=instrument.status,
        price_precision=instrument.price_precision,
        size_precision=instrument.size_precision,
        tick_size=instrument.tick_size,
        lot_size=instrument.lot_size,
        min_size=instrument.min_size,
    )


def _select(market: Market, fields: Selection) -> Market:
    """Apply a selection client-side for venues that cannot (InvalidRequest names a bad field)."""
    raw: dict[str, Any] = msgspec.to_builtins(market)  # UNSET fields (book, ticker) are absent
    selected = fields.apply(raw)
    selected["venue"] = market.venue
    return msgspec.convert(selected, Market)
