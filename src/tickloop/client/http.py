"""The one HTTP session class: every REST request to every venue goes through :class:`HttpSession`.

It owns one aiohttp session (one connection pool) and applies, in this order, to each
:class:`~tickloop.venues.base.RestRequest` a codec describes:

1. **deadline**: the whole call, retries and waits included, ends by ``timeout`` seconds
   (:class:`tickloop.TimeoutError`); each attempt also has its own ``attempt_timeout``;
2. **concurrency**: at most ``max_concurrency`` requests in flight;
3. **throttle**: the venue's token bucket (:mod:`tickloop.client.throttle`), charged the
   request's ``weight``, and blocked while a ``Retry-After`` runs;
4. **auth**: private requests get the headers the venue's
   :class:`~tickloop.venues.Authorizer` computes with the key
   (:class:`~tickloop.client.auth.Credentials`): a signature, or the shared session token that
   the credentials cache (logging in through this session when needed); a refused token is
   renewed once;
5. **retries**: with exponential backoff and full jitter (:class:`~tickloop.client.backoff.Backoff`)
   and a budget shared by the session (:class:`~tickloop.client.backoff.RetryBudget`).

Which failures are retried: a 429 and a 503 always (the venue refused to process the request;
a 429's wait is the venue's ``Retry-After``); a connection that could not be made always (nothing
was sent); a lost answer, a timeout or another 5xx only for ``idempotent`` requests, because the
request may have been processed. Order placement is idempotent only because it carries a client
order id that the venue deduplicates, so a retry can never create a second order.

Rate-limit headers (``TL-RateLimit-Limit``/``-Remaining`` for the sim, named by the codec) teach
the throttle the key's real budget, and tokens are reserved only when a request holds one of the
``max_concurrency`` slots, so what is learnt applies to every request not yet sent.

Errors: aiohttp's exceptions never leave this module. Network failures become
:class:`~tickloop.NetworkError` / :class:`~tickloop.TimeoutError` (the aiohttp exception kept as
``__cause__``); non-2xx answers become what the venue codec's ``error()`` says.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
import msgspec
from yarl import URL

from ..exceptions import (
    AuthError,
    ConfigError,
    ExchangeError,
    NetworkError,
    RateLimitError,
    TickloopError,
    TimeoutError,
)
from ..venues import authorizer as venue_authorizer
from ..venues.base import Authorizer, RestRequest
from .backoff import Backoff, RetryBudget
from .throttle import Throttle
from .unclosed import report_unclosed

__all__ = [
    "ErrorMapper",
    "HttpSession",
    "HttpStats",
    "HttpTransport",
    "Response",
    "SessionKey",
    "default_error",
]

#: Turns a non-2xx answer into a tickloop error (a venue codec's ``PublicRest.error``).
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], TickloopError]

#: One HTTP exchange: ``(method, url, body or None, headers) -> (status, body, headers)``.
#: :meth:`HttpSession.send` (aiohttp) is the default; a recorder wraps it, a replay answers
#: from a recording. Everything around it (deadline, throttle, auth, retries) is the same.
HttpTransport = Callable[
    [str, str, bytes | None, Mapping[str, str]], Awaitable[tuple[int, bytes, Mapping[str, str]]]
]

_RETRY_STATUSES = frozenset({500, 502, 503, 504})

# Logged: method, path (never the query, headers or body: no signature, token or secret), the
# error's own message, and waits.
log = logging.getLogger(__name__)


class SessionKey(Protocol):
    """What the session needs of the key that private requests act for
    (:class:`tickloop.Credentials` is one): HMACs for the venue's authorizer, and the cached
    session token of venues that issue one."""

    @property
    def key_id(self) -> str: ...

    def hmac_digest(self, payload: bytes, algorithm: str = "sha256") -> bytes: ...

    async def token(self, via: Any, *, venue: str = ...) -> str: ...

    def invalidate(self, token: str | None = None) -> None: ...


class _NotSent(NetworkError):
    """The connection could not be made: nothing was sent, so any request may be retried."""


class _OutOfTime(TimeoutError):
    """The throttle cannot let the request go before the call's deadline: never retried."""


