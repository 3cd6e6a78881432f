"""What the sim sends for a seed is fixed, and nobody's private subscription changes it.

The engine reports order events only for the accounts someone subscribed to privately
(``Engine.order_listeners``, kept by the hub), and the flow makes its decisions without them.
These tests run the sim's send path (flow steps, a user's orders through the engine as the
REST handlers place them, the housekeeping's tickers and candles) on a fixed clock and compare
every frame: public ones with and without private subscribers, private ones with the hub's
filter and with the engine reporting every account, and both against digests pinned from the
tree before the filter existed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

import tickloop.sim.exchange
import tickloop.sim.feed
from tickloop.models import OrderType, Side, TimeInForce
from tickloop.sim import SimExchange
from tickloop.sim.engine import EngineEvent

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
INTERVALS = ("1s", "1m", "5m", "15m", "1h", "1d")
START_NS = 1_790_000_000_000_000_000
STEP_NS = 7_000_000  # a flow step every 7 ms of the fake clock: a 1s candle closes every ~143
STEPS = 300

# sha256 of run()'s frames, made by this harness on the tree before order_listeners (main at
# 9865853): the book updates and trades of every symbol, and the private streams. (The public
# frames are not pinned: the tickers of one housekeeping come in the order of a set of
# strings, which changes with the process's hash seed.)
PINNED_MARKET = "de5eff05e88ec26fb0e3fca6930a9bd116e07e0dc2b748e4435e3e43de823803"
PINNED_PRIVATE = "47536d9063f582c8bf286db70e47c0a6007087305b9c7396b5962df42d6698f5"


class Sink:
    """What the hub needs of a connection; every frame is kept."""

    def __init__(self) -> None:
        self.closed = False
        self.buf: deque[tuple[float, Any, bytes]] = deque()
        self.wake = asyncio.Event()
        self.subs: set[tuple[str, str, str | None]] = set()
        self.last_activity = 0.0
        self.frames: list[bytes] = []

    def drain(self) -> None:
        self.frames.extend(payload for _, _, payload in self.buf)
        self.buf.clear()


def user_action(ex: SimExchange, i: int, ts: int, resting: list[str]) -> list[EngineEvent]:
    """A user's place (resting, crossing, market, IOC), amend or cancel, in turn."""
    engine = ex.engine
    symbol = SYMBOLS[i // 5 % len(SYMBOLS)]
    lots = engine.markets[symbol].min_size_lots * (1 + i % 7)
    bid, ask = engine.best(symbol)
    assert bid is not None and ask is not None
    kind = i // 5 % 6
    limit = OrderType.LIMIT
    if kind == 0:
        order, events = engine.place("me", symbol, Side.BUY, limit, lots, bid - 3, ts=ts)
        resting.append(order.id)
    elif kind == 1:
        _, events = engine.place("me", symbol, Side.SELL, limit, lots, bid, ts=ts)
    elif kind == 2:
        _, events = engine.place("me", symbol, Side.BUY, OrderType.MARKET, lots, ts=ts)
    elif kind == 3:
        cid = f"c{i}"
        _, events = engine.place(
            "me", symbol, Side.SELL, limit, lots, ask + 2, client_order_id=cid, ts=ts
        )
    elif kind == 4:
        ioc = TimeInForce.IOC
        _, events = engine.place(
            "me", symbol, Side.SELL, limit, 3 * lots, bid, time_in_force=ioc, ts=ts
        )
    else:
        resting[:] = [oid for oid in resting if engine.order_is_open("me", oid)]
        if not resting:
            return []
        order = engine.order("me", resting[0])
        assert order is not None
        if order.size - order.filled > 1 and i % 2:
            _, events = engine.amend("me", order.id, order.size - 1, ts=ts)
        else:
            _, events = engine.cancel("me", order.id, ts=ts)
    return events


def run(monkeypatch: pytest.MonkeyPatch, *, private: bool, report_all: bool = False) -> Any:
    """Frames of one fixed run: ``market`` (book updates and trades), ``public`` (those, the
    tickers and candles), ``private`` (orders and fills of a user and two flow accounts, the
    maker's only for a while, its fills a while longer), and ``state`` (what the queries
    answer at the end). ``report_all``: the engine reports every account's order events."""
    clock = SimpleNamespace(ns=START_NS)
    fake = SimpleNamespace(time_ns=lambda: clock.ns, monotonic=lambda: clock.ns / 1e9)
    monkeypatch.setattr(tickloop.sim.exchange, "time", fake)
    monkeypatch.setattr(tickloop.sim.feed, "time", fake)
    ex = SimExchange(seed=11, symbols=list(SYMBOLS), rate=0, heartbeat=1e9)
    hub, engine = ex._hub, ex.engine
    if report_all:
        engine.order_listeners = None
    funds = {"USD": 10**9, "BTC": 1000, "ETH": 10**4, "SOL": 10**5}
    engine.open_account("me", {asset: Decimal(n) for asset, n in funds.items()})
    market, public, secret = Sink(), Sink(), Sink()
    for symbol in SYMBOLS:
        for channel in ("trades", "book"):
            hub.subscribe(market, (channel, symbol, None))  # type: ignore[arg-type]
            hub.subscribe(public, (channel, symbol, None))  # type: ignore[arg-type]
        hub.subscribe(public, ("ticker", symbol, None))  # type: ignore[arg-type]
        for interval in INTERVALS:
            hub.subscribe(public, ("candles", symbol, interval))  # type: ignore[arg-type]
    if private:
        for key in (("orders", "me"), ("fills", "me"), ("fills", "taker-1")):
            hub.subscribe(secret, (*key, None))  # type: ignore[arg-type]
    next_drop = 0.0
    resting: list[str] = []
    for i in range(STEPS):
        if private and i == 60:
            hub.subscribe(secret, ("orders", "mm-0", None))  # type: ignore[arg-type]
            hub.subscribe(secret, ("fills", "mm-0", None))  # type: ignore[arg-type]
        if private and i == 150:
            hub.unsubscribe(secret, ("orders", "mm-0", None))  # type: ignore[arg-type]
        if private and i == 220:
            hub.unsubscribe(secret, ("fills", "mm-0", None))  # type: ignore[arg-type]
        clock.ns += STEP_NS
        for symbol in SYMBOLS:
            hub.step(symbol, clock.ns)
        if i % 5 == 0:
            hub.publish(user_action(ex, i, clock.ns, resting))
        if i % 3 == 0:
            next_drop = hub._housekeep(next_drop)
        for sink in (market, public, secret):
            sink.drain()
    assert ex.stats.flow_errors == 0
    state = []
    for account in engine.accounts():
        state += [account, engine.orders(account, open_only=False), engine.fills(account)]
        state += [engine.balances(account), engine.positions(account)]
    for symbol in SYMBOLS:
        state += [engine.depth(symbol), engine.seq(symbol), engine.trades(symbol)]
        state += [hub.candles.candles(symbol, interval) for interval in INTERVALS]
    return SimpleNamespace(
        market=market.frames, public=public.frames, private=secret.frames, state=repr(state)
    )


def digest(frames: list[bytes]) -> str:
    h = hashlib.sha256()
    for frame in frames:
        h.update(len(frame).to_bytes(4, "big") + frame)
    return h.hexdigest()


def test_private_subscribers_change_no_public_frame_and_no_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quiet = run(monkeypatch, private=False)
    heard = run(monkeypatch, private=True)
    assert len(quiet.public) > 1000 and len(heard.private) > 200
    kinds = {frame.split(b'"')[3] for frame in quiet.public}
    assert kinds == {b"trade", b"book_update", b"ticker", b"candle"}
    assert heard.public == quiet.public
    assert heard.market == quiet.market
    assert heard.state == quiet.state


def test_private_frames_are_those_of_an_engine_reporting_every_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    filtered = run(monkeypatch, private=True)
    everything = run(monkeypatch, private=True, report_all=True)
    kinds = {frame.split(b'"')[3] for frame in filtered.private}
    assert kinds == {b"order", b"fill"}
    assert filtered.private == everything.private
    assert filtered.public == everything.public
    assert filtered.state == everything.state


def test_frames_match_the_digests_pinned_before_the_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heard = run(monkeypatch, private=True)
    assert digest(heard.market) == PINNED_MARKET
    assert digest(heard.private) == PINNED_PRIVATE
