"""Fuzz targets of tickloop's boundary and the property each one holds.

Each target takes hostile input and checks the documented contract of the code under it:

* a venue codec's ``decode`` returns models whose every number passes
  :func:`tickloop.limits.check_decimal` (a trade's price and size and a level's price > 0, a
  snapshot level's size > 0) from a frame in which no object gives a key twice, or raises
  :class:`~tickloop.exceptions.ProtocolError`; nothing else escapes (no RecursionError, no
  ValueError, no hang);
* a REST codec's ``parse_book`` / ``parse_trades``: the same;
* a book synchroniser raises nothing but :class:`~tickloop.exceptions.BookError`, and a book it
  calls valid is never crossed;
* the sim's WebSocket request handler answers every frame (at least one message back, the
  ``ws_errors`` counter moving for a refusal) and never raises;
* the sim's request parsers (body JSON, ``fields=``, prices and sizes) raise only their
  documented errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from tickloop.book.sync import SYNCS
from tickloop.exceptions import BookError, InvalidRequest, ProtocolError
from tickloop.fields import Selection
from tickloop.limits import check_decimal
from tickloop.models import BookDelta, BookSnapshot, Candle, Ticker, Trade
from tickloop.sim.market import DEFAULT_MARKETS
from tickloop.venues.base import Codec
from tickloop.venues.binance import BinanceCodec, BinanceRest
from tickloop.venues.coinbase import CoinbaseCodec, CoinbaseRest
from tickloop.venues.keys import duplicated_key
from tickloop.venues.kraken import KrakenCodec, KrakenRest, KrakenV2Codec
from tickloop.venues.sim import SimCodec
from tickloop.venues.sim_rest import SimRest

__all__ = [
    "CODECS",
    "REST",
    "book_target",
    "codec_target",
    "rest_target",
    "sim_parsers_target",
    "sim_ws_target",
]

CODECS: dict[str, type[Codec]] = {
    "sim": SimCodec,
    "binance": BinanceCodec,
    "coinbase": CoinbaseCodec,
    "kraken": KrakenCodec,
    "kraken_v2": KrakenV2Codec,
}
REST: dict[str, Any] = {
    "sim": SimRest,
    "binance": BinanceRest,
    "coinbase": CoinbaseRest,
    "kraken": KrakenRest,
}


def _numbers(event: Any) -> list[Decimal]:
    if isinstance(event, Trade):
        return [event.price, event.size]
    if isinstance(event, BookSnapshot | BookDelta):
        return [n for level in (*event.bids, *event.asks) for n in level]
    if isinstance(event, Ticker):
        values = (event.bid, event.bid_size, event.ask, event.ask_size, event.last, event.volume)
        return [v for v in values if v is not None]
    if isinstance(event, Candle):
        return [event.open, event.high, event.low, event.close, event.volume]
    return []


def _check_models(events: Any, text: bytes | None = None) -> None:
    for event in events:
        for number in _numbers(event):
            check_decimal(number)  # ValueError here is a bug: a bad number got through
        if isinstance(event, Trade):
            assert event.price > 0 and event.size > 0, event
        if isinstance(event, BookSnapshot | BookDelta):
            assert all(level.price > 0 for level in (*event.bids, *event.asks)), event
        if isinstance(event, BookSnapshot):
            assert all(level.size > 0 for level in (*event.bids, *event.asks)), event
    if events and text is not None:
        # models came out: no object of the frame gave a key twice (keys.py)
        assert duplicated_key(text) is None, text[:200]


def codec_target(venue: str) -> Callable[[bytes], None]:
    """``frame -> None``: decode with a fresh codec of ``venue``; only ProtocolError may escape
    and every number returned must be within the limits."""
    cls = CODECS[venue]
    codec = cls()
    if venue == "kraken":
        from tickloop.venues.base import Channel

        codec._channels.update({1: (Channel.BOOK, "BTC-USD"), 2: (Channel.TRADES, "BTC-USD")})  # type: ignore[attr-defined]

    def target(frame: bytes) -> None:
        try:
            events = codec.decode(frame, 0)
        except ProtocolError:
            return
        _check_models(events, frame)

    return target


def rest_target(venue: str) -> Callable[[bytes], None]:
    rest = REST[venue]()

    def target(body: bytes) -> None:
        for parse in (rest.parse_book, rest.parse_trades):
            try:
                result = parse(body, "BTC-USD")
            except ProtocolError:
                continue
            _check_models(result if isinstance(result, list) else [result], body)

    return target


def book_target(venue: str) -> Callable[[list[Any]], None]:
    """``messages -> None``: feed a fresh synchroniser; only BookError may escape, and a book
    it calls valid is never crossed."""

    def target(messages: list[Any]) -> None:
        sync = (
            SYNCS[venue]("BTC-USD", depth=10) if SYNCS[venue].truncates else SYNCS[venue]("BTC-USD")
        )
        sync.start()
        for message in messages:
            try:
                sync.on_update(message)
            except BookError:
                return
            if sync.valid:
                bid, ask = sync.book.best_bid, sync.book.best_ask
                assert bid is None or ask is None or bid < ask, "a valid book is crossed"
        sync.on_malformed(0)
        assert not sync.valid, "a book that missed a message stayed valid"

    return target


def sim_parsers_target(data: bytes) -> None:
    """The sim's request parsers: body JSON, ``fields=`` and numbers; documented errors only."""
    from tickloop.sim.server import _BadJson, _parse_json

    try:
        value = _parse_json(data)
    except _BadJson:
        value = None
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(InvalidRequest):
        Selection.parse(text[:5000])
    spec = DEFAULT_MARKETS["BTC-USD"]
    for candidate in (text, value if isinstance(value, str) else None):
        if candidate is None:
            continue
        for parse in (spec.parse_price, spec.parse_size):
            with contextlib.suppress(ValueError):
                parse(candidate)


class _Ws:
    pass


class _Request:
    transport = None
    remote = "127.0.0.1"


def sim_ws_target() -> Callable[[bytes], None]:
    """``frame -> None`` against one sim connection (no socket: the handler itself): each frame
    gets at least one message back and nothing escapes; a refusal moves ``ws_errors``."""
    from tickloop.sim import SimExchange

    ex = SimExchange(seed=1, symbols=["BTC-USD", "ETH-USD"], rate=0)
    server, hub = ex._server, ex._hub
    conn = hub.connect(_Ws(), _Request())  # type: ignore[arg-type]
    decode = msgspec.json.decode

    def target(frame: bytes) -> None:
        before = len(conn.buf)
        errors = server.stats.ws_errors
        server._ws_request(conn, frame)
        answers = [decode(p) for _, _, p in list(conn.buf)[before:]]
        assert answers, "a request was not answered"
        assert not any(a.get("code") == "internal" for a in answers), "the handler failed"
        if any(a.get("type") == "error" for a in answers):
            assert server.stats.ws_errors > errors, "a refusal was not counted"
        conn.buf.clear()

    return target
