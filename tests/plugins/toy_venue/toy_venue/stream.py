"""The toy venue's WebSocket codec: frames in, tickloop models out (sans-I/O, no socket)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

import msgspec

from tickloop.exceptions import ProtocolError
from tickloop.limits import DEFAULT_LIMITS, Limits
from tickloop.models import Side, Trade
from tickloop.venues import (
    Channel,
    Codec,
    DecimalCache,
    Decoded,
    Pong,
    Subscribed,
    Subscription,
    Unsubscribed,
    VenueError,
)

VENUE = "toy"


class _Frame(msgspec.Struct):
    """Every field any toy message has; which ones are set says what the message is."""

    ch: str | None = None
    sym: str | None = None
    id: int | None = None
    px: str | None = None
    qty: str | None = None
    side: str | None = None
    ts: int = 0
    ack: int | None = None
    unack: int | None = None
    streams: list[str] = []
    pong: int | None = None
    error: str | None = None
    stream: str | None = None


_decoder = msgspec.json.Decoder(_Frame)
_encode = msgspec.json.encode
_SIDES = {"b": Side.BUY, "s": Side.SELL}


class ToyCodec(Codec):
    venue: ClassVar[str] = VENUE
    default_url: ClassVar[str] = "ws://127.0.0.1:9000/ws"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.TRADES})
    max_streams_per_message: ClassVar[int] = 10

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits=limits)
        # venue strings -> exact Decimals, each distinct string parsed (and checked) once
        self.decimals = DecimalCache(limits=limits)

    # -- symbols: "TOY-USD" <-> "toy_usd"
    def venue_symbol(self, symbol: str) -> str:
        return symbol.lower().replace("-", "_")

    def symbol(self, venue_symbol: str) -> str:
        return venue_symbol.upper().replace("_", "-")

    # -- outgoing
    def _stream(self, sub: Subscription) -> str:
        return f"{sub.channel.value}.{self.venue_symbol(sub.symbol or '')}"

    def _subscription(self, stream: str) -> Subscription:
        channel, _, venue_symbol = stream.partition(".")
        return Subscription(Channel(channel), self.symbol(venue_symbol))

    def subscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        streams = [self._stream(s) for s in subscriptions]
        return [_encode({"op": "sub", "id": self.next_request_id(), "streams": streams})]

    def unsubscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        streams = [self._stream(s) for s in subscriptions]
        return [_encode({"op": "unsub", "id": self.next_request_id(), "streams": streams})]

    def ping(self) -> bytes | None:
        return b'{"op":"ping"}'

    @classmethod
    def rest_url(cls, stream_url: str) -> str | None:
        # The toy server serves REST beside its stream: ws://h:p/ws -> http://h:p/toy/v1
        scheme, _, rest = stream_url.partition("://")
        host = rest.split("/", 1)[0]
        return f"{'https' if scheme == 'wss' else 'http'}://{host}/toy/v1"

    # -- incoming
    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Decoded]:
        try:
            msg = _decoder.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed frame: {exc}", venue=VENUE) from None
        try:
            if msg.ch == "trades":
                return [self._trade(msg, recv_ts)]
            if msg.ack is not None:
                subs = tuple(self._subscription(s) for s in msg.streams)
                return [Subscribed(subs, request_id=msg.ack)]
            if msg.unack is not None:
                subs = tuple(self._subscription(s) for s in msg.streams)
                return [Unsubscribed(subs, request_id=msg.unack)]
            if msg.pong is not None:
                return [Pong(ts=msg.pong)]
            if msg.error is not None:
                sub = self._subscription(msg.stream) if msg.stream else None
                return [
                    VenueError(
                        msg.error,
                        msg.error.replace("_", " "),
                        request_id=msg.id,
                        symbol=sub.symbol if sub else None,
                        channel=sub.channel if sub else None,
                        fatal=msg.error == "unknown_symbol",
                    )
                ]
        except (ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(f"malformed message: {exc}", venue=VENUE) from None
        self.unknown += 1
        return []

    def _trade(self, msg: _Frame, recv_ts: int) -> Trade:
        if msg.sym is None or msg.px is None or msg.qty is None or msg.id is None:
            raise ValueError("a trade needs sym, id, px and qty")
        price: Decimal = self.decimals[msg.px]
        size: Decimal = self.decimals[msg.qty]
        return Trade(
            venue=VENUE,
            symbol=self.symbol(msg.sym),
            id=msg.id,
            price=price,
            size=size,
            side=_SIDES.get(msg.side or ""),
            ts=msg.ts,
            recv_ts=recv_ts,
        )
