"""A hostile venue on loopback for the streaming client's tests: it speaks the sim's protocol
just enough (``subscribed`` answers, trades) and then does what a broken or malicious venue
does, as a script: oversized frames, endless fragments, only heartbeats, absurd trade ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve

Script = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


def trade(i: int, symbol: str = "BTC-USD") -> str:
    return json.dumps(
        {
            "type": "trade",
            "symbol": symbol,
            "id": i,
            "price": "100.00",
            "size": "1.0000",
            "side": "buy",
            "ts": i,
        }
    )


def subscribed(request: dict[str, Any]) -> str:
    return json.dumps(
        {
            "type": "subscribed",
            "channel": request["channel"],
            "symbols": request.get("symbols"),
            "id": request.get("id"),
        }
    )


class HostileVenue:
    """Runs ``script(ws, first_subscribe_request)`` on every connection; ``connections``
    counts them."""

    def __init__(self, script: Script, *, confirm: bool = True) -> None:
        self.script = script
        self.confirm = confirm
        self.connections = 0
        self.url = ""

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            async for raw in ws:
                request = json.loads(raw)
                if request.get("op") == "subscribe":
                    if self.confirm:
                        await ws.send(subscribed(request))
                    await self.script(ws, request)
                elif request.get("op") == "ping":
                    await ws.send(json.dumps({"type": "pong", "ts": 0}))
        except websockets.ConnectionClosed:
            return


@asynccontextmanager
async def hostile_venue(script: Script, *, confirm: bool = True) -> AsyncIterator[HostileVenue]:
    venue = HostileVenue(script, confirm=confirm)
    async with serve(venue._handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        venue.url = f"ws://127.0.0.1:{port}/ws"
        yield venue
        server.close()
        await asyncio.sleep(0)
