"""ccxt.pro's Binance pointed at the loopback server, unmodified, used the documented way.

``while True: trades = await exchange.watch_trades(symbol)`` (switched to ``aggTrade`` with its
``watchTradesForSymbols.name`` option, so it reads the same frames as cryptofeed) and
``book = await exchange.watch_order_book(symbol)``. Its default loop (asyncio) and decoder.

ccxt.pro is a pull API that coalesces: each ``watch_trades`` returns the trades that arrived since
the previous call, at most ``tradesLimit`` (1,000; older ones are dropped when the consumer falls
behind), and ``watch_order_book`` returns the one maintained book however many diffs were
applied since. So two figures are reported: what reaches user code (``delivered``: trades in the
returned lists, book returns) and frames processed (from the trade ids and the book's nonce).

Pointing it at loopback (see bench/README.md): every ``https://`` REST base becomes
``http://127.0.0.1:PORT/<path>``, the spot/margin WebSocket base ``ws://127.0.0.1:PORT/ws``
(it connects to ``/ws/<n>`` and sends ``SUBSCRIBE``), markets are fetched for spot only and
currencies not at all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.pro

from ._common import Meter, execute, parse_args


def exchange(port: int) -> Any:
    ex = ccxt.pro.binance(
        {
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "watchTradesForSymbols": {"name": "aggTrade"},
            }
        }
    )
    api = ex.urls["api"]
    for key, value in list(api.items()):
        if isinstance(value, str) and value.startswith("https://"):
            api[key] = f"http://127.0.0.1:{port}{urlsplit(value).path}"
    api["ws"]["spot"] = api["ws"]["margin"] = f"ws://127.0.0.1:{port}/ws"
    return ex


async def consume(port: int, kind: str, meter: Meter) -> None:
    ex = exchange(port)
    hit = meter.hit
    try:
        await ex.load_markets()
        if kind == "trades":
            while True:
                for trade in await ex.watch_trades("BTC/USDT"):
                    hit(int(trade["id"]))
        else:
            while True:
                book = await ex.watch_order_book("BTC/USDT")
                hit(book["nonce"])
    finally:
        await ex.close()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    execute(
        "ccxt.pro",
        args,
        lambda meter: consume(args.port, args.kind, meter),
        {"ccxt": ccxt.__version__},
        {"library": "aiohttp (ccxt.pro client)", "decoder": "json.loads", "loop": "asyncio"},
    )


if __name__ == "__main__":
    main()
