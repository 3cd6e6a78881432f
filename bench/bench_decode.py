"""Per-message decode cost of the codecs on the common shape: sim trades, sim book diffs,
Binance aggTrades (the harness's trade frames) and Binance depth diffs whose prices and sizes
repeat (as a live book's do), so the DecimalCache and the C level table hit. It is what the
number validation of tickloop.limits and the duplicate-key scan of tickloop.venues.keys must
not slow down: run it against two checkouts alternately and compare the ratio
(docs/reliability.md). The "key scan alone" rows time that scan by itself on the same frames.

    .venv/bin/python bench/bench_decode.py
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/bench_decode.py
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from tickloop.venues.binance import BinanceCodec
from tickloop.venues.sim import SimCodec


def _frames(n: int, seed: int = 1) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    rng = random.Random(seed)
    prices = [f"{100 + i / 100:.2f}" for i in range(400)]
    sizes = [f"{rng.randint(1, 5000) / 10000:.4f}" for _ in range(300)]
    trades, diffs, binance, agg = [], [], [], []
    for i in range(n):
        agg.append(
            json.dumps(
                {
                    "e": "aggTrade",
                    "E": i,
                    "s": "BTCUSDT",
                    "a": i + 1,
                    "p": rng.choice(prices),
                    "q": rng.choice(sizes),
                    "f": i,
                    "l": i,
                    "T": i,
                    "m": rng.random() < 0.5,
                    "M": True,
                },
                separators=(",", ":"),
            ).encode()
        )
        trades.append(
            json.dumps(
                {
                    "type": "trade",
                    "symbol": "BTC-USD",
                    "id": i + 1,
                    "price": rng.choice(prices),
                    "size": rng.choice(sizes),
                    "side": "buy",
                    "ts": i,
                },
                separators=(",", ":"),
            ).encode()
        )
        side = [[rng.choice(prices), rng.choice(sizes)] for _ in range(rng.randint(1, 3))]
        other = [[rng.choice(prices), rng.choice(sizes)] for _ in range(rng.randint(0, 2))]
        diffs.append(
            json.dumps(
                {
                    "type": "book_update",
                    "symbol": "BTC-USD",
                    "seq": i + 2,
                    "prev_seq": i + 1,
                    "bids": side,
                    "asks": other,
                    "checksum": 0,
                    "ts": i,
                },
                separators=(",", ":"),
            ).encode()
        )
        binance.append(
            json.dumps(
                {"e": "depthUpdate", "E": i, "s": "BTCUSDT", "U": i, "u": i, "b": side, "a": other},
                separators=(",", ":"),
            ).encode()
        )
    return trades, diffs, binance, agg


def _time(decode: object, frames: list[bytes], rounds: int) -> float:
    """Median CPU ns per frame over ``rounds`` passes (thread time: robust to a loaded
    machine); the first pass, which fills the caches, is not counted."""
    fn = decode  # a bound method: codec.decode
    for frame in frames:
        fn(frame, 0)  # type: ignore[operator]
    out = []
    for _ in range(rounds):
        start = time.thread_time_ns()
        for frame in frames:
            fn(frame, 0)  # type: ignore[operator]
        out.append((time.thread_time_ns() - start) / len(frames))
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="frames of each kind")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    trades, diffs, binance, agg = _frames(args.n)
    sim = SimCodec()
    rows = {
        "sim trade": _time(sim.decode, trades, args.rounds),
        "sim book diff": _time(SimCodec().decode, diffs, args.rounds),
        "binance aggTrade": _time(BinanceCodec().decode, agg, args.rounds),
        "binance depth diff": _time(BinanceCodec().decode, binance, args.rounds),
    }
    try:  # the duplicate-key scan each decode above includes (absent before issue 15's fix)
        from tickloop.venues.keys import duplicate_keys
    except ImportError:
        duplicate_keys = None
    if duplicate_keys is not None:
        scan = duplicate_keys

        def scan_only(frame: bytes, _ts: int) -> int:
            return scan(frame)

        def nothing(frame: bytes, _ts: int) -> int:
            return 0

        base = _time(nothing, trades, args.rounds)  # the loop and the call of a Python function
        for name, frames in (
            ("sim trade", trades),
            ("sim book diff", diffs),
            ("binance aggTrade", agg),
            ("binance depth diff", binance),
        ):
            rows[f"{name}: key scan alone"] = _time(scan_only, frames, args.rounds) - base
    print(json.dumps({k: round(v, 1) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
