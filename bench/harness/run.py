"""Benchmark orchestrator: tickloop side by side with what users would pick instead.

Run (from the repository root, after ``.venv/bin/pip install -e ".[bench]"``)::

    .venv/bin/python -m bench.harness.run            # full: ~15-20 min
    .venv/bin/python -m bench.harness.run --quick    # quick: < 3 min, one run per figure
    .venv/bin/python -m bench.harness.run --only naive,tickloop --runs 5 --no-write

Phases, each with a fresh loopback server (:mod:`bench.harness.server`, pinned to one core)
and one process per contender (pinned to the other core), contenders alternated run by run:

1. throughput: trades and depth diffs as fast as the consumer reads; messages/s reaching user
   code, CPU µs per message, peak RSS;
2. latency: paced at 10k and 50k msgs/s; send -> user code p50/p99/p99.9 (ids joined with the
   server's monotonic send log);
3. soak: every contender at once on a paced trade stream; RSS sampled, drift after warm-up;
4. book: ``bench/bench_book.py``'s workload (tickloop OrderBook, SortedDict, cryptofeed C book).

Writes ``docs/benchmarks.md``, ``docs/img/bench_*.png`` and the raw results
``bench/harness/results/last.json`` (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .workload import TRADE_BASE

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
console = Console()


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    module: str
    args: tuple[str, ...] = ()
    soak: bool = True
    kinds: tuple[str, ...] = ("trades", "depth")  # throughput streams; latency is trades


CONTENDERS: list[Contender] = [
    Contender("tickloop", "tickloop (callback)", "tickloop_client", ("--style", "callback")),
    Contender("tickloop-iter", "tickloop (async for)", "tickloop_client", ("--style", "iter")),
    Contender(
        "tickloop-top20",
        "tickloop (callback, books depth=20)",
        "tickloop_client",
        ("--style", "callback", "--book-depth", "20"),
        soak=False,
        kinds=("depth",),
    ),
    Contender(
        "tickloop-raw",
        "tickloop (callback, raw deltas)",
        "tickloop_client",
        ("--style", "callback", "--raw"),
        soak=False,
        kinds=("depth",),
    ),
    Contender(
        "tickloop-raw-iter",
        "tickloop (async for, raw deltas)",
        "tickloop_client",
        ("--style", "iter", "--raw"),
        soak=False,
        kinds=("depth",),
    ),
    Contender("naive", "naive websockets + json.loads", "naive"),
    Contender("cryptofeed", "cryptofeed", "cryptofeed_peer"),
    Contender("ccxt", "ccxt.pro", "ccxt_peer"),
]
BASELINE = "tickloop"


@dataclass
class Plan:
    quick: bool
    runs: int
    trades: int
    depth: int
    warmup: int
    tail: int
    latency_rates: tuple[int, ...]
    latency_seconds: float
    soak_seconds: float
    soak_rate: int
    soak_every: float
    book_updates: int
    book_repeat: int
    phases: tuple[str, ...]
    contenders: list[Contender] = field(default_factory=list)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    chosen = [c for c in CONTENDERS if only is None or c.key in only]
    return Plan(
        quick=quick,
        runs=args.runs or (1 if quick else 3),
        trades=40_000 if quick else 200_000,
        depth=40_000 if quick else 200_000,
        warmup=5_000 if quick else 20_000,
        tail=3_000,
        latency_rates=(10_000, 50_000),
        latency_seconds=1.5 if quick else 4.0,
        soak_seconds=args.soak if args.soak is not None else (60.0 if quick else 600.0),
        soak_rate=2_000,
        soak_every=2.0 if quick else 5.0,
        book_updates=50_000 if quick else 300_000,
        book_repeat=1 if quick else 3,
        phases=tuple(args.phases.split(",")),
        contenders=chosen,
    )


def cpus() -> tuple[int | None, int | None]:
    """(server core, contender core): two different cores when there are two."""
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(mine) >= 2:
        return mine[1], mine[0]
    return None, None


SERVER_CPU, CLIENT_CPU = cpus()


class Server:
    """One loopback server process for one phase; every contender gets its own replay."""

    def __init__(
        self, frames: int, rate: float = 0.0, send_log: str | None = None, tick_ms: float = 0.0
    ) -> None:
        cmd = [PY, "-m", "bench.harness.server", "--frames", str(frames), "--rate", str(rate)]
        cmd += ["--tick-ms", str(tick_ms)]
        if send_log:
            cmd += ["--send-log", send_log]
        if SERVER_CPU is not None:
            cmd += ["--cpu", str(SERVER_CPU)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.close()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        self.port = int(line.split()[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def contender_cmd(
    c: Contender,
    port: int,
    kind: str,
    warmup: int,
    count: int,
    timeout: float,
    latency_out: str | None = None,
    rss_every: float = 0.0,
) -> list[str]:
    cmd = [PY, "-m", f"bench.harness.contenders.{c.module}", *c.args]
    cmd += ["--port", str(port), "--kind", kind, "--warmup", str(warmup), "--count", str(count)]
    cmd += ["--timeout", str(timeout)]
    if CLIENT_CPU is not None:
        cmd += ["--cpu", str(CLIENT_CPU)]
    if latency_out:
        cmd += ["--latency-out", latency_out]
    if rss_every:
        cmd += ["--rss-every", str(rss_every)]
    return cmd


def parse_result(c: Contender, proc_out: str, proc_err: str, rc: int | None) -> dict[str, Any]:
    for line in reversed(proc_out.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            result["key"] = c.key
            result["label"] = c.label
            if result.get("ok") and result.get("frames", 0) < 0.5 * result.get("count", 0):
                # e.g. a client that synced its book after most of the window: not a figure
                result["ok"] = False
                result["error"] = (
                    f"measured window too short: {result['frames']} of {result['count']} frames"
                )
            if not result.get("ok"):
                result["stderr"] = proc_err[-1500:]
            return result
    return {
        "key": c.key,
        "label": c.label,
        "ok": False,
        "error": f"no result (exit code {rc}): {proc_err.strip()[-800:]}",
    }


def run_one(c: Contender, cmd: list[str], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired as exc:
        return {
            "key": c.key,
            "label": c.label,
            "ok": False,
            "error": f"killed after {exc.timeout} s",
        }
    return parse_result(c, proc.stdout, proc.stderr, proc.returncode)


def rotated(items: list[Contender], shift: int) -> list[Contender]:
    """Alternate the order run by run so drift on the shared machine hits every contender."""
    if not items:
        return items
    shift %= len(items)
    return items[shift:] + items[:shift]


# ----------------------------------------------------------------------------- phases


def phase_throughput(plan: Plan, progress: Progress) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    total = plan.runs * sum(len(c.kinds) for c in plan.contenders)
    todo = progress.add_task("throughput", total=total)
    for kind, count in (("trades", plan.trades), ("depth", plan.depth)):
        chosen = [c for c in plan.contenders if kind in c.kinds]
        with Server(plan.warmup + count + plan.tail) as server:
            for run in range(plan.runs):
                for c in rotated(chosen, run):
                    progress.update(todo, description=f"throughput {kind} {c.label} #{run + 1}")
                    timeout = 120.0 if not plan.quick else 40.0
                    cmd = contender_cmd(c, server.port, kind, plan.warmup, count, timeout)
                    result = run_one(c, cmd, timeout)
                    result.update(phase="throughput", run=run)
                    results.append(result)
                    progress.advance(todo)
    return results


def phase_latency(plan: Plan, progress: Progress, tmp: str) -> list[dict[str, Any]]:
    import numpy as np

    results: list[dict[str, Any]] = []
    chosen = [c for c in plan.contenders if "trades" in c.kinds]
    total = len(plan.latency_rates) * plan.runs * len(chosen)
    todo = progress.add_task("latency", total=total)
    for rate in plan.latency_rates:
        warmup = rate // 2
        count = int(rate * plan.latency_seconds)
        prefix = os.path.join(tmp, f"send{rate}")
        with Server(warmup + count + plan.tail, rate=rate, send_log=prefix) as server:
            for run in range(plan.runs):
                for c in rotated(chosen, run):
                    progress.update(
                        todo, description=f"latency {rate // 1000}k/s {c.label} #{run + 1}"
                    )
                    before = set(glob.glob(prefix + "-*.bin"))
                    out = os.path.join(tmp, f"lat-{c.key}-{rate}-{run}.bin")
                    timeout = 60.0 + 3 * plan.latency_seconds
                    cmd = contender_cmd(c, server.port, "trades", warmup, count, timeout, out)
                    result = run_one(c, cmd, timeout)
                    result.update(phase="latency", run=run, rate=rate)
                    time.sleep(0.3)  # the server writes its send log when the stream ends
                    logs = sorted(set(glob.glob(prefix + "-*.bin")) - before, key=os.path.getmtime)
                    if result.get("ok") and os.path.exists(out) and logs:
                        sent = np.fromfile(logs[-1], dtype=np.int64)
                        raw = np.fromfile(out, dtype=np.int64)
                        n = int(raw[0])
                        ids, recv = raw[1 : 1 + n], raw[1 + n : 1 + 2 * n]
                        index = ids - TRADE_BASE
                        keep = (index >= 0) & (index < len(sent))
                        lat_us = (recv[keep] - sent[index[keep]]) / 1e3
                        result["latency_us"] = {
                            "p50": float(np.percentile(lat_us, 50)),
                            "p99": float(np.percentile(lat_us, 99)),
                            "p99.9": float(np.percentile(lat_us, 99.9)),
                            "max": float(lat_us.max()),
                            "samples": int(lat_us.size),
                        }
                    elif result.get("ok"):
                        result["ok"] = False
                        result["error"] = "no latency samples or no server send log"
                    results.append(result)
                    progress.advance(todo)
    return results


def phase_soak(
    plan: Plan, progress: Progress, during: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """Every contender at once on a paced stream; ``during`` (the book phase) runs meanwhile on
    the server's core, which the ms-tick pacing leaves nearly idle."""
    chosen = [c for c in plan.contenders if c.soak and "trades" in c.kinds]
    rate = plan.soak_rate
    warmup = rate * 5
    count = int(rate * plan.soak_seconds)
    todo = progress.add_task(f"soak {plan.soak_seconds:.0f} s", total=plan.soak_seconds + 5)
    results: list[dict[str, Any]] = []
    timeout = plan.soak_seconds + 90
    with Server(warmup + count + plan.tail, rate=rate, tick_ms=1.0) as server:
        procs = []
        for c in chosen:
            cmd = contender_cmd(
                c, server.port, "trades", warmup, count, timeout, rss_every=plan.soak_every
            )
            procs.append(
                (
                    c,
                    subprocess.Popen(
                        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    ),
                )
            )
        start = time.monotonic()
        if during is not None:
            during()
        while any(p.poll() is None for _, p in procs):
            progress.update(todo, completed=min(time.monotonic() - start, plan.soak_seconds + 5))
            time.sleep(0.5)
            if time.monotonic() - start > timeout + 30:
                for _, p in procs:
                    if p.poll() is None:
                        p.kill()
        for c, p in procs:
            out, err = p.communicate()
            result = parse_result(c, out, err, p.returncode)
            result.update(phase="soak", rate=rate, seconds=plan.soak_seconds)
            samples = [s for s in result.get("rss", []) if s[0] >= 5.0]  # after warm-up
            if len(samples) >= 2:
                (t0, r0), (t1, r1) = samples[0], samples[-1]
                result["drift_mib"] = (r1 - r0) / 2**20
                result["drift_mib_per_min"] = (r1 - r0) / 2**20 / max(1e-9, (t1 - t0) / 60)
                result["rss_start_mib"] = r0 / 2**20
            results.append(result)
        progress.update(todo, completed=plan.soak_seconds + 5)
    return results


