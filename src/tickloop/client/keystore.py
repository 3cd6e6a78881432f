"""Named local credentials: ``Credentials.load("alice")``, never a key in code.

A name is looked up in three places, first hit wins:

1. environment variables ``TICKLOOP_<NAME>_KEY_ID`` and ``TICKLOOP_<NAME>_SECRET`` (the name
   upper-cased, anything but letters and digits turned into ``_``): for CI and containers;
2. the OS keyring, through the ``keyring`` library, when a real backend is available (service
   ``tickloop``, the name as user name): where ``tickloop login`` stores them when it can;
3. a credentials file in the user's config folder (``$XDG_CONFIG_HOME/tickloop/credentials.toml``,
   ``~/.config/...`` by default; ``TICKLOOP_CREDENTIALS`` names another file), one TOML table
   per name with ``key_id`` and ``secret``. The file is refused if its group or others may read
   it, as ssh refuses a private key that others can read.

No error message, log line or repr carries a secret: errors name the name, the variable or the
file, and say what is wrong with it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ..exceptions import AuthError, ConfigError

__all__ = [
    "KEYRING_SERVICE",
    "Secret",
    "credentials_path",
    "env_names",
    "find",
    "keyring_available",
    "store",
]

KEYRING_SERVICE = "tickloop"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class Secret:
    """A key id and secret pair found by :func:`find`, with where it was found. Its repr hides
    the secret."""

    __slots__ = ("key_id", "origin", "secret")

    def __init__(self, key_id: str, secret: str, origin: str) -> None:
        self.key_id = key_id
        self.secret = secret
        self.origin = origin

    def __repr__(self) -> str:
        return f"Secret(key_id={self.key_id!r}, secret=<hidden>, origin={self.origin!r})"

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled (the secret would be written out)")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"credentials name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'",
            field="name",
        )
    return name


def env_names(name: str) -> tuple[str, str]:
    """The two environment variables that hold ``name``'s key id and secret."""
    stem = re.sub(r"[^A-Z0-9]", "_", _check_name(name).upper())
    return f"TICKLOOP_{stem}_KEY_ID", f"TICKLOOP_{stem}_SECRET"


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    """The credentials file: ``TICKLOOP_CREDENTIALS``, else the user's config folder."""
    env = os.environ if env is None else env
    explicit = env.get("TICKLOOP_CREDENTIALS")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":  # pragma: no cover - not run here
        base = Path(env.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":  # pragma: no cover - not run here
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "tickloop" / "credentials.toml"


def keyring_available() -> bool:
    """Whether the ``keyring`` library is installed and has a backend that really stores."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return False
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    # The chainer with nothing to chain is a fail backend in disguise.
    return getattr(backend, "priority", 1) > 0


def find(name: str, *, env: Mapping[str, str] | None = None, use_keyring: bool = True) -> Secret:
    """Look ``name`` up in the environment, the keyring and the credentials file, in that order.

    Raises :class:`~tickloop.exceptions.AuthError` when it is nowhere (saying where it looked),
    and :class:`~tickloop.exceptions.ConfigError` for an unsafe or malformed file or a half-set
    pair of variables.
    """
    env = os.environ if env is None else env
    key_var, secret_var = env_names(name)
    key_id, secret = env.get(key_var), env.get(secret_var)
    if key_id and secret:
        return Secret(key_id, secret, f"environment ({key_var})")
    if key_id or secret:
        missing = secret_var if key_id else key_var
        raise ConfigError(f"credentials {name!r}: {missing} is not set", field=missing)

    if use_keyring and keyring_available():
        found = _from_keyring(name)
        if found is not None:
            return found

    path = credentials_path(env)
    found = _from_file(name, path)
    if found is not None:
        return found
    where = f"{key_var}/{secret_var}, "
    where += "the keyring, " if use_keyring and keyring_available() else ""
    raise AuthError(
        f"no credentials named {name!r} (looked in {where}{path}); "
        f"store them with: tickloop login {name}"
    )


def _from_keyring(name: str) -> Secret | None:
    import keyring
    from keyring.errors import KeyringError

    try:
        stored = keyring.get_password(KEYRING_SERVICE, name)
    except KeyringError as exc:
        refused = type(exc).__name__
        raise AuthError(f"credentials {name!r}: the keyring refused: {refused}") from None
    if stored is None:
        return None
    try:
        data = json.loads(stored)
        return Secret(str(data["key_id"]), str(data["secret"]), "keyring")
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"credentials {name!r}: the keyring entry is not one tickloop wrote", field="keyring"
        ) from None


def _check_private(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover - permissions are the OS's business there
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} can be read by other users (mode {stat.S_IMODE(mode):03o}); "
            f"run: chmod 600 {path}",
            field="credentials file",
        )


def _read_file(path: Path) -> dict[str, object]:
    try:
        _check_private(path)
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        # tomllib's messages give a line and column, never the text: nothing secret leaks.
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", field="credentials file") from None


def _from_file(name: str, path: Path) -> Secret | None:
    table = _read_file(path).get(name)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table", field=name)
    key_id, secret = table.get("key_id"), table.get("secret")
    for field, value in (("key_id", key_id), ("secret", secret)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: [{name}] needs a non-empty string {field}",
                              field=f"{name}.{field}")
    assert isinstance(key_id, str) and isinstance(secret, str)
    return Secret(key_id, secret, str(path))


def store(
    name: str,
    key_id: str,
    secret: str,
    *,
    to: str = "auto",
    env: Mapping[str, str] | None = None,
) -> str:
    """Store ``name``'s credentials: ``to`` is ``"keyring"``, ``"file"`` or ``"auto"`` (the
    keyring when one is available, else the file). Returns where they went.

    The file and its folder are created private (0600 / 0700); other names in it are kept.
    """
    _check_name(name)
    if not key_id or not secret:
        raise ConfigError("key id and secret must not be empty", field="secret")
    if to not in ("auto", "keyring", "file"):
        raise ConfigError(f"unknown credentials store {to!r}: keyring, file or auto", field="to")
    if to == "keyring" or (to == "auto" and keyring_available()):
        if not keyring_available():
            raise ConfigError("no keyring backend is available here; use the file",
                              field="to")
        import keyring

        keyring.set_password(KEYRING_SERVICE, name,
                             json.dumps({"key_id": key_id, "secret": secret}))
        return "keyring"
    path = credentials_path(env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tables = _read_file(path)
    tables[name] = {"key_id": key_id, "secret": secret}
    text = "".join(
        f"[{_toml_key(n)}]\nkey_id = {_toml_str(str(t['key_id']))}\n"
        f"secret = {_toml_str(str(t['secret']))}\n\n"
        for n, t in tables.items()
        if isinstance(t, dict)
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return str(path)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
