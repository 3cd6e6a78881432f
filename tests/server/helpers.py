"""Helpers of the server tests: an SSE parser, a streaming ASGI client, and event factories.

httpx's ASGI transport returns a response once the app has finished it, so it reads bounded
streams (``limit=``). :class:`AsgiStream` drives the app directly over ASGI to read an endless
stream chunk by chunk and disconnect in the middle, as a browser does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec

from tickloop import models


class Frame(msgspec.Struct):
    id: str | None = None
    event: str | None = None
    data: str | None = None
    comments: list[str] = []
    retry: int | None = None

    def json(self) -> Any:
        assert self.data is not None
        return msgspec.json.decode(self.data)


def parse_sse(text: str) -> list[Frame]:
    """The frames of an event stream (per the WHATWG rules this server's output needs)."""
    frames: list[Frame] = []
    current = Frame()
    touched = False
    for line in text.split("\n"):
        if line == "":
            if touched:
                frames.append(current)
            current, touched = Frame(), False
            continue
        touched = True
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "data":
            current.data = value if current.data is None else current.data + "\n" + value
        elif name == "retry":
            current.retry = int(value)
    return frames


def events_of(frames: list[Frame]) -> list[Frame]:
    """The frames that carry a bus event (an id and data, no event name)."""
    return [f for f in frames if f.id is not None and f.event is None]


class AsgiStream:
    """One GET to an ASGI app whose body is read chunk by chunk; ``disconnect()`` ends it as a
    client closing its connection does."""

    def __init__(self, app: Any, path: str, headers: dict[str, str] | None = None) -> None:
        self.app = app
        target, _, query = path.partition("?")
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": target,
            "raw_path": target.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "server": ("test", 80),
            "client": ("127.0.0.1", 5000),
        }
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._requested = False
        self.task: asyncio.Task[None] | None = None
        self.text = ""

    async def _receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            if message.get("body"):
                await self.chunks.put(message["body"])
            if not message.get("more_body", False):
                await self.chunks.put(None)

    async def __aenter__(self) -> AsgiStream:
        self.task = asyncio.get_running_loop().create_task(
            self.app(self.scope, self._receive, self._send))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def read_until(self, done: Any, *, within: float = 10.0) -> list[Frame]:
        """Read chunks until ``done(frames)`` holds for the frames read so far."""
        async with asyncio.timeout(within):
            while True:
                frames = parse_sse(self.text)
                if done(frames):
                    return frames
                chunk = await self.chunks.get()
                if chunk is None:
                    return parse_sse(self.text)
                self.text += chunk.decode()

    async def disconnect(self) -> None:
        self._gone.set()
        if self.task is not None:
            async with asyncio.timeout(10):
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task


@contextlib.asynccontextmanager
async def stream(app: Any, path: str, headers: dict[str, str] | None = None
                 ) -> AsyncIterator[AsgiStream]:
    async with AsgiStream(app, path, headers) as s:
        yield s


def trade(n: int, symbol: str = "BTC-USD") -> models.Trade:
    return models.Trade(venue="sim", symbol=symbol, id=n, price=Decimal("100.00") + n,
                        size=Decimal("0.5000"), side=models.Side.BUY,
                        ts=1_700_000_000_000_000_000 + n)


def fill(n: int) -> models.Fill:
    return models.Fill(venue="sim", symbol="BTC-USD", order_id=f"o{n}", trade_id=n,
                       side=models.Side.SELL, price=Decimal("99.50"), size=Decimal("0.1000"),
                       liquidity=models.Liquidity.MAKER, ts=n)


def book(n: int, symbol: str = "BTC-USD") -> models.BookSnapshot:
    level = models.BookLevel(Decimal("99.00") + n, Decimal("1.0000"))
    ask = models.BookLevel(Decimal("101.00") + n, Decimal("2.0000"))
    return models.BookSnapshot(venue="sim", symbol=symbol, bids=(level,), asks=(ask,),
                               sequence=n, ts=n)
