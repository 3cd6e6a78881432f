"""A loopback server that plays recorded venue sessions back the way the venue sent them.

Given cryptofeed-format recordings (:mod:`tickloop.venues.recorded`), it listens on 127.0.0.1
(a free port) and

* accepts WebSocket connections on any path and streams the **received** frames of the recorded
  sessions, as text frames, byte for byte: at the recorded pace divided by ``speed``, or as fast
  as the socket takes them (``speed=None``). Which sessions a connection gets depends on its
  path: ``/`` gets every WebSocket file (merged in recorded time order); another path gets the
  files whose recorded URL has that path (``/stream`` for a Binance combined stream) or whose
  file name starts with that venue (``/kraken``, ``/binance_us``); a path matching none is 404;
* answers the recorded REST requests: a GET whose path and query (in any parameter order)
  equal a recorded URL's gets that recorded body (successive recordings of one URL are served in
  turn, the last one repeatedly); anything else is 404 with a JSON error;
* acknowledges what a client sends where the venue would, so clients that wait for an answer
  can proceed: Binance ``{"method":"SUBSCRIBE"|"UNSUBSCRIBE",...,"id":n}`` gets
  ``{"result":null,"id":n}``, Kraken ``{"event":"ping"}`` gets a ``pong``. Recorded acks of
  other venues are part of the replayed frames. Everything a client sends is kept in
  :attr:`ReplayServer.client_messages` (bounded).

With ``close_at_end`` (the default) the server closes a connection (code 1000) after its last
frame, so a consumer knows the session is over; a client that reconnects gets the session again
from the start.

Two knobs make a replay behave more like the venue for end-to-end client tests:

* ``subscribed_only``: a connection gets only the data of the streams it subscribed to (Binance
  stream names from ``SUBSCRIBE`` or the ``?streams=`` of a combined-stream URL, Coinbase
  channel x product, Kraken v1 channel x pair), as a venue sends a sharded client's connections
  each their own streams. A Kraken ``subscriptionStatus`` goes where its channel and pair
  were subscribed; frames of no stream (status, heartbeats, Coinbase ``subscriptions``,
  anything the server cannot attribute) go to every connection.
* ``drop_after=N, drop_lost=K``: the first connection that reaches position N of the recording
  is closed (code 1012); every later connection resumes at position N + K, the K frames in
  between being what the venue sent while the client was away. A resumed connection first gets
  the skipped frames that are not stream data (the recorded answers to subscriptions, status),
  as a venue answers a new connection's subscriptions, then the data from N + K on.

Each connection's pump is a task owned by its handler and cancelled with it; the
server closes every open connection when it stops.

    async with ReplayServer(ws_files=[path], http_files=[path2], speed=None) as srv:
        ...connect to srv.ws_url (or srv.url("/stream")), GET srv.rest_url + "/api/v3/depth?..."
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, urlsplit

from aiohttp import WSMsgType, web

from ..exceptions import ConfigError
from ..venues.recorded import Direction, read_recording

__all__ = ["RecordedSession", "ReplayServer", "stream_key"]


@dataclass(frozen=True)
class RecordedSession:
    """The received frames of one recorded WebSocket file."""

    name: str  # file name, e.g. "KRAKEN.ws.50.0"
    venue: str  # lower-case file-name prefix, e.g. "kraken", "binance_us"
    url: str  # the recorded connection URL
    frames: tuple[tuple[int, bytes], ...]  # (recorded ns, frame: UTF-8 text, sent as is)
    #: Per frame, the venue stream it belongs to (see :func:`stream_key`), None for none.
    keys: tuple[str | None, ...] = ()
    #: Per frame, whether it is stream data (not an answer to a subscription, not status).
    data: tuple[bool, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> RecordedSession:
        path = Path(path)
        url = ""
        frames = []
        for rec in read_recording(path):
            if rec.direction is Direction.OPEN and not url:
                url = rec.url
            elif rec.direction is Direction.RECEIVED:
                rec.frame.decode()  # a text frame must be UTF-8: fail at load, not mid-stream
                frames.append((rec.ts, rec.frame))
        keys = tuple(stream_key(frame) for _, frame in frames)
        data = tuple(
            key is not None and b'"subscriptionStatus"' not in frame
            for key, (_, frame) in zip(keys, frames, strict=True)
        )
        name = path.name
        return cls(name, name.partition(".")[0].lower(), url, tuple(frames), keys, data)

    def matches(self, path: str) -> bool:
        wanted = path.rstrip("/")
        if not wanted:
            return True
        return urlsplit(self.url).path.rstrip("/") == wanted or self.venue == wanted.lstrip("/")


def _request_key(
    path: str, query: Iterable[tuple[str, str]]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    return path, tuple(sorted(query))


class ReplayServer:
    """See the module docstring. ``speed`` > 0 plays at ``speed`` times the recorded pace."""

    def __init__(
        self,
        ws_files: Sequence[str | Path] = (),
        http_files: Sequence[str | Path] = (),
        *,
        speed: float | None = None,
        close_at_end: bool = True,
        start_on_message: bool = False,
        http_bodies: Mapping[str, bytes] | None = None,
        max_client_messages: int = 10_000,
        subscribed_only: bool = False,
        drop_after: int | None = None,
        drop_lost: int = 0,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError("speed must be > 0, or None for as fast as possible", field="speed")
        if drop_after is not None and drop_after < 0:
            raise ConfigError("drop_after must be >= 0", field="drop_after")
        if drop_lost < 0:
            raise ConfigError("drop_lost must be >= 0", field="drop_lost")
        self.subscribed_only = subscribed_only
        self.drop_after = drop_after
        self.drop_lost = drop_lost
        #: Where connections opened after the drop start in the recording (None: no drop yet).
        self.resume_at: int | None = None
        self.speed = speed
        self.close_at_end = close_at_end
        self.start_on_message = start_on_message
        self.sessions = [RecordedSession.load(p) for p in ws_files]
        self._bodies: dict[tuple[str, tuple[tuple[str, str], ...]], list[bytes]] = {}
        for path in http_files:
            for rec in read_recording(path):
                if rec.direction is Direction.HTTP:
                    self._add_body(rec.url, rec.frame)
        for url, body in (http_bodies or {}).items():
            self._add_body(url, body)
        self._served: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        #: Every text message clients sent, as (connection number, text), oldest dropped first.
        self.client_messages: deque[tuple[int, str]] = deque(maxlen=max_client_messages)
        self.connections = 0  # WebSocket connections accepted so far
        self.frames_sent = 0
        self.ended = 0  # connections that were sent the recording to its end
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._runner: web.AppRunner | None = None
        self._port = 0

    def _add_body(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        key = _request_key(parts.path or "/", parse_qsl(parts.query, keep_blank_values=True))
        self._bodies.setdefault(key, []).append(body)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("ReplayServer is not running")
        return self._port

    @property
    def ws_url(self) -> str:
        """The WebSocket address that streams every recorded session (merged in time order)."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """The WebSocket address of ``path`` (``"/stream"``, ``"/kraken"``)."""
        return f"ws://127.0.0.1:{self.port}/{path.lstrip('/')}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        app.on_shutdown.append(self._close_sockets)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._port = 0

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")

    # -- requests ------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        key = _request_key(request.path, request.query.items())
        bodies = self._bodies.get(key)
        if not bodies:
            return web.json_response(
                {"error": "no recorded answer", "path": request.path_qs}, status=404
            )
        index = self._served.get(key, 0)
        self._served[key] = index + 1
        return web.Response(
            body=bodies[min(index, len(bodies) - 1)], content_type="application/json"
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        sessions = [s for s in self.sessions if s.matches(request.path)]
        if not sessions:
            raise web.HTTPNotFound(text=f"no recorded session for {request.path}")
        ws = web.WebSocketResponse(max_msg_size=1 << 22)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.connections += 1
        number = self.connections
        start = asyncio.Event()
        if not self.start_on_message:
            start.set()
        # The streams this connection subscribed to (read only with ``subscribed_only``).
        wanted: set[str] = set(_url_streams(request.query.get("streams", "")))
        pump = asyncio.create_task(
            self._pump(ws, sessions, start, wanted), name=f"replay-pump-{number}"
        )
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self.client_messages.append((number, msg.data))
                    change = _subscription_change(msg.data)
                    if change is not None:
                        add, keys = change
                        if add:
                            wanted.update(keys)
                        else:
                            wanted.difference_update(keys)
                    reply = _reply(msg.data)
                    if reply is not None:
                        await ws.send_str(reply)
                    start.set()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._sockets.discard(ws)
        return ws

    async def _pump(
        self,
        ws: web.WebSocketResponse,
        sessions: list[RecordedSession],
        start: asyncio.Event,
        wanted: set[str],
    ) -> None:
        await start.wait()
        merged = heapq.merge(
            *(zip(s.frames, s.keys, s.data, strict=True) for s in sessions),
            key=lambda f: f[0][0],
        )
        loop = asyncio.get_running_loop()
        speed = self.speed
        filtering = self.subscribed_only
        resume_at = self.resume_at
        drop_at = self.drop_after if resume_at is None else None
        began = loop.time()
        first_ts: int | None = None
        sent = 0
        try:
            for position, ((ts, frame), key, is_data) in enumerate(merged):
                if drop_at is not None and position >= drop_at and self.resume_at is None:
                    self.resume_at = drop_at + self.drop_lost
                    await ws.close(code=1012, message=b"replay: connection dropped")
                    return
                if resume_at is not None and position < resume_at and is_data:
                    continue  # data sent while the client was away: lost
                if filtering and key is not None and key not in wanted:
                    continue
                if speed is not None:
                    if first_ts is None:
                        first_ts = ts
                    delay = began + (ts - first_ts) / 1e9 / speed - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif sent % 256 == 255:
                    await asyncio.sleep(0)  # let the handler read what the client sends
                if ws.closed:
                    return
                await ws.send_frame(frame, WSMsgType.TEXT)
                sent += 1
                self.frames_sent += 1
            self.ended += 1
            if self.close_at_end:
                await ws.close(code=1000, message=b"end of recording")
        except ConnectionError:
            return  # the client went away; the handler's loop ends on its own


# Coinbase message types -> the channel that carries them (level2_batch/level2_50 and
# ticker_batch carry the same messages as level2 and ticker).
_COINBASE_CHANNELS = {
    "match": "matches",
    "last_match": "matches",
    "l2update": "level2",
    "snapshot": "level2",
    "ticker": "ticker",
    "heartbeat": "heartbeat",
}
_COINBASE_ALIASES = {"level2_batch": "level2", "level2_50": "level2", "ticker_batch": "ticker"}


def stream_key(frame: bytes) -> str | None:
    """The venue stream a recorded frame belongs to: a Binance stream name (``nknusdt@aggTrade``),
    ``"<channel> <product>"`` for Coinbase (``matches BTC-USD``), ``"<channelName> <pair>"`` for
    Kraken v1 data and subscription answers (``trade XBT/USD``, ``book-10 XBT/USD``). None for
    frames of no stream (status, heartbeats, other answers) and frames that are not JSON."""
    try:
        msg = json.loads(frame)
    except ValueError:
        return None
    if isinstance(msg, list):  # Kraken v1 data: [channelID, payload..., channelName, pair]
        if len(msg) >= 4 and isinstance(msg[-2], str) and isinstance(msg[-1], str):
            return f"{msg[-2]} {msg[-1]}"
        return None
    if not isinstance(msg, dict):
        return None
    stream = msg.get("stream")
    if isinstance(stream, str) and "data" in msg:
        return stream
    channel = _COINBASE_CHANNELS.get(msg.get("type", ""))
    if channel is not None and isinstance(msg.get("product_id"), str):
        return f"{channel} {msg['product_id']}"
    if msg.get("event") == "subscriptionStatus" and msg.get("status") in (
        "subscribed",
        "unsubscribed",
    ):
        name, pair = msg.get("channelName"), msg.get("pair")
        if isinstance(name, str) and isinstance(pair, str):
            return f"{name} {pair}"
    return None


def _url_streams(query: str) -> list[str]:
    """Binance combined-stream URL ``?streams=a@trade/b@trade`` -> its stream names."""
    return [s for s in query.split("/") if s]


def _subscription_change(text: str) -> tuple[bool, list[str]] | None:
    """(subscribe?, stream keys) of a client's subscribe/unsubscribe message, or None."""
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    method = msg.get("method")
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):  # Binance
        params = msg.get("params")
        names = [p for p in params if isinstance(p, str)] if isinstance(params, list) else []
        return method == "SUBSCRIBE", names
    kind = msg.get("type")
    if kind in ("subscribe", "unsubscribe"):  # Coinbase
        products = msg.get("product_ids") or []
        keys: list[str] = []
        for channel in msg.get("channels") or []:
            if isinstance(channel, dict):
                name, ids = channel.get("name", ""), channel.get("product_ids") or products
            else:
                name, ids = channel, products
            name = _COINBASE_ALIASES.get(name, name)
            keys.extend(f"{name} {product}" for product in ids)
        return kind == "subscribe", keys
    event = msg.get("event")
    spec = msg.get("subscription")
    if event in ("subscribe", "unsubscribe") and isinstance(spec, dict):  # Kraken v1
        name = spec.get("name", "")
        if name == "book":
            name = f"book-{spec.get('depth', 10)}"
        elif name == "ohlc":
            name = f"ohlc-{spec.get('interval', 1)}"
        pairs = msg.get("pair") or []
        return event == "subscribe", [f"{name} {pair}" for pair in pairs]
    return None


