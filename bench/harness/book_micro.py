"""Book micro-benchmark, run by the orchestrator in its own pinned process.

It reuses ``bench/bench_book.py`` (the book engineers' benchmark: workload, contenders, the
agreement check and the measurement) rather than duplicating it, and prints one
``RESULT {json}`` line: per contender, apply updates/s, apply + best-bid/ask read updates/s,
top-10 read µs on an unchanged book, and apply + top-10 read µs per update.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1_000_000)
    parser.add_argument("--levels", type=int, default=1_500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.cpu})
    result: dict[str, Any] = {"ok": False}
    try:
        from bench import bench_book as bb

        snapshot, updates = bb.workload(args.updates, args.levels, 7)
        top_updates = updates[: min(args.updates, 50_000)]
        tickloop = bb.Tickloop()  # the compiled class when the install built it
        contenders: list[Any] = [tickloop]
        names = {"tickloop": tickloop.name}
        if bb.NATIVE:  # and the pure-Python fallback beside it
            pure = bb.Tickloop(bb.PureOrderBook)
            contenders.append(pure)
            names["tickloop, pure Python"] = pure.name
        contenders += [bb.SortedDictBook(), bb.CryptofeedBook()]
        names["sortedcontainers"] = bb.SortedDictBook.name
        names["cryptofeed order_book (C)"] = bb.CryptofeedBook.name
        bb.check_agree(contenders, snapshot, updates[:20_000])
        runs: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
        for _ in range(args.repeat):  # alternate so drift hits every contender alike
            for c in contenders:
                runs[c.name].append(bb.measure(c, snapshot, updates, top_updates))
        result = {
            "ok": True,
            "updates": args.updates,
            "levels": args.levels,
            "repeat": args.repeat,
            "native": bb.NATIVE,
            "names": names,
            "median": {
                name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                for name, rs in runs.items()
            },
            "runs": runs,
        }
    except BaseException as exc:  # reported on the results page, not hidden
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
