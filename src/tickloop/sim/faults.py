"""Fault injection for the embedded exchange: misbehaviour on purpose, for tests and demos.

:class:`Faults` holds the knobs; the server and the feed consult it on every request and frame.
Every knob is a count or a deadline, so a fault ends by itself (``reset()`` ends them all now).
Deadlines are monotonic (``loop.time()``), injected as ``clock``.

================================  ==============================================================
``await disconnect_all()``        drop every client WebSocket connection now (TCP closed, no
                                  close handshake)
``drop_every(s)``                 ... and again every ``s`` seconds (``None`` stops it)
``drop_probability(p)``           each second, drop each connection with probability ``p``
``stall(s)``                      stay connected but send nothing for ``s`` seconds: no data, no
                                  heartbeat, no pong (frames due meanwhile are lost)
``skip_sequence(symbol)``         the next book update of ``symbol`` skips a sequence number
``malformed(n)``                  the next ``n`` broadcast data frames are sent truncated (their
                                  data is lost to every client that receives them)
``hostile(n)``                    the next ``n`` broadcast data frames carry a hostile value in
                                  turn: a price of ``1e300000000``, a negative size, a size
                                  ``"١"``, a 10,000-digit price, JSON nested 5,000 deep (their
                                  data is lost to every client that refuses them, as it must)
``rate_limit(n, retry_after)``    the next ``n`` REST requests answer 429 with ``Retry-After``
``fail_requests(n, status)``      the next ``n`` REST requests answer ``status`` (503) unprocessed
``drop_responses(n)``             the next ``n`` REST requests are processed, then the TCP
                                  connection is closed without an answer
``latency(s)``                    every REST answer and WebSocket frame is delayed by ``s``
================================  ==============================================================
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError

__all__ = ["FAULT_NAMES", "HOSTILE_KINDS", "Faults", "RestFault", "hostile_frame"]

#: The hostile values ``hostile(n)`` injects, in turn.
HOSTILE_KINDS = (
    "huge_exponent",
    "negative_size",
    "arabic_digit",
    "long_digits",
    "deep_nesting",
    "duplicate_key",
    "zero_price",
)

#: Faults that ``tickloop sim --fault NAME=VALUE`` accepts.
FAULT_NAMES = (
    "hostile",
    "drop_every",
    "drop_probability",
    "latency",
    "malformed",
    "rate_limit",
    "fail_requests",
    "drop_responses",
    "stall",
)


@dataclass(frozen=True, slots=True)
class RestFault:
    """A REST request that must not be processed normally: answer ``status`` at once."""

    status: int
    retry_after: float | None = None  # set for 429


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"{name} must be >= 0, got {value!r}", field=name)


class Faults:
    """The fault knobs of one exchange (see the module docstring)."""

    def __init__(
        self,
        *,
        disconnect: Callable[[], Awaitable[int]],
        skip: Callable[[str], None],
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self._disconnect = disconnect
        self._skip = skip
        self._clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.reset()

    def reset(self) -> None:
        """End every fault now."""
        self.stalled_until = 0.0
        self.malformed_left = 0
        self.hostile_left = 0
        self.hostile_next = 0
        self.rate_limit_left = 0
        self.rate_limit_retry_after = 0.2
        self.fail_left = 0
        self.fail_status = 503
        self.drop_responses_left = 0
        self.latency_s = 0.0
        self.drop_interval: float | None = None
        self.next_drop_at = 0.0
        self.drop_p = 0.0

    def __repr__(self) -> str:
        active = [
            name
            for name, on in (
                ("stall", self.stalled_until > self._clock()),
                ("malformed", self.malformed_left > 0),
                ("hostile", self.hostile_left > 0),
                ("rate_limit", self.rate_limit_left > 0),
                ("fail_requests", self.fail_left > 0),
                ("drop_responses", self.drop_responses_left > 0),
                ("latency", self.latency_s > 0),
                ("drop_every", self.drop_interval is not None),
                ("drop_probability", self.drop_p > 0),
            )
            if on
        ]
        return f"Faults(active={active})"

    # -- WebSocket ---------------------------------------------------------------------------------
    async def disconnect_all(self) -> int:
        """Drop every client WebSocket connection now; returns how many were dropped."""
        return await self._disconnect()

    def drop_every(self, seconds: float | None) -> None:
        """Drop every connection every ``seconds`` (``None`` stops the periodic drops)."""
        if seconds is None:
            self.drop_interval = None
            return
        if not seconds > 0:
            raise ConfigError(f"drop_every must be > 0, got {seconds!r}", field="drop_every")
        self.drop_interval = float(seconds)
        self.next_drop_at = self._clock() + seconds

    def drop_probability(self, p: float) -> None:
        """Each second, drop each connection with probability ``p`` (0 stops it)."""
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"drop_probability must be in [0, 1], got {p!r}", field="p")
        self.drop_p = float(p)

    def stall(self, seconds: float) -> None:
        """Keep connections open but send nothing at all for ``seconds``."""
        _non_negative("stall", seconds)
        self.stalled_until = max(self.stalled_until, self._clock() + seconds)

    def stalled(self, now: float) -> bool:
        return now < self.stalled_until

    def skip_sequence(self, symbol: str) -> None:
        """The next book update of ``symbol`` skips a sequence number."""
        self._skip(symbol)

    def malformed(self, n: int = 1) -> None:
        """The next ``n`` broadcast data frames are truncated."""
        _non_negative("malformed", n)
        self.malformed_left += int(n)

    def take_malformed(self) -> bool:
        if self.malformed_left > 0:
            self.malformed_left -= 1
            return True
        return False

    def hostile(self, n: int = 1) -> None:
        """The next ``n`` broadcast data frames carry a hostile value (:data:`HOSTILE_KINDS`,
        in turn)."""
        _non_negative("hostile", n)
        self.hostile_left += int(n)

    def take_hostile(self) -> str | None:
        if self.hostile_left <= 0:
            return None
        self.hostile_left -= 1
        kind = HOSTILE_KINDS[self.hostile_next % len(HOSTILE_KINDS)]
        self.hostile_next += 1
        return kind

    def latency(self, seconds: float) -> None:
        """Delay every REST answer and WebSocket frame by ``seconds`` (0 stops it)."""
        _non_negative("latency", seconds)
        self.latency_s = float(seconds)

    def due_drops(self, now: float, connections: int) -> tuple[bool, list[int]]:
        """Drops due now, ``(drop_all, indexes to drop)``; called once a second."""
        drop_all = False
        if self.drop_interval is not None and now >= self.next_drop_at:
            drop_all = True
            self.next_drop_at = now + self.drop_interval
        picked: list[int] = []
        if self.drop_p > 0:
            picked = [i for i in range(connections) if self.rng.random() < self.drop_p]
        return drop_all, picked

    # -- REST ----------------------------------------------------------------------------------
    def rate_limit(self, n: int = 1, retry_after: float = 0.2) -> None:
        """The next ``n`` REST requests answer 429 with ``Retry-After`` ``retry_after`` seconds."""
        _non_negative("rate_limit", n)
        if not retry_after > 0:
            raise ConfigError(f"retry_after must be > 0, got {retry_after!r}", field="retry_after")
        self.rate_limit_left += int(n)
        self.rate_limit_retry_after = float(retry_after)

    def fail_requests(self, n: int = 1, status: int = 503) -> None:
        """The next ``n`` REST requests answer ``status`` without being processed."""
        _non_negative("fail_requests", n)
        if not 400 <= status <= 599:
            raise ConfigError(
                f"status must be an HTTP error status, got {status!r}", field="status"
            )
        self.fail_left += int(n)
        self.fail_status = int(status)

    def drop_responses(self, n: int = 1) -> None:
        """The next ``n`` REST requests are processed, then their connection closes unanswered."""
        _non_negative("drop_responses", n)
        self.drop_responses_left += int(n)

    def take_rest_fault(self) -> RestFault | None:
        if self.rate_limit_left > 0:
            self.rate_limit_left -= 1
            return RestFault(429, self.rate_limit_retry_after)
        if self.fail_left > 0:
            self.fail_left -= 1
            return RestFault(self.fail_status)
        return None

    def take_drop_response(self) -> bool:
        if self.drop_responses_left > 0:
            self.drop_responses_left -= 1
            return True
        return False

    # -- command line ----------------------------------------------------------------------------
    def apply_spec(self, spec: str) -> None:
        """Apply ``NAME=VALUE`` (``tickloop sim --fault drop_every=5``); ConfigError if bad."""
        name, sep, raw = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in FAULT_NAMES:
            raise ConfigError(
                f"bad fault {spec!r}: expected NAME=VALUE, NAME one of {', '.join(FAULT_NAMES)}",
                field="fault",
            )
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(
                f"bad fault {spec!r}: {raw!r} is not a number", field="fault"
            ) from None
        if name in ("malformed", "hostile", "rate_limit", "fail_requests", "drop_responses"):
            getattr(self, name)(int(value))
        else:
            getattr(self, name)(value)


def hostile_frame(message: Mapping[str, Any], kind: str) -> bytes:
    """``message`` (a trade or book message of the protocol) with one hostile value of
    ``kind`` (:data:`HOSTILE_KINDS`), as the frame to send."""
    if kind == "deep_nesting":
        return b'{"type":' + b"[" * 5000 + b"]" * 5000 + b"}"
    if kind == "duplicate_key":
        # The message as sent, then a key of it again with another well-formed value: a
        # decoder that keeps the last value would believe a price or a level never quoted.
        text = json.dumps(message, separators=(",", ":"))
        if "bids" in message or "asks" in message:
            extra = ',"bids":[["1.00","1.0000"]]'
        else:
            extra = ',"price":"1.00"'
        return (text[:-1] + extra + "}").encode()
    value = {
        "huge_exponent": "1e300000000",
        "negative_size": "-0.5",
        "arabic_digit": "\u0661",
        "long_digits": "9" * 10_000,
        "zero_price": "0.00",
    }[kind]
    out = dict(message)
    field = "size" if kind in ("negative_size", "arabic_digit") else "price"
    if "bids" in out or "asks" in out:
        side = "bids" if out.get("bids") else "asks"
        levels = [list(level) for level in out.get(side) or [["1.00", "1.0000"]]]
        levels[0][1 if field == "size" else 0] = value
        out[side] = levels
    else:
        out[field] = value
    text = json.dumps(out, separators=(",", ":"))
    return text.replace("\\u0661", "\u0661").encode()
