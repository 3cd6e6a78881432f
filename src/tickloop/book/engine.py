"""The local L2 order book: snapshots and deltas in, sorted levels and book statistics out.

Sans-I/O: no sockets, no asyncio, no clock. The book does not judge sequence numbers (that is
the synchronisers' job, :mod:`tickloop.book.sync`); it applies what it is given and records the
sequence it now reflects.

Representation (chosen by measurement, see ``docs/book.md``): per side, a ``dict`` price -> size,
the best price tracked incrementally, and a plain ``list`` of the prices kept sorted *lazily*.
Most updates only change the size of an existing level: one dict store. A new level is compared
with the tracked best and noted in a small ``touched`` dict; a deleted level is noted there too,
and only if it was the best is the next best looked up (the best surviving price of the sorted
list against the best touched price still in the book: no sorting). The sorted list catches up
only when someone needs order (top-N, depth truncation, statistics, :meth:`sorted_sides`): a few
touched prices are placed with :mod:`bisect`, many are merged in one ``list.sort`` (which finds
the two sorted runs and merges them in linear time). Once a side has more touched prices than a
catch-up would place one by one, it stops noting them (``touched`` becomes None: the next
catch-up merges the whole side, and a deleted best is found with ``max``/``min`` of the side),
so applying without reading costs no bookkeeping beyond the best price. Reading the best price
after every update is an attribute read, applying is a dict operation almost always, and top-N
is a slice of the sorted list.

Installs compile this module with mypyc where a C compiler is at hand (``hatch_build.py``,
:mod:`tickloop._native`): :data:`OrderBook` is then the compiled class, built from this very
code, and :data:`PureOrderBook` this interpreted one. Keep the module to what mypyc compiles
(plain typed classes and functions; nothing is patched at run time).

Invariants:

* ``_bids`` / ``_asks`` map price -> size and never hold a zero size: a size of zero deletes the
  level (deleting an absent level is a no-op, as every venue's protocol allows).
* A side's sorted list is sorted and holds no price twice. With ``touched`` a dict, every price
  that is in the side's dict but not in its list, or in its list but not in its dict, is a key
  of ``touched`` (which may hold more: a catch-up checks each); with ``touched`` None, the list
  may differ from the dict in any way. After :meth:`_flush_bids` / :meth:`_flush_asks` the list
  is exactly ``sorted(dict)`` and ``touched`` is an empty dict.
* ``best_bid`` / ``best_ask`` is always the side's best price (None when empty): a new level
  is compared with it, and deleting the best looks up the next (:meth:`_next_bid`).
* Prices and sizes are the Decimal objects the codec produced, so the venue's digits (trailing
  zeros included) come back out unchanged and checksums can be computed from them.
* ``_bid_text`` / ``_ask_text`` (the :meth:`OrderBook.top_texts` memo) map a price to the
  ``(price, size, text)`` a level's text was made from; an entry is used only when both objects
  are the very ones in the book now, so a stale entry is never read, and the memo is emptied
  past ``_TEXT_MEMO`` entries or when another text function is passed.
* ``_bid_levels`` / ``_ask_levels`` (the :meth:`OrderBook.bids` / :meth:`OrderBook.asks` memo)
  map a price to the BookLevel last handed out for it, reused only while its price and size
  are the very objects in the book (a BookLevel is immutable, so sharing it is safe), and
  emptied at a read that finds more than ``_TEXT_MEMO`` entries. Building a tuple-subclass
  level costs more than the lookup, and reads of the top levels mostly find them unchanged.
* With ``depth`` set, each side holds at most ``depth`` levels after every snapshot or delta;
  the worst levels beyond it are dropped (Kraken truncates this way and sends the replacement
  level when a level inside the limit is deleted).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from .._native import gc_native, native_module
from ..checksums import decimal_text
from ..exceptions import ConfigError
from ..models import BookDelta, BookLevel, BookSnapshot, Side

__all__ = ["ChecksumFn", "OrderBook"]

#: A venue checksum: top levels as ``(price, size)`` strings, best first -> the venue's integer.
ChecksumFn = Callable[[Sequence[tuple[str, str]], Sequence[tuple[str, str]]], int]
#: A venue's text of one level, from its price and size (``"100.50:1.25"`` for the sim).
LevelText = Callable[[Decimal, Decimal], str]

_ZERO = Decimal(0)
_TWO = Decimal(2)
_BPS = Decimal(10_000)
#: Above this many touched prices a side's sorted list is rebuilt by one merge rather than by
#: one bisect each, and the side stops noting touched prices. Measured on 1.5k levels, half new
#: and half deleted prices: 128 pending take 47 µs by bisect and 89 µs by merge, 256 about
#: 100 µs either way, 1024 take 780 µs by bisect and 290 µs by merge.
_MERGE_AT = 400
#: Deleted bests an untracked side finds by scanning (``max``/``min``, O(levels)) before the
#: next one catches the side up (a merge, a few scans' worth) and it records touched prices
#: again: few scans while bests are rarely deleted, bounded cost when they go often.
_SCANS = 8
#: Level texts (:meth:`OrderBook.top_texts`) and BookLevels (:meth:`OrderBook.bids`) memoised a
#: side before a memo is emptied: the top levels drift as the market moves, so old prices must
#: not pile up.
_TEXT_MEMO = 4_096
_new = tuple.__new__
_gc = gc_native()
#: ``_gc_native.frozen_into`` (``memo[key] = cls(*items)`` in one allocation, memo and tuple
#: untracked: the cycle collector never walks a memo of thousands of levels; docs/runtime.md,
#: "The garbage collector"), or None (pure build).
_frozen_into: Final[Any] = None if _gc is None else _gc.frozen_into
# The book sides as module constants: on CPython 3.11 an Enum member read through its class
# (``Side.BUY``) takes the class's slow attribute hook (EnumType has ``__getattr__``), about
# 65 ns, compiled code included; a constant is a load.
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL


class OrderBook:
    """An L2 book for one symbol.

    ``bids(n)`` / ``asks(n)`` return up to ``n`` levels best first as :class:`BookLevel`
    ``(price, size)`` pairs. ``valid`` is False until a snapshot is applied and whenever a
    synchroniser has found the book wrong (gap, checksum mismatch, crossed): never trade on a
    book whose ``valid`` is False.

    Methods that take a ``side`` mean the *book* side: ``Side.BUY`` is the bid side,
    ``Side.SELL`` the ask side.
    """

    __slots__ = (
        "_ask_levels",
        "_ask_px",
        "_ask_searches",
        "_ask_text",
        "_ask_touched",
        "_asks",
        "_bid_levels",
        "_bid_px",
        "_bid_searches",
        "_bid_text",
        "_bid_touched",
        "_bids",
        "_text_fn",
        "best_ask",
        "best_bid",
        "depth",
        "sequence",
        "symbol",
        "ts",
        "valid",
        "venue",
    )

    def __init__(self, venue: str = "", symbol: str = "", *, depth: int | None = None) -> None:
        if depth is not None and depth < 1:
            raise ConfigError("depth must be >= 1 or None", field="depth", venue=venue or None)
        self.venue = venue
        self.symbol = symbol
        self.depth = depth
        self.sequence: int | None = None
        self.ts = 0
        self.valid = False
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._bid_px: list[Decimal] = []  # ascending: best bid last
        self._ask_px: list[Decimal] = []  # ascending: best ask first
        # Prices added or deleted since the list last caught up (None: not recorded).
        self._bid_touched: dict[Decimal, None] | None = {}
        self._ask_touched: dict[Decimal, None] | None = {}
        # Deleted bests found without catching the side up (by the touched prices, or by
        # scanning an untracked side) since its last catch-up (see _next_bid).
        self._bid_searches = 0
        self._ask_searches = 0
        # top_texts memos: price -> (price, size, text) of the level when the text was made
        self._bid_text: dict[Decimal, tuple[Decimal, Decimal, str]] = {}
        self._ask_text: dict[Decimal, tuple[Decimal, Decimal, str]] = {}
        # bids(n)/asks(n) memos: price -> the BookLevel last handed out for it
        self._bid_levels: dict[Decimal, BookLevel] = {}
        self._ask_levels: dict[Decimal, BookLevel] = {}
        self._text_fn: LevelText | None = None
        #: Best (highest) bid / best (lowest) ask price, None when the side is empty. Plain
        #: attributes kept current by every update, so reading them costs nothing; read-only for
        #: users.
        self.best_bid: Decimal | None = None
        self.best_ask: Decimal | None = None

    @classmethod
    def from_snapshot(cls, snapshot: BookSnapshot, *, depth: int | None = None) -> OrderBook:
        book = cls(snapshot.venue, snapshot.symbol, depth=depth)
        book.apply_snapshot(snapshot)
        return book

    # ------------------------------------------------------------------ applying updates

    def clear(self) -> None:
        """Empty both sides (sequence and validity are left alone)."""
        self._bids = {}
        self._asks = {}
        self._bid_px = []
        self._ask_px = []
        self._bid_touched = {}
        self._ask_touched = {}
        self._bid_searches = 0
        self._ask_searches = 0
        self.best_bid = None
        self.best_ask = None

    def apply(self, update: BookSnapshot | BookDelta) -> None:
        """``apply_snapshot`` or ``apply_delta``, whichever ``update`` calls for."""
        if type(update) is BookDelta:
            self.apply_delta(update)
        elif isinstance(update, BookSnapshot):
            self.apply_snapshot(update)
        else:
            self.apply_delta(update)

    def apply_snapshot(self, snapshot: BookSnapshot) -> None:
        """Replace the whole book with ``snapshot`` and mark it valid."""
        self.clear()
        bids = self._bids
        asks = self._asks
        for price, size in snapshot.bids:
            if size:
                bids[price] = size
            else:
                bids.pop(price, None)
        for price, size in snapshot.asks:
            if size:
                asks[price] = size
            else:
                asks.pop(price, None)
        self._bid_px = sorted(bids)
        self._ask_px = sorted(asks)
        if self.depth is not None:
            self._truncate(self.depth)
        self.best_bid = self._bid_px[-1] if self._bid_px else None
        self.best_ask = self._ask_px[0] if self._ask_px else None
        self.sequence = snapshot.sequence
        self.ts = snapshot.ts
        self.valid = True

    def apply_delta(self, delta: BookDelta) -> None:
        """Apply the changed levels of ``delta`` in order (size zero deletes), then truncate
        each side to ``depth``. Sequence numbers are recorded, not judged."""
        # update_bid/update_ask over each side, inlined: this is the per-message hot path.
        # Levels are indexed rather than unpacked: CPython 3.11 specialises unpacking for exact
        # tuples only, and a BookLevel is a tuple subclass. The best price is kept in a local
        # for the whole side and stored once.
        levels = delta.bids
        if levels:
            bids = self._bids
            touched = self._bid_touched
            best = self.best_bid
            rest = iter(levels)
            if touched is None:
                # Not noting touched prices: no need to tell a new level from a resize, and a
                # comparison with the best is cheaper than the membership test (a resize can
                # never beat the best).
                for level in rest:
                    price = level[0]
                    size = level[1]
                    if size:
                        if best is None or price > best:
                            best = price
                        bids[price] = size
                    elif price in bids:
                        del bids[price]
                        if price == best:
                            best = self._next_bid()
                            touched = self._bid_touched
                            if touched is not None:
                                break  # caught up: the rest of the levels are noted again
            if touched is not None:
                for level in rest:
                    price = level[0]
                    size = level[1]
                    if size:
                        if price not in bids:
                            if touched is not None:
                                touched[price] = None
                            if best is None or price > best:
                                best = price
                        bids[price] = size
                    elif price in bids:
                        del bids[price]
                        if touched is not None:
                            touched[price] = None
                            if len(touched) > _MERGE_AT:  # a catch-up would merge: stop noting
                                touched = self._bid_touched = None
                        if price == best:
                            best = self._next_bid()
                            touched = self._bid_touched
            self.best_bid = best
        levels = delta.asks
        if levels:
            asks = self._asks
            touched = self._ask_touched
            best = self.best_ask
            rest = iter(levels)
            if touched is None:
                # Not noting touched prices: no need to tell a new level from a resize, and a
                # comparison with the best is cheaper than the membership test (a resize can
                # never beat the best).
                for level in rest:
                    price = level[0]
                    size = level[1]
                    if size:
                        if best is None or price < best:
                            best = price
                        asks[price] = size
                    elif price in asks:
                        del asks[price]
                        if price == best:
                            best = self._next_ask()
                            touched = self._ask_touched
                            if touched is not None:
                                break  # caught up: the rest of the levels are noted again
            if touched is not None:
                for level in rest:
                    price = level[0]
                    size = level[1]
                    if size:
                        if price not in asks:
                            if touched is not None:
                                touched[price] = None
                            if best is None or price < best:
                                best = price
                        asks[price] = size
                    elif price in asks:
                        del asks[price]
                        if touched is not None:
                            touched[price] = None
                            if len(touched) > _MERGE_AT:  # a catch-up would merge: stop noting
                                touched = self._ask_touched = None
                        if price == best:
                            best = self._next_ask()
                            touched = self._ask_touched
            self.best_ask = best
        depth = self.depth
        if depth is not None and (len(self._bids) > depth or len(self._asks) > depth):
            self._truncate(depth)
        sequence = delta.sequence
        if sequence is not None:
            self.sequence = sequence
        ts = delta.ts
        if ts:
            self.ts = ts

    def update_bids(self, levels: Iterable[tuple[Decimal, Decimal]]) -> None:
        """Set bid levels in order (size zero deletes). No depth truncation (see apply_delta)."""
        update = self.update_bid
        for price, size in levels:
            update(price, size)

    def update_asks(self, levels: Iterable[tuple[Decimal, Decimal]]) -> None:
        """Set ask levels in order (size zero deletes). No depth truncation (see apply_delta)."""
        update = self.update_ask
        for price, size in levels:
            update(price, size)

    def update_bid(self, price: Decimal, size: Decimal) -> None:
        """Set one bid level (size zero deletes). No depth truncation (see apply_delta)."""
        bids = self._bids
        if size:
            if price not in bids:
                touched = self._bid_touched
                if touched is not None:
                    touched[price] = None
                best = self.best_bid
                if best is None or price > best:
                    self.best_bid = price
            bids[price] = size
        elif price in bids:
            del bids[price]
            touched = self._bid_touched
            if touched is not None:
                touched[price] = None
                if len(touched) > _MERGE_AT:  # a catch-up would merge: stop noting
                    self._bid_touched = None
            if price == self.best_bid:
                self.best_bid = self._next_bid()

    def update_ask(self, price: Decimal, size: Decimal) -> None:
        """Set one ask level (size zero deletes). No depth truncation (see apply_delta)."""
        asks = self._asks
        if size:
            if price not in asks:
                touched = self._ask_touched
                if touched is not None:
                    touched[price] = None
                best = self.best_ask
                if best is None or price < best:
                    self.best_ask = price
            asks[price] = size
        elif price in asks:
            del asks[price]
            touched = self._ask_touched
            if touched is not None:
                touched[price] = None
                if len(touched) > _MERGE_AT:  # a catch-up would merge: stop noting
                    self._ask_touched = None
            if price == self.best_ask:
                self.best_ask = self._next_ask()

    # ------------------------------------------------------------------ the lazy sorted lists

    def _next_bid(self) -> Decimal | None:
        """The best bid, found without sorting: called when the best bid was just deleted."""
        bids = self._bids
        if not bids:
            return None
        touched = self._bid_touched
        searches = self._bid_searches
        if touched is None or len(touched) > _MERGE_AT:
            # Untracked (or about to be merged anyway): scan the side for the max, cheaper than
            # the full merge a catch-up would be, as long as bests are rarely deleted; after
            # _SCANS scans without a catch-up they are not, so catch the side up (scanning
            # every time would cost O(levels) per deleted best).
            if searches >= _SCANS:
                return self._flush_bids()[-1]
            self._bid_searches = searches + 1
            self._bid_touched = None
            return max(bids)
        if searches:
            # The second deleted best since the last catch-up: catch up (a bisect per touched
            # price) so the touched prices are forgotten, rather than search them every time.
            return self._flush_bids()[-1]
        self._bid_searches = 1
        # Every bid is in the sorted list or in ``touched``: the best listed survivor against
        # the best touched price still in the book.
        px = self._bid_px
        i = len(px) - 1
        while i >= 0 and px[i] not in bids:
            i -= 1
        best = px[i] if i >= 0 else None
        if touched:
            fresh = touched.keys() & bids.keys()
            if fresh:
                top = max(fresh)
                if best is None or top > best:
                    best = top
        return best

    def _next_ask(self) -> Decimal | None:
        """The best ask, found without sorting: called when the best ask was just deleted."""
        asks = self._asks
        if not asks:
            return None
        touched = self._ask_touched
        searches = self._ask_searches
        if touched is None or len(touched) > _MERGE_AT:  # see _next_bid
            if searches >= _SCANS:
                return self._flush_asks()[0]
            self._ask_searches = searches + 1
            self._ask_touched = None
            return min(asks)
        if searches:
            return self._flush_asks()[0]
        self._ask_searches = 1
        px = self._ask_px
        n = len(px)
        i = 0
        while i < n and px[i] not in asks:
            i += 1
        best = px[i] if i < n else None
        if touched:
            fresh = touched.keys() & asks.keys()
            if fresh:
                top = min(fresh)
                if best is None or top < best:
                    best = top
        return best

    @staticmethod
    def _catch_up(
        prices: list[Decimal], touched: dict[Decimal, None] | None, levels: dict[Decimal, Decimal]
    ) -> list[Decimal]:
        """``prices`` brought up to ``sorted(levels)``: ``touched`` holds every price whose
        presence may differ between the two (None: any may, unknown which)."""
        if touched is None or len(touched) > _MERGE_AT:
            # One pass: keep the survivors (still sorted), append the prices missing from them,
            # and let timsort merge the two runs.
            kept = [p for p in prices if p in levels]
            if len(kept) != len(levels):
                kept += levels.keys() - set(kept)
                kept.sort()
            return kept
        for price in touched:
            i = bisect_left(prices, price)
            listed = i < len(prices) and prices[i] == price
            if price in levels:
                if not listed:
                    prices.insert(i, price)
            elif listed:
                del prices[i]
        return prices

    def _flush_bids(self) -> list[Decimal]:
        self._bid_searches = 0
        touched = self._bid_touched
        if touched is None:
            self._bid_px = self._catch_up(self._bid_px, None, self._bids)
            self._bid_touched = {}
        elif touched:
            self._bid_px = self._catch_up(self._bid_px, touched, self._bids)
            touched.clear()
        return self._bid_px

    def _flush_asks(self) -> list[Decimal]:
        self._ask_searches = 0
        touched = self._ask_touched
        if touched is None:
            self._ask_px = self._catch_up(self._ask_px, None, self._asks)
            self._ask_touched = {}
        elif touched:
            self._ask_px = self._catch_up(self._ask_px, touched, self._asks)
            touched.clear()
        return self._ask_px

    def _truncate(self, depth: int) -> None:
        px = self._flush_bids()
        extra = len(px) - depth
        if extra > 0:
            bids = self._bids
            for price in px[:extra]:
                del bids[price]
            del px[:extra]
        px = self._flush_asks()
        if len(px) > depth:
            asks = self._asks
            for price in px[depth:]:
                del asks[price]
            del px[depth:]

    # ------------------------------------------------------------------ reading levels

    def sorted_sides(
        self,
    ) -> tuple[list[Decimal], list[Decimal], dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """The book's own structures, caught up with every update: bid prices ascending (best
        last), ask prices ascending (best first), and each side's price -> size dict.

        Not copies: they show the book until its next update or snapshot (after which a read
        may change the lists in place or replace them). Copy what must be kept
        (``prices[-n:]``, ``dict(sizes)``) before the book changes, and never modify them.
        This is the seam :class:`tickloop.client.books.BookView` shares a book through without
        copying it at delivery."""
        return self._flush_bids(), self._flush_asks(), self._bids, self._asks

    def bids(self, n: int | None = None) -> list[BookLevel]:
        """Up to ``n`` bid levels (all when None), best (highest) first."""
        px = self._flush_bids()
        if n is None:
            prices = px[::-1]
        elif n > 0:
            prices = px[-n:][::-1]
        else:
            return []
        return self._levels_of(prices, self._bids, self._bid_levels)

    def asks(self, n: int | None = None) -> list[BookLevel]:
        """Up to ``n`` ask levels (all when None), best (lowest) first."""
        px = self._flush_asks()
        if n is None:
            prices = px
        elif n > 0:
            prices = px[:n]
        else:
            return []
        return self._levels_of(prices, self._asks, self._ask_levels)

    @staticmethod
    def _levels_of(
        prices: list[Decimal], sizes: dict[Decimal, Decimal], memo: dict[Decimal, BookLevel]
    ) -> list[BookLevel]:
        """The BookLevels of ``prices``: the one handed out last time for a price whose price
        and size objects are still the book's (levels are immutable), else a new one."""
        if len(memo) > _TEXT_MEMO:
            memo.clear()
        out: list[BookLevel] = []
        for p in prices:
            s = sizes[p]
            level = memo.get(p)
            if level is None or level[1] is not s or level[0] is not p:
                if _frozen_into is None:
                    level = memo[p] = _new(BookLevel, (p, s))
                else:
                    level = _frozen_into(memo, p, BookLevel, p, s)
            out.append(level)  # not a bound ``append``: compiled, a C call, not a Python one
        return out

    def levels(self, side: Side, n: int | None = None) -> list[BookLevel]:
        """``bids(n)`` for ``Side.BUY``, ``asks(n)`` for ``Side.SELL``."""
        return self.bids(n) if side is _BUY else self.asks(n)

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)

    @property
    def bid_count(self) -> int:
        return len(self._bids)

    @property
    def ask_count(self) -> int:
        return len(self._asks)

    # ------------------------------------------------------------------ top of book

    def best(self, side: Side) -> BookLevel | None:
        """The best level of one side with its size."""
        if side is _BUY:
            price = self.best_bid
            return None if price is None else BookLevel(price, self._bids[price])
        price = self.best_ask
        return None if price is None else BookLevel(price, self._asks[price])

    def size_at(self, side: Side, price: Decimal) -> Decimal:
        """Size resting at ``price`` on one side (zero when there is no level)."""
        return (self._bids if side is _BUY else self._asks).get(price, _ZERO)

    @property
    def mid(self) -> Decimal | None:
        bid = self.best_bid
        ask = self.best_ask
        if bid is None or ask is None:
            return None
        return (bid + ask) / _TWO

    @property
    def spread(self) -> Decimal | None:
        bid = self.best_bid
        ask = self.best_ask
        if bid is None or ask is None:
            return None
        return ask - bid

    @property
    def crossed(self) -> bool:
        """Best bid above best ask: a book no venue can really have."""
        bid = self.best_bid
        ask = self.best_ask
        return bid is not None and ask is not None and bid > ask

    @property
    def locked(self) -> bool:
        """Best bid equal to best ask: impossible on a continuous matching engine."""
        bid = self.best_bid
        ask = self.best_ask
        return bid is not None and ask is not None and bid == ask

    # ------------------------------------------------------------------ statistics

    def cumulative_size(self, side: Side, price: Decimal) -> Decimal:
        """Total size on one side at ``price`` or better (bids >= price, asks <= price)."""
        total = _ZERO
        if side is _BUY:
            px = self._flush_bids()
            bids = self._bids
            for i in range(bisect_left(px, price), len(px)):
                total += bids[px[i]]
            return total
        px = self._flush_asks()
        asks = self._asks
        for i in range(bisect_right(px, price)):
            total += asks[px[i]]
        return total

    def depth_within(self, side: Side, bps: Decimal | int) -> Decimal:
        """Total size on one side within ``bps`` basis points of the mid price (zero when the
        book has no mid). Bids count from ``mid * (1 - bps/10000)`` up, asks up to
        ``mid * (1 + bps/10000)``."""
        mid = self.mid
        if mid is None:
            return _ZERO
        offset = mid * Decimal(bps) / _BPS
        if side is _BUY:
            return self.cumulative_size(side, mid - offset)
        return self.cumulative_size(side, mid + offset)

    def vwap(self, side: Side, size: Decimal) -> Decimal | None:
        """Volume-weighted average price of taking ``size`` from one side, best levels first
        (``Side.SELL`` for what a buyer pays). None when the side holds less than ``size`` or
        ``size`` is not positive."""
        if size <= 0:
            return None
        if side is _BUY:
            book = self._bids
            prices: Iterable[Decimal] = reversed(self._flush_bids())
        else:
            book = self._asks
            prices = self._flush_asks()
        remaining = size
        notional = _ZERO
        for price in prices:
            level = book[price]
            if level >= remaining:
                notional += price * remaining
                return notional / size
            notional += price * level
            remaining -= level
        return None

    def imbalance(self, n: int | None = None) -> Decimal | None:
        """``(bid size - ask size) / (bid size + ask size)`` over the top ``n`` levels a side
        (all when None); in [-1, 1], None when both sides are empty."""
        bid_total = sum((size for _, size in self.bids(n)), _ZERO)
        ask_total = sum((size for _, size in self.asks(n)), _ZERO)
        total = bid_total + ask_total
        if not total:
            return None
        return (bid_total - ask_total) / total

    # ------------------------------------------------------------------ checksums and export

    def checksum_levels(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Top ``n`` levels a side as the venue's strings, for :mod:`tickloop.checksums`."""
        bids = [(decimal_text(p), decimal_text(s)) for p, s in self.bids(n)]
        asks = [(decimal_text(p), decimal_text(s)) for p, s in self.asks(n)]
        return bids, asks

    def top_texts(self, n: int, level_text: LevelText) -> tuple[list[str], list[str]]:
        """``level_text(price, size)`` of the top ``n`` levels a side, best first: exactly
        ``[level_text(p, s) for p, s in self.bids(n)]`` and the same for asks.

        The cheap way to check a venue checksum after every update: each level's text is
        memoised (per side, by price) with the exact price and size objects it was made from,
        so a level whose price and size are the same objects as last time costs a dict lookup
        and two identity tests instead of formatting two Decimals. Any other object, even an
        equal one written with other digits (``1.5`` and ``1.50``), makes the text again.
        """
        return self.side_texts(_BUY, n, level_text)[0], self.side_texts(
            _SELL, n, level_text
        )[0]

    def side_texts(
        self, side: Side, n: int, level_text: LevelText
    ) -> tuple[list[str], Decimal | None]:
        """One side of :meth:`top_texts`, and the price of its ``n``-th best level (None when
        the side has fewer than ``n`` levels): a change strictly worse than that price cannot
        change these texts."""
        if level_text is not self._text_fn:
            self._text_fn = level_text
            self._bid_text = {}
            self._ask_text = {}
        if side is _BUY:
            touched = self._bid_touched
            px = self._bid_px if touched is not None and not touched else self._flush_bids()
            levels = self._bids
            memo = self._bid_text
            top = px[-n:] if n > 0 else []
            top.reverse()
        else:
            touched = self._ask_touched
            px = self._ask_px if touched is not None and not touched else self._flush_asks()
            levels = self._asks
            memo = self._ask_text
            top = px[:n] if n > 0 else []
        if len(memo) > _TEXT_MEMO:
            memo.clear()
        texts: list[str] = []
        for price in top:
            size = levels[price]
            entry = memo.get(price)
            if entry is None or entry[1] is not size or entry[0] is not price:
                text = level_text(price, size)
                if _frozen_into is None:
                    entry = memo[price] = (price, size, text)
                else:
                    entry = _frozen_into(memo, price, tuple, price, size, text)
            texts.append(entry[2])
        return texts, (top[-1] if n > 0 and len(top) == n else None)

    def checksum(self, fn: ChecksumFn, n: int = 25) -> int:
        """The venue checksum ``fn`` of the top ``n`` levels (n >= what ``fn`` reads)."""
        bids, asks = self.checksum_levels(n)
        return fn(bids, asks)

    def snapshot(self, n: int | None = None) -> BookSnapshot:
        """The book (top ``n`` levels a side, all when None) as an immutable BookSnapshot."""
        return BookSnapshot(
            venue=self.venue,
            symbol=self.symbol,
            bids=tuple(self.bids(n)),
            asks=tuple(self.asks(n)),
            sequence=self.sequence,
            ts=self.ts,
        )

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.venue}:{self.symbol} bids={len(self._bids)} "
            f"asks={len(self._asks)} best={self.best_bid}/{self.best_ask} "
            f"seq={self.sequence} valid={self.valid})"
        )


# -- compiled copy (see tickloop._native); nothing below is compiled --

#: The pure-Python class, whichever one :data:`OrderBook` is (tests run both).
PureOrderBook = OrderBook
#: True when :class:`OrderBook` is this module's class compiled by mypyc (built at install
#: time where a C compiler is at hand; ``TICKLOOP_PURE_PYTHON=1`` turns it off).
NATIVE = False
_compiled = native_module(__name__, __file__)
if _compiled is not None and not TYPE_CHECKING:
    OrderBook = _compiled.OrderBook
    NATIVE = True
