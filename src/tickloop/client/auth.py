"""API credentials: a key that signs, and one shared, cached session token.

One :class:`Credentials` object is passed to every client that acts for the same key
(:class:`~tickloop.AsyncClient`, :class:`~tickloop.Client`, the private streams). It is
venue-neutral: what a venue's requests must carry is the venue's
:class:`~tickloop.venues.Authorizer` (the sim's is :class:`tickloop.venues.sim_auth.SimAuth`),
which the HTTP session drives for each private request. Credentials give the authorizer HMACs
keyed with the secret (:meth:`Credentials.hmac_digest`, the
:class:`~tickloop.venues.SigningKey` contract) and cache the session token of venues that
issue one: the first caller logs in (the authorizer's login request, sent through the HTTP
session), the token is kept, and renewed shortly before it expires. Many coroutines asking at
once, even on different event loops in different threads (an ``AsyncClient`` in the main loop
and a sync ``Client`` whose loop runs in its own thread), cause exactly one login: the first
caller performs it and the others wait on a thread-safe future.

Dependencies point one way: this module uses :mod:`tickloop.client.http` (to log in through a
session, or a short-lived one for a bare URL); the HTTP session knows credentials only by the
protocol it calls (``hmac_digest``, ``token``, ``invalidate``).

The secret is kept in a private attribute and used only as an HMAC key: it never appears in
``repr``, logs or exception messages, and neither does the token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..exceptions import AuthError, ConfigError, TickloopError
from ..venues import authorizer as venue_authorizer
from ..venues.base import Authorizer, RestRequest, SessionToken
from .http import HttpSession, Response

__all__ = ["Credentials"]


@runtime_checkable
class _Sender(Protocol):
    """What a login is sent through: an HttpSession, or a stand-in with its ``request``."""

    async def request(self, request: RestRequest) -> Response: ...


class _HasHttp(Protocol):
    @property
    def http(self) -> HttpSession: ...


class _LoginAborted(Exception):
    """The coroutine that was logging in was cancelled: a waiter should try again itself."""


class Credentials:
    """An API key (``key_id`` and ``secret``) and its cached session token.

    ``token_ttl_margin`` is how many seconds before expiry the token is renewed (capped at half
    the token's lifetime, so a short-lived token is not renewed on every call).
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_expires",
        "_inflight",
        "_lock",
        "_logins",
        "_secret",
        "_token",
        "_ttl",
        "key_id",
        "token_ttl_margin",
    )

    def __init__(
        self,
        key_id: str,
        secret: str,
        *,
        token_ttl_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not key_id:
            raise ConfigError("key_id is empty", field="key_id")
        if not secret:
            raise ConfigError("secret is empty", field="secret")
        if token_ttl_margin < 0:
            raise ConfigError("token_ttl_margin must be >= 0", field="token_ttl_margin")
        self.key_id = key_id
        self._secret = secret.encode()
        self.token_ttl_margin = token_ttl_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = float("-inf")  # monotonic time the cached token expires
        self._ttl = 0.0
        self._inflight: concurrent.futures.Future[str] | None = None
        self._logins = 0

    def __repr__(self) -> str:
        state = "token cached" if self._token is not None else "no token"
        return f"Credentials(key_id={self.key_id!r}, secret=<hidden>, {state})"

    def __reduce__(self) -> Any:
        raise TypeError("Credentials cannot be pickled (the secret would be written out)")

    @classmethod
    def from_key(cls, key: Any, **options: Any) -> Credentials:
        """Credentials from anything with ``key_id`` and ``secret`` (such as ``SimApiKey``)."""
        return cls(key.key_id, key.secret, **options)

    @classmethod
    def load(cls, name: str, **options: Any) -> Credentials:
        """The credentials stored under ``name``: from ``TICKLOOP_<NAME>_KEY_ID`` /
        ``TICKLOOP_<NAME>_SECRET``, the OS keyring, or the user's private credentials file, in
        that order (see :mod:`tickloop.client.keystore`; ``tickloop login NAME`` stores them).
        ``options`` are the constructor's."""
        from .keystore import find

        found = find(name)
        return cls(found.key_id, found.secret, **options)

    # -- signing (the SigningKey contract) ----------------------------------------------------
    def hmac_digest(self, payload: bytes, algorithm: str = "sha256") -> bytes:
        """The raw HMAC of ``payload`` keyed with the secret; ``algorithm`` is a hashlib name.
        What a venue's :class:`~tickloop.venues.Authorizer` signs with."""
        try:
            return hmac.new(self._secret, payload, algorithm).digest()
        except ValueError:
            raise ConfigError(f"unknown HMAC algorithm {algorithm!r}", field="algorithm") from None

    def sign(self, payload: str | bytes) -> str:
        """Lower-case hex HMAC-SHA256 of ``payload`` keyed with the secret."""
        data = payload.encode() if isinstance(payload, str) else payload
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def signed_headers(
        self,
        method: str,
        path_with_query: str,
        body: bytes = b"",
        *,
        ts_ms: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The sim's signed headers for one request: the same as
        ``SimAuth.signed_headers(credentials, ...)`` (tickloop.venues.sim_auth, where the
        scheme lives; docs/protocol.md, Authentication). A fresh random nonce each call."""
        from ..venues.sim_auth import SimAuth

        return SimAuth.signed_headers(self, method, path_with_query, body, ts_ms=ts_ms, nonce=nonce)

    def login_message(
        self, *, ts_ms: int | None = None, nonce: str | None = None
    ) -> dict[str, Any]:
        """The sim's key-signed WebSocket ``login`` op (no token needed), with a fresh nonce:
        the same as ``SimAuth.login_message(credentials)``."""
        from ..venues.sim_auth import SimAuth

        return SimAuth.login_message(self, ts_ms=ts_ms, nonce=nonce)

    # -- the session token -----------------------------------------------------------------------
    @property
    def logins(self) -> int:
        """How many times these credentials logged in (POST /auth/token) successfully."""
        return self._logins

    def cached_token(self) -> str | None:
        """The cached token if it is still comfortably valid, else None (no I/O)."""
        with self._lock:
            return self._valid_token(self._clock())

    def _valid_token(self, now: float) -> str | None:
        margin = min(self.token_ttl_margin, self._ttl / 2)
        if self._token is not None and now < self._expires - margin:
            return self._token
        return None

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given): the venue
        refused it, so the next :meth:`token` call logs in again."""
        with self._lock:
            if token is None or token == self._token:
                self._token = None
                self._expires = float("-inf")

    async def token(self, via: _Sender | _HasHttp | str, *, venue: str = "sim") -> str:
        """A valid session token, logging in through ``via`` only when needed.

        ``via`` is an :class:`~tickloop.client.http.HttpSession` (its venue's authorizer makes
        the login request), anything with an ``http`` attribute holding one (``AsyncClient``),
        or the REST base URL of ``venue`` (``ex.rest_url`` for the sim: a short-lived session
        is opened for the login). Raises :class:`AuthError` when the key is refused, and
        ConfigError when the venue issues no tokens.
        """
        while True:
            with self._lock:
                cached = self._valid_token(self._clock())
                if cached is not None:
                    return cached
                inflight = self._inflight
                leader = inflight is None
                if inflight is None:
                    inflight = self._inflight = concurrent.futures.Future()
            if not leader:
                try:
                    return await asyncio.wrap_future(inflight)
                except _LoginAborted:
                    continue  # the leader was cancelled: try again (maybe as the leader)
            return await self._login(via, venue, inflight)

    async def _login(
        self, via: _Sender | _HasHttp | str, venue: str, fut: concurrent.futures.Future[str]
    ) -> str:
        try:
            started = self._clock()
            answer = await self._fetch_token(via, venue)
        except BaseException as exc:
            with self._lock:
                self._inflight = None
            if isinstance(exc, TickloopError):
                fut.set_exception(exc)
                # the waiters re-raise it; mark it retrieved so an unawaited future stays quiet
                fut.exception()
            else:
                fut.set_exception(_LoginAborted())
            raise
        with self._lock:
            self._token = answer.token
            self._ttl = max(0.0, answer.ttl)
            self._expires = started + self._ttl  # measured from before the request: safe side
            self._inflight = None
            self._logins += 1
        fut.set_result(answer.token)
        return answer.token

    async def _fetch_token(self, via: _Sender | _HasHttp | str, venue: str) -> SessionToken:
        if isinstance(via, str):
            async with HttpSession(via, venue=venue, credentials=self) as http:
                return await self._fetch_token(http, venue)
        sender: _Sender = via if isinstance(via, _Sender) else via.http
        auth: Authorizer | None = getattr(sender, "authorizer", None)
        if auth is None:
            # an HttpSession without one is of a venue that has none; a stand-in names none
            name: str = getattr(sender, "venue", venue)
            cls = venue_authorizer(name)
            if cls is None:
                raise ConfigError(f"venue {name!r} has no authorizer", field="venue")
            auth = cls()
        request = auth.login_request()
        if request is None:
            raise ConfigError(
                f"venue {auth.venue!r} signs each request and issues no session token",
                field="venue",
            )
        response = await sender.request(request)
        return auth.parse_login(response.body)

    def auth_error(self, message: str) -> AuthError:
        """An AuthError naming the key id (never the secret)."""
        return AuthError(f"{message} (key {self.key_id})")
