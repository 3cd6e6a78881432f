"""The local L2 order book (sans-I/O): the :class:`OrderBook` engine and one synchroniser per
venue that keeps it right (sequence rules, checksums, resync). See ``docs/book.md``."""

from __future__ import annotations

from .engine import ChecksumFn, OrderBook
from .sync import (
    Action,
    Apply,
    BinanceSync,
    BookSync,
    CoinbaseSync,
    Emit,
    KrakenSync,
    NeedSnapshot,
    SimSync,
    SnapshotVia,
    SyncState,
    make_sync,
)

__all__ = [
    "Action",
    "Apply",
    "BinanceSync",
    "BookSync",
    "ChecksumFn",
    "CoinbaseSync",
    "Emit",
    "KrakenSync",
    "NeedSnapshot",
    "OrderBook",
    "SimSync",
    "SnapshotVia",
    "SyncState",
    "make_sync",
]
