"""The exchange side of authentication and rate limiting (sans-I/O: time is a parameter).

Keys, signatures, session tokens and weighted request budgets as docs/protocol.md defines them.
Nothing here reads a clock or touches a socket: the server passes the wall-clock time the client
signed against (``now_ms``) and a monotonic time for expiries and windows (``now``). A failure is
an :class:`AuthFailure` carrying one of the protocol's 401 codes and a message that never
repeats a secret, a signature or a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

__all__ = [
    "MAX_REMEMBERED_SIGNATURES",
    "STALE_AFTER_MS",
    "AuthFailure",
    "KeyStore",
    "RateLimiter",
    "SimApiKey",
    "Verdict",
    "sign",
]

#: A signed timestamp further than this from the server's clock is stale.
STALE_AFTER_MS = 5_000
#: Signatures remembered at once to refuse replays (each for as long as its timestamp is fresh).
MAX_REMEMBERED_SIGNATURES = 100_000
_NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True, slots=True)
class SimApiKey:
    """An API key of the embedded exchange. The secret never appears in a repr."""

    key_id: str
    secret: str = field(repr=False)


class AuthFailure(Exception):
    """A request or login that fails authentication; ``code`` is the protocol's 401 code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sign(secret: str, payload: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` keyed with ``secret`` (UTF-8)."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


@dataclass(slots=True)
class _Token:
    key_id: str
    expires: float  # monotonic
    expires_at: int  # wall clock ns, what the client is told


class KeyStore:
    """API keys and the session tokens issued for them. A key's account is its key id."""

    def __init__(self, *, token_ttl: float = 300.0) -> None:
        self.token_ttl = token_ttl
        self._secrets: dict[str, str] = {}
        self._tokens: dict[str, _Token] = {}
        #: (key id, signature) -> wall-clock ms until which its timestamp is fresh
        self._seen: dict[tuple[str, str], int] = {}

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._secrets

    def create(self) -> SimApiKey:
        key = SimApiKey(key_id="tk_" + secrets.token_hex(8), secret=secrets.token_urlsafe(32))
        self._secrets[key.key_id] = key.secret
        return key

    # -- signatures ----------------------------------------------------------------------------
    def verify_signed(
        self,
        key_id: str,
        ts: str,
        sig: str,
        rest: bytes,
        *,
        now_ms: int,
        nonce: str | None = None,
    ) -> str:
        """Check a signature over ``ts`` (then ``nonce`` when one is sent) then ``rest``; return
        the key id.

        ``rest`` is ``METHOD + PATH_WITH_QUERY + BODY`` for REST and ``b"login"`` for a
        WebSocket login. A signature is accepted once: a second request with the same one
        while its timestamp is still fresh is a replay (``replayed``). The client's nonce
        makes two identical requests in one millisecond two different signatures.
        """
        secret = self._secrets.get(key_id)
        if secret is None:
            raise AuthFailure("unknown_key", "no such API key")
        try:
            ts_ms = int(ts)
        except ValueError:
            raise AuthFailure("stale_timestamp", "timestamp is not integer milliseconds") from None
        if abs(now_ms - ts_ms) > STALE_AFTER_MS:
            raise AuthFailure(
                "stale_timestamp",
                f"timestamp is {abs(now_ms - ts_ms)} ms away from the server clock "
                f"(at most {STALE_AFTER_MS} ms allowed)",
            )
        if nonce is not None and _NONCE.fullmatch(nonce) is None:
            raise AuthFailure("bad_nonce", "nonce must be 8 to 64 of A-Z a-z 0-9 _ -")
        payload = ts.encode() + (nonce.encode() if nonce is not None else b"") + rest
        expected = sign(secret, payload)
        if not hmac.compare_digest(expected, sig.lower()):
            raise AuthFailure("bad_signature", "signature does not match the request")
        self._remember(key_id, expected, ts_ms + STALE_AFTER_MS, now_ms)
        return key_id

    def _remember(self, key_id: str, signature: str, fresh_until_ms: int, now_ms: int) -> None:
        seen = self._seen
        key = (key_id, signature)
        until = seen.get(key)
        if until is not None and until >= now_ms:
            raise AuthFailure(
                "replayed", "this signature was already used; sign each request afresh"
            )
        if len(seen) >= MAX_REMEMBERED_SIGNATURES:
            for old in [k for k, t in seen.items() if t < now_ms]:
                del seen[old]
            if len(seen) >= MAX_REMEMBERED_SIGNATURES:
                # Forgetting a fresh signature would let it be replayed: refuse instead.
                raise AuthFailure(
                    "replay_window_full",
                    "too many signed requests within the timestamp window; use a session token",
                )
        seen[key] = fresh_until_ms

    # -- tokens --------------------------------------------------------------------------------
    def issue_token(self, key_id: str, *, now: float, now_ns: int) -> tuple[str, int]:
        """A new session token for ``key_id``: ``(token, expires_at_ns)``."""
        self._purge(now)
        token = secrets.token_urlsafe(32)
        expires_at = now_ns + int(self.token_ttl * 1e9)
        self._tokens[token] = _Token(key_id, now + self.token_ttl, expires_at)
        return token, expires_at

    def verify_token(self, token: str, *, now: float) -> tuple[str, int]:
        """The key id and expiry (ns) of a valid token."""
        entry = self._tokens.get(token)
        if entry is None:
            raise AuthFailure("bad_token", "token is not known to this exchange")
        if now >= entry.expires:
            del self._tokens[token]
            raise AuthFailure("expired_token", "token has expired; request a new one")
        return entry.key_id, entry.expires_at

    def _purge(self, now: float) -> None:
        if len(self._tokens) > 1024:
            for token in [t for t, e in self._tokens.items() if now >= e.expires]:
                del self._tokens[token]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rate limiter says about one request."""

    allowed: bool
    limit: int
    remaining: int
    weight: int
    retry_after: float  # seconds until the request would fit, 0.0 when allowed


class RateLimiter:
    """Weighted budgets per identity (a key id or a client address) over fixed windows.

    A window opens at an identity's first request and lasts ``window`` seconds; a request that
    does not fit is refused and costs nothing. Memory is bounded: stale windows are dropped.
    """

    def __init__(self, limit: int = 200, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._windows: dict[str, tuple[float, int]] = {}  # identity -> (window start, used)

    def check(self, identity: str, weight: int, now: float) -> Verdict:
        start, used = self._windows.get(identity, (now, 0))
        if now - start >= self.window:
            start, used = now, 0
        if used + weight > self.limit:
            retry = (start + self.window - now) if weight <= self.limit else self.window
            self._windows[identity] = (start, used)
            return Verdict(False, self.limit, max(0, self.limit - used), weight, max(retry, 0.001))
        used += weight
        if len(self._windows) > 10_000:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window}
        self._windows[identity] = (start, used)
        return Verdict(True, self.limit, self.limit - used, weight, 0.0)
