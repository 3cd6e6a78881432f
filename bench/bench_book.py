"""Local L2 book: tickloop's OrderBook against a SortedDict baseline and cryptofeed's C book.

One seeded workload, every contender side by side in one run (the machine is shared and noisy:
trust ratios, not absolute figures). The workload: ~1,500 levels a side on a 0.01 tick grid,
1M single-level updates (``--quick``: 100k), 20% deletes, 20% new levels, 60% size changes,
prices and sizes as Decimal objects interned per distinct string (what the codecs'
``DecimalCache`` hands the book).

Measured per contender:

* apply: the updates alone;
* apply + best: the updates, reading best bid and best ask after every one;
* top-10 read: the 10 best levels of both sides on an unchanged book, and after each update.

Run: ``.venv/bin/python bench/bench_book.py [--quick] [--repeat N]``. Needs ``sortedcontainers``
and ``order-book`` (cryptofeed's C extension) installed.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import order_book  # cryptofeed's C extension (pip install order-book)
from rich.console import Console
from rich.table import Table
from sortedcontainers import SortedDict

from tickloop.book.engine import OrderBook
from tickloop.book.sync import CoinbaseSync
from tickloop.models import BookDelta, BookLevel, BookSnapshot

Update = tuple[bool, Decimal, Decimal]  # (is_bid, price, size); size zero deletes
ZERO = Decimal(0)


# ----------------------------------------------------------------------------- workload


def workload(n_updates: int, levels: int, seed: int) -> tuple[BookSnapshot, list[Update]]:
    """A snapshot with ``levels`` a side out of a grid of ``2 * levels`` prices a side, then
    ``n_updates`` updates that keep the count near ``levels``."""
    rng = random.Random(seed)
    grid = 2 * levels
    mid = 3_000_000  # in ticks of 0.01
    intern: dict[str, Decimal] = {}

    def dec(text: str) -> Decimal:
        value = intern.get(text)
        if value is None:
            value = intern[text] = Decimal(text)
        return value

    def price(ticks: int) -> Decimal:
        return dec(f"{ticks // 100}.{ticks % 100:02d}")

    sizes = [dec(f"{rng.randint(1, 50_000) / 10_000:.4f}") for _ in range(2_000)]
    bid_prices = [price(mid - k) for k in range(1, grid + 1)]
    ask_prices = [price(mid + k) for k in range(1, grid + 1)]
    present: list[list[Decimal]] = []
    absent: list[list[Decimal]] = []
    for prices in (bid_prices, ask_prices):
        chosen = rng.sample(range(grid), levels)
        chosen_set = set(chosen)
        present.append([prices[i] for i in chosen])
        absent.append([prices[i] for i in range(grid) if i not in chosen_set])
    snapshot = BookSnapshot(
        venue="bench",
        symbol="BTC-USD",
        bids=tuple(sorted(((p, rng.choice(sizes)) for p in present[0]), reverse=True)),
        asks=tuple(sorted((p, rng.choice(sizes)) for p in present[1])),
        sequence=0,
    )
    snapshot = BookSnapshot(
        venue=snapshot.venue,
        symbol=snapshot.symbol,
        bids=tuple(BookLevel(p, s) for p, s in snapshot.bids),
        asks=tuple(BookLevel(p, s) for p, s in snapshot.asks),
        sequence=0,
    )
    updates: list[Update] = []
    append = updates.append
    for _ in range(n_updates):
        side = rng.random() < 0.5
        pres = present[0 if side else 1]
        abse = absent[0 if side else 1]
        r = rng.random()
        if r < 0.2 and len(pres) > 1:  # delete an existing level
            i = rng.randrange(len(pres))
            p = pres[i]
            pres[i] = pres[-1]
            pres.pop()
            abse.append(p)
            append((side, p, ZERO))
        elif r < 0.4 and abse:  # a new level
            i = rng.randrange(len(abse))
            p = abse[i]
            abse[i] = abse[-1]
            abse.pop()
            pres.append(p)
            append((side, p, rng.choice(sizes)))
        else:  # a size change
            append((side, pres[rng.randrange(len(pres))], rng.choice(sizes)))
    return snapshot, updates


# ----------------------------------------------------------------------------- contenders


class Contender(Protocol):
    name: str

    def load(self, snapshot: BookSnapshot) -> None: ...
    def apply(self, updates: Sequence[Update]) -> None: ...
    def apply_best(self, updates: Sequence[Update]) -> None: ...
    def apply_top10(self, updates: Sequence[Update]) -> None: ...
    def top10(self) -> tuple[list[Any], list[Any]]: ...


class Tickloop:
    name = "tickloop OrderBook.update_bid/ask (per level)"

    def load(self, snapshot: BookSnapshot) -> None:
        self.book = OrderBook.from_snapshot(snapshot)

    def apply(self, updates: Sequence[Update]) -> None:
        ub = self.book.update_bid
        ua = self.book.update_ask
        for is_bid, p, s in updates:
            if is_bid:
                ub(p, s)
            else:
                ua(p, s)

    def apply_best(self, updates: Sequence[Update]) -> None:
        book = self.book
        ub = book.update_bid
        ua = book.update_ask
        for is_bid, p, s in updates:
            if is_bid:
                ub(p, s)
            else:
                ua(p, s)
            book.best_bid  # noqa: B018 - the read is what is measured
            book.best_ask  # noqa: B018

    def apply_top10(self, updates: Sequence[Update]) -> None:
        book = self.book
        ub = book.update_bid
        ua = book.update_ask
        for is_bid, p, s in updates:
            if is_bid:
                ub(p, s)
            else:
                ua(p, s)
            book.bids(10)
            book.asks(10)

    def top10(self) -> tuple[list[Any], list[Any]]:
        return self.book.bids(10), self.book.asks(10)


class TickloopDelta(Tickloop):
    """The path a synchroniser uses: ``apply_delta`` on BookDelta messages of ``batch``
    consecutive updates each (1: one level per message, like Coinbase's l2update; 10: closer to a
    Binance 100 ms diff). Rates are per level; best and top-10 are read after each message."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.name = f"tickloop OrderBook.apply_delta ({batch}-level BookDelta)"
        self._source: Sequence[Update] = ()
        self._deltas: list[BookDelta] = []

    def _as_deltas(self, updates: Sequence[Update]) -> list[BookDelta]:
        if updates is not self._source:
            self._source = updates
            deltas = []
            for i in range(0, len(updates), self.batch):
                chunk = updates[i : i + self.batch]
                deltas.append(
                    BookDelta(
                        venue="bench",
                        symbol="BTC-USD",
                        bids=tuple(BookLevel(p, s) for b, p, s in chunk if b),
                        asks=tuple(BookLevel(p, s) for b, p, s in chunk if not b),
                    )
                )
            self._deltas = deltas
        return self._deltas

    def prepare(self, updates: Sequence[Update]) -> None:
        self._as_deltas(updates)

    def apply(self, updates: Sequence[Update]) -> None:
        apply = self.book.apply_delta
        for delta in self._as_deltas(updates):
            apply(delta)

    def apply_best(self, updates: Sequence[Update]) -> None:
        book = self.book
        apply = book.apply_delta
        for delta in self._as_deltas(updates):
            apply(delta)
            book.best_bid  # noqa: B018
            book.best_ask  # noqa: B018

    def apply_top10(self, updates: Sequence[Update]) -> None:
        book = self.book
        apply = book.apply_delta
        for delta in self._as_deltas(updates):
            apply(delta)
            book.bids(10)
            book.asks(10)


