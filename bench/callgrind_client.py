"""Instructions per message in the client's frame path, for callgrind: exact, load-independent.

Runs the harness's tickloop contender (``bench/harness/contenders/tickloop_client.py``,
``--style callback``) against the harness server twice under callgrind, for ``--small`` and
``--large`` messages, and prints the difference of the two counts over the extra messages:
start-up, imports and warm-up cancel. Only what runs inside picows' per-frame callback is
counted (``--toggle-collect`` on ``WSProtocol._invoke_on_ws_frame``: the transport, the router,
the codec, the feed, the consumer and the contender's handler), so the loop's and the socket's
share, which depends on how many frames each read brings, is left out. The server sends exactly
as many frames as the client waits for (extra frames in the last read would count), the read
budget is off (valgrind's slowness would trip it on every read) and the cycle collector is off
(its passes fall where they fall). Two checkouts, each with its own ``.venv``, compare exactly::

    .venv/bin/python bench/callgrind_client.py trades        # or: depth --raw
    (cd ../other && .venv/bin/python /path/to/bench/callgrind_client.py trades)

An older checkout whose transport has no read budget is run as it is.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Run in the contender's process before the contender: budget off, collector off.
_PRELUDE = """
import gc, runpy, sys
try:
    from tickloop.client import transport
    transport.PicowsTransport.__init__.__kwdefaults__["read_budget"] = None
except ImportError:  # an older checkout: no read budget to turn off
    pass
gc.disable()
sys.argv = ["tickloop_client", *sys.argv[1:]]
runpy.run_module("bench.harness.contenders.tickloop_client", run_name="__main__")
"""
_TOGGLE = "__pyx_f_6picows_6picows_10WSProtocol__invoke_on_ws_frame"


def run(kind: str, count: int, extra: list[str], out: Path) -> int:
    """Instructions counted for one client run of ``count`` messages."""
    root = Path.cwd()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.harness.server", "--frames", str(count), "--rate", "0"],
        stdout=subprocess.PIPE, text=True, cwd=root,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit(f"the harness server did not start: {line!r}")
        port = line.split()[1]
        prelude = out.with_suffix(".py")
        prelude.write_text(_PRELUDE)
        cmd = [
            "valgrind", "--tool=callgrind", f"--toggle-collect={_TOGGLE}",
            f"--callgrind-out-file={out}", sys.executable, str(prelude), "--style", "callback",
            *extra, "--port", port, "--kind", kind, "--warmup", "0", "--count", str(count),
            "--timeout", "900",
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(root)}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=1800)
        if '"ok": true' not in done.stdout:
            raise SystemExit(f"the client run failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no callgrind total in:\n{done.stderr[-2000:]}")
        return int(found.group(1))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("kind", choices=("trades", "depth"))
    parser.add_argument("--raw", action="store_true", help="depth: the raw delta stream")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=30_000)
    args = parser.parse_args()
    extra = ["--raw"] if args.raw else []
    with tempfile.TemporaryDirectory() as tmp:
        small = run(args.kind, args.small, extra, Path(tmp) / "small.out")
        large = run(args.kind, args.large, extra, Path(tmp) / "large.out")
    per = (large - small) / (args.large - args.small)
    label = "raw deltas" if args.raw else args.kind
    print(f"{label}: {per:,.0f} instructions a message in the frame path ({Path.cwd()})")


if __name__ == "__main__":
    main()
