"""Files tickloop keeps for the user: the state folder and files only the user can read.

``$XDG_STATE_HOME/tickloop`` (``~/.local/state/tickloop`` by default) holds what a running
command leaves for the next one: the control token of ``tickloop run``, its instance file, and
the demo key of ``tickloop sim``.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """``$XDG_STATE_HOME/tickloop`` (``~/.local/state/tickloop`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tickloop"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by the user alone (mode 0600, in a
    folder of mode 0700 when it is created), whatever the file's mode was before."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: set it
        os.write(fd, text.encode())
    finally:
        os.close(fd)
