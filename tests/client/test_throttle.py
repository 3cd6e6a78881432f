"""The token bucket arithmetic, on a fake clock (time is a parameter)."""

from __future__ import annotations

import pytest

from tickloop.client.throttle import Throttle
from tickloop.exceptions import ConfigError


def test_full_bucket_sends_burst_at_once_then_waits() -> None:
    t = Throttle(100, 1.0)  # burst 20, steady 80/s
    delays = [t.reserve(1, 0.0) for _ in range(25)]
    assert delays[:20] == [0.0] * 20
    assert delays[20] == pytest.approx(1 / 80)
    assert delays[24] == pytest.approx(5 / 80)
    assert delays == sorted(delays)  # first come, first served


def test_never_more_than_the_limit_in_any_window() -> None:
    for limit in (10, 200, 1200):
        t = Throttle(limit, 1.0)
        # a long queue: every window [k, k+1) may hold at most ``limit`` units
        sends = [t.reserve(1, 0.0) for _ in range(limit * 5)]
        for k in range(4):
            assert sum(1 for s in sends if k <= s < k + 1) <= limit


def test_weights_cost_more() -> None:
    t = Throttle(100, 1.0)
    assert t.reserve(10, 0.0) == 0.0
    assert t.reserve(10, 0.0) == 0.0
    assert t.reserve(10, 0.0) == pytest.approx(10 / 80)  # the burst of 20 is spent
    assert t.available(0.0) < 0


def test_bucket_refills_with_time() -> None:
    t = Throttle(100, 1.0)
    for _ in range(20):
        t.reserve(1, 0.0)
    assert t.available(0.0) == pytest.approx(0.0)
    assert t.available(0.1) == pytest.approx(8.0)
    assert t.available(10.0) == pytest.approx(20.0)  # never above the burst
    assert t.reserve(1, 10.0) == 0.0


def test_heavy_request_waits_for_a_full_bucket() -> None:
    t = Throttle(10, 1.0)  # burst 2, steady 8/s
    assert t.reserve(5, 0.0) == pytest.approx(3 / 8)


def test_429_blocks_until_retry_after_and_restarts_empty() -> None:
    t = Throttle(100, 1.0)
    t.rate_limited(0.5, now=1.0)
    assert t.blocked_until == 1.5
    assert t.wait_time(1.2) == pytest.approx(0.3)
    assert t.wait_time(1.6) == 0.0
    first = t.reserve(1, 1.0)
    assert first > 0.5  # after the block, and not in a burst
    assert t.rate_factor == 0.5


def test_429_storm_slows_down_and_success_recovers() -> None:
    t = Throttle(100, 1.0)
    nominal = t.rate
    for i in range(20):
        t.rate_limited(None, now=float(i))  # a second apart: each one a new block
    assert t.rate == pytest.approx(nominal * t.min_rate_factor)
    for _ in range(1000):
        t.succeeded()
    assert t.rate == pytest.approx(nominal)


def test_429_without_hint_still_blocks() -> None:
    t = Throttle(100, 1.0)
    t.rate_limited(None, now=0.0)
    assert t.blocked_until > 0.0


def test_observe_only_tightens() -> None:
    t = Throttle(100, 1.0)
    t.observe(5, 0.0)
    assert t.available(0.0) == pytest.approx(5.0)
    t.observe(50, 0.0)  # the venue says more than we believe: ignored
    assert t.available(0.0) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("limit", "period", "burst_fraction"), [(0, 1.0, 0.2), (10, 0, 0.2), (10, 1.0, 1.0)]
)
def test_bad_configuration(limit: float, period: float, burst_fraction: float) -> None:
    with pytest.raises(ConfigError):
        Throttle(limit, period, burst_fraction=burst_fraction)


def test_negative_weight_refused() -> None:
    with pytest.raises(ConfigError):
        Throttle(10).reserve(-1, 0.0)


def test_one_burst_of_429s_halves_the_rate_once() -> None:
    t = Throttle(100, 1.0)
    for _ in range(10):  # ten answers to requests that were in flight together
        t.rate_limited(0.5, now=1.0)
    assert t.rate_factor == 0.5
    t.rate_limited(0.5, now=2.0)  # after the block: a new lesson
    assert t.rate_factor == 0.25
