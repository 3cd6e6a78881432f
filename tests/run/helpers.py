"""Running the ``tickloop`` command in a subprocess, with its state and data directories in a
temporary folder (never the user's), and reading its output as it comes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO


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
    """A ``tickloop run`` in a subprocess; :meth:`wait_for` waits for a line of its stdout.

    Both pipes are drained by threads from the start, so however much the run writes, it never
    blocks on a full pipe (a blocked write would stall its event loop, and the test with it).
    """

    def __init__(self, tmp: Path, *args: str, **extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickloop", "run", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env_for(tmp, **extra), cwd=tmp)
        self.out: list[str] = []
        self.err: list[str] = []
        self._seen = 0  # stdout lines wait_for has looked at
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._drain, args=(pipe, lines), daemon=True)
                         for pipe, lines in ((self.proc.stdout, self.out),
                                             (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    def _drain(self, pipe: IO[str] | None, lines: list[str]) -> None:
        assert pipe is not None
        for line in pipe:
            with self._changed:
                lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, prefix: str, within: float = 60) -> str:
        """The next stdout line starting with ``prefix`` (a bound on a hang: ``within`` s)."""
        end = time.monotonic() + within
        with self._changed:
            while True:
                while self._seen < len(self.out):
                    line = self.out[self._seen]
                    self._seen += 1
                    if line.startswith(prefix):
                        return line.strip()
                left = end - time.monotonic()
                if left <= 0 or not self._readers[0].is_alive():
                    break
                self._changed.wait(timeout=min(left, 0.5))
        self.kill()
        raise AssertionError(f"no line {prefix!r} in: {''.join(self.out)}\n"
                             f"stderr: {self.stderr()}")

    def stderr(self) -> str:
        with self._changed:
            return "".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """Wait for the exit; its code, all of stdout and all of stderr."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        with self._changed:
            return code, "".join(self.out), "".join(self.err)
