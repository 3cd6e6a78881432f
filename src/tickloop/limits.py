"""Every bound tickloop puts on what a venue (or a client of the sim) may send, in one place.

A venue can be broken or hostile: it may send a number with a hundred million digits, a message
in ten thousand fragments, a trade id that jumps by 10^15, JSON nested a thousand deep. None of
that may freeze the loop, grow memory without bound, or corrupt a book or a trade stream. Each
bound below has a safe default; a breach is a typed error (:class:`~tickloop.exceptions.
ProtocolError` for a message, :class:`~tickloop.exceptions.LimitExceeded` for a stream that
cannot go on), counted, and visible as a status event. docs/reliability.md lists them with what
each breach produces.

Numbers are checked once per distinct string (the :class:`~tickloop.venues.base.DecimalCache`
validates a string when it first sees it, and every later sighting is a dict hit), so the check
costs nothing on the hot path. :func:`check_number_text` is the grammar every venue's price and
size strings must match: ASCII digits, an optional fraction, an optional exponent, no sign, no
spaces, no underscores, no other digits (``"١"``), bounded in length and in exponent.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

__all__ = [
    "DEFAULT_LIMITS",
    "BoundError",
    "LevelLimitError",
    "Limits",
    "check_decimal",
    "check_number_text",
    "parse_number",
]


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The bounds (docs/reliability.md). Pass one to ``StreamClient(limits=...)``."""

    #: Bytes of one WebSocket frame (picows refuses a bigger frame and closes the connection).
    max_frame_size: int = 16 * 1024 * 1024
    #: Bytes of one message, all its fragments (continuation frames) together.
    max_message_size: int = 16 * 1024 * 1024
    #: Frames of one fragmented message waiting to be reassembled.
    max_pending_frames: int = 4096
    #: Book levels on one side of one message (Binance's deepest snapshot has 5,000).
    max_levels_per_message: int = 20_000
    #: Characters of one price or size string (``"301727260.79999999"`` is 18).
    max_number_length: int = 40
    #: Largest ``abs(adjusted exponent)`` of a price or size: 10^-30 .. 10^30.
    max_exponent: int = 30
    #: Symbols a codec remembers in its name caches (beyond it, names are worked out each time).
    max_symbols: int = 10_000
    #: A trade id further than this past the last one is not trusted until a second trade
    #: continues from it (one bogus id must not make every later real trade a "duplicate").
    max_trade_id_jump: int = 1_000_000
    #: Undecodable frames one connection may send before it is replaced (each one is counted and
    #: reported; beyond this the venue is broken, and reconnecting is the only remedy).
    max_malformed_per_connection: int = 1000
    #: Connections in a row the venue may end by breaking ``max_frame_size`` before the session
    #: gives up with LimitExceeded (instead of reconnecting for ever to the same oversized frame).
    max_oversized_reconnects: int = 3

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                from .exceptions import ConfigError

                raise ConfigError(f"limits.{name} must be an integer >= 1", field=name)


DEFAULT_LIMITS: Final = Limits()


class BoundError(ValueError):
    """A value that breaks a bound of :class:`Limits`; ``limit`` names the field. A codec turns
    it into a :class:`~tickloop.exceptions.ProtocolError` (raised ``from`` it), whose ``limit``
    is then the same, and the session reports it as a ``Malformed`` event with that ``limit``
    and counts it in ``limit_breaches``."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class LevelLimitError(BoundError):
    """One side of one book message has more levels than ``max_levels_per_message``."""

    def __init__(
        self, message: str = "more levels on one side than limits.max_levels_per_message"
    ) -> None:
        super().__init__(message, limit="max_levels_per_message")

# ASCII digits only (re.ASCII): str.isdigit and Decimal() also take "١" (Arabic-Indic one), and
# Decimal() takes "1_0", " 1", "+1", "inf" and "nan", none of which a venue sends.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]{1,6})?", re.ASCII)


def check_number_text(text: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise ValueError unless ``text`` is a non-negative decimal number as venues write them:
    ASCII digits with an optional fraction and exponent, at most ``max_number_length``
    characters, with an adjusted exponent within ``max_exponent``."""
    if len(text) > limits.max_number_length:
        raise BoundError(
            f"number longer than {limits.max_number_length} characters ({len(text)})",
            limit="max_number_length",
        )
    if _NUMBER.fullmatch(text) is None:
        raise ValueError(f"not a decimal number: {text!r}")


def check_decimal(value: Decimal, limits: Limits = DEFAULT_LIMITS) -> Decimal:
    """``value`` when it is a finite, non-negative number within the digit and exponent bounds
    (for Decimals a decoder built from JSON numbers); ValueError otherwise."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    sign, digits, exponent = value.as_tuple()
    if sign:
        raise ValueError(f"negative number: {value}")
    if len(digits) > limits.max_number_length:
        raise BoundError(
            f"number with {len(digits)} digits (at most {limits.max_number_length})",
            limit="max_number_length",
        )
    # Written out in full (a checksum does), a number costs about adjusted - exponent characters:
    # both ends are bounded, zeros included ("0E-999999" would be a million zeros).
    assert isinstance(exponent, int)
    if exponent < -limits.max_exponent or exponent + len(digits) - 1 > limits.max_exponent:
        raise BoundError(f"number out of range: {value:.3e}", limit="max_exponent")
    return value


def parse_number(text: str, limits: Limits = DEFAULT_LIMITS) -> Decimal:
    """``text`` checked (:func:`check_number_text`, :func:`check_decimal`) and as a Decimal."""
    # What venues send nearly always: ASCII digits, maybe one "." between digits, no exponent,
    # at most max_exponent + 1 characters. Such a text passes both checks by construction:
    # finite, no sign, no more digits than characters (within max_number_length), a fraction
    # of at most len - 2 digits and an adjusted exponent of at most len - 1 (both within
    # max_exponent). So neither the regex nor check_decimal's as_tuple is run: a DecimalCache
    # miss (one per distinct price or size string; the sim's sizes rarely repeat) costs about
    # half. Any other text takes the full path below: the same result or the same error.
    n = len(text)
    if n <= limits.max_exponent + 1 and n <= limits.max_number_length and text.isascii():
        whole, dot, fraction = text.partition(".")
        if whole.isdigit() and (not dot or fraction.isdigit()):
            return Decimal(text)
    check_number_text(text, limits)
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the grammar admits only valid literals
        raise ValueError(f"not a decimal number: {text!r}") from None
    return check_decimal(value, limits)
