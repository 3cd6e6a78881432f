# Stub of the C extension built from _levels_native.c (see tickloop.venues.levels).
from collections.abc import Callable
from typing import Final

import msgspec

from ..models import BookLevel
from .base import DecimalCache

SOURCE_DIGEST: Final[str]

class LevelDecoder:
    def __init__(
        self,
        cache: DecimalCache,
        level_type: type[BookLevel],
        fallback: Callable[[bytes | memoryview | msgspec.Raw], tuple[BookLevel, ...]],
        max_entries: int = 65536,
        seed: int = 0,
        max_levels: int = ...,
        limit_error: Callable[[str], BaseException] = ...,
    ) -> None: ...
    def __call__(self, text: bytes | memoryview | msgspec.Raw, /) -> tuple[BookLevel, ...]: ...
    def forget(self) -> None: ...
    @property
    def entries(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def max_entries(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def fallbacks(self) -> int: ...
    @property
    def max_levels(self) -> int: ...
    @property
    def cache(self) -> DecimalCache: ...

def duplicate_keys(text: bytes | memoryview, /) -> int: ...
def colons(text: bytes | memoryview, /) -> int: ...