def phase_book(plan: Plan, progress: Progress, cpu: int | None) -> dict[str, Any]:
    todo = progress.add_task("book (bench/bench_book.py)", total=1)
    cmd = [PY, "-m", "bench.harness.book_micro", "--updates", str(plan.book_updates)]
    cmd += ["--repeat", str(plan.book_repeat)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        out, err = "", "timed out after 600 s"
    progress.advance(todo)
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    return {"ok": False, "error": f"no result: {err.strip()[-800:]}"}


# ----------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_at_start": [round(x, 2) for x in load],
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run, short figures (< 3 min)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (median)")
    parser.add_argument("--only", default=None, help="contenders, e.g. tickloop,naive")
    parser.add_argument("--soak", type=float, default=None, help="soak seconds")
    parser.add_argument(
        "--phases", default="throughput,latency,soak,book", help="comma-separated subset"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render-only", action="store_true", help="re-render the page from the last results"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        from .report import render, summary_table

        saved = json.loads((ROOT / "bench" / "harness" / "results" / "last.json").read_text())
        notes_file = Path(__file__).with_name("notes.md")
        notes = notes_file.read_text() if notes_file.exists() else ""
        render(saved, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img", notes)
        console.print(summary_table(saved))
        return
    plan = make_plan(args)
    command = ".venv/bin/python -m bench.harness.run" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    started = time.monotonic()
    data: dict[str, Any] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "plan": {k: v for k, v in plan.__dict__.items() if k != "contenders"},
        "contenders": [c.__dict__ for c in plan.contenders],
    }
    with (
        tempfile.TemporaryDirectory(prefix="tickloop-bench-") as tmp,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        if "throughput" in plan.phases:
            data["throughput"] = phase_throughput(plan, progress)
        if "latency" in plan.phases:
            data["latency"] = phase_latency(plan, progress, tmp)
        if "soak" in plan.phases and "book" in plan.phases:

            def book_meanwhile() -> None:
                data["book"] = phase_book(plan, progress, SERVER_CPU)
                data["book"]["during_soak"] = True

            data["soak"] = phase_soak(plan, progress, book_meanwhile)
        elif "soak" in plan.phases:
            data["soak"] = phase_soak(plan, progress)
        elif "book" in plan.phases:
            data["book"] = phase_book(plan, progress, CLIENT_CPU)
    data["wall_seconds"] = round(time.monotonic() - started, 1)
    if hasattr(os, "getloadavg"):
        data["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]

    from .report import render, summary_table

    console.print(summary_table(data))
    if not args.no_write:
        results_dir = ROOT / "bench" / "harness" / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / "last.json").write_text(json.dumps(data, indent=1) + "\n")
        notes_file = Path(__file__).with_name("notes.md")
        notes = notes_file.read_text() if notes_file.exists() else ""
        render(data, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img", notes)
        console.print(f"wrote docs/benchmarks.md, docs/img/bench_*.png ({data['wall_seconds']} s)")


if __name__ == "__main__":
    main()
