"""Instructions per Binance depth-diff decode, for callgrind: the harness's own frames, N passes.

Decodes the 1,000 ``depthUpdate`` frames the harness server sends (``bench/harness/workload.py``,
combined-stream wrapping unless ``raw`` is given) once to warm the codec's caches, then N more
times. Instruction counts do not depend on the machine's load, so two builds (two checkouts,
each with its own ``.venv``) compare exactly; the per-decode figure is the difference of two
runs divided by the extra decodes, which cancels start-up and imports::

    for n in 1 3; do PYTHONPATH=$PWD valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
        .venv/bin/python bench/callgrind_depth.py combined $n 2>&1 | grep Collected; done
    # (Collected at n=3 - Collected at n=1) / 2000 = instructions per decode

``--scan`` times only the duplicate-key scan (``tickloop.venues.keys.duplicate_keys``) of the
same frames, the per-frame check issue 15 added.
"""

from __future__ import annotations

import argparse

from bench.harness.workload import Renderer
from tickloop.venues.binance import BinanceCodec

_FRAMES = 1000
_NOW_MS = 1_700_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("wrapping", choices=("combined", "raw"))
    parser.add_argument("passes", type=int)
    parser.add_argument("--scan", action="store_true", help="only the duplicate-key scan")
    args = parser.parse_args()
    renderer = Renderer("depth", combined=args.wrapping == "combined")
    frames = [renderer.payload(i, _NOW_MS) for i in range(_FRAMES)]
    if args.scan:
        from tickloop.venues.keys import duplicate_keys  # absent before issue 15

        for _ in range(args.passes):
            for frame in frames:
                duplicate_keys(frame)
        return
    decode = BinanceCodec().decode
    for frame in frames:  # warm-up: interned Decimals, stream names
        decode(frame, 0)
    for _ in range(args.passes):
        for frame in frames:
            decode(frame, 0)


if __name__ == "__main__":
    main()
