"""Rate-limit arithmetic for one venue, with no I/O and no clock: ``now`` is always a parameter.

A venue declares a budget of ``limit`` weight units per ``period`` seconds and every endpoint a
weight (:attr:`tickloop.venues.base.RestRequest.weight`). :class:`Throttle` is a token bucket
written as a GCRA ("generic cell rate algorithm"): instead of a token count it keeps the
*theoretical arrival time* ``tat`` at which the bucket would be full again. A request of weight
``w`` *reserves* its tokens at once and is told how long to wait, so callers are served in the
order they asked (no thundering herd, no starvation of heavy requests) and the arithmetic is two
additions.

Why the bucket is smaller and slower than the venue's budget: venues count in fixed windows, a
bucket refills continuously. A bucket of ``burst`` units refilled at ``rate`` units/s can put
``burst + rate * period`` units into one window, so ``burst_fraction`` (default 0.2) of the budget
is the burst and the rest the steady rate: ``0.2 L + 0.8 L = L`` per window, never more.

The venue may still disagree (another process shares the key, the venue's clock differs): a 429
answer calls :meth:`Throttle.rate_limited`, which blocks every request until ``Retry-After`` has
passed, restarts the bucket empty after it, and halves the rate; every success then gives back a
little of the rate (additive increase, multiplicative decrease, as TCP does). Under a storm of
429s the client therefore slows down instead of hammering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..exceptions import ConfigError

__all__ = ["Throttle"]

_EPSILON = 1e-9


@dataclass
class Throttle:
    """A token bucket of ``limit`` units per ``period`` seconds (see the module docstring)."""

    limit: float
    period: float = 1.0
    burst_fraction: float = 0.2
    #: Lowest fraction of the nominal rate a storm of 429s can push the bucket down to.
    min_rate_factor: float = 1.0 / 32
    #: Rate factor regained per successful request after a slow-down.
    recovery_step: float = 0.02
    rate_factor: float = field(default=1.0, init=False)
    blocked_until: float = field(default=float("-inf"), init=False)
    _tat: float = field(default=float("-inf"), init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.limit > 0:
            raise ConfigError("rate limit must be > 0", field="rate_limit")
        if not self.period > 0:
            raise ConfigError("rate limit period must be > 0", field="rate_limit")
        if not 0 < self.burst_fraction < 1:
            raise ConfigError("burst_fraction must be in (0, 1)", field="burst_fraction")

    # -- derived quantities ----------------------------------------------------------------------
    @property
    def burst(self) -> float:
        """Units that may go out at once from a full bucket (at least one request of weight 1)."""
        return max(1.0, self.limit * self.burst_fraction)

    @property
    def rate(self) -> float:
        """Current refill rate in units per second (the nominal rate times ``rate_factor``)."""
        return self.limit * (1.0 - self.burst_fraction) / self.period * self.rate_factor

    def available(self, now: float) -> float:
        """Units that could go out at ``now`` without waiting (negative while in debt)."""
        return self.burst - max(0.0, self._tat - now) * self.rate

    # -- operations ------------------------------------------------------------------------------
    def reserve(self, weight: float, now: float) -> float:
        """Take ``weight`` units and return the seconds to wait before sending (0: send now).

        The units are taken even when the caller must wait, so later callers queue behind it.
        A weight above the burst is allowed: it simply waits until the bucket is full.
        """
        if weight < 0:
            raise ConfigError("weight must be >= 0", field="weight")
        interval = 1.0 / self.rate
        tolerance = self.burst * interval
        self._tat = max(self._tat, now) + weight * interval  # an idle bucket is simply full
        allowed_at = self._tat - tolerance
        delay = max(allowed_at - now, self.blocked_until - now)
        return delay if delay > _EPSILON else 0.0  # float dust is not a wait

    def wait_time(self, now: float) -> float:
        """Seconds a request that already reserved must still wait because of a 429 block."""
        return max(0.0, self.blocked_until - now)

    def rate_limited(self, retry_after: float | None, now: float) -> None:
        """The venue answered 429: block until ``now + retry_after``, restart empty, slow down.

        The rate is halved once per block: the other 429s of the same burst answer requests
        sent before the block began and teach nothing new.
        """
        if now >= self.blocked_until:
            self.rate_factor = max(self.min_rate_factor, self.rate_factor * 0.5)
        if retry_after is None or retry_after <= 0:
            retry_after = 1.0 / self.rate  # no hint: at least one request interval
        until = now + retry_after
        if until > self.blocked_until:
            self.blocked_until = until
        # empty at ``until``: requests resume at the steady rate, not in a burst
        interval = 1.0 / self.rate
        self._tat = max(self._tat, until + self.burst * interval)

    def succeeded(self) -> None:
        """A request went through: regain a little of the rate lost to 429s."""
        if self.rate_factor < 1.0:
            self.rate_factor = min(1.0, self.rate_factor + self.recovery_step)

    def observe(self, remaining: float | None, now: float, limit: float | None = None) -> None:
        """The venue reported its budget (``limit`` units per period) and/or the ``remaining``
        units of its window: never believe in more than the venue grants."""
        if limit is not None and 0 < limit < self.limit:
            self.limit = limit  # the key's real budget is smaller than the published one
            self._tat = min(self._tat, now + self.burst / self.rate)
        if remaining is None or remaining < 0:
            return
        if self.available(now) > remaining:
            self._tat = now + (self.burst - remaining) / self.rate