def _reply(text: str) -> str | None:
    """What the venue would answer to a client message, where the recording cannot say."""
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    if msg.get("method") in ("SUBSCRIBE", "UNSUBSCRIBE") and "id" in msg:
        return json.dumps({"result": None, "id": msg["id"]}, separators=(",", ":"))
    if msg.get("event") == "ping":
        reply = {"event": "pong"}
        if "reqid" in msg:
            reply["reqid"] = msg["reqid"]
        return json.dumps(reply, separators=(",", ":"))
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tickloop.replay.server [--speed S] [--http FILE]... [--keep-open] [--wait]
    [--subscribed-only] WS_FILE...``: serve recordings until SIGINT/SIGTERM, printing
    ``READY <port>`` once listening."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tickloop.replay.server")
    parser.add_argument("ws_files", nargs="*", help="recorded *.ws.* files to stream")
    parser.add_argument("--http", action="append", default=[], help="recorded *.http.* file")
    parser.add_argument("--speed", type=float, default=None, help="x recorded pace (default: max)")
    parser.add_argument("--keep-open", action="store_true", help="do not close after the end")
    parser.add_argument("--wait", action="store_true", help="stream after the client's 1st message")
    parser.add_argument(
        "--subscribed-only", action="store_true", help="send each connection its own streams"
    )
    args = parser.parse_args(argv)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = ReplayServer(
            args.ws_files,
            args.http,
            speed=args.speed,
            close_at_end=not args.keep_open,
            start_on_message=args.wait,
            subscribed_only=args.subscribed_only,
        )
        async with server:
            print(f"READY {server.port}", flush=True)
            await stop.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
