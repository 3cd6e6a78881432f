"""``@tickloop.retry``: backoff arithmetic shared with the stream client, transient errors only."""

from __future__ import annotations

import logging

import pytest

import tickloop
from tickloop.exceptions import (
    AuthError,
    ConfigError,
    ExchangeError,
    InvalidRequest,
    NetworkError,
    RateLimitError,
)
from tickloop.retry import is_transient


class FakeTime:
    """A clock the test moves, and a sleep that moves it instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _retry(t: FakeTime, **kw: object):  # type: ignore[no-untyped-def]
    return tickloop.retry(jitter=False, clock=t.clock, sleep=t.sleep, **kw)  # type: ignore[arg-type]


async def test_waits_double_up_to_max_then_the_last_error_is_raised() -> None:
    t = FakeTime()
    calls = 0

    @_retry(t, max_retries=5, base_wait=2, max_wait=10, reset_retry_after=30)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise NetworkError(f"down {calls}")

    with pytest.raises(NetworkError, match="down 6"):
        await flaky()
    assert calls == 6  # the first call and five retries
    assert t.waits == [2, 4, 8, 10, 10]


async def test_success_after_failures_returns_the_value() -> None:
    t = FakeTime()
    outcomes: list[Exception | None] = [NetworkError("x"), ExchangeError("busy", status=503), None]

    @_retry(t, max_retries=5, base_wait=1, max_wait=60)
    async def call(x: int) -> int:
        exc = outcomes.pop(0)
        if exc is not None:
            raise exc
        return x * 2

    assert await call(21) == 42
    assert t.waits == [1, 2]


@pytest.mark.parametrize(
    "exc",
    [AuthError("bad key"), InvalidRequest("size", field="size"), ExchangeError("no", status=400),
     ValueError("bug"), ConfigError("x")],
)
async def test_non_retryable_errors_stop_at_once(exc: Exception) -> None:
    t = FakeTime()
    calls = 0

    @_retry(t)
    async def call() -> None:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(type(exc)):
        await call()
    assert calls == 1 and t.waits == []


async def test_a_call_that_stayed_up_long_enough_resets_the_count() -> None:
    t = FakeTime()
    lifetimes = [1.0, 1.0, 40.0, 1.0, 1.0]  # the third run stays up past reset_retry_after
    calls = 0

    @_retry(t, max_retries=3, base_wait=1, max_wait=60, reset_retry_after=30)
    async def loop() -> None:
        nonlocal calls
        calls += 1
        t.now += lifetimes.pop(0) if lifetimes else 1.0
        raise NetworkError("dropped")

    with pytest.raises(NetworkError):
        await loop()
    # 1, 2, then the long run resets: 1, 2, 4 and the budget of 3 is spent
    assert t.waits == [1, 2, 1, 2, 4]
    assert calls == 6


async def test_rate_limit_waits_at_least_retry_after() -> None:
    t = FakeTime()
    outcomes: list[Exception | None] = [RateLimitError("slow down", retry_after=7.5), None]

    @_retry(t, base_wait=1)
    async def call() -> str:
        exc = outcomes.pop(0)
        if exc is not None:
            raise exc
        return "ok"

    assert await call() == "ok"
    assert t.waits == [7.5]


async def test_retry_on_replaces_the_test_and_each_retry_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = FakeTime()
    outcomes: list[Exception | None] = [KeyError("k"), None]

    @_retry(t, base_wait=0.5, retry_on=lambda e: isinstance(e, KeyError))
    async def call() -> int:
        exc = outcomes.pop(0)
        if exc is not None:
            raise exc
        return 1

    with caplog.at_level(logging.WARNING, logger="tickloop.retry"):
        assert await call() == 1
    assert "retry 1 of 5 in 0.50 s" in caplog.text
    assert "KeyError" in caplog.text


async def test_jittered_waits_stay_under_the_cap() -> None:
    t = FakeTime()
    import random

    @tickloop.retry(max_retries=8, base_wait=1, max_wait=5, rng=random.Random(3), clock=t.clock,
                    sleep=t.sleep)
    async def call() -> None:
        raise NetworkError("x")

    with pytest.raises(NetworkError):
        await call()
    caps = [1, 2, 4, 5, 5, 5, 5, 5]
    assert len(t.waits) == 8
    assert all(0 <= w <= cap for w, cap in zip(t.waits, caps, strict=True))


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        tickloop.retry(base_wait=-1)
    assert err.value.field == "base_wait"
    with pytest.raises(ConfigError) as err:
        tickloop.retry(base_wait=10, max_wait=1)
    assert err.value.field == "max_wait"
    with pytest.raises(ConfigError, match="coroutine"):
        tickloop.retry()(lambda: None)  # type: ignore[arg-type, return-value]


def test_is_transient() -> None:
    assert is_transient(NetworkError("x"))
    assert is_transient(tickloop.TimeoutError("x"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ExchangeError("x", status=404))
    assert not is_transient(ExchangeError("x"))