class TickloopSync(TickloopDelta):
    """The whole path a stream takes: a synchroniser (Coinbase rules: apply, then the crossed
    check) fed 1-level BookDeltas, as the StreamClient will feed it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.name = "tickloop CoinbaseSync.on_delta (1-level BookDelta)"

    def load(self, snapshot: BookSnapshot) -> None:
        self.sync = CoinbaseSync(snapshot.symbol)
        self.sync.on_snapshot(snapshot)
        self.book = self.sync.book

    def apply(self, updates: Sequence[Update]) -> None:
        on_delta = self.sync.on_delta
        for delta in self._as_deltas(updates):
            on_delta(delta)

    def apply_best(self, updates: Sequence[Update]) -> None:
        on_delta = self.sync.on_delta
        book = self.book
        for delta in self._as_deltas(updates):
            on_delta(delta)
            book.best_bid  # noqa: B018
            book.best_ask  # noqa: B018

    def apply_top10(self, updates: Sequence[Update]) -> None:
        on_delta = self.sync.on_delta
        book = self.book
        for delta in self._as_deltas(updates):
            on_delta(delta)
            book.bids(10)
            book.asks(10)


class SortedDictBook:
    name = "sortedcontainers SortedDict"

    def load(self, snapshot: BookSnapshot) -> None:
        self.bids = SortedDict({p: s for p, s in snapshot.bids})
        self.asks = SortedDict({p: s for p, s in snapshot.asks})

    def apply(self, updates: Sequence[Update]) -> None:
        bids = self.bids
        asks = self.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            else:
                side.pop(p, None)

    def apply_best(self, updates: Sequence[Update]) -> None:
        bids = self.bids
        asks = self.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            else:
                side.pop(p, None)
            bids.peekitem(-1)
            asks.peekitem(0)

    def apply_top10(self, updates: Sequence[Update]) -> None:
        bids = self.bids
        asks = self.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            else:
                side.pop(p, None)
            self.top10()

    def top10(self) -> tuple[list[Any], list[Any]]:
        bid_items = self.bids.items()
        return bid_items[-1:-11:-1], self.asks.items()[:10]


class CryptofeedBook:
    name = "cryptofeed order_book (C)"
    #: Reading the best after every update re-sorts the dirty side (about 100 µs): measure that
    #: rate on the first updates only, or one run takes minutes.
    best_limit = 50_000

    def load(self, snapshot: BookSnapshot) -> None:
        self.book = order_book.OrderBook()
        for p, s in snapshot.bids:
            self.book.bids[p] = s
        for p, s in snapshot.asks:
            self.book.asks[p] = s

    def apply(self, updates: Sequence[Update]) -> None:
        bids = self.book.bids
        asks = self.book.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            elif p in side:
                del side[p]

    def apply_best(self, updates: Sequence[Update]) -> None:
        bids = self.book.bids
        asks = self.book.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            elif p in side:
                del side[p]
            bids.index(0)
            asks.index(0)

    def apply_top10(self, updates: Sequence[Update]) -> None:
        bids = self.book.bids
        asks = self.book.asks
        for is_bid, p, s in updates:
            side = bids if is_bid else asks
            if s:
                side[p] = s
            elif p in side:
                del side[p]
            self.top10()

    def top10(self) -> tuple[list[Any], list[Any]]:
        bids = self.book.bids
        asks = self.book.asks
        nb = min(10, len(bids))
        na = min(10, len(asks))
        return [bids.index(i) for i in range(nb)], [asks.index(i) for i in range(na)]


# ----------------------------------------------------------------------------- measuring


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def measure(
    contender: Any, snapshot: BookSnapshot, updates: list[Update], top_updates: list[Update]
) -> dict[str, float]:
    prepare = getattr(contender, "prepare", None)
    out: dict[str, float] = {}
    if prepare is not None:
        prepare(updates)
    contender.load(snapshot)
    out["apply"] = len(updates) / timed(lambda: contender.apply(updates))
    limit = getattr(contender, "best_limit", None)
    best_updates = updates if limit is None else updates[:limit]
    if prepare is not None:
        prepare(best_updates)
    contender.load(snapshot)
    out["apply_best"] = len(best_updates) / timed(lambda: contender.apply_best(best_updates))
    reads = 20_000
    top10 = contender.top10
    out["top10_us"] = timed(lambda: [top10() for _ in range(reads)]) / reads * 1e6
    if prepare is not None:
        prepare(top_updates)
    contender.load(snapshot)
    out["apply_top10_us"] = (
        timed(lambda: contender.apply_top10(top_updates)) / len(top_updates) * 1e6
    )
    return out


def check_agree(contenders: Sequence[Any], snapshot: BookSnapshot, updates: list[Update]) -> None:
    """Every contender must end with the same top of book, or the figures mean nothing."""
    tops = []
    for c in contenders:
        prepare = getattr(c, "prepare", None)
        if prepare is not None:
            prepare(updates)
        c.load(snapshot)
        c.apply(updates)
        bids, asks = c.top10()
        tops.append(([tuple(x) for x in bids], [tuple(x) for x in asks]))
    for c, top in zip(contenders[1:], tops[1:], strict=True):
        if top != tops[0]:
            raise SystemExit(f"{c.name} disagrees with {contenders[0].name}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k updates instead of 1M")
    parser.add_argument("--updates", type=int, default=None)
    parser.add_argument("--levels", type=int, default=1_500, help="levels per side")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    n = args.updates or (100_000 if args.quick else 1_000_000)
    console = Console()
    console.print(
        f"[bold]L2 book[/] {n:,} updates, ~{args.levels:,} levels a side, 20% deletes, "
        f"seed {args.seed}; Python {platform.python_version()}, median of {args.repeat}"
    )
    snapshot, updates = workload(n, args.levels, args.seed)
    top_updates = updates[: min(n, 50_000)]
    contenders: list[Any] = [
        Tickloop(),
        TickloopDelta(1),
        TickloopDelta(10),
        TickloopSync(),
        SortedDictBook(),
        CryptofeedBook(),
    ]
    check_agree(contenders, snapshot, updates[:20_000])

    runs: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    for _ in range(args.repeat):  # alternate contenders so drift hits all of them alike
        for c in contenders:
            runs[c.name].append(measure(c, snapshot, updates, top_updates))
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }

    table = Table(title="Local L2 book")
    table.add_column("structure")
    table.add_column("apply (updates/s)", justify="right")
    table.add_column("apply + best bid/ask read (updates/s)", justify="right")
    table.add_column("top-10 read, unchanged (µs)", justify="right")
    table.add_column("apply + top-10 read (µs/update)", justify="right")
    for name, m in med.items():
        table.add_row(
            name,
            f"{m['apply'] / 1e6:.2f}M",
            f"{m['apply_best'] / 1e6:.2f}M",
            f"{m['top10_us']:.2f}",
            f"{m['apply_top10_us']:.2f}",
        )
    console.print(table)

    sd = med[SortedDictBook.name]
    cf = med[CryptofeedBook.name]
    ratios = Table(title="Ratios: tickloop / other (higher is better for tickloop)")
    ratios.add_column("tickloop path")
    ratios.add_column("apply vs SortedDict", justify="right")
    ratios.add_column("apply vs cryptofeed C", justify="right")
    ratios.add_column("apply + best vs SortedDict", justify="right")
    ratios.add_column("apply + best vs cryptofeed C", justify="right")
    for c in contenders:
        if not isinstance(c, Tickloop):
            continue
        m = med[c.name]
        ratios.add_row(
            c.name,
            f"{m['apply'] / sd['apply']:.2f}x",
            f"{m['apply'] / cf['apply']:.2f}x",
            f"{m['apply_best'] / sd['apply_best']:.2f}x",
            f"{m['apply_best'] / cf['apply_best']:.0f}x",
        )
    console.print(ratios)
    console.print(
        "Rates are levels per second. The BookDelta rows read the best price (or the top 10) "
        "after each message, the other rows after each level."
    )


if __name__ == "__main__":
    main()
