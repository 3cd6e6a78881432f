"""Instructions per candle of the bench's SMA-crossover backtest, for callgrind.

Builds the candles of ``bench/bench_backtest.py`` (its seeded ``walk``, the same
``Candle`` models as its ``tickloop_run``) for the largest run, ``walk(8000)``, whatever the
run's length, so that two runs differ only in how many candles are backtested; then runs
``run_backtest(SmaCandleCross("sma", fast=10, slow=30, candle_interval="1s"), candles[:n],
fee=Decimal("0.001"))`` (the bench's ratio row; ``--tick``: ``SmaCross``, its tick row) and
prints the fills and the result's digest (equal digests: the same orders, fills and equity).
Instruction counts do not depend on the machine's load, so two checkouts (each with its own
``.venv``) compare exactly; the figure per candle is the difference of two runs divided by the
extra candles, which cancels start-up, imports and the data preparation::

    for n in 2000 8000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cgbt.$n \\
        .venv/bin/python bench/callgrind_backtest.py $n 2>&1 | grep -E "Collected|fills"; done
    # (Collected at 8000 - Collected at 2000) / 6000 = instructions per candle

    .venv/bin/python bench/callgrind_backtest.py --measure   # the two runs above, and the sum

``callgrind_annotate --inclusive=yes /tmp/cgbt.8000`` then shows where they go (subtract the
2000 run's figures, or read the shares).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from bench_backtest import walk  # this script's folder is on sys.path (the bench's data)
from tickloop.backtest import run_backtest
from tickloop.examples import SmaCandleCross, SmaCross
from tickloop.models import Candle

_LARGEST = 8000
_SMALLEST = 2000


def candles(n: int = _LARGEST) -> list[Candle]:
    """The bench's candles (``tickloop_run`` makes the same ones from ``walk(n)``)."""
    cents = Decimal("0.01")
    return [
        Candle(
            venue="backtest",
            symbol="BTC-USD",
            interval="1s",
            open_time=t * 10**9,
            close_time=(t + 1) * 10**9,
            open=o * cents,
            high=h * cents,
            low=lo * cents,
            close=c * cents,
            volume=Decimal(1000),
            closed=True,
        )
        for t, o, h, lo, c in walk(n)
    ]


def run(n: int, tick: bool = False) -> None:
    data = candles(max(n, _LARGEST))
    bot = (SmaCross("sma", fast=10, slow=30) if tick
           else SmaCandleCross("sma", fast=10, slow=30, candle_interval="1s"))
    result = run_backtest(bot, data[:n], fee=Decimal("0.001"))
    print(f"{n} candles: {len(result.report().fills)} fills, digest {result.digest()}")


def collected(n: int, out: Path, tick: bool) -> int:
    """Run ``n`` candles under callgrind; the instructions it collected."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            str(n),
            *(["--tick"] if tick else []),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    print(done.stdout.strip())
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "n", type=int, nargs="?", default=_LARGEST, help=f"candles to backtest (default {_LARGEST})"
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help=f"run {_SMALLEST} and {_LARGEST} candles under callgrind and "
        "print the instructions per candle",
    )
    parser.add_argument("--tick", action="store_true",
                        help="SmaCross on a tick every second (the bench's tick row)")
    args = parser.parse_args()
    if not args.measure:
        run(args.n, args.tick)
        return
    with tempfile.TemporaryDirectory() as tmp:
        small = collected(_SMALLEST, Path(tmp) / "small", args.tick)
        large = collected(_LARGEST, Path(tmp) / "large", args.tick)
    per = (large - small) / (_LARGEST - _SMALLEST)
    print(
        f"Ir({_LARGEST}) {large:,}  Ir({_SMALLEST}) {small:,}  instructions per candle {per:,.0f}"
    )


if __name__ == "__main__":
    main()
