"""Authentication of the sim: signatures, tokens, 401 codes, and the sans-I/O pieces."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tickloop.sim import SimApiKey, SimExchange
from tickloop.sim.auth import AuthFailure, KeyStore, RateLimiter, sign


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=5, symbols=["BTC-USD"], rate=0) as ex:
        yield ex


def _headers(
    key_id: str, secret: str, method: str, path: str, ts: int | None = None, body: bytes = b""
) -> dict[str, str]:
    ts_text = str(time.time_ns() // 1_000_000 if ts is None else ts)
    sig = hmac.new(
        secret.encode(), (ts_text + method + path).encode() + body, hashlib.sha256
    ).hexdigest()
    return {"TL-KEY": key_id, "TL-TS": ts_text, "TL-SIGN": sig}


async def _status(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, str]:
    async with http.request(method, url, headers=headers, data=body or None) as resp:
        return resp.status, await resp.text()


async def test_signed_requests_and_every_401_code(ex: SimExchange) -> None:
    key = ex.create_api_key()
    base = ex.rest_url
    path = "/api/v1/orders?symbol=BTC-USD&status=all"
    url = base + "/orders?symbol=BTC-USD&status=all"
    async with aiohttp.ClientSession() as http:
        ok, _ = await _status(http, "GET", url, _headers(key.key_id, key.secret, "GET", path))
        assert ok == 200
        now = time.time_ns() // 1_000_000
        cases = {
            "bad_signature": _headers(key.key_id, "not-the-secret", "GET", path),
            "stale_timestamp": _headers(key.key_id, key.secret, "GET", path, ts=now - 60_000),
            "unknown_key": _headers("tk_nobody", key.secret, "GET", path),
            "missing_credentials": {},
            "bad_token": {"Authorization": "Bearer not-a-token"},
        }
        # the signature covers the query exactly as sent
        cases["bad_signature_query"] = _headers(key.key_id, key.secret, "GET", "/api/v1/orders")
        partial = _headers(key.key_id, key.secret, "GET", path)
        del partial["TL-SIGN"]
        cases["missing_credentials_partial"] = partial
        for name, headers in cases.items():
            status, text = await _status(http, "GET", url, headers)
            error = json.loads(text)["error"]
            assert status == 401, name
            assert error["code"] == name.removesuffix("_query").removesuffix("_partial"), name
            assert error["message"]
            assert key.secret not in text
            if "TL-SIGN" in headers:
                assert headers["TL-SIGN"] not in text
        # a signed body: tampering with it breaks the signature
        body = json.dumps(
            {"symbol": "BTC-USD", "side": "buy", "type": "market", "size": "0.0010"}
        ).encode()
        headers = _headers(key.key_id, key.secret, "POST", "/api/v1/orders", body=body)
        status, _ = await _status(
            http, "POST", base + "/orders", headers, body.replace(b"0.0010", b"0.0020")
        )
        assert status == 401
        status, _ = await _status(http, "POST", base + "/orders", headers, body)
        assert status == 201
    assert ex.stats.rejected_auth == len(cases) + 1


async def test_token_issue_use_and_login_count(ex: SimExchange) -> None:
    key = ex.create_api_key()
    async with aiohttp.ClientSession() as http:
        headers = _headers(key.key_id, key.secret, "POST", "/api/v1/auth/token")
        async with http.post(ex.rest_url + "/auth/token", headers=headers) as resp:
            assert resp.status == 200
            grant = await resp.json()
        assert grant["ttl"] == 300 and grant["expires_at"] > time.time_ns()
        bearer = {"Authorization": f"Bearer {grant['token']}"}
        for _ in range(3):
            status, text = await _status(http, "GET", ex.rest_url + "/balances", bearer)
            assert status == 200 and "USD" in text
    assert ex.stats.logins == 1 and ex.stats.tokens_issued == 1


def test_api_key_repr_hides_the_secret() -> None:
    key = SimApiKey("tk_1", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(key) and "tk_1" in repr(key)


def test_keystore_tokens_expire_on_the_monotonic_clock() -> None:
    keys = KeyStore(token_ttl=10.0)
    key = keys.create()
    token, expires_at = keys.issue_token(key.key_id, now=100.0, now_ns=5_000_000_000)
    assert expires_at == 15_000_000_000
    assert keys.verify_token(token, now=109.9) == (key.key_id, expires_at)
    with pytest.raises(AuthFailure) as info:
        keys.verify_token(token, now=110.0)
    assert info.value.code == "expired_token"
    with pytest.raises(AuthFailure) as info:
        keys.verify_token(token, now=110.0)
    assert info.value.code == "bad_token"


def test_keystore_signatures() -> None:
    keys = KeyStore()
    key = keys.create()
    ts = "1700000000000"
    sig = sign(key.secret, (ts + "login").encode())
    assert keys.verify_signed(key.key_id, ts, sig, b"login", now_ms=1_700_000_004_999) == key.key_id
    for now_ms, code in (
        (1_700_000_005_001, "stale_timestamp"),
        (1_699_999_994_999, "stale_timestamp"),
    ):
        with pytest.raises(AuthFailure) as info:
            keys.verify_signed(key.key_id, ts, sig, b"login", now_ms=now_ms)
        assert info.value.code == code
    with pytest.raises(AuthFailure) as info:
        keys.verify_signed(key.key_id, "soon", sig, b"login", now_ms=0)
    assert info.value.code == "stale_timestamp"
    with pytest.raises(AuthFailure) as info:
        keys.verify_signed(key.key_id, ts, sig, b"logout", now_ms=1_700_000_000_000)
    assert info.value.code == "bad_signature" and key.secret not in str(info.value)


def test_rate_limiter_windows_and_weights() -> None:
    limiter = RateLimiter(limit=10, window=1.0)
    assert limiter.check("a", 6, now=0.0).remaining == 4
    refused = limiter.check("a", 5, now=0.25)
    assert not refused.allowed and refused.retry_after == pytest.approx(0.75)
    assert limiter.check("b", 10, now=0.3).allowed  # separate identity, separate budget
    assert limiter.check("a", 4, now=0.5).remaining == 0  # a refused request cost nothing
    assert limiter.check("a", 5, now=1.0).allowed  # new window
    too_heavy = limiter.check("c", 11, now=0.0)
    assert not too_heavy.allowed and too_heavy.retry_after == 1.0


async def test_failed_auth_costs_the_address_budget() -> None:
    async with (
        SimExchange(seed=5, symbols=["BTC-USD"], rate=0, rate_limit_weight=3) as ex,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for _ in range(4):
            async with http.get(ex.rest_url + "/balances") as resp:
                statuses.append(resp.status)
                if resp.status == 401:
                    assert resp.headers["TL-RateLimit-Weight"] == "1"
        assert statuses == [401, 401, 401, 429]
