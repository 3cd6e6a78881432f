"""Book levels straight from a diff's JSON text: ``[["price", "size"], ...]`` -> BookLevels.

Binance and the sim write a side of a diff as a JSON array of ``[price, size]`` string pairs. A
codec decodes that side as :class:`msgspec.Raw` (msgspec skips it without building anything)
and hands the text to a :func:`level_decoder`, which returns a tuple of :class:`BookLevel` of
interned Decimals, in order.

Two implementations, one behaviour:

* :class:`PureLevelDecoder`, the reference: msgspec decodes the text to string pairs, then
  :func:`~tickloop.venues.base.book_levels` looks each string up in the codec's
  :class:`~tickloop.venues.base.DecimalCache`.
* ``tickloop.venues._levels_native.LevelDecoder``, hand-written C built by the package's build
  hook when a C compiler is at hand (see ``hatch_build.py``). It scans the text in place and
  finds each price and size by its bytes in a bounded table of the Decimals already built, so a
  level costs one allocation (the BookLevel) instead of five (two strings, a pair, a list slot,
  the level) plus two string hashes. Anything but the plain shape (escapes, non-ASCII, a number
  where a string belongs, a stray comma) is handed whole to the pure decoder, so results and
  errors are the pure decoder's; a first-seen string goes through the DecimalCache, which builds
  and validates its Decimal. docs/streaming.md has the figures.

:func:`level_decoder` picks the compiled one when it was built from this version of the C
source (``tickloop._native``), and ``NATIVE`` says whether it is in use.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from .._native import native_extension
from ..models import BookLevel
from .base import DecimalCache, book_levels

__all__ = ["NATIVE", "LevelDecoderType", "PureLevelDecoder", "level_decoder"]

#: Bytes-like JSON text (``bytes``, ``memoryview``, ``msgspec.Raw``) -> levels.
LevelDecoderType = Callable[[bytes | memoryview | msgspec.Raw], tuple[BookLevel, ...]]

#: Most price/size strings the compiled decoder remembers before it empties its table.
MAX_ENTRIES: Final = 65_536

_PAIRS = msgspec.json.Decoder(list[tuple[str, str]])


class PureLevelDecoder:
    """The reference decoder: msgspec to string pairs, then the DecimalCache."""

    __slots__ = ("cache",)

    def __init__(self, cache: DecimalCache) -> None:
        self.cache = cache

    def __call__(self, text: bytes | memoryview | msgspec.Raw) -> tuple[BookLevel, ...]:
        """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` for text that is not an
        array of string pairs, ``ValueError`` for a string that is not a finite decimal."""
        return book_levels(_PAIRS.decode(text), self.cache)


_native = native_extension(
    "tickloop.venues._levels_native", str(Path(__file__).with_name("_levels_native.c"))
)
#: Whether :func:`level_decoder` returns the compiled decoder.
NATIVE: Final = _native is not None


def level_decoder(
    cache: DecimalCache, *, native: bool | None = None, max_entries: int = MAX_ENTRIES
) -> LevelDecoderType:
    """A decoder of level arrays that interns through ``cache``: the compiled one when built and
    current (or when ``native=True``, which raises if it is not), else :class:`PureLevelDecoder`.
    ``max_entries`` bounds the compiled decoder's table of remembered strings."""
    pure = PureLevelDecoder(cache)
    if native is False or (native is None and _native is None):
        return pure
    if _native is None:
        raise RuntimeError("tickloop.venues._levels_native is not built (or is stale)")
    decoder: LevelDecoderType = _native.LevelDecoder(
        cache, BookLevel, pure, max_entries=max_entries, seed=secrets.randbits(64)
    )
    return decoder
