"""The control token: where it comes from, and the FastAPI dependency that checks it.

A control route (one that changes something) needs ``Authorization: Bearer <token>``; a missing,
malformed or wrong token is a 401 with ``WWW-Authenticate: Bearer``. The token is, in this order,
the one given to :func:`resolve_token`, the ``TICKLOOP_TOKEN`` environment variable, or a new
random one written to a file only the user can read (mode 0600 in a 0700 directory), so the
user can copy it into the dashboard or a script. Only a token the user chose (argument or
environment) allows binding to a non-loopback address: a generated one lives in a file on this
machine, which a remote user cannot read (:func:`check_bind`).

The comparison is constant-time (:func:`hmac.compare_digest` on bytes). The token never appears
in a repr, a log line or an error message.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .._state import state_dir, write_private
from ..exceptions import ConfigError

__all__ = [
    "TOKEN_ENV",
    "ControlToken",
    "TokenOrigin",
    "check_bind",
    "default_token_file",
    "is_loopback",
    "require_token",
    "resolve_token",
]

#: The environment variable the control token is read from when no token is given.
TOKEN_ENV = "TICKLOOP_TOKEN"


class TokenOrigin(StrEnum):
    ARGUMENT = "argument"
    ENVIRONMENT = "environment"
    GENERATED = "generated"


class ControlToken:
    """The control token of one server; ``origin`` says where it came from and ``path`` where a
    generated one was written. ``matches(text)`` compares in constant time."""

    __slots__ = ("_secret", "origin", "path")

    def __init__(self, secret: str, origin: TokenOrigin, path: Path | None = None) -> None:
        if not secret or secret != secret.strip():
            raise ConfigError("the control token must be non-empty, without surrounding blanks",
                              field="token")
        self._secret = secret.encode()
        self.origin = origin
        self.path = path

    @property
    def chosen(self) -> bool:
        """True when the user chose the token (argument or environment), not generated."""
        return self.origin is not TokenOrigin.GENERATED

    def reveal(self) -> str:
        """The token itself (for the user who started the server; never logged)."""
        return self._secret.decode()

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(self._secret, candidate.encode())

    def __repr__(self) -> str:
        where = f" in {self.path}" if self.path is not None else ""
        return f"<ControlToken from {self.origin}{where}>"


def default_token_file() -> Path:
    """``$XDG_STATE_HOME/tickloop/token`` (``~/.local/state/tickloop/token`` by default)."""
    return state_dir() / "token"


def resolve_token(
    token: str | None = None,
    *,
    environ: dict[str, str] | None = None,
    token_file: Path | None = None,
) -> ControlToken:
    """The control token: ``token``, else ``$TICKLOOP_TOKEN``, else a new one written to
    ``token_file`` (default :func:`default_token_file`) with mode 0600."""
    if token is not None:
        return ControlToken(token, TokenOrigin.ARGUMENT)
    env = os.environ if environ is None else environ
    from_env = env.get(TOKEN_ENV)
    if from_env:
        try:
            return ControlToken(from_env, TokenOrigin.ENVIRONMENT)
        except ConfigError:
            raise ConfigError(f"{TOKEN_ENV} must not have surrounding blanks",
                              field=TOKEN_ENV) from None
    path = token_file if token_file is not None else default_token_file()
    secret = secrets.token_urlsafe(32)
    try:
        write_private(path, secret + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the control token to {path}: {exc.strerror}",
                          field="token_file") from None
    return ControlToken(secret, TokenOrigin.GENERATED, path)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: ControlToken) -> None:
    """Refuse a non-loopback ``host`` unless the user chose the control token."""
    if not is_loopback(host) and not token.chosen:
        raise ConfigError(
            f"--host {host} is not a loopback address: set a control token "
            f"({TOKEN_ENV} or token=) before serving beyond this machine",
            field="--host",
        )


_bearer = HTTPBearer(auto_error=False, description="The control token (see docs/server.md).")


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """FastAPI dependency of control routes: 401 unless ``Authorization: Bearer <token>``."""
    token: ControlToken = request.app.state.token
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or not token.matches(credentials.credentials)
    ):
        raise HTTPException(
            status_code=401,
            detail="a valid control token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
