"""The transport seam (tickloop.client.transport): a session and a StreamClient run on the
in-memory transport, with no socket; the test plays the venue."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

from tickloop.client.backoff import Backoff
from tickloop.client.consumers import Consumer, Overflow
from tickloop.client.session import SessionState, WsSession
from tickloop.client.stream import StreamClient
from tickloop.client.transport import (
    TURN,
    MemoryConnection,
    MemoryTransport,
    PicowsTransport,
)
from tickloop.exceptions import AuthError, NetworkError, TimeoutError
from tickloop.limits import DEFAULT_LIMITS
from tickloop.models import Connected, Disconnected, Malformed, Reconnected, Trade
from tickloop.venues.base import Channel, Subscription
from tickloop.venues.sim import SimCodec

from .helpers import until
from .test_session import Owner

BTC = Subscription(Channel.TRADES, "BTC-USD")


def trade(n: int, symbol: str = "BTC-USD") -> str:
    return json.dumps(
        {
            "type": "trade",
            "symbol": symbol,
            "id": n,
            "price": "100.00",
            "size": "1.0000",
            "side": "buy",
            "ts": n,
        }
    )


def confirm(conn: MemoryConnection, data: bytes) -> None:
    """A scripted sim venue: every subscribe is confirmed at once."""
    message = json.loads(data)
    if message.get("op") == "subscribe":
        conn.push(
            json.dumps(
                {
                    "type": "subscribed",
                    "id": message["id"],
                    "channel": message["channel"],
                    "symbols": message.get("symbols"),
                }
            )
        )


def session_on(transport: MemoryTransport, owner: Owner, **kw: Any) -> WsSession:
    kw.setdefault("backoff", Backoff(base_wait=0.001, max_wait=0.002))
    return WsSession(
        SimCodec,
        "ws://venue.invalid/ws",
        owner=owner,
        sinks={Trade: owner.trades.append},
        transport=transport,
        **kw,
    )


async def test_a_session_subscribes_receives_and_reconnects_through_the_memory_transport() -> None:
    transport = MemoryTransport(on_send=confirm)
    owner = Owner()
    session = session_on(transport, owner)
    await session.add([BTC])
    conn = await transport.next_connection()
    assert conn.url == "ws://venue.invalid/ws"
    await session.wait_confirmed([BTC], 5.0)
    sent = [json.loads(m) for m in conn.sent]
    assert [(m["op"], m["channel"], m["symbols"]) for m in sent] == [
        ("subscribe", "trades", ["BTC-USD"])
    ]
    conn.push(trade(1))
    conn.push(b"{not json")  # counted and skipped, the connection goes on
    conn.push(trade(2))
    assert [t.id for t in owner.trades] == [1, 2]
    assert session.stats.malformed == 1
    assert session.frames == 4  # the confirmation, two trades, the bad one

    conn.drop("the venue went away")
    second = await transport.next_connection()
    await until(lambda: any(isinstance(e, Reconnected) for e in owner.status), "reconnected")
    # The subscription is restored on the new connection without being asked again.
    assert [json.loads(m)["symbols"] for m in second.sent] == [["BTC-USD"]]
    kinds = [type(e) for e in owner.status]
    assert kinds == [Connected, Malformed, Disconnected, Reconnected]
    assert owner.status[2].reason == "the venue went away"
    assert owner.lost == [BTC]
    second.push(trade(3))
    assert len(owner.trades) == 3
    await session.close()
    assert second.closed and session.state is SessionState.CLOSED


async def test_flow_control_pauses_the_transport_and_frames_wait_there() -> None:
    transport = MemoryTransport(on_send=confirm)
    owner = Owner()
    session = session_on(transport, owner)
    await session.add([BTC])
    conn = await transport.next_connection()
    await session.wait_confirmed([BTC], 5.0)
    session.pause_reading("consumer")
    assert conn.paused
    conn.push(trade(1))
    conn.push(trade(2))
    assert owner.trades == []
    session.resume_reading("consumer")
    assert not conn.paused
    assert len(owner.trades) == 2
    await session.close()


async def test_connect_errors_cross_the_seam_as_tickloop_errors() -> None:
    transport = MemoryTransport(on_send=confirm)
    transport.refuse.extend([NetworkError("refused"), TimeoutError("slow")])
    owner = Owner()
    session = session_on(transport, owner)
    await session.add([BTC])
    await transport.next_connection()  # the third attempt
    await session.wait_confirmed([BTC], 5.0)
    assert transport.attempts == 3
    await session.close()

    refused = MemoryTransport()
    refused.refuse.append(AuthError("bad key"))
    owner = Owner()
    session = session_on(refused, owner)
    await session.add([BTC])
    await until(lambda: session.state is SessionState.FAILED, "failed")
    assert isinstance(owner.failed[0], AuthError)
    assert owner.failed[0].venue == "sim"  # the session names its venue on the transport's error
    await session.close()


async def test_an_oversized_message_reported_by_the_transport_is_a_limit_breach() -> None:
    transport = MemoryTransport(on_send=confirm)
    owner = Owner()
    session = session_on(transport, owner)
    await session.add([BTC])
    conn = await transport.next_connection()
    await session.wait_confirmed([BTC], 5.0)
    conn.sink.on_oversized("max_message_size", 1 << 30, 0)
    assert session.stats.limit_breaches == 1
    assert session.stats.malformed == 1
    conn.drop("frame too big", limit="max_frame_size")
    await until(lambda: len(transport.connections) == 2, "reconnected")
    malformed = [e for e in owner.status if isinstance(e, Malformed)]
    assert [e.limit for e in malformed] == ["max_message_size", "max_frame_size"]
    await session.close()


async def test_a_stream_client_streams_from_an_injected_transport() -> None:
    transport = MemoryTransport(on_send=confirm)
    got: list[Trade] = []
    async with StreamClient(
        "sim", url="ws://venue.invalid/ws", transport=transport, backfill=False
    ) as feed:
        assert feed.transport is transport

        async def read() -> None:
            async for t in feed.trades("BTC-USD"):
                got.append(t)
                if len(got) == 3:
                    return

        reader = asyncio.create_task(read())
        conn = await transport.next_connection()
        await until(lambda: any(json.loads(m).get("op") == "subscribe" for m in conn.sent), "sub")
        for n in (1, 2, 3):
            conn.push(trade(n))
        await asyncio.wait_for(reader, 5.0)
    assert [t.symbol for t in got] == ["BTC-USD"] * 3
    assert conn.closed


class Recorder:
    """A sink that asks for a turn after every message (as a woken ``async for`` reader does)
    and notes which event-loop iteration each message came in."""

    def __init__(self) -> None:
        self.iteration = 0
        self.seen: list[tuple[bytes, int]] = []
        self.closed = asyncio.get_running_loop().create_future()

    def on_frame(self, data: bytes | memoryview, now_ns: int) -> None:
        self.seen.append((bytes(data), self.iteration))
        TURN.wanted = True

    def on_oversized(self, limit: str, size: int, now_ns: int) -> None:
        raise AssertionError("no message is oversized here")

    def on_closed(self, reason: str, now_ns: int, limit: str | None) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)


async def test_picows_gives_the_loop_a_turn_between_messages_of_one_read_when_asked() -> None:
    """A socket read of many frames is handed over in one callback: a reader that asked for a
    turn (TURN.wanted) gets one before the next message, and nothing is lost or reordered."""
    count = 400
    sent = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for n in range(count):
            await ws.send_str(f"m{n}")
        sent.set()
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder = Recorder()

    async def ticker() -> None:
        while True:
            recorder.iteration += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        conn = await PicowsTransport().connect(
            f"ws://127.0.0.1:{port}/ws", {}, recorder, timeout=5.0, limits=DEFAULT_LIMITS
        )
        conn.pause_reading()  # everything waits in the kernel: one read will carry it all
        await asyncio.wait_for(sent.wait(), 10.0)
        conn.resume_reading()
        await until(lambda: len(recorder.seen) == count, "every message")
        assert [m for m, _ in recorder.seen] == [f"m{n}".encode() for n in range(count)]
        iterations = [i for _, i in recorder.seen]
        # A turn between any two messages: each came in a later loop iteration than the last.
        assert all(b > a for a, b in itertools.pairwise(iterations))
        assert not TURN.wanted or conn.backlog is None
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), 5.0)
    finally:
        TURN.wanted = False
        ticking.cancel()
        await runner.cleanup()


async def test_without_a_request_a_read_is_delivered_in_one_go() -> None:
    """The fast path: no reader asked, so the messages of one read share one loop iteration
    (nothing is held back, nothing copied)."""
    count = 400
    sent = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for n in range(count):
            await ws.send_str(f"m{n}")
        sent.set()
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder = Recorder()
    recorder.on_frame = lambda data, now_ns: recorder.seen.append(  # type: ignore[method-assign]
        (bytes(data), recorder.iteration)
    )

    async def ticker() -> None:
        while True:
            recorder.iteration += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        conn = await PicowsTransport().connect(
            f"ws://127.0.0.1:{port}/ws", {}, recorder, timeout=5.0, limits=DEFAULT_LIMITS
        )
        conn.pause_reading()
        await asyncio.wait_for(sent.wait(), 10.0)
        conn.resume_reading()
        await until(lambda: len(recorder.seen) == count, "every message")
        iterations = {i for _, i in recorder.seen}
        assert len(iterations) < count / 10  # a few reads, not one turn per message
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), 5.0)
    finally:
        ticking.cancel()
        await runner.cleanup()


async def _serve(count: int, sent: asyncio.Event) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for n in range(count):
            await ws.send_str(f"m{n}")
        sent.set()
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def _iterations_of_a_slow_read(
    budget: float | None, count: int = 120
) -> tuple[list[int], list[bool]]:
    """Loop iterations in which each of ``count`` messages of one socket read came, to a sink
    that takes at least 1 ms a message (a busy process's handlers); and, for each message
    handed over while others were held back, whether the socket was paused meanwhile."""
    sent = asyncio.Event()
    runner, port = await _serve(count, sent)
    recorder = Recorder()
    conn: Any = None
    paused_while_held: list[bool] = []

    def slow(data: bytes | memoryview, now_ns: int) -> None:
        recorder.seen.append((bytes(data), recorder.iteration))
        if conn is not None and conn.backlog:
            paused_while_held.append(conn._held_paused)
        time.sleep(0.001)  # at least 1 ms, whatever the machine's load

    recorder.on_frame = slow  # type: ignore[method-assign]

    async def ticker() -> None:
        while True:
            recorder.iteration += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        conn = await PicowsTransport(read_budget=budget).connect(
            f"ws://127.0.0.1:{port}/ws", {}, recorder, timeout=5.0, limits=DEFAULT_LIMITS
        )
        conn.pause_reading()  # everything waits in the kernel: one read carries it all
        await asyncio.wait_for(sent.wait(), 10.0)
        conn.resume_reading()
        await until(lambda: len(recorder.seen) == count, "every message", limit=30.0)
        assert [m for m, _ in recorder.seen] == [f"m{n}".encode() for n in range(count)]
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), 5.0)
    finally:
        ticking.cancel()
        await runner.cleanup()
    return [i for _, i in recorder.seen], paused_while_held


async def test_a_read_that_takes_longer_than_the_budget_gives_the_loop_turns() -> None:
    """One read of 120 messages at >= 1 ms each: with a 2 ms budget no loop iteration hands
    over more than three of them (the budget is checked before each message, and three take
    at least 3 ms), nothing is lost or reordered, and the socket is not read while the rest
    waits (later frames stay in the kernel); with the budget off the read's messages share
    far fewer iterations (the case the budget exists for)."""
    iterations, paused = await _iterations_of_a_slow_read(0.002)
    per_turn = Counter(iterations)
    assert max(per_turn.values()) <= 3
    assert len(per_turn) >= 40
    assert paused and all(paused)
    iterations, _ = await _iterations_of_a_slow_read(None)
    assert max(Counter(iterations).values()) > 3


def test_the_read_budget_is_checked() -> None:
    with pytest.raises(ValueError, match="read_budget"):
        PicowsTransport(read_budget=0)


async def test_a_conflating_reader_that_is_woken_asks_for_a_turn() -> None:
    consumer = Consumer(Channel.TICKER, policy=Overflow.CONFLATE, maxsize=10)
    TURN.wanted = False
    consumer.push("a")  # nobody waits: no turn needed
    assert not TURN.wanted
    assert await consumer.get() == "a"
    waiting = asyncio.create_task(consumer.get())
    await asyncio.sleep(0)
    consumer.push("b")
    assert TURN.wanted
    TURN.wanted = False
    assert await waiting == "b"
