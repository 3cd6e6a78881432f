"""Loopback Binance-format replay server for the benchmark harness (runs in its own process).

It answers what Binance clients ask for at start and then streams the workload of
:mod:`bench.harness.workload` to every subscriber, identically:

* ``GET /api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/depth`` (the book
  as of the frames the latest depth stream has written, with that ``lastUpdateId``, as Binance's
  snapshot reflects its stream's current position);
* WebSocket on ``/ws``, ``/ws/<stream>`` and ``/ws/<anything>`` (raw events, streams named in the
  path or subscribed with ``{"method": "SUBSCRIBE", "params": [...], "id": n}``) and on
  ``/stream?streams=a/b`` (combined events ``{"stream": ..., "data": ...}``, same subscribe
  messages accepted).

Each subscribed trade or depth stream gets its own replay of ``--frames`` frames from frame 0:
as fast as the client reads (``--rate 0``, flow-controlled by the socket) or paced at
``--rate`` frames/s. Frames are rendered in chunks and written to the TCP transport as
pre-framed bytes, so the server's per-frame cost (about 1 µs) stays far below any contender's.
With ``--send-log PREFIX`` a paced stream writes the monotonic ns at which each frame was
written (``PREFIX-<n>.bin``, native int64, index = frame number) for the latency join.

Run: ``python -m bench.harness.server [--port 0] [--frames N] [--rate R] [--cpu C]``; it prints
``READY <port>`` once listening and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from array import array
from dataclasses import dataclass
from typing import cast

from aiohttp import WSMsgType, web

from .workload import DepthBook, Renderer, exchange_info, stream_kind, ws_frame

_CHUNK = 256  # frames rendered and written per write at full speed
_HIGH_WATER = 1 << 20  # bytes buffered in the transport before the pump waits for the reader
# A depth stream pauses after this many frames until a client asks for the REST snapshot (or
# 2 s pass, for clients that never do): at full speed the socket buffers would otherwise hold
# the whole run before a client's snapshot request is answered, and every diff would be older
# than the snapshot. Binance streams depth every 100 ms, so a real snapshot is never that late.
_DEPTH_HOLD = 1000
_DEPTH_HOLD_SECONDS = 2.0


@dataclass(frozen=True)
class Options:
    frames: int
    rate: float  # frames/s, 0 = as fast as the client reads
    send_log: str | None
    tick: float = 0.0  # paced: seconds between writes (0: spin, one write per due frame)


class Streams:
    """The pumps of one WebSocket connection; each is a task owned here and cancelled on close."""

    counter = 0
    #: frames written by the most recently started depth stream (for REST snapshots)
    depth_sent = 0
    #: set when a REST depth snapshot is asked for (reset when a depth stream starts)
    snapshot_asked: asyncio.Event | None = None

    def __init__(self, transport: asyncio.Transport, combined: bool, options: Options) -> None:
        self.transport = transport
        self.combined = combined
        self.options = options
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, stream: str) -> None:
        kind = stream_kind(stream)
        if kind is None or stream in self.tasks:
            return
        Streams.counter += 1
        if kind == "depth":
            Streams.depth_sent = 0
            Streams.snapshot_asked = asyncio.Event()
        renderer = Renderer(kind, self.combined, stream)
        self.tasks[stream] = asyncio.create_task(self._pump(renderer, Streams.counter))

    def stop(self, stream: str) -> None:
        task = self.tasks.pop(stream, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self, renderer: Renderer, number: int) -> None:
        transport = self.transport
        total = self.options.frames
        rate = self.options.rate
        depth = renderer.kind == "depth"
        if rate <= 0:
            i = 0
            held = not depth
            while i < total and not transport.is_closing():
                while transport.get_write_buffer_size() > _HIGH_WATER:
                    await asyncio.sleep(0.0005)
                    if transport.is_closing():
                        return
                stop = min(total, i + _CHUNK)
                transport.write(renderer.frames(i, stop, time.time_ns() // 1_000_000))
                i = stop
                if depth:
                    Streams.depth_sent = i
                    if not held and i >= _DEPTH_HOLD and Streams.snapshot_asked is not None:
                        held = True
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                Streams.snapshot_asked.wait(), _DEPTH_HOLD_SECONDS
                            )
                await asyncio.sleep(0)  # let REST requests and control frames through
            return
        log = array("q", bytes(8 * total)) if self.options.send_log else None
        try:
            # Busy pacing (tick 0): sleep(0) keeps the loop responsive; timers are ms-granular,
            # too coarse for 50k frames/s. The server has its own core, so spinning costs the
            # contenders nothing. The soak, which measures memory, not latency, uses a tick
            # instead and leaves the core to the book phase.
            i = 0
            t0 = time.monotonic_ns()
            per_ns = rate / 1e9
            while i < total and not transport.is_closing():
                now = time.monotonic_ns()
                due = min(total, int((now - t0) * per_ns) + 1)
                if due > i:
                    data = renderer.frames(i, due, time.time_ns() // 1_000_000)
                    sent = time.monotonic_ns()
                    transport.write(data)
                    if log is not None:
                        for j in range(i, due):
                            log[j] = sent
                    i = due
                    if depth:
                        Streams.depth_sent = i
                await asyncio.sleep(self.options.tick)
        finally:
            if log is not None and self.options.send_log:
                # a few hundred kB once per stream, after the measured window
                with open(f"{self.options.send_log}-{number}.bin", "wb") as f:  # noqa: ASYNC230
                    log[:i].tofile(f)


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def ping(request: web.Request) -> web.Response:
    return _json(b"{}")


async def server_time(request: web.Request) -> web.Response:
    return _json(b'{"serverTime":%d}' % (time.time_ns() // 1_000_000))


async def info(request: web.Request) -> web.Response:
    return _json(exchange_info(time.time_ns() // 1_000_000))


async def depth(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        error = {"code": -1100, "msg": "Illegal characters in 'limit'"}
        return web.json_response(error, status=400)
    book: DepthBook = request.app["book"]
    body = book.snapshot(Streams.depth_sent, limit)
    if Streams.snapshot_asked is not None:
        Streams.snapshot_asked.set()
    return _json(body)


async def websocket(request: web.Request) -> web.StreamResponse:
    options: Options = request.app["options"]
    ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    combined = request.path.startswith("/stream")
    streams = Streams(transport, combined, options)
    named: list[str] = []
    if combined:
        named = [s for s in request.query.get("streams", "").split("/") if s]
    else:
        tail = request.match_info.get("tail", "")
        named = [s for s in tail.split("/") if "@" in s]
    for s in named:
        streams.start(s)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                request_msg = json.loads(msg.data)
                method = request_msg.get("method")
                params = request_msg.get("params") or []
                ident = request_msg.get("id")
            except (ValueError, AttributeError):
                continue
            if method == "SUBSCRIBE":
                reply: object = None
            elif method == "UNSUBSCRIBE":
                reply = None
            elif method == "LIST_SUBSCRIPTIONS":
                reply = list(streams.tasks)
            else:
                continue
            # written raw, like the data frames, so control replies and data never interleave
            transport.write(ws_frame(json.dumps({"result": reply, "id": ident}).encode()))
            for s in params:
                if method == "SUBSCRIBE":
                    streams.start(s)
                elif method == "UNSUBSCRIBE":
                    streams.stop(s)
    finally:
        await streams.close()
    return ws


def make_app(options: Options) -> web.Application:
    app = web.Application()
    app["options"] = options
    app["book"] = DepthBook()
    app.router.add_get("/api/v3/ping", ping)
    app.router.add_get("/api/v3/time", server_time)
    app.router.add_get("/api/v3/exchangeInfo", info)
    app.router.add_get("/api/v3/depth", depth)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/ws/{tail:.*}", websocket)
    app.router.add_get("/stream", websocket)
    return app


async def serve(host: str, port: int, options: Options) -> None:
    runner = web.AppRunner(make_app(options), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=128)
    await site.start()
    # the bound socket: the only way aiohttp exposes port 0's choice
    server = cast("asyncio.Server | None", site._server)
    bound = server.sockets[0].getsockname()[1] if server is not None else port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--frames", type=int, default=200_000, help="frames per stream")
    parser.add_argument("--rate", type=float, default=0.0, help="frames/s; 0 = full speed")
    parser.add_argument("--send-log", default=None, help="path prefix for paced send times")
    parser.add_argument(
        "--tick-ms", type=float, default=0.0, help="paced: sleep between writes (0: spin)"
    )
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.cpu})
    options = Options(
        frames=args.frames, rate=args.rate, send_log=args.send_log, tick=args.tick_ms / 1000
    )
    runner: object = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    runner(serve(args.host, args.port, options))  # type: ignore[operator]
    sys.stdout.flush()


if __name__ == "__main__":
    main()
