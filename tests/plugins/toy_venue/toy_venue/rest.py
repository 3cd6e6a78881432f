"""The toy venue's REST codec: requests described, answers parsed (sans-I/O, no HTTP).

It implements the public contract every venue has (:class:`tickloop.venues.PublicRest`:
markets, book, trades, error mapping) and one capability contract,
:class:`tickloop.venues.AccountRest` (balances, positions, fills), whose requests are private:
tickloop's HTTP session has :class:`~toy_venue.auth.ToyAuth` sign them.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import ClassVar, Literal, TypeVar

import msgspec

from tickloop.exceptions import (
    AuthError,
    ExchangeError,
    InvalidRequest,
    ProtocolError,
    RateLimitError,
    TickloopError,
)
from tickloop.models import (
    Balance,
    BookLevel,
    BookSnapshot,
    Fill,
    Instrument,
    Liquidity,
    Position,
    Side,
    Trade,
)
from tickloop.venues import AccountRest, PublicRest, RestRequest

VENUE = "toy"
T = TypeVar("T")


class _Market(msgspec.Struct):
    sym: str
    base: str
    quote: str
    tick: Decimal
    lot: Decimal


class _Book(msgspec.Struct):
    seq: int
    bids: list[BookLevel]
    asks: list[BookLevel]
    ts: int = 0


class _Trade(msgspec.Struct):
    id: int
    px: Decimal
    qty: Decimal
    side: Literal["b", "s"]
    ts: int


class _Balance(msgspec.Struct):
    asset: str
    total: Decimal
    free: Decimal


class _Position(msgspec.Struct):
    sym: str
    qty: Decimal
    avg: Decimal | None = None


class _Fill(msgspec.Struct):
    order: str
    trade: int
    sym: str
    side: Literal["b", "s"]
    px: Decimal
    qty: Decimal
    maker: bool
    ts: int


class _Error(msgspec.Struct):
    error: str
    message: str = ""


_SIDES = {"b": Side.BUY, "s": Side.SELL}


def _decode(body: bytes, kind: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed {what} answer: {exc}", venue=VENUE) from None


def _venue_symbol(symbol: str) -> str:
    return symbol.lower().replace("-", "_")


def _symbol(venue_symbol: str) -> str:
    return venue_symbol.upper().replace("_", "-")


def _places(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


class ToyRest(PublicRest, AccountRest):
    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "http://127.0.0.1:9000/toy/v1"
    rate_limit: ClassVar[tuple[float, float]] = (50.0, 1.0)

    # -- PublicRest
    def markets_request(self) -> RestRequest:
        return RestRequest("GET", "/markets")

    def parse_markets(self, body: bytes) -> list[Instrument]:
        return [
            Instrument(
                venue=VENUE,
                symbol=_symbol(m.sym),
                venue_symbol=m.sym,
                base=m.base,
                quote=m.quote,
                price_precision=_places(m.tick),
                size_precision=_places(m.lot),
                tick_size=m.tick,
                lot_size=m.lot,
            )
            for m in _decode(body, list[_Market], "markets")
        ]

    def book_request(self, symbol: str, depth: int | None = None) -> RestRequest:
        params = (("depth", str(depth)),) if depth is not None else ()
        return RestRequest("GET", f"/book/{_venue_symbol(symbol)}", params=params)

    def parse_book(self, body: bytes, symbol: str, recv_ts: int = 0) -> BookSnapshot:
        book = _decode(body, _Book, "book")
        return BookSnapshot(
            venue=VENUE,
            symbol=symbol,
            bids=tuple(book.bids),
            asks=tuple(book.asks),
            sequence=book.seq,
            ts=book.ts,
            recv_ts=recv_ts,
        )

    def trades_request(
        self, symbol: str, since_id: int | None = None, limit: int | None = None
    ) -> RestRequest:
        params = (("limit", str(limit)),) if limit is not None else ()
        return RestRequest("GET", f"/trades/{_venue_symbol(symbol)}", params=params)

    def parse_trades(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Trade]:
        return [
            Trade(
                venue=VENUE,
                symbol=symbol,
                id=t.id,
                price=t.px,
                size=t.qty,
                side=_SIDES[t.side],
                ts=t.ts,
                recv_ts=recv_ts,
            )
            for t in _decode(body, list[_Trade], "trades")
        ]

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> TickloopError:
        try:
            err = msgspec.json.decode(body, type=_Error)
        except msgspec.DecodeError:
            err = _Error(f"http_{status}", body[:200].decode("utf-8", "replace"))
        text = f"{err.error}: {err.message}" if err.message else err.error
        if status == 401:
            return AuthError(text, venue=VENUE)
        if status == 429:
            return RateLimitError(text, retry_after=None, venue=VENUE)
        if status == 400:
            return InvalidRequest(text, code=err.error, venue=VENUE)
        return ExchangeError(text, code=err.error, status=status, venue=VENUE)

    # -- AccountRest (private: signed by ToyAuth)
    def balances_request(self) -> RestRequest:
        return RestRequest("GET", "/balances", private=True)

    def parse_balances(self, body: bytes) -> list[Balance]:
        return [
            Balance(venue=VENUE, asset=b.asset, total=b.total, available=b.free)
            for b in _decode(body, list[_Balance], "balances")
        ]

    def positions_request(self) -> RestRequest:
        return RestRequest("GET", "/positions", private=True)

    def parse_positions(self, body: bytes) -> list[Position]:
        return [
            Position(venue=VENUE, symbol=_symbol(p.sym), size=p.qty, avg_price=p.avg)
            for p in _decode(body, list[_Position], "positions")
        ]

    def fills_request(self, symbol: str | None = None, limit: int | None = None) -> RestRequest:
        params: list[tuple[str, str]] = []
        if symbol is not None:
            params.append(("sym", _venue_symbol(symbol)))
        if limit is not None:
            params.append(("limit", str(limit)))
        return RestRequest("GET", "/fills", params=tuple(params), private=True)

    def parse_fills(self, body: bytes, recv_ts: int = 0) -> list[Fill]:
        return [
            Fill(
                venue=VENUE,
                symbol=_symbol(f.sym),
                order_id=f.order,
                trade_id=f.trade,
                side=_SIDES[f.side],
                price=f.px,
                size=f.qty,
                liquidity=Liquidity.MAKER if f.maker else Liquidity.TAKER,
                ts=f.ts,
                recv_ts=recv_ts,
            )
            for f in _decode(body, list[_Fill], "fills")
        ]
