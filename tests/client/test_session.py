"""WsSession against a small WebSocket server of the test's own (aiohttp, 127.0.0.1), speaking
just enough of docs/protocol.md: malformed frames, silence, refused handshakes, lost answers."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from aiohttp import WSMsgType, web

from tickloop.client.backoff import Backoff
from tickloop.client.session import LOOPBACK_RECV_BUFFER, SessionState, WsSession
from tickloop.client.transport import PicowsConnection, PicowsTransport
from tickloop.exceptions import AuthError, NetworkError, StreamError, TickloopError
from tickloop.models import Connected, Reconnected, Stale, Trade
from tickloop.venues.base import Channel, Subscription
from tickloop.venues.sim import SimCodec

from .helpers import until

TRADE = (
    '{{"type": "trade", "symbol": "BTC-USD", "id": {id}, "price": "100.00", "size": "1.0000",'
    ' "side": "buy", "ts": 1}}'
)
BTC = Subscription(Channel.TRADES, "BTC-USD")

Behaviour = Callable[[web.WebSocketResponse, dict[str, Any], "FakeVenue"], Awaitable[None]]


class FakeVenue:
    """Records what clients send; ``on_subscribe`` decides what to answer."""

    def __init__(self, on_subscribe: Behaviour, *, refuse_handshake: int | None = None) -> None:
        self.on_subscribe = on_subscribe
        self.refuse_handshake = refuse_handshake
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self.url = ""

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_handshake is not None:
            return web.Response(status=self.refuse_handshake)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            self.received.append(message)
            if message.get("op") == "subscribe":
                await self.on_subscribe(ws, message, self)
        return ws


@pytest.fixture
async def venue_factory() -> AsyncIterator[Callable[..., Awaitable[FakeVenue]]]:
    runners: list[web.AppRunner] = []

    async def make(on_subscribe: Behaviour, **options: Any) -> FakeVenue:
        venue = FakeVenue(on_subscribe, **options)
        app = web.Application()
        app.router.add_get("/ws", venue.handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        venue.url = f"ws://127.0.0.1:{port}/ws"
        return venue

    yield make
    for runner in runners:
        await runner.cleanup()


class Owner:
    def __init__(self) -> None:
        self.status: list[Any] = []
        self.trades: list[Trade] = []
        self.confirmed: list[Subscription] = []
        self.lost: list[Subscription] = []
        self.refused: list[tuple[Subscription, StreamError]] = []
        self.failed: list[TickloopError] = []

    def on_status(self, event: Any) -> None:
        self.status.append(event)

    def on_confirmed(self, session: WsSession, subscriptions: tuple[Subscription, ...]) -> None:
        self.confirmed.extend(subscriptions)

    def on_lost(self, session: WsSession, subscriptions: list[Subscription], ts: int) -> None:
        self.lost.extend(subscriptions)

    def on_refused(
        self, session: WsSession, subscription: Subscription, error: StreamError
    ) -> None:
        self.refused.append((subscription, error))

    def on_failed(self, session: WsSession, error: TickloopError) -> None:
        self.failed.append(error)


def session_for(url: str, owner: Owner, codec: type[SimCodec] = SimCodec, **kw: Any) -> WsSession:
    kw.setdefault("backoff", Backoff(base_wait=0.01, max_wait=0.05))
    return WsSession(codec, url, owner=owner, sinks={Trade: owner.trades.append}, **kw)


async def answer(ws: web.WebSocketResponse, message: dict[str, Any], venue: FakeVenue) -> None:
    await ws.send_str(
        json.dumps(
            {
                "type": "subscribed",
                "id": message["id"],
                "channel": message["channel"],
                "symbols": message.get("symbols"),
            }
        )
    )


async def test_malformed_and_unknown_frames_are_counted_and_skipped(venue_factory: Any) -> None:
    async def noisy(ws: web.WebSocketResponse, message: dict[str, Any], venue: FakeVenue) -> None:
        await answer(ws, message, venue)
        await ws.send_str(TRADE.format(id=1))
        await ws.send_str(TRADE.format(id=2)[:30])  # truncated
        await ws.send_str("garbage")
        await ws.send_str('{"type": "announcement"}')  # well-formed, unknown
        await ws.send_bytes(TRADE.format(id=3).encode())  # binary frames decode too
        await ws.send_str(TRADE.format(id=4))

    venue = await venue_factory(noisy)
    owner = Owner()
    session = session_for(venue.url, owner)
    await session.add([BTC])
    await until(lambda: len(owner.trades) == 3, "three good trades")
    assert [t.id for t in owner.trades] == [1, 3, 4]
    assert session.malformed == 2
    assert session.unknown == 1
    assert session.state is SessionState.OPEN
    assert isinstance(owner.status[0], Connected)
    assert owner.confirmed == [BTC]
    await session.close()
    assert session.state is SessionState.CLOSED and not session.connected


async def test_refused_connection_retries_then_fails_with_network_error() -> None:
    owner = Owner()
    session = session_for(
        "ws://127.0.0.1:9/ws", owner, backoff=Backoff(base_wait=0.001, max_wait=0.01, max_retries=2)
    )
    session.start()
    await until(lambda: bool(owner.failed), "gives up")
    assert isinstance(owner.failed[0], NetworkError)
    assert session.state is SessionState.FAILED
    with pytest.raises(NetworkError):
        await session.wait_confirmed([BTC], 1.0)
    await session.close()


async def test_refused_handshake_is_not_retried(venue_factory: Any) -> None:
    venue = await venue_factory(answer, refuse_handshake=403)
    owner = Owner()
    session = session_for(venue.url, owner)
    session.start()
    await until(lambda: bool(owner.failed), "fails")
    assert isinstance(owner.failed[0], AuthError)
    assert session.stats.connects == 0
    await session.close()


async def test_silent_connection_is_detected_and_replaced(venue_factory: Any) -> None:
    # The venue answers the subscription, then says nothing more (no data, no pong) and never
    # closes the connection.
    venue = await venue_factory(answer)
    owner = Owner()
    session = session_for(venue.url, owner, heartbeat_timeout=0.3, ping_interval=0.1)
    await session.add([BTC])
    await until(lambda: any(isinstance(e, Reconnected) for e in owner.status), "replaced")
    stale = [e for e in owner.status if isinstance(e, Stale)]
    assert stale and stale[0].silent_for >= 0.3
    assert session.stats.stale >= 1 and venue.connections >= 2
    assert owner.lost == [BTC]
    assert any(m.get("op") == "ping" for m in venue.received)  # it asked before giving up
    await session.close()


class Chunky(SimCodec):
    max_streams_per_message: ClassVar[int] = 2
    max_messages_per_second: ClassVar[float] = 1000.0


async def test_subscriptions_are_chunked_by_the_codec_limits(venue_factory: Any) -> None:
    venue = await venue_factory(answer)
    owner = Owner()
    session = session_for(venue.url, owner, codec=Chunky)
    subs = [Subscription(Channel.TRADES, f"S{i}-USD") for i in range(5)]
    session.start()
    await session.add(subs)
    await session.wait_confirmed(subs, 10.0)
    sent = [m for m in venue.received if m.get("op") == "subscribe"]
    assert [len(m["symbols"]) for m in sent] == [2, 2, 1]
    await session.remove(subs[:2])
    await until(lambda: any(m.get("op") == "unsubscribe" for m in venue.received), "unsub")
    assert session.subscriptions == set(subs[2:])
    await session.close()


async def test_a_lost_subscribe_answer_is_asked_again(venue_factory: Any) -> None:
    async def ignore_first(
        ws: web.WebSocketResponse, message: dict[str, Any], venue: FakeVenue
    ) -> None:
        if sum(m.get("op") == "subscribe" for m in venue.received) > 1:
            await answer(ws, message, venue)

    venue = await venue_factory(ignore_first)
    owner = Owner()
    session = session_for(venue.url, owner, heartbeat_timeout=0.3, ping_interval=0.1)
    await session.add([BTC])
    await session.wait_confirmed([BTC], 10.0)
    assert sum(m.get("op") == "subscribe" for m in venue.received) == 2
    await session.close()


async def test_fatal_error_refuses_only_that_stream(venue_factory: Any) -> None:
    async def refuse_foo(
        ws: web.WebSocketResponse, message: dict[str, Any], venue: FakeVenue
    ) -> None:
        if "FOO-USD" in message["symbols"]:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "error",
                        "id": message["id"],
                        "code": "unknown_symbol",
                        "message": "unknown symbol 'FOO-USD'",
                        "field": "symbols",
                    }
                )
            )
        else:
            await answer(ws, message, venue)

    venue = await venue_factory(refuse_foo)
    owner = Owner()
    session = session_for(venue.url, owner)
    foo = Subscription(Channel.TRADES, "FOO-USD")
    session.start()
    await session.add([BTC, foo])
    with pytest.raises(StreamError):
        await session.wait_confirmed([foo], 10.0)
    assert [s for s, _ in owner.refused] == [foo]
    assert session.subscriptions == {BTC}
    await session.close()


async def test_a_loopback_connection_reads_through_a_bounded_receive_buffer(
    venue_factory: Any,
) -> None:
    """picows doubles its read buffer whenever a read fills it: against a full-speed local
    server, reads of megabytes would hold the event loop for tens of thousands of frames. A
    loopback connection gets a bounded kernel receive buffer instead (remote ones keep the
    kernel's autotuning)."""
    venue = await venue_factory(answer)
    owner = Owner()
    session = session_for(venue.url, owner)
    await session.add([BTC])
    await until(lambda: owner.confirmed == [BTC], "subscribed")
    connection = session.connection
    assert isinstance(connection, PicowsConnection)
    sock = connection._transport.underlying_transport.get_extra_info("socket")
    with socket.socket() as probe:  # what this kernel makes of the same request
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LOOPBACK_RECV_BUFFER)
        expected = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == expected
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    await session.close()

    transport = session.transport
    assert isinstance(transport, PicowsTransport)
    for host in ("192.0.2.1", "example.invalid"):  # never contacted, never looked up
        assert await transport._loopback_socket(SimpleNamespace(host=host, port=443)) is None
    local = await transport._loopback_socket(SimpleNamespace(host="localhost", port=1))
    assert local is not None
    with local:
        assert not local.getblocking()
    off = session_for(venue.url, Owner(), loopback_recv_buffer=None)
    assert isinstance(off.transport, PicowsTransport)
    assert await off.transport._loopback_socket(SimpleNamespace(host="127.0.0.1", port=1)) is None
