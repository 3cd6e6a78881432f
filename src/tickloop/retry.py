"""``@tickloop.retry``: the stream client's reconnect policy, for the user's own coroutines.

The arithmetic is :class:`tickloop.client.backoff.Backoff`'s, the one the stream client
reconnects with: exponential waits from ``base_wait`` doubling up to ``max_wait`` (full jitter by
default), at most ``max_retries`` retries, and a call that stayed up ``reset_retry_after``
seconds or more before it failed resets the count (so a long-lived loop, such as a consumer of a
stream, that fails once a day never runs out of retries).

Only transient errors are retried: by default tickloop's :class:`~tickloop.exceptions.NetworkError`
(timeouts included), :class:`~tickloop.exceptions.RateLimitError` (waiting at least its
``retry_after``), an :class:`~tickloop.exceptions.ExchangeError` with a 5xx status, and
``OSError`` / ``asyncio.TimeoutError``. Anything else (a bad request, an auth error, a rejected
order, a bug) is raised at once: retrying it cannot help. ``retry_on`` replaces the test.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from .client.backoff import Backoff
from .exceptions import ConfigError, ExchangeError, NetworkError, RateLimitError

__all__ = ["is_transient", "retry"]

log = logging.getLogger("tickloop.retry")

P = ParamSpec("P")
R = TypeVar("R")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying (the default test of :func:`retry`)."""
    if isinstance(exc, NetworkError | RateLimitError | OSError | asyncio.TimeoutError):
        return True
    return isinstance(exc, ExchangeError) and exc.status is not None and exc.status >= 500


def retry(
    max_retries: int | None = 5,
    base_wait: float = 2.0,
    max_wait: float = 60.0,
    reset_retry_after: float = 30.0,
    *,
    retry_on: Callable[[BaseException], bool] = is_transient,
    jitter: bool = True,
    rng: random.Random | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a coroutine function so transient failures are retried with backoff.

    ``max_retries`` None retries forever. ``clock`` (seconds, monotonic; default the running
    loop's) and ``sleep`` are injectable so tests need not wait. Each retry is logged at
    WARNING with the attempt and the wait; the error's text is tickloop's, which never carries
    secrets. When the retries are spent, the last error is raised as it was.
    """
    # Validates the arguments now, at decoration time, with the field named.
    Backoff(base_wait=base_wait, max_wait=max_wait, max_retries=max_retries,
            reset_retry_after=reset_retry_after)
    if reset_retry_after < 0:
        raise ConfigError("reset_retry_after must be >= 0", field="reset_retry_after")

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"@tickloop.retry decorates coroutine functions (async def); "
                f"{getattr(fn, '__qualname__', fn)!r} is not one",
                field="fn",
            )
        name = getattr(fn, "__qualname__", repr(fn))

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            now = clock or asyncio.get_running_loop().time
            backoff = Backoff(
                base_wait=base_wait,
                max_wait=max_wait,
                max_retries=max_retries,
                reset_retry_after=reset_retry_after,
                jitter=jitter,
                rng=rng if rng is not None else random.Random(),
            )
            while True:
                started = now()
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    if not retry_on(exc):
                        raise
                    backoff.succeeded(now() - started)  # a long-lived call resets the count
                    wait = backoff.next_wait()
                    if wait is None:
                        raise
                    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                        wait = max(wait, exc.retry_after)
                    log.warning(
                        "%s failed (%s: %s); retry %d%s in %.2f s",
                        name,
                        type(exc).__name__,
                        exc,
                        backoff.attempts,
                        "" if max_retries is None else f" of {max_retries}",
                        wait,
                    )
                await sleep(wait)

        return wrapper

    return decorate
