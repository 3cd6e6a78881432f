"""Book levels straight from a diff's JSON text: ``[["price", "size"], ...]`` -> BookLevels.

Binance and the sim write a side of a diff as a JSON array of ``[price, size]`` string pairs. A
codec declares that field as :data:`WireLevels` and reads it with a :func:`wire_level_decoder`,
which returns a tuple of :class:`BookLevel` of interned Decimals, in order. Where the C decoder
is built, :data:`WireLevels` is :class:`msgspec.Raw` (msgspec skips the text without building
anything) and the decoder reads the text; without it, msgspec decodes string pairs in the same
pass as the message and :func:`~tickloop.venues.base.interned_levels` converts them.

Two implementations, one behaviour:

* :class:`PureLevelDecoder`, the reference: msgspec decodes the text to string pairs, then
  :func:`~tickloop.venues.base.interned_levels` looks each string up in the codec's
  :class:`~tickloop.venues.base.DecimalCache`.
* ``tickloop.venues._levels_native.LevelDecoder``, hand-written C built by the package's build
  hook when a C compiler is at hand (see ``hatch_build.py``). It scans the text in place and
  finds each price and size by its bytes in a bounded table of the Decimals already built, so a
  level costs one allocation (the BookLevel) instead of five (two strings, a pair, a list slot,
  the level) plus two string hashes. Anything but the plain shape (escapes, non-ASCII, a number
  where a string belongs, a stray comma) is handed whole to the pure decoder, so results and
  errors are the pure decoder's; a first-seen string goes through the DecimalCache, which builds
  and validates its Decimal. docs/streaming.md has the figures.

Both refuse a level whose price is zero (a size of zero deletes a level; a price of zero is
nothing a venue sends) and a side of more than ``limits.max_levels_per_message`` levels (the
limits of the cache's :class:`~tickloop.limits.Limits`), which raises
:class:`~tickloop.limits.LevelLimitError`: on every diff, for an integer compare per level in
C (and a price's first digit), a length compare past the unrolled cases in Python.

:func:`level_decoder` picks the compiled one when it was built from this version of the C
source (``tickloop._native``), and ``NATIVE`` says whether it is in use.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import msgspec

from .._native import native_extension
from ..limits import LevelLimitError
from ..models import BookLevel
from .base import DecimalCache, counted_levels, interned_levels

__all__ = [
    "NATIVE",
    "LevelDecoderType",
    "PureLevelDecoder",
    "WireLevelDecoder",
    "WireLevels",
    "level_decoder",
    "native_module",
    "wire_level_decoder",
]

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
        array of string pairs, ``ValueError`` for a string that is not a finite decimal or a
        price of zero, :class:`LevelLimitError` for more pairs than
        ``limits.max_levels_per_message``."""
        return counted_levels(self.cache, _PAIRS.decode(text))


_native = native_extension(
    "tickloop.venues._levels_native", str(Path(__file__).with_name("_levels_native.c"))
)
#: Whether :func:`level_decoder` returns the compiled decoder.
NATIVE: Final = _native is not None


def native_module() -> ModuleType | None:
    """The compiled ``_levels_native`` module when it is built and current (it also holds the
    duplicate-key scan of :mod:`tickloop.venues.keys`), else None."""
    return _native


#: The type a codec's wire struct gives a level array: its JSON text (``msgspec.Raw``) when the
#: C decoder is in use, else msgspec's string pairs, decoded in the same pass as the rest of the
#: message (the faster pure-Python path: a second decode per side would cost ~0.35 µs a diff).
if TYPE_CHECKING:
    WireLevels: TypeAlias = msgspec.Raw | list[tuple[str, str]]
else:
    WireLevels = msgspec.Raw if NATIVE else list[tuple[str, str]]

#: Reads a :data:`WireLevels` field.
WireLevelDecoder = Callable[[WireLevels], tuple[BookLevel, ...]]


def wire_level_decoder(cache: DecimalCache) -> WireLevelDecoder:
    """What a codec reads its :data:`WireLevels` fields with, interning through ``cache``: the
    C decoder, or (pure Python) :func:`~tickloop.venues.base.interned_levels` over the pairs."""
    if _native is None:
        # interned_levels checks the level bound only past its unrolled cases (1-3 pairs).
        pure = interned_levels if cache.limits.max_levels_per_message > 3 else counted_levels
        return cast(WireLevelDecoder, partial(pure, cache))
    return cast(WireLevelDecoder, level_decoder(cache, native=True))


def level_decoder(
    cache: DecimalCache,
    *,
    native: bool | None = None,
    max_entries: int = MAX_ENTRIES,
    seed: int | None = None,
) -> LevelDecoderType:
    """A decoder of level arrays that interns through ``cache``: the compiled one when built and
    current (or when ``native=True``, which raises if it is not), else :class:`PureLevelDecoder`.
    ``max_entries`` bounds the compiled decoder's table of remembered strings; ``seed`` (64 bits)
    is its hash seed, random when None (a fixed one makes which strings collide repeatable, for
    tests). Whatever the seed, a string is in the table right after its lookup: a full probe
    window gives up its first slot (see ``_levels_native.c``)."""
    pure = PureLevelDecoder(cache)
    if native is False or (native is None and _native is None):
        return pure
    if _native is None:
        raise RuntimeError("tickloop.venues._levels_native is not built (or is stale)")
    decoder: LevelDecoderType = _native.LevelDecoder(
        cache,
        BookLevel,
        pure,
        max_entries=max_entries,
        seed=secrets.randbits(64) if seed is None else seed,
        max_levels=cache.limits.max_levels_per_message,
        limit_error=LevelLimitError,
    )
    return decoder
