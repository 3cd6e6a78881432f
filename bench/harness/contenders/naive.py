"""The naive baseline: ``websockets`` with its defaults, ``json.loads`` per frame, a callback.

What a user writes in ten lines without a library: connect to the combined stream
``/stream?streams=btcusdt@aggTrade`` (or ``@depth@100ms``; the same frames tickloop's Binance codec
and cryptofeed read), decode every frame with the standard library and hand the event dict to
user code. No book is kept, no typed model is built, the default asyncio loop.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

from websockets.asyncio.client import connect

from ._common import SYMBOL_LOWER, Meter, execute, parse_args


async def consume(port: int, kind: str, meter: Meter) -> None:
    stream = "aggTrade" if kind == "trades" else "depth@100ms"
    key = "a" if kind == "trades" else "u"

    def user_code(event: dict[str, Any]) -> None:
        meter.hit(event[key])

    async with connect(f"ws://127.0.0.1:{port}/stream?streams={SYMBOL_LOWER}@{stream}") as ws:
        async for frame in ws:
            user_code(json.loads(frame)["data"])


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    execute(
        "naive",
        args,
        lambda meter: consume(args.port, args.kind, meter),
        {"websockets": version("websockets")},
        {"library": "websockets (defaults)", "decoder": "json.loads", "loop": "asyncio"},
    )


if __name__ == "__main__":
    main()
