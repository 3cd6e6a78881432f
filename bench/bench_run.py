"""``tickloop run`` start-up and shutdown, as a user sees them, in a subprocess.

Each round starts ``python -m tickloop run --port 0`` (state and data in a temporary folder),
takes the time until it prints the dashboard's address, lets it run ``--hold`` seconds (the
bots trade on paper meanwhile), sends SIGTERM or SIGINT (alternating) and takes the time until
the process has exited. The issue's bound on the second is 5 s.

Run: ``.venv/bin/python bench/bench_run.py [--rounds 4] [--hold 3]``.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(sig: signal.Signals, hold: float) -> tuple[float, float, int]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
    env = dict(os.environ, XDG_DATA_HOME=str(tmp / "data"), XDG_STATE_HOME=str(tmp / "state"),
               PYTHONUNBUFFERED="1")
    env.pop("TICKLOOP_TOKEN", None)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "tickloop", "run", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=tmp)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            if not sel.select(timeout=60):
                raise RuntimeError("no dashboard line within 60 s")
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("tickloop run ended before serving")
            if line.startswith("dashboard: "):
                break
        up = time.monotonic() - started
        time.sleep(hold)
        signalled = time.monotonic()
        proc.send_signal(sig)
        proc.communicate(timeout=30)
        down = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sel.close()
    return up, down, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--hold", type=float, default=3.0)
    args = parser.parse_args()
    print("| round | signal | start -> dashboard line (s) | signal -> exited (s) | exit status |")
    print("|---:|---|---:|---:|---:|")
    for n in range(args.rounds):
        sig = signal.SIGTERM if n % 2 == 0 else signal.SIGINT
        up, down, code = one(sig, args.hold)
        print(f"| {n + 1} | {sig.name} | {up:.2f} | {down:.2f} | {code} |", flush=True)


if __name__ == "__main__":
    main()
