"""The control token: argument > TICKLOOP_TOKEN > generated into a 0600 file; 401 without it on
a control route, 200 with it; non-loopback binds need a chosen token."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tickloop.bus import Bus
from tickloop.exceptions import ConfigError
from tickloop.server import (
    Platform,
    TokenOrigin,
    check_bind,
    create_app,
    is_loopback,
    resolve_token,
)


def test_an_argument_wins_over_the_environment(tmp_path: Path) -> None:
    token = resolve_token("mine", environ={"TICKLOOP_TOKEN": "env"}, token_file=tmp_path / "t")
    assert token.origin is TokenOrigin.ARGUMENT and token.matches("mine")
    assert not (tmp_path / "t").exists()


def test_the_environment_wins_over_a_generated_token(tmp_path: Path) -> None:
    token = resolve_token(environ={"TICKLOOP_TOKEN": "from-env"}, token_file=tmp_path / "t")
    assert token.origin is TokenOrigin.ENVIRONMENT and token.matches("from-env")
    assert token.chosen


def test_a_generated_token_is_written_for_the_user_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tickloop" / "token"
    path.parent.mkdir(parents=True)
    path.write_text("old\n")
    path.chmod(0o644)  # an existing file's mode is tightened too
    token = resolve_token(environ={}, token_file=path)
    assert token.origin is TokenOrigin.GENERATED and not token.chosen and token.path == path
    assert path.read_text().strip() == token.reveal() and len(token.reveal()) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = resolve_token(environ={}, token_file=tmp_path / "new" / "token")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert other.reveal() != token.reveal()


def test_the_secret_never_shows(tmp_path: Path) -> None:
    token = resolve_token("s3cret-value")
    assert "s3cret" not in repr(token) and "s3cret" not in str(token)
    with pytest.raises(ConfigError) as err:
        resolve_token(environ={"TICKLOOP_TOKEN": " padded "}, token_file=tmp_path / "t")
    assert err.value.field == "TICKLOOP_TOKEN" and "padded" not in str(err.value)


def test_an_unwritable_token_file_names_the_field(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as err:
        resolve_token(environ={}, token_file=blocker / "token")
    assert err.value.field == "token_file"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("192.168.1.4", False), ("::", False),
    ("example.org", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_needs_a_chosen_token(tmp_path: Path) -> None:
    generated = resolve_token(environ={}, token_file=tmp_path / "t")
    check_bind("127.0.0.1", generated)
    with pytest.raises(ConfigError) as err:
        check_bind("0.0.0.0", generated)
    assert err.value.field == "--host" and "--host 0.0.0.0" in str(err.value)
    check_bind("0.0.0.0", resolve_token("chosen"))


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with Bus() as bus:
        app = create_app(Platform(bus), token="right-token")
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://test") as client:
            yield client


@pytest.mark.parametrize("header", [
    None, "Bearer wrong-token", "Basic cmlnaHQtdG9rZW4=", "Bearer", "right-token",
    "Bearer right-token2", "Bearer right-toke",
])
async def test_control_routes_refuse_a_missing_or_wrong_token(
        http: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    answer = await http.get("/api/auth", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "right-token" not in answer.text


async def test_control_routes_accept_the_token(http: httpx.AsyncClient) -> None:
    answer = await http.get("/api/auth", headers={"Authorization": "Bearer right-token"})
    assert answer.status_code == 200
    assert answer.json() == {"authenticated": True, "token_origin": "argument"}
    lower = await http.get("/api/auth", headers={"Authorization": "bearer right-token"})
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 7235)


async def test_the_environment_token_reaches_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKLOOP_TOKEN", "env-token")
    async with Bus() as bus:
        app = create_app(Platform(bus))
        transport = httpx.ASGITransport(app=app)
        async with app, httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ok = await client.get("/api/auth", headers={"Authorization": "Bearer env-token"})
            assert ok.status_code == 200 and ok.json()["token_origin"] == "environment"
            assert (await client.get("/api/auth")).status_code == 401