class Response(msgspec.Struct, frozen=True, gc=False):
    """A successful (2xx) answer."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    recv_ts: int  # wall clock (ns) when the body was read, for models' ``recv_ts``
    attempts: int = 1


@dataclass
class HttpStats:
    """Counters of one session: the server exports those of its platform's REST clients on
    /metrics as ``tickloop_rest_<name>_total`` (``in_flight``: ``tickloop_rest_in_flight``)."""

    requests: int = 0  # calls of request()
    attempts: int = 0  # HTTP exchanges tried
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    network_errors: int = 0
    timeouts: int = 0
    in_flight: int = 0  # HTTP exchanges under way now


def default_error(status: int, body: bytes, headers: Mapping[str, str]) -> TickloopError:
    """A venue-neutral mapping, used when no codec supplies one."""
    text = body[:200].decode("utf-8", "replace")
    if status == 429:
        return RateLimitError(f"HTTP 429: {text}", retry_after=_retry_after(headers))
    if status in (401, 403):
        return AuthError(f"HTTP {status}: {text}")
    return ExchangeError(f"HTTP {status}: {text}", status=status)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _float_header(headers: Mapping[str, str], name: str | None) -> float | None:
    if name is None:
        return None
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _encode_query(params: tuple[tuple[str, str], ...]) -> str:
    # commas and parentheses stay readable (field selections); the signature covers the query
    # exactly as sent, so the URL is passed to aiohttp already encoded
    return "&".join(f"{quote(k, safe='')}={quote(v, safe=',()')}" for k, v in params)


class HttpSession:
    """One connection-pooled HTTP session for one venue (see the module docstring).

    ``base_url`` is the venue's REST root (``http://127.0.0.1:PORT/api/v1``); request paths are
    appended to it. ``authorizer`` signs private requests with ``credentials`` (default: the
    registered authorizer of ``venue``, looked up on the first private request).
    ``rate_limit`` is ``(units, seconds)`` or None for no throttle. Safe for many concurrent
    calls from one event loop; create and use it in the same loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        venue: str = "sim",
        credentials: SessionKey | None = None,
        authorizer: Authorizer | None = None,
        error_mapper: ErrorMapper | None = None,
        rate_limit: tuple[float, float] | None = None,
        max_concurrency: int = 16,
        timeout: float = 30.0,
        attempt_timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.05,
        backoff_max: float = 2.0,
        retry_budget: RetryBudget | None = None,
        remaining_header: str | None = None,
        limit_header: str | None = None,
        headers: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        owner: str | None = None,
        transport: HttpTransport | None = None,
        wall_clock: Callable[[], int] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigError("max_concurrency must be >= 1", field="max_concurrency")
        if not timeout > 0:
            raise ConfigError("timeout must be > 0", field="timeout")
        if not attempt_timeout > 0:
            raise ConfigError("attempt_timeout must be > 0", field="attempt_timeout")
        if max_retries < 0:
            raise ConfigError("max_retries must be >= 0", field="max_retries")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"not an http(s) URL: {base_url!r}", field="url")
        self.base_url = base_url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self.venue = venue
        self.credentials = credentials
        self._authorizer = authorizer
        self._login_request: RestRequest | None = None
        self._error = error_mapper or default_error
        self.throttle = Throttle(*rate_limit) if rate_limit is not None else None
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self.retry_budget = retry_budget or RetryBudget(max_retries=100, window=10.0)
        self._remaining_header = remaining_header
        self._limit_header = limit_header
        self._headers = dict(headers or {})
        self._rng = rng or random.Random()
        self._owner = owner or f"HttpSession({self.base_url!r})"
        self.stats = HttpStats()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None
        self._closed = False
        self._warned = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the pool's (for __del__'s report)
        #: What performs each HTTP exchange (:data:`HttpTransport`); :meth:`send` by default.
        self.transport: HttpTransport = transport if transport is not None else self.send
        #: Stamps each answer's ``recv_ts``: the wall clock live, the recorded time in a replay.
        self.wall_clock: Callable[[], int] = wall_clock if wall_clock is not None else time.time_ns

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<HttpSession {self.venue} {self.base_url} {state}>"

    @property
    def authorizer(self) -> Authorizer | None:
        """The venue's request signer (None: the venue offers no private calls)."""
        if self._authorizer is None:
            cls = venue_authorizer(self.venue)
            if cls is None:
                return None
            self._authorizer = cls()
            self._login_request = None
        return self._authorizer

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> HttpSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool. Idempotent; requests afterwards raise NetworkError."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        session = getattr(self, "_session", None)  # None if __init__ failed
        if session is None or session.closed:
            return
        if not self._warned:
            self._warned = True
            _warn(f"{self._owner} was never closed", ResourceWarning, source=self, stacklevel=2)
            # Visible by default too, as aiohttp's "Unclosed client session" (client/unclosed.py).
            report_unclosed(self, self._owner, self._loop, key="client", warn=False)
        connector = self._connector
        if connector is not None:
            # the synchronous part of close(): no task, no await; the loop may already be closed
            with contextlib.suppress(Exception):
                connector._close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise NetworkError(f"{self._owner} is closed", venue=self.venue)
        session = self._session
        if session is None:
            self._loop = asyncio.get_running_loop()
            self._connector = aiohttp.TCPConnector(
                limit=self.max_concurrency, limit_per_host=self.max_concurrency, ttl_dns_cache=300
            )
            session = self._session = aiohttp.ClientSession(
                connector=self._connector,
                timeout=aiohttp.ClientTimeout(total=None),
                headers=self._headers,
                trust_env=False,
            )
            # aiohttp silently resends idempotent requests once on a reused connection that
            # broke; the retry policy here must be the only one (counted, budgeted, backed off)
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
        return session

    # -- requests --------------------------------------------------------------------------------
    def target(self, request: RestRequest) -> str:
        """The path and query exactly as sent (what a signature covers): ``/api/v1/x?a=1``."""
        path = self._base_path + request.path
        return f"{path}?{_encode_query(request.params)}" if request.params else path

    async def request(self, request: RestRequest) -> Response:
        """Send ``request`` with throttling, auth and retries; the 2xx answer or a TickloopError."""
        self.stats.requests += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                return await self._request(request, deadline)
        except TimeoutError:
            raise
        except builtins.TimeoutError:
            self.stats.timeouts += 1
            raise TimeoutError(
                f"{request.method} {request.path} timed out after {self.timeout:g} s",
                venue=self.venue,
            ) from None

    async def _request(self, request: RestRequest, deadline: float) -> Response:
        loop = asyncio.get_running_loop()
        target = self.target(request)
        url = URL(self.base_url.removesuffix(self._base_path) + target, encoded=True)
        body = request.body or b""
        backoff = Backoff(
            base_wait=self._backoff_base,
            max_wait=self._backoff_max,
            max_retries=self.max_retries,
            rng=self._rng,
        )
        token_renewed = False
        attempt = 0
        while True:
            attempt += 1
            headers, token = await self._auth_headers(request, target, body)
            if self._closed:  # a closed session fails here, without retries
                raise NetworkError(f"{self._owner} is closed", venue=self.venue)
            try:
                status, answer, answer_headers = await self._exchange(
                    request, url, body, headers, deadline
                )
            except _OutOfTime:
                raise
            except NetworkError as exc:
                retryable = request.idempotent or isinstance(exc, _NotSent)
                wait = backoff.next_wait() if retryable else None
                if wait is None or not self.retry_budget.try_spend(loop.time()):
                    raise
                self.stats.retries += 1
                log.debug(
                    "%s %s: retry in %.3f s after %s", request.method, request.path, wait, exc
                )
                await self._sleep(wait, deadline, exc)
                continue
            if 200 <= status < 300:
                if self.throttle is not None:
                    self.throttle.succeeded()
                    self._observe(answer_headers, loop.time())
                backoff.succeeded()
                return Response(status, answer, answer_headers, self.wall_clock(), attempts=attempt)
            if status == 429:
                self._observe(answer_headers, loop.time())
            error = self._error(status, answer, answer_headers)
            if error.venue is None:
                error.venue = self.venue
            if status == 429:
                self.stats.rate_limited += 1
                retry_after = error.retry_after if isinstance(error, RateLimitError) else None
                if self.throttle is not None:
                    self.throttle.rate_limited(retry_after, loop.time())
                wait = backoff.next_wait()
                if wait is None:
                    raise error
                self.stats.retries += 1
                log.info(
                    "%s %s: rate limited, retry after %s s",
                    request.method,
                    request.path,
                    retry_after,
                )
                # the throttle already blocks until Retry-After; without one, back off here
                if self.throttle is None:
                    await self._sleep(max(wait, retry_after or 0.0), deadline, error)
                continue
            if (
                token is not None
                and not token_renewed
                and self.credentials is not None
                and self._authorizer is not None
                and self._authorizer.token_refused(status, answer_headers)
            ):
                # the shared token was refused (expired, or the venue restarted): renew it once
                token_renewed = True
                log.info(
                    "%s %s: session token refused, logging in again", request.method, request.path
                )
                self.credentials.invalidate(token)
                continue
            if status in _RETRY_STATUSES and (request.idempotent or status == 503):
                wait = backoff.next_wait()
                if wait is not None and self.retry_budget.try_spend(loop.time()):
                    self.stats.retries += 1
                    log.debug(
                        "%s %s: retry in %.3f s after %s", request.method, request.path, wait, error
                    )
                    await self._sleep(wait, deadline, error)
                    continue
            raise error

    async def _sleep(self, seconds: float, deadline: float, cause: TickloopError) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() + seconds >= deadline:
            # waiting would only end in the deadline: fail now with the real reason
            raise cause
        await asyncio.sleep(seconds)

    async def _throttle_wait(self, weight: int, deadline: float) -> None:
        throttle = self.throttle
        if throttle is None:
            return
        loop = asyncio.get_running_loop()
        delay = throttle.reserve(weight, loop.time())
        while delay > 0:
            if loop.time() + delay >= deadline:
                raise _OutOfTime(
                    f"rate limit: the request could not be sent before its {self.timeout:g} s "
                    "timeout",
                    venue=self.venue,
                )
            await asyncio.sleep(delay)
            delay = throttle.wait_time(loop.time())  # a 429 may have blocked us meanwhile

    def _observe(self, headers: Mapping[str, str], now: float) -> None:
        """Learn the venue's budget from its rate-limit headers, where it sends them."""
        if self.throttle is None:
            return
        remaining = _float_header(headers, self._remaining_header)
        limit = _float_header(headers, self._limit_header)
        if remaining is not None or limit is not None:
            self.throttle.observe(remaining, now, limit)

    async def _auth_headers(
        self, request: RestRequest, target: str, body: bytes
    ) -> tuple[dict[str, str], str | None]:
        """The authorizer's headers for ``request`` and the session token they carry, if any."""
        if not request.private:
            return {}, None
        credentials = self.credentials
        if credentials is None:
            raise AuthError(f"{request.method} {request.path} needs credentials", venue=self.venue)
        auth = self.authorizer
        if auth is None:
            raise AuthError(
                f"{request.method} {request.path}: venue {self.venue!r} has no authorizer, so "
                "tickloop cannot sign its private requests",
                venue=self.venue,
            )
        login = self._login_request
        if login is None:
            login = self._login_request = auth.login_request()
        token: str | None = None
        if login is not None and request != login:
            token = await credentials.token(self, venue=self.venue)
        return auth.authorize(request, target, body, credentials, token), token

    async def send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """The default :data:`HttpTransport`: one exchange over the aiohttp connection pool."""
        session = self._get_session()
        async with session.request(
            method, URL(url, encoded=True), data=body, headers=headers, allow_redirects=False
        ) as resp:
            return resp.status, await resp.read(), resp.headers

    async def _exchange(
        self,
        request: RestRequest,
        url: URL,
        body: bytes,
        headers: dict[str, str],
        deadline: float,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        loop = asyncio.get_running_loop()
        if body:
            headers = {**headers, "Content-Type": "application/json"}
        method = request.method
        async with self._semaphore:
            # tokens are reserved only once a slot is free, just before sending: a budget learnt
            # from the venue's first answers applies to every request that has not gone yet
            await self._throttle_wait(request.weight, deadline)
            self.stats.attempts += 1
            self.stats.in_flight += 1
            until = min(deadline, loop.time() + self.attempt_timeout)
            try:
                async with asyncio.timeout_at(until):
                    return await self.transport(method, str(url), body or None, headers)
            except builtins.TimeoutError:
                if until >= deadline:
                    raise  # the call's deadline: request() reports it
                self.stats.timeouts += 1
                raise TimeoutError(
                    f"{method} {url.path} got no answer within {self.attempt_timeout:g} s",
                    venue=self.venue,
                ) from None
            except aiohttp.ClientConnectorError as exc:
                self.stats.network_errors += 1
                raise _NotSent(
                    f"cannot connect to {url.host}:{url.port}", venue=self.venue
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                self.stats.network_errors += 1
                raise NetworkError(
                    f"{method} {url.path} failed: {type(exc).__name__}", venue=self.venue
                ) from exc
            finally:
                self.stats.in_flight -= 1
