"""cryptofeed's Binance feed pointed at the loopback server, unmodified.

Its defaults are kept: uvloop (what ``FeedHandler`` installs), ``TRADES`` over ``@aggTrade``,
``L2_BOOK`` over ``@depth@100ms`` with the REST snapshot sync and its ``order_book`` C book,
async callbacks. User code is the callback: for trades it gets a ``Trade`` (Decimal price and
size), for the book the maintained ``OrderBook`` after each diff (the snapshot callback is not
counted).

Pointing it at loopback without editing it (see bench/README.md): its ``WSAsyncConn`` refuses
non-``wss://`` addresses, so the name ``cryptofeed.feed.WSAsyncConn`` is replaced by a subclass
that hands the parent a ``wss://`` address and then restores ``ws://``; a ``Binance`` subclass
carries the loopback endpoints.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import cryptofeed.feed
from cryptofeed.connection import RestEndpoint, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.exchanges import Binance

from ._common import Meter, execute, parse_args


class _LoopbackWSConn(WSAsyncConn):  # type: ignore[misc]
    def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
        plain = address.startswith("ws://")
        super().__init__("wss://" + address[5:] if plain else address, *args, **kwargs)
        if plain:
            self.address = address


def _feed_class(port: int) -> type[Binance]:
    base = f"127.0.0.1:{port}"

    class LoopbackBinance(Binance):  # type: ignore[misc]
        websocket_endpoints = [WebsocketEndpoint(f"ws://{base}")]  # noqa: RUF012
        rest_endpoints = [  # noqa: RUF012
            RestEndpoint(f"http://{base}", routes=Binance.rest_endpoints[0].routes)
        ]

    return LoopbackBinance


async def consume(port: int, kind: str, meter: Meter) -> None:
    import asyncio

    cryptofeed.feed.WSAsyncConn = _LoopbackWSConn
    hit = meter.hit

    async def on_trade(trade: Any, receipt_timestamp: float) -> None:
        hit(int(trade.id))

    async def on_book(book: Any, receipt_timestamp: float) -> None:
        if book.delta is not None:  # the snapshot's callback is not a diff
            hit(book.sequence_number)

    channel, callback = (TRADES, on_trade) if kind == "trades" else (L2_BOOK, on_book)
    feed = _feed_class(port)(
        symbols=["BTC-USDT"], channels=[channel], callbacks={channel: callback}, retries=0
    )
    feed.start(asyncio.get_running_loop())
    try:
        await asyncio.Event().wait()  # the meter ends the run
    finally:
        feed.stop()


def main() -> None:
    import uvloop

    args = parse_args(__doc__.splitlines()[0])
    execute(
        "cryptofeed",
        args,
        lambda meter: consume(args.port, args.kind, meter),
        {"cryptofeed": version("cryptofeed"), "order_book": version("order_book")},
        {
            "library": "websockets (cryptofeed WSAsyncConn)",
            "decoder": "yapic.json + Decimal",
            "loop": "uvloop",
        },
        loop_factory=uvloop.new_event_loop,
    )


if __name__ == "__main__":
    main()
