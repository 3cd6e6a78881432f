"""The streaming client against hostile venues (issue 15, cases 2, 4 and 5): bounded message
reassembly, a typed end instead of an endless reconnect loop, a status event or a typed error
for a subscription never confirmed, and a bogus trade id that silences nothing."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from tickloop.client.stream import StreamClient
from tickloop.exceptions import StreamError, TimeoutError
from tickloop.models import Disconnected, Trade

from .helpers import until
from .hostile import hostile_venue, trade


def _client(url: str, **options: Any) -> StreamClient:
    return StreamClient(
        "sim",
        url=url,
        backfill=False,
        base_wait=0.01,
        max_wait=0.02,
        heartbeat_timeout=0.6,
        ping_interval=0.2,
        **options,
    )


async def test_case2_reassembly_is_bounded_across_fragments() -> None:
    """30 fragments of 1 MiB make one 30 MiB message: dropped as soon as it passes the default
    16 MiB bound (never held whole), reported, and the stream goes on with the next message."""

    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(trade(1))
        chunk = "x" * (1 << 20)
        await ws.send(chunk for _ in range(30))  # one message, 30 frames
        await ws.send(trade(2))

    async with hostile_venue(script) as venue, _client(venue.url) as feed:
        status: list[Any] = []
        await feed.subscribe_status(status.append)
        got: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", got.append)
        await until(lambda: len(got) == 2, "the trade after the oversized message")
        session = feed.sessions[0]
        assert session.stats.limit_breaches == 1
        assert session.stats.reconnects == 0  # skipped, not a reason to reconnect
        (breach,) = [e for e in status if type(e).__name__ == "Malformed"]
        assert breach.limit == "max_message_size"
        assert [t.id for t in got] == [1, 2]


async def test_case2_pending_fragments_are_bounded_in_count() -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send("x" for _ in range(10_000))  # 10,000 one-byte frames, one message
        await ws.send(trade(1))

    async with hostile_venue(script) as venue:
        from tickloop.limits import Limits

        async with _client(venue.url, limits=Limits(max_pending_frames=100)) as feed:
            got: list[Trade] = []
            await feed.subscribe_trades("BTC-USD", got.append)
            await until(lambda: len(got) == 1, "the trade after the endless message")
            assert feed.sessions[0].stats.limit_breaches == 1


async def test_case2_a_frame_over_the_limit_ends_the_stream_typed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A venue that sends a frame over max_frame_size on every connection: each Disconnected
    says why, and after a bounded number of connections the stream ends with a typed error
    for the consumer; no 'Future exception was never retrieved'."""

    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send("x" * (17 << 20))  # over the default 16 MiB max_frame_size

    caplog.set_level(logging.ERROR, logger="asyncio")
    async with hostile_venue(script) as venue:
        from tickloop.exceptions import LimitExceeded
        from tickloop.limits import DEFAULT_LIMITS as limits

        async with _client(venue.url, max_retries=None) as feed:
            status: list[Any] = []
            await feed.subscribe_status(status.append)

            async def consume() -> None:
                async for _ in feed.trades("BTC-USD"):
                    pass

            with pytest.raises(LimitExceeded) as info:
                await asyncio.wait_for(consume(), 30)
            assert info.value.limit == "max_frame_size"
            assert isinstance(info.value, StreamError)
            assert venue.connections == limits.max_oversized_reconnects
            reasons = [e.reason for e in status if isinstance(e, Disconnected)]
            assert reasons and all("max_frame_size" in r for r in reasons)
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


async def test_case4_never_confirmed_gives_a_typed_error_and_a_status_event() -> None:
    """A venue that answers a subscription with heartbeats only: the ``async for`` consumer
    gets tickloop's TimeoutError within subscribe_timeout, and status says Unconfirmed."""

    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        for _ in range(200):
            await ws.send(json.dumps({"type": "heartbeat", "ts": 1}))
            await asyncio.sleep(0.05)

    async with (
        hostile_venue(script, confirm=False) as venue,
        _client(venue.url, subscribe_timeout=0.5) as feed,
    ):
        status: list[Any] = []
        await feed.subscribe_status(status.append)
        stream = feed.trades("BTC-USD")
        with pytest.raises(TimeoutError, match="not confirmed"):
            await asyncio.wait_for(stream.__anext__(), 20)
        await until(lambda: any(type(e).__name__ == "Unconfirmed" for e in status), "status")
        (event,) = [e for e in status if type(e).__name__ == "Unconfirmed"]
        assert event.channel == "trades" and event.symbol == "BTC-USD"
        await stream.aclose()


async def test_case5_one_bogus_trade_id_silences_nothing() -> None:
    """After a trade with id 10^15, the real trades that follow are delivered, not dropped as
    duplicates; the bogus one is dropped and reported."""

    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        for i in range(1, 4):
            await ws.send(trade(i))
        await ws.send(trade(10**15))
        for i in range(4, 8):
            await ws.send(trade(i))

    async with hostile_venue(script) as venue, _client(venue.url) as feed:
        status: list[Any] = []
        await feed.subscribe_status(status.append)
        got: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", got.append)
        await until(lambda: len(got) >= 7, "the real trades after the bogus id")
        assert [t.id for t in got] == [1, 2, 3, 4, 5, 6, 7]
        assert feed.counters["bogus_trade_ids"] == 1
        assert not any(type(e).__name__ == "Gap" for e in status)


async def _fragments(ws: ServerConnection, *parts: str) -> None:
    """One text message in ``parts``, each a frame, the last one final (websockets' own
    ``send`` of an iterable ends with an empty frame instead)."""
    async with ws.send_context():  # (websockets' sans-I/O protocol, written on exit)
        ws.protocol.send_text(parts[0].encode(), fin=False)
        for i, part in enumerate(parts[1:], 2):
            ws.protocol.send_continuation(part.encode(), fin=i == len(parts))


async def test_a_final_fragment_that_opens_a_json_object_is_not_taken_for_a_whole_message() -> (
    None
):
    """The listener takes a final frame that opens ``{`` or ``[`` as a whole message without
    reading its type, but only with no fragmented message under way: the last fragment of one
    that happens to open ``{`` is reassembled with the rest. Pings and empty pongs between are
    control frames as ever."""

    def split(i: int) -> tuple[str, str]:
        text = json.dumps(json.loads(trade(i)))
        return text[:-1] + ',"x":', '{"a": [' + str(i) + "]}}"  # ... "x": {"a": [i]}}

    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await _fragments(ws, *split(1))
        await ws.ping(b"")
        await ws.pong(b"")
        head, tail = split(2)
        await _fragments(ws, head, tail[:3], tail[3:])
        await ws.send(trade(3))

    async with hostile_venue(script) as venue, _client(venue.url) as feed:
        got: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", got.append)
        await until(lambda: len(got) == 3, "the three trades")
        assert [t.id for t in got] == [1, 2, 3]
        stats = feed.sessions[0].stats
        assert stats.malformed == 0 and stats.reconnects == 0
