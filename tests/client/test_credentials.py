"""Credentials: signing, secrecy, and one login shared by every coroutine, loop and thread."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import pickle
import threading
from typing import Any

import msgspec
import pytest

from tickloop import AuthError, Credentials
from tickloop.client.http import HttpSession, Response
from tickloop.venues.base import RestRequest

SECRET = "s3cr3t-value-never-printed"


class FakeLogin:
    """Stands in for an HttpSession: answers POST /auth/token after a pause, counting logins."""

    def __init__(self, ttl: float = 300.0, fail: BaseException | None = None) -> None:
        self.ttl = ttl
        self.fail = fail
        self.calls = 0
        self.requests: list[RestRequest] = []
        self._lock = threading.Lock()

    @property
    def http(self) -> FakeLogin:
        return self

    async def request(self, request: RestRequest) -> Response:
        with self._lock:
            self.calls += 1
            n = self.calls
        self.requests.append(request)
        await asyncio.sleep(0.05)  # long enough for every other caller to arrive meanwhile
        if self.fail is not None:
            raise self.fail
        body = msgspec.json.encode({"token": f"tok-{n}", "expires_at": 0, "ttl": self.ttl})
        return Response(200, body, {}, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_signature_is_hex_hmac_sha256_of_ts_nonce_method_path_body() -> None:
    creds = Credentials("key-1", SECRET)
    headers = creds.signed_headers(
        "post", "/api/v1/orders?x=1", b'{"a":1}', ts_ms=1700000000000, nonce="n0nce-123"
    )
    payload = b'1700000000000n0nce-123POST/api/v1/orders?x=1{"a":1}'
    expected = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    assert headers == {
        "TL-KEY": "key-1",
        "TL-TS": "1700000000000",
        "TL-NONCE": "n0nce-123",
        "TL-SIGN": expected,
    }


def test_each_signature_gets_a_fresh_nonce() -> None:
    creds = Credentials("key-1", SECRET)
    one = creds.signed_headers("POST", "/api/v1/orders", b"{}", ts_ms=1)
    two = creds.signed_headers("POST", "/api/v1/orders", b"{}", ts_ms=1)
    assert one["TL-NONCE"] != two["TL-NONCE"] and one["TL-SIGN"] != two["TL-SIGN"]
    assert creds.login_message(ts_ms=1)["nonce"] != creds.login_message(ts_ms=1)["nonce"]


def test_ws_login_message_is_signed() -> None:
    creds = Credentials("key-1", SECRET)
    msg = creds.login_message(ts_ms=42, nonce="abcdefgh")
    expected = hmac.new(SECRET.encode(), b"42abcdefghlogin", hashlib.sha256).hexdigest()
    assert msg == {"op": "login", "key": "key-1", "ts": 42, "nonce": "abcdefgh", "sig": expected}


async def test_secret_and_token_never_in_repr() -> None:
    creds = Credentials("key-1", SECRET)
    await creds.token(FakeLogin())
    text = repr(creds) + str(creds)
    assert SECRET not in text
    assert "tok-1" not in text
    assert "key-1" in text
    with pytest.raises(TypeError):
        pickle.dumps(creds)


def test_empty_key_or_secret_refused() -> None:
    with pytest.raises(Exception, match="key_id"):
        Credentials("", SECRET)
    with pytest.raises(Exception, match="secret"):
        Credentials("k", "")


async def test_many_coroutines_one_login() -> None:
    creds = Credentials("key-1", SECRET)
    login = FakeLogin()
    tokens = await asyncio.gather(*(creds.token(login) for _ in range(50)))
    assert set(tokens) == {"tok-1"}
    assert login.calls == 1
    assert creds.logins == 1
    # the login is a signed private POST (the HTTP session signs it)
    assert login.requests[0].method == "POST"
    assert login.requests[0].private


def test_two_event_loops_in_two_threads_one_login() -> None:
    creds = Credentials("key-1", SECRET)
    login = FakeLogin()
    results: list[str] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        async def main() -> list[str]:
            barrier.wait()
            return list(await asyncio.gather(*(creds.token(login) for _ in range(5))))

        results.extend(asyncio.run(main()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["tok-1"] * 20
    assert login.calls == 1


async def test_token_refreshed_before_expiry() -> None:
    clock = Clock()
    creds = Credentials("key-1", SECRET, token_ttl_margin=30.0, clock=clock)
    login = FakeLogin(ttl=300.0)
    assert await creds.token(login) == "tok-1"
    clock.now += 260.0  # 40 s left: still valid
    assert await creds.token(login) == "tok-1"
    clock.now += 15.0  # 25 s left, inside the margin: renewed before it expires
    assert await creds.token(login) == "tok-2"
    assert login.calls == 2


async def test_short_lived_token_margin_is_capped() -> None:
    clock = Clock()
    creds = Credentials("key-1", SECRET, token_ttl_margin=30.0, clock=clock)
    login = FakeLogin(ttl=10.0)
    assert await creds.token(login) == "tok-1"
    clock.now += 4.0  # margin is 5 s (half the life), so still cached
    assert await creds.token(login) == "tok-1"
    clock.now += 2.0
    assert await creds.token(login) == "tok-2"


async def test_invalidate_forces_a_new_login_only_for_the_refused_token() -> None:
    creds = Credentials("key-1", SECRET)
    login = FakeLogin()
    await creds.token(login)
    creds.invalidate("some-older-token")  # not the cached one: ignored
    assert creds.cached_token() == "tok-1"
    creds.invalidate("tok-1")
    assert creds.cached_token() is None
    assert await creds.token(login) == "tok-2"


async def test_failed_login_reaches_every_waiter_and_is_not_cached() -> None:
    creds = Credentials("key-1", SECRET)
    login = FakeLogin(fail=AuthError("bad_signature: signature does not match"))
    results = await asyncio.gather(*(creds.token(login) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, AuthError) for r in results)
    assert login.calls == 1
    login.fail = None
    assert await creds.token(login) == "tok-2"


async def test_cancelled_leader_hands_over_to_a_waiter() -> None:
    creds = Credentials("key-1", SECRET)
    login = FakeLogin()
    leader = asyncio.create_task(creds.token(login))
    await asyncio.sleep(0)
    follower = asyncio.create_task(creds.token(login))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await follower == "tok-2"  # the follower logged in itself
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_token_via_url_opens_a_short_session(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    async def fake_request(self: HttpSession, request: RestRequest) -> Response:
        seen.append((self.base_url, request.path))
        body = msgspec.json.encode({"token": "tok-url", "expires_at": 0, "ttl": 300})
        return Response(200, body, {}, 0)

    monkeypatch.setattr(HttpSession, "request", fake_request)
    creds = Credentials("key-1", SECRET)
    assert await creds.token("http://127.0.0.1:9/api/v1") == "tok-url"
    assert seen == [("http://127.0.0.1:9/api/v1", "/auth/token")]
