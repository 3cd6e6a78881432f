"""A real ``redis-server`` for the Redis bus tests: started on a free loopback port in a
temporary directory, stopped (or killed and restarted on the same port and directory) on demand.

Under ``CI=true`` a missing ``redis-server`` binary fails the tests that need it; elsewhere they
are skipped with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install -y redis-server (bash scripts/test does it when run as root)"


def redis_server_binary() -> str:
    """The path of ``redis-server``; fails under CI and skips elsewhere when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        message = f"redis-server not found on PATH: {INSTALL_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; ``fsync_always`` makes every write durable before its reply
    (the restart test's setting)."""

    def __init__(self, binary: str, directory: Path, *, fsync_always: bool = False) -> None:
        self.binary = binary
        self.dir = directory
        self.port = free_port()
        self.fsync_always = fsync_always
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always" if self.fsync_always else "everysec",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        # Not a timing goal: the limit only stops a broken start from hanging the suite.
        deadline = time.monotonic() + 10.0
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the server dies without a chance to write anything more."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.proc = None

    def command(self, *args: str) -> bytes:
        """One command over a raw socket (inline protocol); the raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(65536)
