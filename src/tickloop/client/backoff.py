"""Retry arithmetic, with no I/O and no clock: how long to wait before attempt N, and when to stop.

Exponential backoff with "full jitter" (a uniformly random wait between zero and the capped
exponential): the spread keeps many clients that lost the same venue from reconnecting in step.
The random source is injected so tests are deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..exceptions import ConfigError

__all__ = ["Backoff", "RetryBudget"]


@dataclass
class Backoff:
    """Waits for successive failed attempts.

    ``base_wait`` and ``max_wait`` are seconds. ``max_retries`` None retries forever. A
    connection that stayed up ``reset_retry_after`` seconds or more resets the count (call
    :meth:`succeeded` with how long it lasted).
    """

    base_wait: float = 0.1
    max_wait: float = 30.0
    max_retries: int | None = None
    reset_retry_after: float = 60.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.base_wait < 0:
            raise ConfigError("base_wait must be >= 0", field="base_wait")
        if self.max_wait < self.base_wait:
            raise ConfigError("max_wait must be >= base_wait", field="max_wait")
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigError("max_retries must be >= 0 or None", field="max_retries")

    @property
    def exhausted(self) -> bool:
        return self.max_retries is not None and self.attempts >= self.max_retries

    def next_wait(self) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        if self.exhausted:
            return None
        cap = min(self.max_wait, self.base_wait * (2.0 ** min(self.attempts, 62)))
        self.attempts += 1
        return self.rng.uniform(0.0, cap) if self.jitter else cap

    def succeeded(self, lasted: float | None = None) -> None:
        """Record a success. Without ``lasted`` the count resets at once (a request that worked);
        with it, only a connection that stayed up long enough resets the count."""
        if lasted is None or lasted >= self.reset_retry_after:
            self.attempts = 0


@dataclass
class RetryBudget:
    """A budget of retries over a sliding window, shared by many requests: stops a storm of
    failures from turning into a storm of retries. ``now`` comes from a monotonic clock."""

    max_retries: int = 100
    window: float = 10.0
    _spent: list[float] = field(default_factory=list, init=False, repr=False)

    def try_spend(self, now: float) -> bool:
        cutoff = now - self.window
        spent = self._spent
        while spent and spent[0] <= cutoff:
            spent.pop(0)
        if len(spent) >= self.max_retries:
            return False
        spent.append(now)
        return True
