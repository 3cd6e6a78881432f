"""The embedded exchange's request signer (docs/protocol.md, *Authentication*), sans-I/O.

The sim trades one HMAC-signed login (``POST /auth/token``) for a session token; every other
private request carries ``Authorization: Bearer <token>``. A signature is
``hex(HMAC-SHA256(secret, ts + nonce + METHOD + path_with_query + body))`` sent as the
``TL-KEY``/``TL-TS``/``TL-NONCE``/``TL-SIGN`` headers, with a fresh random nonce each time
(the exchange accepts a signature once). The WebSocket stream logs in with the token, or
without any REST call with a key-signed ``login`` op (:meth:`SimAuth.login_message`).

The key is a :class:`~tickloop.venues.base.SigningKey`: this module computes HMACs through it
and never sees the secret.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

import msgspec

from ..exceptions import ProtocolError
from .base import Authorizer, RestRequest, SessionToken, SigningKey

__all__ = ["LOGIN_PATH", "SimAuth"]

VENUE = "sim"

#: The exchange's login path (relative to its REST base URL).
LOGIN_PATH = "/auth/token"


class _TokenAnswer(msgspec.Struct, frozen=True):
    token: str
    ttl: float
    expires_at: int = 0


_token_decoder = msgspec.json.Decoder(_TokenAnswer)


def _sign(key: SigningKey, payload: bytes) -> str:
    return key.hmac_digest(payload, "sha256").hex()


class SimAuth(Authorizer):
    """The sim's signer: a signed login for a session token, then the token (module doc)."""

    venue: ClassVar[str] = VENUE

    def login_request(self) -> RestRequest:
        return RestRequest("POST", LOGIN_PATH, private=True, idempotent=True)

    def parse_login(self, body: bytes) -> SessionToken:
        try:
            answer = _token_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed login answer: {exc}", venue=VENUE) from None
        return SessionToken(answer.token, answer.ttl)

    def authorize(
        self,
        request: RestRequest,
        target: str,
        body: bytes,
        key: SigningKey,
        token: str | None,
    ) -> dict[str, str]:
        if token is None:
            return self.signed_headers(key, request.method, target, body)
        return {"Authorization": f"Bearer {token}"}

    # -- the HMAC scheme -------------------------------------------------------------------------
    @staticmethod
    def signed_headers(
        key: SigningKey,
        method: str,
        path_with_query: str,
        body: bytes = b"",
        *,
        ts_ms: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """``TL-KEY``/``TL-TS``/``TL-NONCE``/``TL-SIGN`` for one request. A fresh random nonce
        each call. ``path_with_query`` starts at ``/api/v1`` and includes ``?query`` exactly as
        sent."""
        ts = str(time.time_ns() // 1_000_000 if ts_ms is None else ts_ms)
        nonce = secrets.token_hex(12) if nonce is None else nonce
        payload = (
            ts.encode() + nonce.encode() + method.upper().encode() + path_with_query.encode() + body
        )
        return {
            "TL-KEY": key.key_id,
            "TL-TS": ts,
            "TL-NONCE": nonce,
            "TL-SIGN": _sign(key, payload),
        }

    @staticmethod
    def login_message(
        key: SigningKey, *, ts_ms: int | None = None, nonce: str | None = None
    ) -> dict[str, Any]:
        """A WebSocket ``login`` op signed with the key (no token needed), with a fresh nonce."""
        ts = time.time_ns() // 1_000_000 if ts_ms is None else ts_ms
        nonce = secrets.token_hex(12) if nonce is None else nonce
        return {
            "op": "login",
            "key": key.key_id,
            "ts": ts,
            "nonce": nonce,
            "sig": _sign(key, f"{ts}{nonce}login".encode()),
        }
