"""The benchmark workload: Binance-format frames every contender receives, byte for byte.

Shared by the loopback server (which renders and sends the frames) and the contenders (which
need the id ranges to tell warm-up from the measured window). No I/O, no asyncio, no clock:
timestamps are parameters.

Shape (synthetic, modelled on the recorded Binance sessions in ``tests/data/cryptofeed``:
same field names and order, same 8-decimal price/size strings):

* trades are ``aggTrade`` events (what cryptofeed subscribes to; ccxt.pro is switched to it, and
  a plain ``trade`` event is rendered from the same draws for a client that asks for
  ``@trade``). Ids ``a`` are contiguous from :data:`TRADE_BASE`: frame ``i`` has id
  ``TRADE_BASE + i``. Each event is ~170 bytes.
* depth diffs are ``depthUpdate`` events with 1-3 levels a side, 20% of them removals, on a
  0.01 grid of 1,000 prices a side around a fixed mid, so the book never crosses. Frame ``i``
  covers update ids ``U = DEPTH_BASE + 2i`` to ``u = U + 1`` and the REST snapshot reflects
  ``lastUpdateId = DEPTH_BASE - 1``, so the Binance sync rule (first event has
  ``U <= lastUpdateId + 1 <= u``, then ``U == previous u + 1``) holds for every client.

A cycle of :data:`CYCLE` pre-drawn bodies (seeded) is repeated with fresh ids, so any number of
frames can be produced. ``E`` (and ``T``) carry the server's wall-clock time in milliseconds at
render time, as Binance does; sub-millisecond latency is measured by joining ids with the
server's send log (monotonic ns), not from ``E``.
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass

SYMBOL = "BTCUSDT"
SYMBOL_LOWER = "btcusdt"
TRADE_BASE = 5_000_000_000
DEPTH_BASE = 7_000_000_000
CYCLE = 4096
_MID_TICKS = 3_000_000  # 30,000.00 in ticks of 0.01
_GRID = 1000  # prices a side
_SNAPSHOT_LEVELS = 500  # levels a side present in the REST snapshot
_SEED = 20261121


def _price(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def _size(units: int) -> str:  # units of 1e-5
    return f"{units // 100_000}.{units % 100_000:05d}000"


@dataclass(frozen=True)
class Ids:
    """Which ids (trade ``a`` / depth ``u``) bound the warm-up and the measured window."""

    first_measured: int
    last_measured: int

    @classmethod
    def trades(cls, warmup: int, count: int) -> Ids:
        return cls(TRADE_BASE + warmup, TRADE_BASE + warmup + count - 1)

    @classmethod
    def depth(cls, warmup: int, count: int) -> Ids:
        return cls(DEPTH_BASE + 2 * warmup + 1, DEPTH_BASE + 2 * (warmup + count - 1) + 1)


def stream_kind(stream: str) -> str | None:
    """``btcusdt@aggTrade`` -> ``"aggTrade"``; ``btcusdt@depth@100ms`` -> ``"depth"``."""
    _, _, rest = stream.partition("@")
    if rest in ("aggTrade", "trade"):
        return rest
    if rest.startswith("depth") and not rest[5:6].isdigit():  # depth, depth@100ms; not depth20
        return "depth"
    return None


def ws_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client text frame (FIN set)."""
    n = len(payload)
    if n < 126:
        return b"\x81" + bytes((n,)) + payload
    if n < 65536:
        return b"\x81\x7e" + struct.pack(">H", n) + payload
    return b"\x81\x7f" + struct.pack(">Q", n) + payload


class Renderer:
    """Renders frame ``i`` of one stream kind, optionally wrapped as a combined-stream event."""

    def __init__(self, kind: str, combined: bool, stream: str | None = None) -> None:
        if kind not in ("aggTrade", "trade", "depth"):
            raise ValueError(f"unknown stream kind {kind!r}")
        self.kind = kind
        rng = random.Random(_SEED)
        if combined:
            name = stream or f"{SYMBOL_LOWER}@{kind}"
            prefix, suffix = b'{"stream":"%s","data":' % name.encode(), b"}"
        else:
            prefix, suffix = b"", b""
        self._templates: list[bytes] = []
        for _ in range(CYCLE):
            body = self._depth_body(rng) if kind == "depth" else self._trade_body(rng, kind)
            self._templates.append(prefix + body + suffix)

    @staticmethod
    def _trade_body(rng: random.Random, kind: str) -> bytes:
        price = _price(_MID_TICKS + rng.randint(-500, 500))
        size = _size(rng.choice((100, 120, 500, 1_000, 2_500, 10_000, 37_000, 150_000)))
        maker = b"true" if rng.random() < 0.5 else b"false"
        fields = (SYMBOL.encode(), price.encode(), size.encode(), maker)
        if kind == "aggTrade":
            return (
                b'{"e":"aggTrade","E":%%d,"s":"%s","a":%%d,"p":"%s","q":"%s","f":%%d,"l":%%d,'
                b'"T":%%d,"m":%s,"M":true}' % fields
            )
        return (
            b'{"e":"trade","E":%%d,"s":"%s","t":%%d,"p":"%s","q":"%s",'
            b'"T":%%d,"m":%s,"M":true}' % fields
        )

    @staticmethod
    def _depth_body(rng: random.Random) -> bytes:
        bids, asks = (
            "[" + ",".join(f'["{p}","{q}"]' for p, q in side) + "]" for side in _depth_levels(rng)
        )
        return b'{"e":"depthUpdate","E":%%d,"s":"%s","U":%%d,"u":%%d,"b":%s,"a":%s}' % (
            SYMBOL.encode(),
            bids.encode(),
            asks.encode(),
        )

    def payload(self, i: int, now_ms: int) -> bytes:
        template = self._templates[i % CYCLE]
        if self.kind == "depth":
            first = DEPTH_BASE + 2 * i
            return template % (now_ms, first, first + 1)
        ident = TRADE_BASE + i
        if self.kind == "aggTrade":
            return template % (now_ms, ident, ident, ident, now_ms)
        return template % (now_ms, ident, now_ms)

    def frames(self, start: int, stop: int, now_ms: int) -> bytes:
        """WebSocket frames ``start`` .. ``stop - 1`` concatenated, ready for one write."""
        payload = self.payload
        return b"".join([ws_frame(payload(i, now_ms)) for i in range(start, stop)])


