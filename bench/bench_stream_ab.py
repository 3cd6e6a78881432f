"""StreamClient end to end, two source trees side by side: a git revision's against the working
tree's, and the naive loop, in one run.

The harness's loopback Binance-format server (``bench/harness/server.py``) streams N trade
frames, then N depth diffs, to ``bench/harness/contenders/tickloop_client.py`` (callback style:
``subscribe_trades`` and ``subscribe_book_deltas``, the raw typed deltas) and to the naive loop
(websockets + ``json.loads``), each in its own process, rounds alternated. The revision's
``src`` is exported with ``git archive`` into a temporary folder and put first on the
contender's ``PYTHONPATH``; the compiled modules (the book engine, the level decoder) are
copied from the working tree, so only the Python code differs between the two trees (do not
use this to compare changes to the C or mypyc sources). The figures are medians of the
messages/s reaching user code and of the CPU time per message, and their ratios to the naive
loop's in the same run: compare trees by those ratios, never by absolute figures on a shared
machine.

Run: ``.venv/bin/python bench/bench_stream_ab.py [--against REV] [--rounds 5] [--count 200000]``
(``REV`` defaults to ``main``; needs the ``bench`` extra's uvloop).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import run as harness  # noqa: E402 - after the path is set

WARMUP, TAIL = 20_000, 3_000


def export(rev: str, into: Path) -> Path:
    """``rev``'s ``src`` folder under ``into``, with the working tree's compiled modules."""
    archive = subprocess.run(
        ["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for built in (ROOT / "src").rglob("*.so"):
        target = into / built.relative_to(ROOT)
        if target.parent.is_dir():
            shutil.copy2(built, target)
    return into / "src"


def one(module: str, args: tuple[str, ...], kind: str, count: int, path: Path | None) -> dict:
    contender = harness.Contender(module, module, module, args)
    with harness.Server(WARMUP + count + TAIL) as server:
        cmd = harness.contender_cmd(contender, server.port, kind, WARMUP, count, 120.0)
        env = dict(os.environ)
        if path is not None:
            env["PYTHONPATH"] = str(path)
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{module} {args} failed: {done.stderr[-1000:]}")
    result: dict = json.loads(lines[-1][7:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="main", help="git revision (default main)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tickloop-ab-") as tmp:
        base = export(args.against, Path(tmp))
        cases = [
            ("tree", "trades", "tickloop_client", ("--style", "callback"), None),
            (args.against, "trades", "tickloop_client", ("--style", "callback"), base),
            ("naive", "trades", "naive", (), None),
            ("tree", "depth", "tickloop_client", ("--style", "callback", "--raw"), None),
            (args.against, "depth", "tickloop_client", ("--style", "callback", "--raw"), base),
            ("naive", "depth", "naive", (), None),
        ]
        rates: dict[tuple[str, str], list[float]] = {(c[0], c[1]): [] for c in cases}
        cpu: dict[tuple[str, str], list[float]] = {(c[0], c[1]): [] for c in cases}
        for round_ in range(args.rounds):
            for name, kind, module, extra, path in cases:
                result = one(module, extra, kind, args.count, path)
                rates[(name, kind)].append(result["delivered"] / result["elapsed"])
                cpu[(name, kind)].append(result["cpu"] / result["delivered"] * 1e6)
                print(f"round {round_ + 1} {kind:6s} {name:10s} "
                      f"{rates[(name, kind)][-1]:9.0f} msgs/s {cpu[(name, kind)][-1]:6.2f} µs/msg",
                      flush=True)
    print()
    print("| stream | tree | msgs/s (median) | CPU µs/msg | vs naive: msgs/s, CPU |")
    print("|---|---|---:|---:|---:|")
    for kind, label in (("trades", "trades"), ("depth", "raw deltas")):
        naive_rate = statistics.median(rates[("naive", kind)])
        naive_cpu = statistics.median(cpu[("naive", kind)])
        for name in ("tree", args.against, "naive"):
            rate = statistics.median(rates[(name, kind)])
            per = statistics.median(cpu[(name, kind)])
            ratio = f"{rate / naive_rate:.2f}×, {naive_cpu / per:.2f}×" if name != "naive" else ""
            print(f"| {label} | {name} | {rate:,.0f} | {per:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
