"""The exchange's live side: synthetic flow driving, and fan-out of its events to WebSockets.

:class:`Hub` owns every client WebSocket connection, their subscriptions, and the two background
tasks of a running exchange: the *flow* task (calls ``Flow.step`` ``rate`` times a second per
symbol) and the *housekeeping* task (tickers, candle closes, heartbeats, periodic drops). Both
are started by :meth:`Hub.start` and cancelled and awaited by :meth:`Hub.stop`.

Invariants:

* Every engine call's events go through :meth:`Hub.publish` synchronously, before the next
  engine call, so a book checksum computed there describes the book right after that update,
  and a snapshot queued on subscribe is followed by exactly the updates after it.
* A broadcast message is encoded once (msgspec) and the same bytes are queued to every
  subscriber. Each connection has a bounded buffer drained by its own writer task; a client
  whose buffer fills is disconnected and counted (``stats.slow_disconnects``), so a slow client
  never holds up the flow or the other clients.
* Nothing is sent while a stall fault is active: frames due meanwhile are dropped (and counted).
* The engine returns the order events of the accounts with an ``orders`` or ``fills``
  subscriber only (``Engine.order_listeners`` is the hub's live set of them): the others'
  would be dropped here unread.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from ..checksums import decimal_text, sim_checksum
from ..models import Candle, Order
from .candles import CandleAggregator
from .engine import BookUpdate, Engine, EngineEvent, FillRecord, MarketSpec, OrderUpdate, TradeEvent
from .faults import Faults, hostile_frame
from .flow import Flow

__all__ = [
    "INTERVALS",
    "Connection",
    "ExchangeStats",
    "Hub",
    "book_json",
    "candle_json",
    "fill_json",
    "order_json",
    "ticker_json",
    "trade_json",
]

log = logging.getLogger(__name__)

INTERVALS = ("1s", "1m", "5m", "15m", "1h", "1d")

#: Frames a connection may have queued before it counts as too slow and is disconnected.
SEND_BUFFER = 10_000
#: Flow steps (per symbol) run back to back before the flow task yields to the writers.
FLOW_BATCH = 64

_encode = msgspec.json.Encoder().encode

SubKey = tuple[str, str, str | None]  # (channel, symbol or account, interval)
#: The channels of an account's own events (the engine's OrderUpdates).
_PRIVATE = ("orders", "fills")


@dataclass
class ExchangeStats:
    """Counters of one running exchange (monotonic, never reset)."""

    logins: int = 0  # tokens issued + signed WebSocket logins
    tokens_issued: int = 0
    ws_logins: int = 0  # every successful WebSocket login (token or signed)
    connections: int = 0  # WebSocket connections accepted
    disconnects: int = 0  # WebSocket connections ended, for any reason
    dropped_by_fault: int = 0
    slow_disconnects: int = 0  # clients dropped because their send buffer filled
    frames_sent: int = 0
    frames_dropped_stalled: int = 0
    malformed_sent: int = 0  # truncated frames (malformed fault), counted once per broadcast
    hostile_sent: int = 0  # frames with a hostile value (hostile fault), once per broadcast
    book_updates: int = 0  # engine book updates (each is one frame to each book subscriber)
    trades: int = 0
    flow_steps: int = 0
    flow_errors: int = 0
    ws_errors: int = 0  # error messages answered to bad WebSocket requests
    rest_requests: int = 0
    rest_errors: int = 0  # 4xx/5xx answers, including injected faults
    rejected_auth: int = 0  # 401 answers and failed WebSocket logins
    rate_limited: int = 0  # 429 answers (real and injected)
    dropped_responses: int = 0

    @property
    def open_connections(self) -> int:
        return self.connections - self.disconnects


# ------------------------------------------------------------------------------ wire encoding


def levels_json(spec: MarketSpec, levels: Iterable[tuple[int, int]]) -> list[list[str]]:
    pt, st = spec.price_text, spec.size_text
    return [[pt(p), st(s)] for p, s in levels]


def checksum_of(
    spec: MarketSpec, bids: Sequence[tuple[int, int]], asks: Sequence[tuple[int, int]]
) -> int:
    pt, st = spec.price_text, spec.size_text
    return sim_checksum(
        [(pt(p), st(s)) for p, s in bids[:10]], [(pt(p), st(s)) for p, s in asks[:10]]
    )


def book_json(engine: Engine, symbol: str, depth: int | None, ts: int) -> dict[str, Any]:
    spec = engine.markets[symbol]
    bids, asks = engine.depth(symbol, depth)
    if depth is not None and depth < 10:
        top_bids, top_asks = engine.depth(symbol, 10)
    else:
        top_bids, top_asks = bids, asks
    return {
        "symbol": symbol,
        "seq": engine.seq(symbol),
        "bids": levels_json(spec, bids),
        "asks": levels_json(spec, asks),
        "checksum": checksum_of(spec, top_bids, top_asks),
        "ts": ts,
    }


def trade_json(spec: MarketSpec, ev: TradeEvent) -> dict[str, Any]:
    return {
        "id": ev.trade_id,
        "symbol": ev.symbol,
        "price": spec.price_text(ev.price),
        "size": spec.size_text(ev.size),
        "side": str(ev.taker_side),
        "ts": ev.ts,
    }


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def order_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": str(order.side),
        "type": str(order.type),
        "price": _dec(order.price),
        "size": decimal_text(order.size),
        "filled_size": decimal_text(order.filled_size),
        "avg_price": _dec(order.avg_price),
        "status": str(order.status),
        "time_in_force": str(order.time_in_force),
        "post_only": order.post_only,
        "reject_reason": order.reject_reason,
        "created_ts": order.created_ts,
        "updated_ts": order.updated_ts,
    }


def fill_json(spec: MarketSpec, fill: FillRecord) -> dict[str, Any]:
    return {
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "trade_id": fill.trade_id,
        "symbol": fill.symbol,
        "side": str(fill.side),
        "price": spec.price_text(fill.price),
        "size": spec.size_text(fill.size),
        "fee": decimal_text(fill.fee),
        "fee_asset": fill.fee_asset,
        "liquidity": str(fill.liquidity),
        "ts": fill.ts,
    }


def candle_json(candle: Candle) -> dict[str, Any]:
    return {
        "symbol": candle.symbol,
        "interval": candle.interval,
        "open_time": candle.open_time,
        "close_time": candle.close_time,
        "open": decimal_text(candle.open),
        "high": decimal_text(candle.high),
        "low": decimal_text(candle.low),
        "close": decimal_text(candle.close),
        "volume": decimal_text(candle.volume),
        "trades": candle.trades,
        "closed": candle.closed,
    }


def ticker_json(engine: Engine, symbol: str, volume_lots: int, ts: int) -> dict[str, Any]:
    spec = engine.markets[symbol]
    bids, asks = engine.depth(symbol, 1)
    last = engine.last_price(symbol)
    return {
        "symbol": symbol,
        "bid": spec.price_text(bids[0][0]) if bids else None,
        "bid_size": spec.size_text(bids[0][1]) if bids else None,
        "ask": spec.price_text(asks[0][0]) if asks else None,
        "ask_size": spec.size_text(asks[0][1]) if asks else None,
        "last": spec.price_text(last) if last is not None else None,
        "volume": spec.size_text(volume_lots),
        "ts": ts,
    }


class _Mirror:
    """A copy of one symbol's book kept from the engine's BookUpdates, for per-update checksums.

    One flow step may make several engine calls (a requote cancels and places), each with its
    own BookUpdate; the engine's book is only visible after the last of them. The checksum of
    each update must describe the book right after *that* update, so it is taken from this
    mirror, which applies the updates one by one.
    """

    __slots__ = ("ask_keys", "ask_text", "bid_keys", "bid_text", "spec")

    def __init__(
        self, spec: MarketSpec, bids: Sequence[tuple[int, int]], asks: Sequence[tuple[int, int]]
    ) -> None:
        self.spec = spec
        # Levels by book key (minus the price for bids, the price for asks: ascending keys
        # are best first), each as its "price:size" text: an update changes one or two levels,
        # and the checksum reads twenty texts.
        self.bid_text = {-p: f"{spec.price_text(p)}:{spec.size_text(q)}" for p, q in bids}
        self.ask_text = {p: f"{spec.price_text(p)}:{spec.size_text(q)}" for p, q in asks}
        self.bid_keys = sorted(self.bid_text)
        self.ask_keys = sorted(self.ask_text)

    def apply(self, update: BookUpdate) -> tuple[list[list[str]], list[list[str]]]:
        """Apply one update; returns its bids and asks as the protocol's ``[price, size]``
        texts (made here once, for the message and for the level's own text)."""
        bid_text, bid_keys, ask_text, ask_keys = (
            self.bid_text,
            self.bid_keys,
            self.ask_text,
            self.ask_keys,
        )
        return (
            [self._set(bid_text, bid_keys, p, -p, lots) for p, lots in update.bids],
            [self._set(ask_text, ask_keys, p, p, lots) for p, lots in update.asks],
        )

    def _set(
        self, texts: dict[int, str], keys: list[int], price: int, key: int, lots: int
    ) -> list[str]:
        spec = self.spec
        pt, st = spec.price_text(price), spec.size_text(lots)
        if lots:
            if key not in texts:
                bisect.insort(keys, key)
            texts[key] = f"{pt}:{st}"
        elif texts.pop(key, None) is not None:
            del keys[bisect.bisect_left(keys, key)]
        return [pt, st]

    def checksum(self) -> int:
        """The protocol's checksum (see checksums.sim_checksum): the top ten levels of each
        side, interleaved best first (bid, ask, bid, ...), then the longer side's rest."""
        bids = list(map(self.bid_text.__getitem__, self.bid_keys[:10]))
        asks = list(map(self.ask_text.__getitem__, self.ask_keys[:10]))
        n = len(bids)
        if n == len(asks):
            parts = bids + asks
            parts[::2], parts[1::2] = bids, asks
        else:
            parts = [text for pair in zip(bids, asks, strict=False) for text in pair]
            n = min(n, len(asks))
            parts += bids[n:] or asks[n:]
        return zlib.crc32(":".join(parts).encode())


# ------------------------------------------------------------------------------ connections


class Connection:
    """One client WebSocket: its subscriptions, login and bounded send buffer."""

    __slots__ = (
        "account",
        "buf",
        "closed",
        "done",
        "id",
        "last_activity",
        "remote",
        "subs",
        "transport",
        "wake",
        "ws",
    )

    def __init__(self, conn_id: int, ws: web.WebSocketResponse, request: web.Request, now: float):
        self.id = conn_id
        self.ws = ws
        self.transport = request.transport
        self.remote = request.remote
        self.buf: deque[tuple[float, WSMsgType, bytes]] = deque()
        self.wake = asyncio.Event()
        self.subs: set[SubKey] = set()
        self.account: str | None = None
        self.closed = False
        self.done = asyncio.Event()
        self.last_activity = now

    def __repr__(self) -> str:
        return f"Connection(id={self.id}, remote={self.remote!r}, subs={len(self.subs)})"

    def abort(self) -> None:
        """Close the TCP connection at once, without a close handshake."""
        self.closed = True
        self.wake.set()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class Hub:
    """Connections, subscriptions, fan-out, and the flow and housekeeping tasks."""

    def __init__(
        self,
        engine: Engine,
        flow: Flow,
        faults: Faults,
        stats: ExchangeStats,
        *,
        symbols: Sequence[str],
        rate: float,
        heartbeat: float,
        candles: CandleAggregator,
    ) -> None:
        self.engine = engine
        self.flow = flow
        self.faults = faults
        self.stats = stats
        self.symbols = tuple(symbols)
        self.rate = rate
        self.heartbeat = heartbeat
        self.candles = candles
        self.paused = False
        self.volume: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._ticker_dirty: set[str] = set()
        self._mirrors = {
            symbol: _Mirror(engine.markets[symbol], *engine.depth(symbol))
            for symbol in engine.markets
        }
        self._subs: dict[SubKey, set[Connection]] = {}
        # accounts with an "orders" or "fills" subscriber: the engine reports only theirs
        self._private: set[str] = set()
        engine.order_listeners = self._private
        self._conns: dict[int, Connection] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run_flow(), name="tickloop-sim-flow"),
            asyncio.create_task(self._housekeeping(), name="tickloop-sim-housekeeping"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def close_all(self) -> None:
        """Close every connection with a close frame (1001, going away), then wait for them."""
        conns = list(self._conns.values())

        async def close(conn: Connection) -> None:
            conn.closed = True
            conn.wake.set()
            try:
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"exchange stopping"), 1.0)
            except (TimeoutError, ConnectionError, RuntimeError):
                conn.abort()  # the client did not answer the close: cut it

        await asyncio.gather(*(close(conn) for conn in conns))
        await self._wait_done(conns)

    async def disconnect_all(self) -> int:
        conns = list(self._conns.values())
        for conn in conns:
            self._drop(conn)
        await self._wait_done(conns)
        return len(conns)

    async def _wait_done(self, conns: Sequence[Connection]) -> None:
        if conns:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in conns)), 5.0)

    def _drop(self, conn: Connection) -> None:
        self.stats.dropped_by_fault += 1
        conn.abort()
        self.forget(conn)

    @property
    def now(self) -> float:
        """The monotonic clock shared with the faults' deadlines."""
        return time.monotonic()

    # -- connections -----------------------------------------------------------------------
    def connect(self, ws: web.WebSocketResponse, request: web.Request) -> Connection:
        self._next_id += 1
        conn = Connection(self._next_id, ws, request, self.now)
        self._conns[conn.id] = conn
        self.stats.connections += 1
        return conn

    def forget(self, conn: Connection) -> None:
        """Remove a connection from every subscription (idempotent)."""
        for key in conn.subs:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self._subs[key]
                    self._private_gone(key)
        conn.subs.clear()

    def disconnected(self, conn: Connection) -> None:
        self.forget(conn)
        conn.closed = True
        conn.wake.set()
        if self._conns.pop(conn.id, None) is not None:
            self.stats.disconnects += 1
        conn.done.set()

    @property
    def connections(self) -> list[Connection]:
        return list(self._conns.values())

    def subscribe(self, conn: Connection, key: SubKey) -> None:
        conn.subs.add(key)
        self._subs.setdefault(key, set()).add(conn)
        if key[0] in _PRIVATE:
            self._private.add(key[1])

    def unsubscribe(self, conn: Connection, key: SubKey) -> None:
        conn.subs.discard(key)
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self._subs[key]
                self._private_gone(key)

    def _private_gone(self, key: SubKey) -> None:
        """``key`` lost its last subscriber: keep ``_private`` to the accounts still heard."""
        channel, account, _ = key
        if channel in _PRIVATE and not any((c, account, None) in self._subs for c in _PRIVATE):
            self._private.discard(account)

    def has_subscribers(self, key: SubKey) -> bool:
        return key in self._subs

    # -- sending -----------------------------------------------------------------------------
    def send(self, conn: Connection, payload: bytes, opcode: WSMsgType = WSMsgType.TEXT) -> None:
        """Queue one frame to one connection (dropped during a stall; overflow disconnects)."""
        if conn.closed:
            return
        now = self.now
        if self.faults.stalled(now):
            self.stats.frames_dropped_stalled += 1
            return
        if len(conn.buf) >= SEND_BUFFER:
            log.warning("sim: disconnecting %r: it fell %d frames behind", conn, SEND_BUFFER)
            self.stats.slow_disconnects += 1
            conn.abort()
            self.forget(conn)
            return
        conn.buf.append((now + self.faults.latency_s, opcode, payload))
        conn.last_activity = now
        if len(conn.buf) == 1:
            conn.wake.set()

    def send_json(self, conn: Connection, message: Mapping[str, Any]) -> None:
        self.send(conn, _encode(message))

    def broadcast(self, key: SubKey, message: Mapping[str, Any]) -> None:
        subs = self._subs.get(key)
        if not subs:
            return
        payload = _encode(message)
        if self.faults.take_malformed():
            payload = payload[: len(payload) // 2]
            self.stats.malformed_sent += 1
        elif self.faults.hostile_left:
            kind = self.faults.take_hostile()
            if kind is not None:
                payload = hostile_frame(message, kind)
                self.stats.hostile_sent += 1
        for conn in list(subs):
            self.send(conn, payload)

    async def write_loop(self, conn: Connection) -> None:
        """Drain one connection's buffer to its socket (one task per connection)."""
        ws, buf, clock = conn.ws, conn.buf, time.monotonic
        while not conn.closed:
            if not buf:
                conn.wake.clear()
                await conn.wake.wait()
                continue
            send_at, opcode, payload = buf[0]
            now = clock()
            if send_at > now:
                await asyncio.sleep(send_at - now)
                continue
            buf.popleft()
            if self.faults.stalled(now):
                self.stats.frames_dropped_stalled += 1
                continue
            if opcode is WSMsgType.PONG:
                await ws.pong(payload)
            else:
                await ws.send_frame(payload, opcode)
            self.stats.frames_sent += 1

    # -- engine events -----------------------------------------------------------------------
    def publish(self, events: Iterable[EngineEvent]) -> None:
        """Turn one engine call's events into protocol messages for the subscribers."""
        engine = self.engine
        for ev in events:
            if isinstance(ev, BookUpdate):
                self.stats.book_updates += 1
                self._ticker_dirty.add(ev.symbol)
                mirror = self._mirrors[ev.symbol]
                bids, asks = mirror.apply(ev)
                key: SubKey = ("book", ev.symbol, None)
                if key not in self._subs:
                    continue
                self.broadcast(
                    key,
                    {
                        "type": "book_update",
                        "symbol": ev.symbol,
                        "seq": ev.seq,
                        "prev_seq": ev.prev_seq,
                        "bids": bids,
                        "asks": asks,
                        "checksum": mirror.checksum(),
                        "ts": ev.ts,
                    },
                )
            elif isinstance(ev, TradeEvent):
                self.stats.trades += 1
                spec = engine.markets[ev.symbol]
                self.volume[ev.symbol] = self.volume.get(ev.symbol, 0) + ev.size
                self._ticker_dirty.add(ev.symbol)
                key = ("trades", ev.symbol, None)
                if key in self._subs:
                    self.broadcast(key, {"type": "trade", **trade_json(spec, ev)})
                for candle in self.candles.on_trade(ev, spec, self._wants_candle):
                    self._publish_candle(candle)
            elif isinstance(ev, OrderUpdate):
                self._publish_order(ev)

    def _wants_candle(self, symbol: str, interval: str) -> bool:
        """Whether an open candle of this series would reach anyone (see ``on_trade``)."""
        return ("candles", symbol, interval) in self._subs

    def _publish_candle(self, candle: Candle) -> None:
        key: SubKey = ("candles", candle.symbol, candle.interval)
        if key in self._subs:
            self.broadcast(key, {"type": "candle", **candle_json(candle)})

    def _publish_order(self, ev: OrderUpdate) -> None:
        okey: SubKey = ("orders", ev.account, None)
        fkey: SubKey = ("fills", ev.account, None)
        if okey not in self._subs and fkey not in self._subs:
            return
        spec = self.engine.markets[ev.order.symbol]
        if okey in self._subs:
            self.broadcast(
                okey,
                {
                    "type": "order",
                    "event": str(ev.kind),
                    "order": order_json(ev.order.to_model(spec)),
                    "ts": ev.ts,
                },
            )
        if ev.fill is not None and fkey in self._subs:
            self.broadcast(fkey, {"type": "fill", **fill_json(spec, ev.fill)})

    def snapshot_message(self, symbol: str) -> dict[str, Any]:
        return {"type": "book_snapshot", **book_json(self.engine, symbol, None, time.time_ns())}

    # -- background tasks ----------------------------------------------------------------------
    async def _run_flow(self) -> None:
        loop = asyncio.get_running_loop()
        rate = self.rate
        tick = min(0.05, max(0.002, 1.0 / rate)) if rate > 0 else 0.05
        max_burst = max(1.0, rate * 0.25)
        credit = 0.0
        last = loop.time()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if self.paused or rate <= 0:
                last = now
                continue
            credit = min(credit + (now - last) * rate, max_burst)
            last = now
            steps = int(credit)
            credit -= steps
            while steps > 0:
                batch = min(steps, FLOW_BATCH)
                steps -= batch
                for _ in range(batch):
                    ts = time.time_ns()
                    for symbol in self.symbols:
                        self.step(symbol, ts)
                if steps:
                    await asyncio.sleep(0)  # let the writers drain between batches

    def step(self, symbol: str, ts: int) -> None:
        """One synthetic-flow action on ``symbol``, published. A failure is logged (the first
        few) and counted in ``stats.flow_errors``; the flow goes on."""
        try:
            events = self.flow.step(symbol, ts)
            self.stats.flow_steps += 1
            self.publish(events)
        except Exception:
            self.stats.flow_errors += 1
            if self.stats.flow_errors <= 3:
                log.exception("sim: flow step failed on %s", symbol)

    async def _housekeeping(self) -> None:
        next_drop_check = self.now + 1.0
        while True:
            await asyncio.sleep(0.1)
            try:
                next_drop_check = self._housekeep(next_drop_check)
            except Exception:
                self.stats.flow_errors += 1
                if self.stats.flow_errors <= 3:
                    log.exception("sim: housekeeping failed")

    def _housekeep(self, next_drop_check: float) -> float:
        """Tickers, candle closes, heartbeats and periodic drops; returns the next drop check."""
        now = self.now
        ts = time.time_ns()
        if self._ticker_dirty:
            dirty, self._ticker_dirty = self._ticker_dirty, set()
            for symbol in dirty:
                key: SubKey = ("ticker", symbol, None)
                if key in self._subs:
                    message = ticker_json(self.engine, symbol, self.volume[symbol], ts)
                    self.broadcast(key, {"type": "ticker", **message})
        for candle in self.candles.close_due(ts):
            self._publish_candle(candle)
        if not self.faults.stalled(now):
            beat = self.heartbeat
            for conn in list(self._conns.values()):
                if conn.subs and now - conn.last_activity >= beat:
                    self.send_json(conn, {"type": "heartbeat", "ts": ts})
        if now >= next_drop_check:
            next_drop_check = now + 1.0
            conns = list(self._conns.values())
            drop_all, picked = self.faults.due_drops(now, len(conns))
            for conn in conns if drop_all else [conns[i] for i in picked]:
                self._drop(conn)
        return next_drop_check
