"""Run the fuzz targets for longer than the suite does.

    .venv/bin/python -m fuzz.run                       # every target, 20,000 examples each
    .venv/bin/python -m fuzz.run --examples 200000 --target codec:binance
    .venv/bin/python -m fuzz.run --atheris --target codec:sim -- -max_total_time=600

Hypothesis mode draws hostile input from fuzz.strategies; ``--atheris`` runs the byte-level
targets (codecs, REST codecs, the sim's parsers and WebSocket handler) under atheris'
coverage-guided mutator instead (``pip install atheris``; arguments after ``--`` go to
libFuzzer). Any exception other than the documented ones is a finding: it is printed with the
input that caused it, and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

from . import strategies, targets


def _byte_targets() -> dict[str, Callable[[bytes], None]]:
    out: dict[str, Callable[[bytes], None]] = {}
    for venue in targets.CODECS:
        out[f"codec:{venue}"] = targets.codec_target(venue)
    for venue in targets.REST:
        out[f"rest:{venue}"] = targets.rest_target(venue)
    out["sim:parsers"] = targets.sim_parsers_target
    out["sim:ws"] = targets.sim_ws_target()
    return out


def _strategy(name: str) -> Any:
    kind, _, venue = name.partition(":")
    if kind == "codec":
        return strategies.frames(venue)
    if kind == "rest":
        return strategies.frames("sim")
    if kind == "book":
        return strategies.book_messages(venue)
    return strategies.requests()


def _all_targets() -> dict[str, Callable[[Any], None]]:
    out: dict[str, Callable[[Any], None]] = dict(_byte_targets())
    for venue in ("sim", "binance", "coinbase", "kraken"):
        out[f"book:{venue}"] = targets.book_target(venue)
    return out


def run_hypothesis(name: str, target: Callable[[Any], None], examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_strategy(name))
    def check(value: Any) -> None:
        target(value)

    start = time.monotonic()
    check()
    print(f"{name}: {examples} examples, no finding ({time.monotonic() - start:.1f} s)")


def run_atheris(name: str, target: Callable[[bytes], None], argv: list[str]) -> None:
    import atheris

    def one(data: bytes) -> None:
        target(data)

    atheris.instrument_all()  # coverage of the tickloop code already imported by the targets
    # A seed corpus of the venue's real frame shapes (libFuzzer mutates from there); a corpus
    # directory given after ``--`` is used as well.
    kind, _, venue = name.partition(":")
    seeds = strategies.SEEDS.get(venue) if kind == "codec" else strategies.REQUEST_SEEDS
    corpus = tempfile.mkdtemp(prefix=f"tickloop-fuzz-{kind}-")
    for i, seed in enumerate(seeds or strategies.SEEDS["sim"]):
        Path(corpus, f"seed-{i}").write_bytes(json.dumps(seed).encode())
    atheris.Setup([sys.argv[0], *argv, corpus], one)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    parser = argparse.ArgumentParser(description="Fuzz tickloop's boundary.")
    parser.add_argument("--target", default="all", help="a target name, or 'all' (see --list)")
    parser.add_argument("--examples", type=int, default=20_000, help="hypothesis examples each")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, byte targets")
    parser.add_argument("--list", action="store_true", help="list the targets")
    args = parser.parse_args(args_in)
    every = _all_targets()
    if args.list:
        print("\n".join(every))
        return 0
    names = list(every) if args.target == "all" else [args.target]
    unknown = [n for n in names if n not in every]
    if unknown:
        print(f"unknown target {unknown[0]!r}; --list shows them", file=sys.stderr)
        return 2
    if args.atheris:
        if len(names) != 1 or names[0].startswith("book:"):
            print("--atheris takes one byte-level --target (codec:*, rest:*, sim:*)")
            return 2
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed (pip install atheris)", file=sys.stderr)
            return 2
        run_atheris(names[0], every[names[0]], extra)
        return 0
    failed = 0
    for name in names:
        try:
            run_hypothesis(name, every[name], args.examples)
        except Exception as exc:  # a finding: hypothesis has printed the falsifying example
            failed += 1
            print(f"{name}: FINDING {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
