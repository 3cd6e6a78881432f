"""tickloop's StreamClient on the loopback server, used as its docs show.

``async with StreamClient("binance", url="ws://127.0.0.1:PORT/stream") as feed`` then either
``async for trade in feed.trades("BTC-USDT")`` (``--style iter``, the default) or
``await feed.subscribe_trades("BTC-USDT", handler=fn)`` (``--style callback``); books through
``feed.books()`` / ``subscribe_books()`` (all levels by default, ``--book-depth N`` for the top
N); with ``--raw`` the depth phase reads the raw delta stream instead, ``feed.book_deltas()`` /
``subscribe_book_deltas()`` (typed :class:`tickloop.models.BookDelta` per diff, in order,
none dropped, no local book: the like-for-like comparison with the naive loop). The Binance
codec connects to the combined-stream endpoint and subscribes with ``SUBSCRIBE``; user code
gets typed :class:`tickloop.models.Trade` structs with exact Decimal prices. The client's
defaults are kept (bounded consumer buffer, trades never dropped), except that the ``async
for`` trades and raw-delta consumers opt into ``overflow="backpressure"``: the policy a user who
wants every message at full speed picks (a replay, a backtest, a benchmark), which pauses
reading the socket while the consumer is a buffer behind instead of detaching it with
ConsumerOverflow. The loop is uvloop unless ``--loop asyncio``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from ._common import Meter, execute, parse_args


def _extra_args() -> tuple[str, str, int | None, bool]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--style", choices=("iter", "callback"), default="iter")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--book-depth", type=int, default=None, help="books(depth=N)")
    parser.add_argument("--raw", action="store_true", help="depth: book_deltas(), no book")
    known, rest = parser.parse_known_args()
    sys.argv[1:] = rest
    return known.style, known.loop, known.book_depth, known.raw


SHIM: list[str] = []


def codec_class() -> Any:
    """BinanceCodec, or a subclass copying the payload to bytes if the codec cannot read the
    memoryview the session hands it (an integration bug between the two; the copy is reported)."""
    from tickloop.venues.binance import BinanceCodec

    try:
        BinanceCodec().decode(memoryview(b'{"result":null,"id":1}'), 0)
    except Exception:

        class BytesBinanceCodec(BinanceCodec):
            def decode(self, frame: Any, recv_ts: int) -> Any:
                return super().decode(bytes(frame), recv_ts)

        SHIM.append("BinanceCodec.decode fails on the session's memoryview payload: bytes() copy")
        return BytesBinanceCodec
    return BinanceCodec


async def consume(
    port: int, kind: str, style: str, depth: int | None, raw: bool, meter: Meter
) -> None:
    from tickloop.client.stream import StreamClient

    hit: Callable[[Any], None] = meter.hit  # ids are ints here; Trade.id is typed int | None
    async with StreamClient(
        "binance",
        url=f"ws://127.0.0.1:{port}/stream",
        rest_url=f"http://127.0.0.1:{port}",
        codec=codec_class(),
    ) as feed:
        if kind == "trades":
            if style == "iter":
                async for trade in feed.trades("BTC-USDT", overflow="backpressure"):
                    hit(trade.id)
            else:
                await feed.subscribe_trades("BTC-USDT", handler=lambda trade: hit(trade.id))
                await asyncio.Event().wait()  # the meter ends the run
            return
        if raw:
            # depth diffs as the venue sent them: one typed BookDelta per diff, never dropped
            if style == "iter":
                async for delta in feed.book_deltas("BTC-USDT", overflow="backpressure"):
                    hit(delta.sequence)
            else:
                await feed.subscribe_book_deltas(
                    "BTC-USDT", handler=lambda delta: hit(delta.sequence)
                )
                await asyncio.Event().wait()
            return
        # depth diffs: the maintained book after each diff (Binance REST snapshot sync)
        name = "books" if style == "iter" else "subscribe_books"
        if not hasattr(feed, name):
            raise RuntimeError(f"StreamClient has no {name}() (no public book stream yet)")
        if style == "iter":
            async for book in feed.books("BTC-USDT", depth=depth):
                hit(book.sequence)
        else:
            await feed.subscribe_books(
                "BTC-USDT", handler=lambda book: hit(book.sequence), depth=depth
            )
            await asyncio.Event().wait()


def main() -> None:
    style, loop, depth, raw = _extra_args()
    args = parse_args(__doc__.splitlines()[0])
    loop_factory = None
    if loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    if raw:
        policy = (
            'depth diffs read with `feed.book_deltas(..., overflow="backpressure")`: one typed '
            "BookDelta per diff, in order, none dropped, no local book"
            if style == "iter"
            else "depth diffs read with `subscribe_book_deltas(..., handler=)`: one typed "
            "BookDelta per diff, in order, none dropped, no local book"
        )
    elif style == "iter":
        policy = (
            'trades read with `feed.trades(..., overflow="backpressure")`, the opt-in policy '
            "for a consumer that must see every trade at full speed: reading the socket is "
            "paused while it is a buffer (10,000) behind and resumed at a quarter of it; the "
            "default policy detaches such a consumer with ConsumerOverflow"
        )
    else:
        policy = ""
    execute(
        ("tickloop" if style == "iter" else "tickloop (callback)")
        + (" raw deltas" if raw else "")
        + (f" depth={depth}" if depth else ""),
        args,
        lambda meter: consume(args.port, args.kind, style, depth, raw, meter),
        {
            "tickloop": version("tickloop"),
            "picows": version("picows"),
            "msgspec": version("msgspec"),
        },
        {
            "library": "picows (tickloop WsSession)",
            "decoder": "msgspec typed",
            "loop": loop,
            "shim": SHIM,
            "policy": policy,
        },
        loop_factory=loop_factory,
    )


if __name__ == "__main__":
    main()