Level = tuple[str, str]


def _depth_levels(rng: random.Random) -> tuple[list[Level], list[Level]]:
    """One diff's (bids, asks): 1-3 levels a side, 20% removals, near the top of the book."""
    sides: list[list[Level]] = []
    for sign in (-1, 1):
        levels = []
        for _ in range(rng.randint(1, 3)):
            k = min(_GRID, 1 + int(rng.expovariate(1 / 40)))
            size = "0.00000000" if rng.random() < 0.2 else _size(rng.randint(1, 400_000))
            levels.append((_price(_MID_TICKS + sign * k), size))
        sides.append(levels)
    return sides[0], sides[1]


class DepthBook:
    """The book the depth stream describes, after any number of frames, for REST snapshots.

    A real ``/api/v3/depth`` reflects the stream's current position, and a client that fetched its
    snapshot late (after its bounded buffer dropped early diffs) asks again and expects a newer
    ``lastUpdateId``. Frames repeat a cycle of :data:`CYCLE` diffs and applying the cycle twice
    leaves what applying it once does, so the book after ``n`` frames is the initial book, overlaid
    with the whole cycle when ``n > CYCLE``, overlaid with the first ``n mod CYCLE`` diffs.
    """

    def __init__(self) -> None:
        rng = random.Random(_SEED)
        self.cycle = [_depth_levels(rng) for _ in range(CYCLE)]
        rng = random.Random(_SEED + 1)
        self.initial: list[dict[str, str]] = []
        for sign in (-1, 1):
            ks = sorted(rng.sample(range(1, _GRID + 1), _SNAPSHOT_LEVELS))
            self.initial.append(
                {_price(_MID_TICKS + sign * k): _size(rng.randint(1, 400_000)) for k in ks}
            )
        self.after_cycle = self._overlay(self.initial, CYCLE)

    def _overlay(self, base: list[dict[str, str]], n: int) -> list[dict[str, str]]:
        bids, asks = dict(base[0]), dict(base[1])
        for diff_bids, diff_asks in self.cycle[:n]:
            for side, levels in ((bids, diff_bids), (asks, diff_asks)):
                for price, size in levels:
                    if size == "0.00000000":
                        side.pop(price, None)
                    else:
                        side[price] = size
        return [bids, asks]

    def snapshot(self, sent: int, limit: int = 1000) -> bytes:
        """The answer after ``sent`` frames (0: before any), ``limit`` levels a side."""
        limit = max(1, min(limit, 5000))
        if sent <= CYCLE:
            bids, asks = self._overlay(self.initial, max(0, sent))
        else:
            bids, asks = self._overlay(self.after_cycle, sent % CYCLE)
        # every price has the same number of digits, so text order is numeric order
        out = {
            "lastUpdateId": DEPTH_BASE + 2 * sent - 1 if sent > 0 else DEPTH_BASE - 1,
            "bids": [[p, bids[p]] for p in sorted(bids, reverse=True)[:limit]],
            "asks": [[p, asks[p]] for p in sorted(asks)[:limit]],
        }
        return json.dumps(out, separators=(",", ":")).encode()


def depth_snapshot(limit: int = 1000) -> bytes:
    """The REST answer before any diff (``lastUpdateId = DEPTH_BASE - 1``)."""
    return DepthBook().snapshot(0, limit)


def exchange_info(server_time_ms: int) -> bytes:
    """A spot ``/api/v3/exchangeInfo`` with the one symbol, with the fields peers read."""
    symbol = {
        "symbol": SYMBOL,
        "status": "TRADING",
        "baseAsset": "BTC",
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01000000",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.01000000",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": "0.00001000",
            },
            {"filterType": "MIN_NOTIONAL", "minNotional": "5.00000000", "applyToMarket": True},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }
    info = {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
        ],
        "exchangeFilters": [],
        "symbols": [symbol],
    }
    return json.dumps(info, separators=(",", ":")).encode()
