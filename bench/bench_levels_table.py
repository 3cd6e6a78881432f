"""The C level decoder's hot path, two builds side by side: a git revision's source against the
working tree's.

Both ``_levels_native.c`` sources are compiled with setuptools (the build hook's compiler and
flags) into a temporary folder and loaded into this one process under the same module name
from different files. Each decoder, with the same seed, reads every depth diff of the recorded
Binance sessions (``tests/data/cryptofeed``: both sides' level arrays as the codec hands them
over) once to warm its table, then ``--reps`` times a round, rounds alternated between the
builds: nanoseconds per diff, every string a table hit (what a busy book's diffs cost once
their prices were seen). The figures are the ratios of the medians and of the best rounds (the
best is the least disturbed by other work on a shared machine); compare builds within one run.

Run: ``.venv/bin/python bench/bench_levels_table.py [--against REV] [--rounds 31] [--reps 100]``
(``REV`` defaults to ``HEAD``; needs a C compiler).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from tickloop.models import BookLevel
from tickloop.venues.base import DecimalCache
from tickloop.venues.levels import PureLevelDecoder
from tickloop.venues.recorded import Direction, read_recording

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "src/tickloop/venues/_levels_native.c"
SESSIONS = ("BINANCE.ws.1.0", "BINANCE_US.ws.1.0")
MODULE = "tickloop.venues._levels_native"

_BUILD = """
import sys
from setuptools import Distribution, Extension
name, source, out, tmp = sys.argv[1:]
ext = Extension(name, [source], define_macros=[("TICKLOOP_SOURCE_DIGEST", '"bench"')])
dist = Distribution({"name": "bench-levels", "ext_modules": [ext]})
command = dist.get_command_obj("build_ext")
command.build_lib, command.build_temp = out, tmp
dist.run_command("build_ext")
"""


def build(source: bytes, work: Path, tag: str) -> ModuleType:
    """Compile ``source`` as the extension module and load it from its own file."""
    folder = work / tag
    folder.mkdir()
    (folder / "_levels_native.c").write_bytes(source)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, MODULE, "_levels_native.c", "out", "tmp"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"building the {tag} source failed:\n{done.stdout}{done.stderr}")
    (built,) = (folder / "out").rglob("_levels_native*.so")
    spec = importlib.util.spec_from_file_location(MODULE, built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Diff(msgspec.Struct):
    b: msgspec.Raw
    a: msgspec.Raw


class _Wrapped(msgspec.Struct):
    data: msgspec.Raw


def depth_diffs() -> list[tuple[bytes, bytes]]:
    """Both level arrays of every depth diff of the recorded Binance sessions, as raw text."""
    out = []
    for name in SESSIONS:
        for rec in read_recording(ROOT / "tests" / "data" / "cryptofeed" / name):
            if rec.direction is Direction.RECEIVED and b'"depthUpdate"' in rec.frame:
                data = msgspec.json.decode(rec.frame, type=_Wrapped).data
                diff = msgspec.json.decode(data, type=_Diff)
                out.append((bytes(diff.b), bytes(diff.a)))
    return out


def per_diff(decoder: Any, diffs: list[tuple[bytes, bytes]], reps: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(reps):
        for bids, asks in diffs:
            decoder(bids)
            decoder(asks)
    return (time.perf_counter_ns() - start) / (reps * len(diffs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision of the other source")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--reps", type=int, default=100, help="passes over the diffs a round")
    args = parser.parse_args()
    old = subprocess.run(
        ["git", "show", f"{args.against}:{SOURCE}"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    diffs = depth_diffs()
    with tempfile.TemporaryDirectory(prefix="bench-levels-") as tmp:
        builds = {
            args.against: build(old, Path(tmp), "against"),
            "working tree": build((ROOT / SOURCE).read_bytes(), Path(tmp), "tree"),
        }
        decoders = {}
        for tag, module in builds.items():
            cache = DecimalCache()
            decoders[tag] = module.LevelDecoder(cache, BookLevel, PureLevelDecoder(cache), seed=1)
            per_diff(decoders[tag], diffs, 1)  # warm: every string is in the table after this
        times: dict[str, list[float]] = {tag: [] for tag in builds}
        order = list(builds)
        for n in range(args.rounds):
            for tag in order if n % 2 == 0 else order[::-1]:
                times[tag].append(per_diff(decoders[tag], diffs, args.reps))
    levels = sum(
        len(b) + len(a) for b, a in (map(PureLevelDecoder(DecimalCache()), d) for d in diffs)
    )
    medians = {tag: statistics.median(values) for tag, values in times.items()}
    best = {tag: min(values) for tag, values in times.items()}
    print(f"{len(diffs)} Binance depth diffs, {levels / len(diffs):.2f} levels a diff")
    for tag, values in times.items():
        rounds = json.dumps([round(v) for v in values])
        print(f"{tag:>14}: median {medians[tag]:.1f}, best {best[tag]:.1f} ns a diff; {rounds}")
    tree, other = "working tree", args.against
    print(
        f"{tree} / {other}: {medians[tree] / medians[other]:.3f} (medians), "
        f"{best[tree] / best[other]:.3f} (best rounds)"
    )


if __name__ == "__main__":
    main()
