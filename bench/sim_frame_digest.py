"""A digest of every frame the embedded exchange sends for a fixed seed, to compare two trees.

Runs the sim's send path with no socket (as ``bench_sim_cpu.py`` does) on a fake clock: the
flow steps round-robin over the symbols, a user account places, amends and cancels orders
through the engine now and then (as the REST handlers do), and the housekeeping publishes
tickers and closes candles. One connection subscribes to the public channels of every symbol
(``trades``, ``book``, ``ticker``, ``candles`` of every interval) and, with ``--private``, a
second one to the ``orders`` and ``fills`` streams of the user, a maker and a taker of the flow.
It prints the SHA-256 of each connection's frames in order, and the frame counts, and that of
what the REST queries would answer at the end (``state``: orders, fills, balances, positions,
books, trades, candles). The public
digest must be the same with and without ``--private`` (nobody's private subscription changes
what the others receive), and every digest the same on two trees whose wire output is meant to
be identical.

Run: ``.venv/bin/python bench/sim_frame_digest.py [--steps 400] [--private]``; for another
tree, point ``PYTHONPATH`` at its ``src``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import tickloop
from tickloop.models import OrderType, Side, TimeInForce
from tickloop.sim import SimExchange

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
INTERVALS = ("1s", "1m", "5m", "15m", "1h", "1d")
PRIVATE = ("me", "mm-0", "taker-1")
START_NS = 1_790_000_000_000_000_000
STEP_NS = 7_000_000  # 7 ms a flow step: a 1 s candle closes every ~143 steps


class Sink:
    """What ``Hub.send`` needs of a connection; every frame is kept."""

    def __init__(self) -> None:
        self.closed = False
        self.buf: deque[tuple[float, Any, bytes]] = deque()
        self.wake = asyncio.Event()
        self.subs: set[tuple[str, str, str | None]] = set()
        self.last_activity = 0.0


class Clock:
    """``time.time_ns`` and ``time.monotonic`` of the sim, moved by hand."""

    def __init__(self) -> None:
        self.ns = START_NS

    def time_ns(self) -> int:
        return self.ns

    def monotonic(self) -> float:
        return self.ns / 1e9


@contextmanager
def fake_time(clock: Clock) -> Iterator[None]:
    saved = time.time_ns, time.monotonic
    time.time_ns, time.monotonic = clock.time_ns, clock.monotonic  # type: ignore[assignment]
    try:
        yield
    finally:
        time.time_ns, time.monotonic = saved  # type: ignore[assignment]


def run(seed: int, steps: int, private: bool) -> dict[str, list[bytes]]:
    """Frames per connection (``public``, and ``private`` when asked) of one fixed run."""
    clock = Clock()
    with fake_time(clock):
        ex = SimExchange(seed=seed, symbols=list(SYMBOLS), rate=0, heartbeat=1e9)
        hub, engine = ex._hub, ex.engine
        engine.open_account(
            "me",
            {
                "USD": Decimal(10**9),
                "BTC": Decimal(1000),
                "ETH": Decimal(10**4),
                "SOL": Decimal(10**5),
            },
        )
        public, secret = Sink(), Sink()
        for symbol in SYMBOLS:
            for channel in ("trades", "book", "ticker"):
                hub.subscribe(public, (channel, symbol, None))  # type: ignore[arg-type]
            for interval in INTERVALS:
                hub.subscribe(public, ("candles", symbol, interval))  # type: ignore[arg-type]
        if private:
            for account in PRIVATE:
                for channel in ("orders", "fills"):
                    hub.subscribe(secret, (channel, account, None))  # type: ignore[arg-type]
        out: dict[str, list[bytes]] = {"public": [], "private": []}
        next_drop = 0.0
        resting: list[str] = []
        for i in range(steps):
            clock.ns += STEP_NS
            ts = clock.ns
            for symbol in SYMBOLS:
                hub.step(symbol, ts)
            if i % 5 == 0:
                user_action(ex, i, ts, resting)
            if i % 3 == 0:
                next_drop = hub._housekeep(next_drop)
            for name, sink in (("public", public), ("private", secret)):
                out[name].extend(payload for _, _, payload in sink.buf)
                sink.buf.clear()
        out["state"] = state(ex)
    return out


def state(ex: SimExchange) -> list[bytes]:
    """What the REST queries would answer at the end: every account's orders (closed ones
    too), fills, balances and positions, and each symbol's book, trades and candles."""
    engine = ex.engine
    rows: list[object] = []
    for account in engine.accounts():
        rows += [account, engine.orders(account, open_only=False), engine.fills(account)]
        rows += [engine.balances(account), engine.positions(account)]
    for symbol in SYMBOLS:
        rows += [engine.depth(symbol), engine.seq(symbol), engine.trades(symbol)]
        rows += [ex._hub.candles.candles(symbol, interval) for interval in INTERVALS]
    return [repr(row).encode() for row in rows]


