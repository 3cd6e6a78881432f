"""Running the ``tickloop`` command in a subprocess, with its state and data directories in a
temporary folder (never the user's), and reading its output as it comes."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TICKLOOP_TOKEN"}
    env.update(XDG_DATA_HOME=str(tmp / "data"), XDG_STATE_HOME=str(tmp / "state"),
               PYTHONUNBUFFERED="1", COLUMNS="200", **extra)
    return env


def tickloop(tmp: Path, *args: str, timeout: float = 60, **extra: str
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickloop", *args], capture_output=True,
                          text=True, timeout=timeout, env=env_for(tmp, **extra), cwd=tmp)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A user error: non-zero exit, no traceback, one line on stderr saying it."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("tickloop: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


class Running:
    """A ``tickloop run`` in a subprocess; :meth:`wait_for` reads its stdout up to a line."""

    def __init__(self, tmp: Path, *args: str, **extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickloop", "run", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env_for(tmp, **extra), cwd=tmp)
        self.out: list[str] = []
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def wait_for(self, prefix: str, within: float = 60) -> str:
        """The first stdout line starting with ``prefix`` (a bound on a hang: ``within`` s)."""
        assert self.proc.stdout is not None
        end = time.monotonic() + within
        while time.monotonic() < end:
            if not self._sel.select(timeout=max(0.0, end - time.monotonic())):
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            self.out.append(line)
            if line.startswith(prefix):
                return line.strip()
        self.kill()
        raise AssertionError(f"no line {prefix!r} in: {''.join(self.out)}\n"
                             f"stderr: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self._sel.close()
        return self.proc.returncode, "".join(self.out) + out, err
