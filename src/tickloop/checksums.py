"""Order-book checksums of every venue that defines one (sans-I/O, pure functions).

Each function takes the top levels of a book as ``(price, size)`` pairs of strings written
exactly as the venue writes them, best first, and returns the integer the venue sends. Books that
hold Decimals pass ``decimal_text(d)``, which gives back the venue's digits (Decimal keeps them).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from decimal import Decimal
from itertools import zip_longest

__all__ = ["decimal_text", "kraken_checksum", "okx_checksum", "sim_checksum"]

Pair = tuple[str, str]


def decimal_text(value: Decimal) -> str:
    """A Decimal in plain notation with its own digits (``Decimal("1E-7")`` -> ``0.0000001``)."""
    return format(value, "f")


def _interleaved(bids: Sequence[Pair], asks: Sequence[Pair], depth: int) -> str:
    parts: list[str] = []
    for bid, ask in zip_longest(bids[:depth], asks[:depth]):
        if bid is not None:
            parts.append(f"{bid[0]}:{bid[1]}")
        if ask is not None:
            parts.append(f"{ask[0]}:{ask[1]}")
    return ":".join(parts)


def sim_checksum(bids: Sequence[Pair], asks: Sequence[Pair]) -> int:
    """The embedded exchange's checksum (docs/protocol.md): top 10 a side, interleaved, unsigned."""
    return zlib.crc32(_interleaved(bids, asks, 10).encode())


def okx_checksum(bids: Sequence[Pair], asks: Sequence[Pair]) -> int:
    """OKX v5: top 25 a side interleaved ``bid:size:ask:size``, CRC32 as a signed 32-bit int."""
    crc = zlib.crc32(_interleaved(bids, asks, 25).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _kraken_digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def kraken_checksum(bids: Sequence[Pair], asks: Sequence[Pair]) -> int:
    """Kraken v1/v2: top 10 asks then top 10 bids, price then size, each with the decimal point
    removed and leading zeros stripped, concatenated; unsigned CRC32."""
    parts = [_kraken_digits(p) + _kraken_digits(s) for p, s in asks[:10]]
    parts += [_kraken_digits(p) + _kraken_digits(s) for p, s in bids[:10]]
    return zlib.crc32("".join(parts).encode())
