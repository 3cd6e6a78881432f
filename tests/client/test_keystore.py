"""Named local credentials: environment, keyring, private file; ``tickloop login``; no leaks."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickloop import AsyncClient, AuthError, ConfigError, Credentials
from tickloop.client import keystore
from tickloop.sim import SimExchange

SECRET = "very-secret-value-7f3a"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean config folder and environment: no stray TICKLOOP_* variable, no real keyring."""
    for var in list(os.environ):
        if var.startswith("TICKLOOP_ALICE") or var == "TICKLOOP_CREDENTIALS":
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield tmp_path / "config"
    keyring.set_keyring(previous)


class MemoryKeyring:
    """A keyring backend that keeps passwords in a dict (the real ones need a desktop)."""

    priority = 1

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, user: str) -> str | None:
        return self.items.get((service, user))

    def set_password(self, service: str, user: str, password: str) -> None:
        self.items[(service, user)] = password

    def delete_password(self, service: str, user: str) -> None:
        self.items.pop((service, user), None)


def _memory_keyring() -> MemoryKeyring:
    import keyring
    from keyring.backend import KeyringBackend

    class Backend(MemoryKeyring, KeyringBackend):  # type: ignore[misc]
        pass

    backend = Backend()
    keyring.set_keyring(backend)
    return backend


def test_environment_variables(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKLOOP_ALICE_KEY_ID", "key-a")
    monkeypatch.setenv("TICKLOOP_ALICE_SECRET", SECRET)
    creds = Credentials.load("alice")
    assert creds.key_id == "key-a"
    assert SECRET not in repr(creds)
    assert keystore.env_names("bob.smith-2") == (
        "TICKLOOP_BOB_SMITH_2_KEY_ID", "TICKLOOP_BOB_SMITH_2_SECRET")


def test_half_set_environment_names_the_missing_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKLOOP_ALICE_SECRET", SECRET)
    with pytest.raises(ConfigError) as err:
        Credentials.load("alice")
    assert err.value.field == "TICKLOOP_ALICE_KEY_ID"
    assert SECRET not in str(err.value)


def test_missing_says_where_it_looked_and_how_to_store(home: Path) -> None:
    with pytest.raises(AuthError) as err:
        Credentials.load("alice")
    text = str(err.value)
    assert "TICKLOOP_ALICE_KEY_ID" in text and "credentials.toml" in text
    assert "tickloop login alice" in text


def test_file_store_is_private_and_keeps_other_names(home: Path) -> None:
    where = keystore.store("alice", "key-a", SECRET, to="file")
    keystore.store("bob", "key-b", "other-secret", to="file")
    path = Path(where)
    assert path == home / "tickloop" / "credentials.toml"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert Credentials.load("alice").key_id == "key-a"
    assert Credentials.load("bob").key_id == "key-b"
    assert keystore.find("alice").origin == str(path)


def test_a_file_others_can_read_is_refused(home: Path) -> None:
    path = Path(keystore.store("alice", "key-a", SECRET, to="file"))
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        Credentials.load("alice")
    assert SECRET not in str(err.value)
    path.chmod(0o604)
    with pytest.raises(ConfigError, match="other users"):
        Credentials.load("alice")


def test_a_malformed_file_is_a_config_error_without_its_text(home: Path) -> None:
    path = home / "tickloop" / "credentials.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'[alice]\nkey_id = "k"\nsecret = "{SECRET}\n')  # unterminated string
    path.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        Credentials.load("alice")
    assert "not valid TOML" in str(err.value) and SECRET not in str(err.value)
    path.write_text('[alice]\nkey_id = "k"\n')
    with pytest.raises(ConfigError) as err:
        Credentials.load("alice")
    assert err.value.field == "alice.secret"


def test_keyring_is_used_when_available_and_wins_over_the_file(home: Path) -> None:
    keystore.store("alice", "from-file", SECRET, to="file")
    backend = _memory_keyring()
    assert keystore.keyring_available()
    assert keystore.store("alice", "from-keyring", SECRET) == "keyring"  # auto: the keyring
    assert ("tickloop", "alice") in backend.items
    found = keystore.find("alice")
    assert found.key_id == "from-keyring" and found.origin == "keyring"
    assert SECRET not in repr(found)
    assert keystore.find("alice", use_keyring=False).key_id == "from-file"


def test_environment_wins_over_everything(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keystore.store("alice", "from-file", SECRET, to="file")
    monkeypatch.setenv("TICKLOOP_ALICE_KEY_ID", "from-env")
    monkeypatch.setenv("TICKLOOP_ALICE_SECRET", SECRET)
    assert Credentials.load("alice").key_id == "from-env"


def test_bad_names_and_stores(home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Credentials.load("../etc/passwd")
    assert err.value.field == "name"
    with pytest.raises(ConfigError):
        keystore.store("alice", "k", SECRET, to="cloud")
    with pytest.raises(ConfigError, match="no keyring"):
        keystore.store("alice", "k", SECRET, to="keyring")
    with pytest.raises(TypeError):
        pickle.dumps(keystore.Secret("k", SECRET, "x"))


def test_login_command_stores_and_never_echoes_the_secret(home: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLOOP_ALICE")}
    env |= {"XDG_CONFIG_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    proc = subprocess.run(
        [sys.executable, "-m", "tickloop", "login", "alice", "--key-id", "key-a",
         "--secret-stdin"],
        input=SECRET + "\n", capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "stored credentials 'alice'" in proc.stdout
    assert Credentials.load("alice").key_id == "key-a"
    bad = subprocess.run(
        [sys.executable, "-m", "tickloop", "login", "a b", "--key-id", "k", "--secret-stdin"],
        input="x\n", capture_output=True, text=True, env=env, timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


async def test_loaded_credentials_trade_on_the_sim(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with SimExchange(seed=3, symbols=["BTC-USD"]) as ex:
        key = ex.create_api_key()
        keystore.store("alice", key.key_id, key.secret, to="file")
        creds = Credentials.load("alice")
        with caplog.at_level(logging.DEBUG):
            async with AsyncClient("sim", url=ex.rest_url, credentials=creds) as client:
                balances = await client.balances()
        assert balances
        assert key.secret not in caplog.text
