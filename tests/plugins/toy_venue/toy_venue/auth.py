"""The toy venue's request signer: every private request signed on its own (no tokens).

Headers: ``X-Toy-Key`` (the key id), ``X-Toy-Ts`` (milliseconds) and ``X-Toy-Sig``, the hex
HMAC-SHA256 of ``ts + METHOD + path_with_query + body`` keyed with the secret. The key only
lends its HMAC (``key.hmac_digest``): this code never sees the secret.
"""

from __future__ import annotations

import time
from typing import ClassVar

from tickloop.venues import Authorizer, RestRequest, SigningKey


class ToyAuth(Authorizer):
    venue: ClassVar[str] = "toy"

    def authorize(
        self,
        request: RestRequest,
        target: str,
        body: bytes,
        key: SigningKey,
        token: str | None,
    ) -> dict[str, str]:
        ts = str(time.time_ns() // 1_000_000)
        payload = ts.encode() + request.method.encode() + target.encode() + body
        return {
            "X-Toy-Key": key.key_id,
            "X-Toy-Ts": ts,
            "X-Toy-Sig": key.hmac_digest(payload, "sha256").hex(),
        }
