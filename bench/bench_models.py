"""How to represent exact prices: decode + book-apply cost of each candidate, side by side.

Run: .venv/bin/python bench/bench_models.py [--quick]

Decodes depth messages (20 + 20 levels, the shape PERF.md measured) and small diffs (1-3 levels a
side) with each representation, then applies the levels to a dict-per-side book, so the figure
includes what the representation costs downstream (hashing, comparing). Prints a rich table of
messages/s (median of several rounds) and the ratio to the float baseline.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from tickloop.venues.base import DecimalCache
from tickloop.venues.levels import NATIVE, level_decoder


def make_messages(n: int, levels: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        mid = 30000 + rng.randint(-300, 300)
        bids = [
            [f"{(mid - k - 1) / 100:.2f}", f"{rng.randint(0, 50000) / 10000:.4f}"]
            for k in range(levels)
        ]
        asks = [
            [f"{(mid + k) / 100:.2f}", f"{rng.randint(0, 50000) / 10000:.4f}"]
            for k in range(levels)
        ]
        out.append(
            msgspec.json.encode(
                {
                    "type": "book_update",
                    "symbol": "BTC-USD",
                    "seq": i,
                    "prev_seq": i - 1,
                    "bids": bids,
                    "asks": asks,
                    "ts": 1,
                }
            )
        )
    return out


class StrMsg(msgspec.Struct, gc=False):
    seq: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class FloatMsg(msgspec.Struct, gc=False):
    seq: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class DecMsg(msgspec.Struct, gc=False):
    seq: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]


def run_float(frames: list[bytes]) -> None:
    dec = msgspec.json.Decoder(FloatMsg, strict=False)
    bids: dict[Any, Any] = {}
    asks: dict[Any, Any] = {}
    for f in frames:
        m = dec.decode(f)
        for p, s in m.bids:
            bids[p] = s
        for p, s in m.asks:
            asks[p] = s


def run_decimal(frames: list[bytes]) -> None:
    dec = msgspec.json.Decoder(DecMsg)
    bids: dict[Any, Any] = {}
    asks: dict[Any, Any] = {}
    for f in frames:
        m = dec.decode(f)
        for p, s in m.bids:
            bids[p] = s
        for p, s in m.asks:
            asks[p] = s


def run_str_decimal(frames: list[bytes]) -> None:
    dec = msgspec.json.Decoder(StrMsg)
    bids: dict[Any, Any] = {}
    asks: dict[Any, Any] = {}
    for f in frames:
        m = dec.decode(f)
        for p, s in m.bids:
            bids[Decimal(p)] = Decimal(s)
        for p, s in m.asks:
            asks[Decimal(p)] = Decimal(s)


def run_str_cached(frames: list[bytes]) -> None:
    dec = msgspec.json.Decoder(StrMsg)
    cache = DecimalCache()
    bids: dict[Any, Any] = {}
    asks: dict[Any, Any] = {}
    for f in frames:
        m = dec.decode(f)
        for p, s in m.bids:
            bids[cache[p]] = cache[s]
        for p, s in m.asks:
            asks[cache[p]] = cache[s]


class RawMsg(msgspec.Struct, gc=False):
    seq: int
    bids: msgspec.Raw
    asks: msgspec.Raw


def run_levels(native: bool) -> Callable[[list[bytes]], None]:
    """What the Binance and sim codecs do: level arrays kept as JSON text, read by a
    LevelDecoder into BookLevels of interned Decimals (the C one, or the pure reference)."""

    def run(frames: list[bytes]) -> None:
        dec = msgspec.json.Decoder(RawMsg)
        levels = level_decoder(DecimalCache(), native=native)
        bids: dict[Any, Any] = {}
        asks: dict[Any, Any] = {}
        for f in frames:
            m = dec.decode(f)
            for p, s in levels(m.bids):
                bids[p] = s
            for p, s in levels(m.asks):
                asks[p] = s

    return run


def run_str_fixed(frames: list[bytes]) -> None:
    """Integer fixed point parsed in Python per level (the 'per-level parsing' row of PERF.md)."""
    dec = msgspec.json.Decoder(StrMsg)
    bids: dict[Any, Any] = {}
    asks: dict[Any, Any] = {}

    def fx(text: str) -> int:
        whole, _, frac = text.partition(".")
        return int(whole) * 10**8 + int(frac.ljust(8, "0"))

    for f in frames:
        m = dec.decode(f)
        for p, s in m.bids:
            bids[fx(p)] = fx(s)
        for p, s in m.asks:
            asks[fx(p)] = fx(s)


CANDIDATES: list[tuple[str, Callable[[list[bytes]], None], str]] = [
    ("float (msgspec, strict=False)", run_float, "no: loses digits"),
    ("Decimal (msgspec decodes)", run_decimal, "yes"),
    ("str + Decimal() per level", run_str_decimal, "yes"),
    ("str + Python fixed-point per level", run_str_fixed, "yes"),
    ("str + DecimalCache, pairs (no BookLevel built)", run_str_cached, "yes"),
    ("raw text + PureLevelDecoder -> BookLevels", run_levels(False), "yes"),
]
if NATIVE:
    CANDIDATES.append(("raw text + C LevelDecoder -> BookLevels (chosen)", run_levels(True), "yes"))


def measure(fn: Callable[[list[bytes]], None], frames: list[bytes], rounds: int) -> float:
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(frames)
        rates.append(len(frames) / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    args = parser.parse_args()
    n, rounds = (5_000, 3) if args.quick else (30_000, 5)
    console = Console()
    for label, levels in (("20+20 levels", 20), ("2+2 levels", 2)):
        frames = make_messages(n, levels)
        table = Table(
            title=f"decode + apply to a dict book, {label}, messages/s (median of {rounds})"
        )
        for col in ("representation", "msgs/s", "vs float", "exact"):
            table.add_column(col, justify="right" if col in ("msgs/s", "vs float") else "left")
        base = 0.0
        for name, fn, exact in CANDIDATES:
            rate = measure(fn, frames, rounds)
            base = base or rate
            table.add_row(name, f"{rate:,.0f}", f"{rate / base:.2f}x", exact)
        console.print(table)


if __name__ == "__main__":
    main()