def user_action(ex: SimExchange, i: int, ts: int, resting: list[str]) -> None:
    """What the REST handlers would do for a user: place (resting, crossing, market, IOC),
    amend or cancel, the events published at once."""
    engine, hub = ex.engine, ex._hub
    symbol = SYMBOLS[i // 5 % len(SYMBOLS)]
    spec = engine.markets[symbol]
    bid, ask = engine.best(symbol)
    assert bid is not None and ask is not None
    kind = i // 5 % 6
    lots = spec.min_size_lots * (1 + i % 7)
    if kind == 0:
        order, events = engine.place("me", symbol, Side.BUY, OrderType.LIMIT, lots, bid - 3, ts=ts)
        resting.append(order.id)
    elif kind == 1:
        _, events = engine.place("me", symbol, Side.SELL, OrderType.LIMIT, lots, bid, ts=ts)
    elif kind == 2:
        _, events = engine.place("me", symbol, Side.BUY, OrderType.MARKET, lots, ts=ts)
    elif kind == 3:
        _, events = engine.place(
            "me", symbol, Side.SELL, OrderType.LIMIT, lots, ask + 2, ts=ts, client_order_id=f"c{i}"
        )
    elif kind == 4:
        _, events = engine.place(
            "me",
            symbol,
            Side.SELL,
            OrderType.LIMIT,
            3 * lots,
            bid,
            time_in_force=TimeInForce.IOC,
            ts=ts,
        )
    else:
        open_ids = [oid for oid in resting if engine.order_is_open("me", oid)]
        resting[:] = open_ids
        if not open_ids:
            return
        oid = open_ids[0]
        order = engine.order("me", oid)
        assert order is not None
        if order.size - order.filled > 1 and i % 2:
            _, events = engine.amend("me", oid, order.size - 1, ts=ts)
        else:
            _, events = engine.cancel("me", oid, ts=ts)
    hub.publish(events)


def digest(frames: list[bytes]) -> str:
    h = hashlib.sha256()
    for frame in frames:
        h.update(len(frame).to_bytes(4, "big"))
        h.update(frame)
    return h.hexdigest()


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # The hub publishes the tickers of a set of symbols: fix the string hashes, hence the
        # order, so that two processes compare.
        os.execve(
            sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"}
        )
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--steps", type=int, default=400, help="flow steps per symbol")
    ap.add_argument("--private", action="store_true", help="also subscribe to private streams")
    args = ap.parse_args()
    out = run(args.seed, args.steps, args.private)
    print(f"tickloop from {tickloop.__file__}")
    for name, frames in out.items():
        if name == "private" and not args.private:
            continue
        if name == "state":
            print(f"state: {len(frames)} rows sha256 {digest(frames)}")
            continue
        kinds: dict[str, int] = {}
        for frame in frames:
            kind = frame[9 : frame.index(b'"', 9)].decode()
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"{name}: {len(frames)} frames {kinds} sha256 {digest(frames)}")


if __name__ == "__main__":
    main()
