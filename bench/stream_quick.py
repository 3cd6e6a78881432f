"""Quick throughput check: frames received -> typed Trade at the consumer, StreamClient vs naive.

A server in another process (picows) answers the first ``subscribe`` of each connection with
``subscribed`` and then pushes N pre-encoded sim trade frames (docs/protocol.md) as fast as the
socket takes them. Each contender connects, subscribes and counts the trades that reach its
user code; the figure is messages/s from the first to the last trade received.

Contenders:

* ``naive``: ``websockets`` + ``json.loads`` per frame (the baseline of the issue);
* ``stream-iter``: ``StreamClient.trades()`` consumed with ``async for`` (typed, exact Decimals,
  dedupe/continuity on);
* ``stream-callback``: ``StreamClient.subscribe_trades(handler=...)`` with a sync handler.

Run: ``.venv/bin/python bench/stream_quick.py [--n 200000] [--rounds 3]``. Alternate rounds and
compare medians: the shared machine varies by 30-50% between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from typing import Any

N_DEFAULT = 200_000


# ----------------------------------------------------------------------------------- server


def _frames(n: int) -> list[bytes]:
    prices = [f"{100 + (i % 50) / 100:.2f}" for i in range(50)]
    sizes = [f"{(i % 7 + 1) / 1000:.4f}" for i in range(7)]
    return [
        (
            f'{{"type":"trade","symbol":"BTC-USD","id":{i},"price":"{prices[i % 50]}",'
            f'"size":"{sizes[i % 7]}","side":"{"buy" if i % 2 else "sell"}",'
            f'"ts":{1_700_000_000_000_000_000 + i}}}'
        ).encode()
        for i in range(1, n + 1)
    ]


def _serve(port_queue: Any, n: int) -> None:
    import logging

    import picows

    # The push loop fills the socket on purpose; picows warns at each high-water mark.
    logging.getLogger("picows").setLevel(logging.ERROR)

    frames = _frames(n)

    class Listener(picows.WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = False

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != picows.WSMsgType.TEXT or self.started:
                return
            message = json.loads(frame.get_payload_as_bytes())
            if message.get("op") != "subscribe":
                return
            self.started = True
            answer = {"type": "subscribed", "channel": "trades", "symbols": ["BTC-USD"]}
            if "id" in message:
                answer["id"] = message["id"]
            transport.send(picows.WSMsgType.TEXT, json.dumps(answer).encode())
            asyncio.get_running_loop().create_task(self.push(transport))

        async def push(self, transport: Any) -> None:
            raw = transport.underlying_transport
            for start in range(0, len(frames), 500):
                for payload in frames[start : start + 500]:
                    transport.send(picows.WSMsgType.TEXT, payload)
                while raw.get_write_buffer_size() > 1 << 20:
                    await asyncio.sleep(0.0005)
                    if transport.is_disconnected:
                        return

    async def main() -> None:
        server = await picows.ws_create_server(lambda request: Listener(), "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.Future()

    asyncio.run(main())


# ----------------------------------------------------------------------------------- clients


async def run_naive(url: str, n: int) -> tuple[float, float]:
    import websockets

    async with websockets.connect(url, max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": "trades", "symbols": ["BTC-USD"]}))
        await ws.recv()  # subscribed
        count = 0
        first = 0.0
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "trade":
                count += 1
                if count == 1:
                    first, cpu = time.perf_counter(), time.process_time()
                if count == n:
                    break
        return _result(n, first, cpu)


def _result(n: int, first: float, cpu: float) -> tuple[float, float]:
    """(messages/s wall clock, client CPU microseconds per message)."""
    return (
        (n - 1) / (time.perf_counter() - first),
        (time.process_time() - cpu) / (n - 1) * 1e6,
    )


async def run_stream_iter(url: str, n: int) -> tuple[float, float]:
    from tickloop import StreamClient

    async with StreamClient("sim", url=url, backfill=False, buffer_size=1_000_000) as feed:
        count = 0
        first = 0.0
        async for _trade in feed.trades("BTC-USD"):
            count += 1
            if count == 1:
                first, cpu = time.perf_counter(), time.process_time()
            if count == n:
                break
        return _result(n, first, cpu)


async def run_stream_callback(url: str, n: int) -> tuple[float, float]:
    from tickloop import StreamClient
    from tickloop.models import Trade

    done = asyncio.Event()
    state = {"count": 0, "first": 0.0, "cpu": 0.0}
    result: list[tuple[float, float]] = []

    def on_trade(trade: Trade) -> None:
        count = state["count"] = state["count"] + 1
        if count == 1:
            state["first"], state["cpu"] = time.perf_counter(), time.process_time()
        elif count == n:
            result.append(_result(n, state["first"], state["cpu"]))
            done.set()

    async with StreamClient("sim", url=url, backfill=False) as feed:
        await feed.subscribe_trades("BTC-USD", handler=on_trade)
        await done.wait()
    return result[0]


CONTENDERS = {
    "naive": run_naive,
    "stream-iter": run_stream_iter,
    "stream-callback": run_stream_callback,
}


def _client(name: str, url: str, n: int, out: Any) -> None:
    out.put(asyncio.run(CONTENDERS[name](url, n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=N_DEFAULT, help="trade frames per run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    server = ctx.Process(target=_serve, args=(ports, args.n), daemon=True)
    server.start()
    url = f"ws://127.0.0.1:{ports.get(timeout=30)}/ws"
    results: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    cpu: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    try:
        for _ in range(args.rounds):
            for name in CONTENDERS:  # alternate contenders within each round
                out: Any = ctx.Queue()
                client = ctx.Process(target=_client, args=(name, url, args.n, out))
                client.start()
                rate, cpu_us = out.get(timeout=300)
                results[name].append(rate)
                cpu[name].append(cpu_us)
                client.join()
    finally:
        server.terminate()
        server.join()
    base = statistics.median(results["naive"])
    base_cpu = statistics.median(cpu["naive"])
    print(f"{args.n} trade frames, {args.rounds} rounds, server and client in separate processes")
    print(
        f"{'contender':<16} {'median msgs/s':>14} {'vs naive':>9} "
        f"{'client CPU/msg':>15} {'vs naive':>9}   runs"
    )
    for name, runs in results.items():
        median = statistics.median(runs)
        cpu_median = statistics.median(cpu[name])
        shown = ", ".join(f"{r / 1000:.0f}k" for r in runs)
        print(
            f"{name:<16} {median:>14,.0f} {median / base:>8.2f}x "
            f"{cpu_median:>12.2f} us {base_cpu / cpu_median:>8.2f}x   {shown}"
        )


if __name__ == "__main__":
    main()
