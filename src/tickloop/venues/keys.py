"""Duplicate JSON keys: a frame in which one object gives a key twice is malformed.

JSON leaves ``{"p": "100.5", "p": "0.0001"}`` undefined, and msgspec (every codec's decoder), like
most decoders, silently keeps the last value: a venue, or anything between it and tickloop, could
have one price believed while a log line, a checksum or another reader sees the other. No venue
sends such a frame, so every stream codec refuses one as a :class:`ProtocolError` (counted,
skipped, reported; a book it belonged to is resynchronised), and the REST codecs refuse such an
answer.

Checking costs one pass over the frame's bytes, not a second parse. :func:`duplicate_keys` is
the hot path's test, called by each codec after its typed decode: 0 when no object of the frame
gives a key twice, anything else when one may. Where the C level decoder is built it is that
module's scan (``_levels_native.duplicate_keys``: keys compared by their bytes within their own
object, tens of nanoseconds a frame, docs/reliability.md has the figures); without it, a regex
over the frame's strings. Both answer "cannot tell" (2) for what they do not read exactly (a
key written with an escape, deep nesting, an object with very many keys), and a non-zero answer
is always settled by :func:`duplicated_key`, the exact check (the standard library's JSON parser
with an ``object_pairs_hook``), so the fast scans can only send a frame to the slow check, never
refuse one by themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec

from ..exceptions import ProtocolError
from ..models import BookDelta, BookSnapshot, Candle, Fill, OrderEvent, Quote, Ticker, Trade
from .levels import native_module

__all__ = [
    "NATIVE",
    "colons",
    "duplicate_keys",
    "duplicated_key",
    "exact_keys",
    "pure_colons",
    "pure_duplicate_keys",
    "refuse_duplicates",
    "stream_of",
]

# Every string of a text without backslashes, with the colon that makes it a key. Without
# escapes a quote only ever opens or closes a string, so matching from the first quote on reads
# each string exactly once.
_STRING = re.compile(rb'"([^"\\]*)"([ \t\r\n]*:)?')


def pure_duplicate_keys(text: bytes | memoryview) -> int:
    """The C scan's answer without C: 0 when every key of the text is a distinct string (so no
    object can give one twice), 2 when it cannot tell (an escape anywhere, or the same key in
    two objects, as in a list of levels as objects): :func:`duplicated_key` then decides."""
    data = bytes(text)
    if b"\\" in data:
        return 2
    keys = [key for key, colon in _STRING.findall(data) if colon]
    return 0 if len(keys) == len(set(keys)) else 2


_native = native_module()
#: Whether :func:`duplicate_keys` is the C scan.
NATIVE: Final = _native is not None

#: ``duplicate_keys(text)``: 0 when no object of ``text`` gives a key twice; 1 or 2 when one does
#: or may (then :func:`refuse_duplicates` settles it).
duplicate_keys: Callable[[bytes | memoryview], int] = (
    _native.duplicate_keys if _native is not None else pure_duplicate_keys
)


def pure_colons(text: bytes | memoryview) -> int:
    """How many bytes of ``text`` are colons (the C module's ``colons`` without C)."""
    return (text if type(text) is bytes else bytes(text)).count(b":")


#: ``colons(text)``: how many bytes of ``text`` are ``:``, the test :func:`exact_keys` makes exact.
colons: Callable[[bytes | memoryview], int] = _native.colons if _native is not None else pure_colons

# Field types whose JSON value holds no key a decode could have read: a frame's colons beyond
# the keys counted are then inside strings or inside raw text, never a key the decoder used.
_FLAT: Final = frozenset({str, int, float, bool, msgspec.Raw})


def exact_keys(struct_type: type) -> int:
    """How many keys a JSON object decoded as ``struct_type`` gives at least, or -1 when that
    cannot be told exactly: the skip-the-scan test of a codec's hot path.

    When every field of a Struct is required (no default), a successful decode saw each of its
    ``k`` names (and its tag, when tagged) as a key at least once: the object, nested Structs
    included, holds ``k`` or more key occurrences, each followed by a colon. A colon in JSON is a
    key's separator or a byte of a string, so when the whole frame holds exactly ``k`` colons
    there are exactly ``k`` key occurrences, each name once: no key is given twice anywhere, and
    the duplicate-key scan can be skipped (``colons(frame) == exact_keys(type(data))``). Any
    other count (a field the struct does not read, a colon in a string, raw text holding an
    object, a key twice) sends the frame to :func:`duplicate_keys` as before. Returns -1 for a
    struct with a default, one decoded from an array, or one with a field whose value can hold
    objects of its own (a dict, a list of Structs, a union), so that no count equals it."""
    total = 0
    config = struct_type.__struct_config__  # type: ignore[attr-defined]
    if config.array_like:  # decoded from an array: its fields are no keys
        return -1
    if config.tag_field is not None:
        total += 1
    for field in msgspec.structs.fields(struct_type):
        if not field.required:
            return -1
        kind = field.type
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            inner = exact_keys(kind)
            if inner < 0:
                return -1
            total += 1 + inner
        elif kind in _FLAT or kind == list[tuple[str, str]]:
            total += 1
        else:
            return -1
    return total


def _ignore(_text: str) -> None:
    """Numbers are not read (a 10,000-digit integer would be refused by ``int()``)."""


class _TooDeep(Exception):
    pass


def duplicated_key(text: bytes | memoryview) -> str | None:
    """The exact check: the first key (innermost object first) that an object of ``text`` gives
    twice, or None. Keys are compared after unescaping (``"\\u0070"`` is ``"p"``). Raises
    ValueError when the text is not JSON the standard library reads, or is nested deeper than
    the interpreter's recursion limit (a frame that cannot be checked is not accepted)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> None:
        if not found:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    found.append(key)
                    break
                seen.add(key)

    try:
        json.loads(
            # UTF-8, as msgspec reads it (json.loads would guess UTF-16 from NULs); a byte that is
            # not UTF-8 (msgspec lets one through in a key it skips) stays itself, so keys still
            # compare by their bytes
            bytes(text).decode("utf-8", "surrogateescape"),
            object_pairs_hook=pairs,
            parse_int=_ignore,
            parse_float=_ignore,
            parse_constant=_ignore,
        )
    except RecursionError:
        raise ValueError("JSON nested too deep to check its keys") from None
    return found[0] if found else None


def refuse_duplicates(
    text: bytes | memoryview,
    *,
    venue: str,
    symbol: str | None = None,
    channel: str | None = None,
) -> None:
    """Raise :class:`ProtocolError` (naming the key, and the stream when given) when an object of
    ``text`` gives a key twice; return when none does. Called when :func:`duplicate_keys` is not
    0."""
    try:
        key = duplicated_key(text)
    except ValueError as exc:
        raise ProtocolError(
            f"malformed frame: {exc}", venue=venue, symbol=symbol, channel=channel
        ) from None
    if key is not None:
        shown = key if len(key) <= 40 else key[:40] + "..."
        raise ProtocolError(
            f"duplicate JSON key {shown!r} (a venue's object gives each key once)",
            venue=venue,
            symbol=symbol,
            channel=channel,
        )


_CHANNELS: Final[dict[type, str]] = {
    Trade: "trades",
    BookDelta: "book",
    BookSnapshot: "book",
    Ticker: "ticker",
    Quote: "ticker",
    Candle: "candles",
    OrderEvent: "orders",
    Fill: "fills",
}


def stream_of(events: Iterable[object]) -> dict[str, str | None]:
    """``symbol`` and ``channel`` of the first market-data event in ``events`` (ProtocolError's
    keywords; both None for control messages), so a refused book message invalidates its
    book."""
    for event in events:
        channel = _CHANNELS.get(type(event))
        if channel is not None:
            symbol = getattr(event, "symbol", None)
            if isinstance(event, OrderEvent):
                symbol = event.order.symbol
            return {"symbol": symbol, "channel": channel}
    return {"symbol": None, "channel": None}
