"""Credentials as a venue-neutral token cache and signer, driven through a venue's Authorizer;
the sim's scheme lives in the sim venue; the HTTP layer does not import the credentials."""

from __future__ import annotations

import ast
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

import tickloop
from tickloop import ConfigError, Credentials
from tickloop.client import results
from tickloop.client.http import HttpSession, Response
from tickloop.venues import (
    Authorizer,
    RestRequest,
    SessionToken,
    SigningKey,
    Venue,
    register,
    unregister,
)
from tickloop.venues.sim_auth import LOGIN_PATH, SimAuth
from tickloop.venues.sim_rest import SimRest

SECRET = "s3cr3t-value-never-printed"
CLIENT = Path(tickloop.__file__).parent / "client"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_http_session_does_not_import_the_credentials_module() -> None:
    imported = _imports(CLIENT / "http.py")
    assert ".auth" not in imported and "tickloop.client.auth" not in imported
    assert ".http" in _imports(CLIENT / "auth.py")  # the one direction left


def test_market_lives_in_models_and_is_still_importable_from_results() -> None:
    assert results.Market is tickloop.models.Market
    assert results.MarketBook is tickloop.models.MarketBook
    assert results.MarketTicker is tickloop.models.MarketTicker


def test_hmac_digest_is_the_secret_keyed_hmac_and_names_a_bad_algorithm() -> None:
    creds = Credentials("key-1", SECRET)
    for algorithm in ("sha256", "sha512"):
        expected = hmac.new(SECRET.encode(), b"payload", algorithm).digest()
        assert creds.hmac_digest(b"payload", algorithm) == expected
    with pytest.raises(ConfigError) as info:
        creds.hmac_digest(b"payload", "nope")
    assert info.value.field == "algorithm" and SECRET not in str(info.value)


def test_sim_authorizer_signs_the_login_and_carries_the_token_after() -> None:
    creds = Credentials("key-1", SECRET)
    auth = SimAuth()
    login = auth.login_request()
    assert (login.method, login.path, login.private) == ("POST", LOGIN_PATH, True)
    signed = auth.authorize(login, "/api/v1/auth/token", b"", creds, None)
    payload = f"{signed['TL-TS']}{signed['TL-NONCE']}POST/api/v1/auth/token".encode()
    assert signed["TL-SIGN"] == hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    assert signed["TL-KEY"] == "key-1"
    order = RestRequest("GET", "/orders", private=True)
    assert auth.authorize(order, "/api/v1/orders", b"", creds, "tok") == {
        "Authorization": "Bearer tok"
    }
    # Credentials' own helpers are the sim's scheme, computed in the sim venue
    assert creds.signed_headers("GET", "/x", ts_ms=5, nonce="n") == SimAuth.signed_headers(
        creds, "GET", "/x", ts_ms=5, nonce="n"
    )
    assert creds.login_message(ts_ms=5, nonce="n") == SimAuth.login_message(
        creds, ts_ms=5, nonce="n"
    )


def test_session_token_repr_hides_the_token() -> None:
    assert "tok-secret" not in repr(SessionToken("tok-secret", 10.0))


class TokenAuth(Authorizer):
    """A venue that issues tokens at /session, answering {"t": ..., "life": ...}."""

    venue: ClassVar[str] = "tokenvenue"

    def login_request(self) -> RestRequest:
        return RestRequest("POST", "/session", private=True)

    def parse_login(self, body: bytes) -> SessionToken:
        answer = msgspec.json.decode(body)
        return SessionToken(answer["t"], answer["life"])

    def authorize(
        self, request: RestRequest, target: str, body: bytes, key: SigningKey, token: str | None
    ) -> dict[str, str]:
        if token is None:
            return {"X-Sig": key.hmac_digest(target.encode()).hex()}
        return {"X-Token": token}


class Sender:
    """Stands in for an HttpSession of the token venue."""

    authorizer = TokenAuth()

    def __init__(self) -> None:
        self.requests: list[RestRequest] = []

    async def request(self, request: RestRequest) -> Response:
        self.requests.append(request)
        return Response(200, b'{"t": "tv-1", "life": 60}', {}, 0)


@pytest.fixture
def token_venue() -> Iterator[None]:
    rest = type("TokenRest", (SimRest,), {"venue": "tokenvenue"})
    register(Venue("tokenvenue", rest=rest, authorizer=TokenAuth))
    yield
    unregister("tokenvenue")


async def test_the_token_login_is_the_venues_own(token_venue: None) -> None:
    creds = Credentials("key-1", SECRET)
    sender = Sender()
    assert await creds.token(sender) == "tv-1"
    assert await creds.token(sender) == "tv-1"  # cached
    assert [r.path for r in sender.requests] == ["/session"]
    # without an authorizer on the sender, the venue named is asked (the registry)
    bare = Credentials("key-2", SECRET)

    class Plain:
        async def request(self, request: RestRequest) -> Response:
            sender.requests.append(request)
            return Response(200, b'{"t": "tv-2", "life": 60}', {}, 0)

    assert await bare.token(Plain(), venue="tokenvenue") == "tv-2"


class NoTokens(Authorizer):
    venue: ClassVar[str] = "sim"

    def authorize(
        self, request: RestRequest, target: str, body: bytes, key: SigningKey, token: str | None
    ) -> dict[str, str]:
        return {}


class PlainSender:
    async def request(self, request: RestRequest) -> Response:
        raise AssertionError("no login should be sent")


async def test_a_venue_without_tokens_or_authorizer_says_so() -> None:
    creds = Credentials("key-1", SECRET)
    async with HttpSession(
        "http://127.0.0.1:1", venue="sim", credentials=creds, authorizer=NoTokens()
    ) as http:
        with pytest.raises(ConfigError, match="signs each request and issues no session token"):
            await creds.token(http)
    with pytest.raises(ConfigError, match="venue 'binance' has no authorizer"):
        await creds.token(PlainSender(), venue="binance")
    async with HttpSession("http://127.0.0.1:1", venue="binance", credentials=creds) as http:
        with pytest.raises(ConfigError, match="venue 'binance' has no authorizer"):
            await creds.token(http)  # never the sim's login, whatever venue= says
