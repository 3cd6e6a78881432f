"""Issue 15, case 3 and Build (limits), end to end: what the codecs now refuse (a key given twice,
a trade of price 0, a diff with more levels on a side than limits.max_levels_per_message)
reaches a StreamClient's consumer as typed, counted status events, never as a trade or a level,
and the stream goes on."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.server import ServerConnection

from tickloop.client.stream import StreamClient
from tickloop.limits import Limits
from tickloop.models import BookDelta, Malformed, Trade

from .helpers import until
from .hostile import hostile_venue, trade


def diff(seq: int, levels: int) -> str:
    return json.dumps(
        {
            "type": "book_update",
            "symbol": "BTC-USD",
            "seq": seq,
            "prev_seq": seq - 1,
            "bids": [[f"{100 - i}.00", "1.0000"] for i in range(levels)],
            "asks": [],
            "checksum": 0,
            "ts": seq,
        }
    )


async def test_refused_fields_are_typed_counted_status_events_and_the_stream_goes_on() -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        if request["channel"] == "trades":
            await ws.send(trade(1))
            # the price given twice: a decoder keeping the last value would deliver 0.01
            await ws.send(trade(2)[:-1] + ', "price": "0.01"}')
            await ws.send(trade(3).replace('"100.00"', '"0.00"'))  # a price of 0
            await ws.send(trade(4))
        else:
            await ws.send(diff(2, 3))
            await ws.send(diff(3, 4))  # one level over the bound on a side
            await ws.send(diff(4, 1))

    async with (
        hostile_venue(script) as venue,
        StreamClient(
            "sim",
            url=venue.url,
            backfill=False,
            base_wait=0.01,
            max_wait=0.02,
            limits=Limits(max_levels_per_message=3),
        ) as feed,
    ):
        status: list[Any] = []
        await feed.subscribe_status(status.append)
        trades: list[Trade] = []
        deltas: list[BookDelta] = []
        await feed.subscribe_trades("BTC-USD", trades.append)
        await feed.subscribe_book_deltas("BTC-USD", deltas.append)
        await until(lambda: len(trades) == 2 and len(deltas) == 2, "the messages after")
        assert [t.id for t in trades] == [1, 4]
        assert all(t.price == 100 for t in trades)
        assert [d.sequence for d in deltas] == [2, 4]
        await until(lambda: sum(isinstance(e, Malformed) for e in status) == 3, "3 refused")
        malformed = [e for e in status if isinstance(e, Malformed)]
        duplicate = next(m for m in malformed if "duplicate JSON key 'price'" in m.reason)
        assert (duplicate.symbol, duplicate.channel, duplicate.limit) == ("BTC-USD", "trades", None)
        zero = next(m for m in malformed if "must be > 0" in m.reason)
        assert (zero.symbol, zero.channel) == ("BTC-USD", "trades")
        (levels,) = [m for m in malformed if m.limit is not None]
        assert levels.limit == "max_levels_per_message"
        assert (levels.symbol, levels.channel) == ("BTC-USD", "book")
        stats = feed.stats()
        assert stats["malformed"] == 3
        assert sum(s.stats.limit_breaches for s in feed.sessions) == 1
