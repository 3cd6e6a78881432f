"""Processes the multi-process Redis bus tests start: ``python redis_proc.py ROLE ...``.

``consume``: one consumer of a group; every handled event is appended as one line
``source id topic payload-id`` to ``--out`` with one unbuffered write before the handler returns
(so before its acknowledgement; a SIGKILL loses no line the kernel took). ``--hang-after K``
makes the handler of the K+1th event never return (the test kills the process there).
``--expect N`` exits once the file holds N distinct events; SIGTERM closes the bus and exits.
Prints ``ready`` once reading.

``feed``: a StreamClient on the sim at ``--ws`` attached to the bus (``bus.attach``), publishing
the trades of ``--symbol`` until SIGTERM; then prints ``published N``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from tickloop.bus import Bus, Event
from tickloop.bus.redis import RedisBus


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


def _line(ev: Event) -> bytes:
    payload: Any = ev.payload
    if ev.type == "trade":
        fields = f"{payload.id} {payload.price} {payload.size} {payload.side} {payload.ts}"
    else:
        fields = str(getattr(payload, "id", ""))
    return f"{ev.source} {ev.id} {ev.topic} {fields}\n".encode()


def _already(path: str) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                source, ident = line.split()[:2]
                seen.add((source.decode(), ident.decode()))
    return seen


async def consume(args: argparse.Namespace) -> None:
    stop = _stop_on_sigterm()
    seen = _already(args.out)  # what a previous run of this consumer handled
    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    handled = 0
    hang = asyncio.Event()

    async def handler(ev: Event) -> None:
        nonlocal handled
        if args.hang_after is not None and handled >= args.hang_after:
            await hang.wait()  # never set: the test kills this process here
        os.write(fd, _line(ev))
        handled += 1
        seen.add((ev.source, str(ev.id)))
        if args.expect is not None and len(seen) >= args.expect:
            stop.set()

    bus = Bus(args.url, name=args.name, claim_idle=args.claim_idle, read_count=args.read_count)
    assert isinstance(bus, RedisBus)
    async with bus:
        bus.subscribe(args.pattern, group=args.group, handler=handler, maxsize=args.maxsize)
        await bus.ready()
        print("ready", flush=True)
        if args.expect is not None and len(seen) >= args.expect:
            stop.set()
        await stop.wait()
    os.close(fd)


async def feed(args: argparse.Namespace) -> None:
    from tickloop.client.stream import StreamClient

    stop = _stop_on_sigterm()
    async with Bus(args.url, name="feed") as bus:
        async with StreamClient("sim", url=args.ws) as client:
            await bus.attach(client, trades=args.symbol, status=False)
            print("ready", flush=True)
            await stop.wait()
        # The client is closed: no trade is published after this count is taken.
        published = bus.published
        assert isinstance(bus, RedisBus)
        await bus.flush(within=10)
    print(f"published {published}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    c = sub.add_parser("consume")
    c.add_argument("--url", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--pattern", default="trade.*")
    c.add_argument("--claim-idle", type=float, default=0.5)
    c.add_argument("--read-count", type=int, default=100)
    c.add_argument("--maxsize", type=int, default=200)
    c.add_argument("--hang-after", type=int, default=None)
    c.add_argument("--expect", type=int, default=None)
    f = sub.add_parser("feed")
    f.add_argument("--url", required=True)
    f.add_argument("--ws", required=True)
    f.add_argument("--symbol", required=True)
    args = parser.parse_args()
    asyncio.run(consume(args) if args.role == "consume" else feed(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
