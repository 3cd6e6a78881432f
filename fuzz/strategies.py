"""Hypothesis strategies of hostile input for tickloop's boundary: venue frames (real shapes
with one value made hostile, or their bytes mangled), random JSON, request bodies for the sim,
and book message sequences for the synchronisers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from tickloop.models import BookDelta, BookLevel, BookSnapshot

#: Values no venue sends, each one a past or possible failure (docs/reliability.md).
HOSTILE_TEXT = [
    "1e300000000",
    "1E+400",
    "9" * 5000,
    "-1",
    "-0.00",
    "+1",
    "١",
    "1_0",
    " 1",
    "NaN",
    "Infinity",
    "0E-999999",
    "0x10",
    "",
    "\u0000",
    "💥",
]
HOSTILE_NUMBERS: list[Any] = [10**30, -(10**15), 1e308, -1, 0, 2**63, 2**64 + 1]

#: A frame of each kind each venue sends, in its real shape (values are typical).
SEEDS: dict[str, list[Any]] = {
    "sim": [
        {
            "type": "trade",
            "symbol": "BTC-USD",
            "id": 7,
            "price": "100.50",
            "size": "0.0100",
            "side": "buy",
            "ts": 1,
        },
        {
            "type": "book_snapshot",
            "symbol": "BTC-USD",
            "seq": 3,
            "bids": [["100.00", "1.0000"]],
            "asks": [["100.10", "2.0000"]],
            "checksum": 1,
            "ts": 1,
        },
        {
            "type": "book_update",
            "symbol": "BTC-USD",
            "seq": 4,
            "prev_seq": 3,
            "bids": [["100.00", "0.0000"]],
            "asks": [],
            "checksum": 2,
            "ts": 2,
        },
        {"type": "ticker", "symbol": "BTC-USD", "ts": 1, "bid": "1.00", "ask": "1.10"},
        {
            "type": "candle",
            "symbol": "BTC-USD",
            "interval": "1m",
            "open_time": 0,
            "close_time": 60,
            "open": "1.00",
            "high": "2.00",
            "low": "0.50",
            "close": "1.50",
            "volume": "3.0000",
        },
        {"type": "subscribed", "channel": "trades", "symbols": ["BTC-USD"], "id": 1},
        {"type": "error", "code": "unknown_symbol", "message": "no 'X'", "id": 1},
    ],
    "binance": [
        {
            "e": "depthUpdate",
            "E": 1,
            "s": "BTCUSDT",
            "U": 1,
            "u": 2,
            "b": [["100.00", "1.000"]],
            "a": [["100.10", "0.000"]],
        },
        {
            "e": "aggTrade",
            "E": 1,
            "s": "BTCUSDT",
            "a": 5,
            "p": "100.00",
            "q": "0.5",
            "f": 1,
            "l": 1,
            "T": 1,
            "m": True,
        },
        {
            "stream": "btcusdt@aggTrade",
            "data": {
                "e": "aggTrade",
                "E": 1,
                "s": "BTCUSDT",
                "a": 5,
                "p": "100.00",
                "q": "0.5",
                "f": 1,
                "l": 1,
                "T": 1,
                "m": False,
            },
        },
        {"result": None, "id": 1},
    ],
    "coinbase": [
        {
            "type": "match",
            "trade_id": 1,
            "product_id": "BTC-USD",
            "price": "100.00",
            "size": "0.1",
            "side": "buy",
            "time": "2024-01-01T00:00:00.000000Z",
            "sequence": 5,
        },
        {
            "type": "snapshot",
            "product_id": "BTC-USD",
            "bids": [["100.00", "1.0"]],
            "asks": [["100.10", "1.0"]],
        },
        {
            "type": "l2update",
            "product_id": "BTC-USD",
            "changes": [["buy", "100.00", "0.5"]],
            "time": "2024-01-01T00:00:00.000000Z",
        },
        {
            "type": "heartbeat",
            "sequence": 1,
            "last_trade_id": 1,
            "product_id": "BTC-USD",
            "time": "2024-01-01T00:00:00.000000Z",
        },
    ],
    "kraken": [
        [
            1,
            {"as": [["100.10", "1.0", "1.0"]], "bs": [["100.00", "1.0", "1.0"]]},
            "book-10",
            "XBT/USD",
        ],
        [1, {"a": [["100.10", "0.5", "1.1"]], "c": "12345"}, "book-10", "XBT/USD"],
        [2, [["100.00", "0.1", "1.0", "b", "l", ""]], "trade", "XBT/USD"],
        {"event": "heartbeat"},
        {
            "event": "subscriptionStatus",
            "status": "subscribed",
            "channelID": 1,
            "channelName": "book-10",
            "pair": "XBT/USD",
            "subscription": {"name": "book"},
        },
    ],
    "kraken_v2": [
        {
            "channel": "book",
            "type": "snapshot",
            "data": [
                {
                    "symbol": "BTC/USD",
                    "bids": [{"price": 100.0, "qty": 1.0}],
                    "asks": [{"price": 100.1, "qty": 1.0}],
                    "checksum": 1,
                }
            ],
        },
        {
            "channel": "trade",
            "type": "update",
            "data": [
                {
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "price": 100.0,
                    "qty": 0.5,
                    "ord_type": "market",
                    "trade_id": 4,
                    "timestamp": "2024-01-01T00:00:00.000000Z",
                }
            ],
        },
        {"channel": "heartbeat"},
    ],
}

#: Sim REST/WebSocket request seeds.
REQUEST_SEEDS: list[Any] = [
    {"symbol": "BTC-USD", "side": "buy", "type": "limit", "size": "0.0100", "price": "10.00"},
    {"op": "subscribe", "channel": "book", "symbols": ["BTC-USD"], "id": 1},
    {"op": "subscribe", "channel": "trades", "symbols": ["BTC-USD", "ETH-USD"], "id": 2},
    {"op": "login", "key": "k", "ts": 1, "sig": "00"},
    {"op": "ping", "id": 3},
    {"size": "0.0200"},
]


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12)
        | st.sampled_from(HOSTILE_TEXT)
        | st.sampled_from(HOSTILE_NUMBERS)
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=6), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        copy[head] = _replace(value[head], rest, new)
        return copy
    copy_list = list(value)
    copy_list[head] = _replace(value[head], rest, new)
    return copy_list


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Any]) -> bytes:
    """One seed frame with one hostile change: a value replaced, a key duplicated, the whole
    thing nested deep, or its bytes truncated or spliced."""
    seed = draw(st.sampled_from(seeds))
    how = draw(st.sampled_from(["replace", "replace", "replace", "duplicate", "nest", "bytes"]))
    if how == "replace":
        paths = _paths(seed)
        path = draw(st.sampled_from(paths))
        new = draw(
            st.sampled_from(HOSTILE_TEXT) | st.sampled_from(HOSTILE_NUMBERS) | json_values(6)
        )
        return json.dumps(_replace(seed, path, new), ensure_ascii=False).encode()
    text = json.dumps(seed, separators=(",", ":"))
    if how == "duplicate":
        return _duplicated(draw, seed, text)
    if how == "nest":
        depth = draw(st.sampled_from([100, 5000, 100_000]))
        return ("[" * depth + text + "]" * depth).encode()
    raw = text.encode()
    cut = draw(st.integers(0, len(raw)))
    junk = draw(st.binary(max_size=8))
    return raw[:cut] + junk + raw[cut + len(junk) :]


def _duplicated(draw: st.DrawFn, seed: Any, text: str) -> bytes:
    """``seed`` with one key of one of its objects (any depth) given twice, the copy carrying
    another value, before or after the original, its key written plainly or escaped."""
    objects = [path for path in _paths(seed) if isinstance(_get(seed, path), dict)]
    objects = [path for path in objects if _get(seed, path)]
    if not objects:
        return text.encode()
    path = draw(st.sampled_from(objects))
    target = _get(seed, path)
    key = draw(st.sampled_from(sorted(target)))
    value = draw(st.sampled_from([target[key], "1.00", 0, None, [["1.00", "1.0"]]]))
    name = json.dumps(key)
    if draw(st.booleans()) and key:
        name = f'"\\u{ord(key[0]):04x}' + json.dumps(key[1:])[1:]
    copy = f"{name}:{json.dumps(value)}"
    inner = json.dumps(target, separators=(",", ":"))
    doubled = "{" + copy + "," + inner[1:] if draw(st.booleans()) else inner[:-1] + "," + copy + "}"
    marker = "\u0000marker\u0000"
    placed = _replace(seed, path, marker)
    return json.dumps(placed, separators=(",", ":")).replace(json.dumps(marker), doubled).encode()


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def frames(venue: str) -> st.SearchStrategy[bytes]:
    """Hostile frames for ``venue`` (a key of :data:`SEEDS`)."""
    return (
        mutated(SEEDS[venue])
        | json_values().map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=64)
    )


def requests() -> st.SearchStrategy[bytes]:
    """Hostile request bodies / WebSocket frames for the sim."""
    return mutated(REQUEST_SEEDS) | json_values().map(lambda v: json.dumps(v).encode())


_PRICES = st.integers(1, 400).map(lambda i: Decimal(10_000 + i).scaleb(-2))
_SIZES = st.integers(0, 50).map(lambda i: Decimal(i).scaleb(-1))
_LEVELS = st.lists(st.builds(BookLevel, _PRICES, _SIZES), max_size=6).map(tuple)


@st.composite
def book_messages(draw: st.DrawFn, venue: str, symbol: str = "BTC-USD") -> list[Any]:
    """A sequence of snapshots and deltas for one symbol, in order or not, with gaps, stale
    sequences, crossed levels and bogus checksums: what a broken venue could send."""
    out: list[Any] = []
    seq = draw(st.integers(1, 1000))
    for _ in range(draw(st.integers(1, 25))):
        seq += draw(st.sampled_from([1, 1, 1, 1, 0, 2, -3, 10**12]))
        checksum = draw(st.none() | st.integers(0, 2**32 - 1))
        if draw(st.integers(0, 9)) == 0:
            out.append(
                BookSnapshot(
                    venue=venue,
                    symbol=symbol,
                    bids=draw(_LEVELS),
                    asks=draw(_LEVELS),
                    sequence=seq,
                    checksum=checksum,
                )
            )
        else:
            out.append(
                BookDelta(
                    venue=venue,
                    symbol=symbol,
                    bids=draw(_LEVELS),
                    asks=draw(_LEVELS),
                    sequence=seq,
                    first_sequence=seq - draw(st.integers(0, 2)),
                    prev_sequence=seq - 1,
                    checksum=checksum,
                )
            )
    return out
