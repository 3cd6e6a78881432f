"""``tickloop backtest``: the command's logic (the typer shell is in :mod:`tickloop.cli`).

``REC`` is candles (CSV files or directories of them) or a recording (a ``tickloop record``
directory, or cryptofeed files): :class:`~tickloop.backtest.Backtest` or
:class:`~tickloop.backtest.ReplayBacktest` runs it, and the output is the same.

One run prints a rich table of the summary (:func:`tickloop.backtest.report.summary`), or with
``--json`` one JSON object; ``--plot`` writes the equity + drawdown PNG, ``--store`` adds the run
to a store file. With ``--sweep`` it runs every combination over a process pool behind a rich
progress bar (on standard error) and prints one row per combination: a table, or with ``--json``
one JSON object per line, in combination order.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from ..exceptions import ConfigError
from ..runtime.store import Store
from .data import load_candles
from .replayed import ReplayBacktest, is_recording
from .report import plot, save, summary, table
from .runner import Backtest, BacktestResult
from .sweep import bot_class, check_swept, make_bot, parse_assignments, sweep

__all__ = ["run_cli"]

_encoder = msgspec.json.Encoder(order="deterministic")
_SWEEP_COLUMNS = ("pnl", "total_return", "sharpe", "sortino", "max_drawdown", "trades",
                  "win_rate", "profit_factor", "fees")


def _number(text: str, option: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise ConfigError(f"{option} {text!r} is not a number", field=option) from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{option} {text!r} must be a number >= 0", field=option)
    return value


def run_cli(*, rec: list[str], bot: str, params: list[str], sweeps: list[str],
            symbols: str | None, cash: str, fee: str, slippage: str, interval: str | None,
            as_json: bool, plot_path: str | None, store_path: str | None,
            workers: int | None) -> None:
    cls = bot_class(bot)
    fixed = parse_assignments(params, "--param")
    names = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    if symbols is not None and not names:
        raise ConfigError("--symbols lists no symbol", field="--symbols")
    options: dict[str, Any] = {"cash": _number(cash, "--cash"), "fee": _number(fee, "--fee"),
                               "slippage": _number(slippage, "--slippage")}
    out = Console(soft_wrap=True)
    if is_recording(rec):
        for given, option in ((sweeps, "--sweep"), (interval, "--interval"),
                              (options["slippage"], "--slippage")):
            if given:
                raise ConfigError(f"{option} is for candles: on a recording the bot trades on "
                                  "the replayed books", field=option)
        source: Path | list[str | Path] = Path(rec[0]) if len(rec) == 1 else [
            Path(r) for r in rec]
        replayed = ReplayBacktest(make_bot(cls, fixed, names), source, cash=options["cash"],
                                  fee=options["fee"])
        _report(replayed.run_sync(), out, as_json=as_json, plot_path=plot_path,
                store_path=store_path)
        return
    candles = load_candles([Path(r) for r in rec], interval=interval)
    if sweeps:
        swept: dict[str, list[str]] = {}
        for item in sweeps:
            name, sep, values = item.partition("=")
            name = name.strip()
            listed = [v.strip() for v in values.split(",") if v.strip()]
            if not sep or not name or not listed:
                raise ConfigError(f"--sweep {item!r} is not name=v1,v2,...", field="--sweep")
            if name in fixed:
                raise ConfigError(f"--sweep {name} is also a --param", field="--sweep")
            swept[name] = listed
        check_swept(cls, swept)
        if plot_path or store_path:
            raise ConfigError("--plot and --store are for one run, not a sweep",
                              field="--sweep")
        err = Console(stderr=True)
        with Progress("sweep", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("sweep", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            rows = sweep(bot, fixed, swept, [str(r) for r in rec], symbols=names,
                         interval=interval, options=options, workers=workers,
                         progress=progress)
        if as_json:
            for row in rows:
                sys.stdout.write(_encoder.encode(row).decode() + "\n")
            return
        grid = Table(title=f"sweep of {cls.__name__}: {len(rows)} combinations")
        for name in swept:
            grid.add_column(name, justify="right")
        for column in _SWEEP_COLUMNS:
            grid.add_column(column, justify="right")
        failed = any("error" in row for row in rows)
        if failed:
            grid.add_column("error")
        for row in rows:
            p = row["params"]
            cells = [str(p[n]) for n in swept]
            cells += ["" if "error" in row else _fmt(row.get(c)) for c in _SWEEP_COLUMNS]
            if failed:
                cells.append(row.get("error", ""))
            grid.add_row(*cells)
        out.print(grid)
        return
    result = Backtest(make_bot(cls, fixed, names), candles, **options).run_sync()
    _report(result, out, as_json=as_json, plot_path=plot_path, store_path=store_path)


def _report(result: BacktestResult, out: Console, *, as_json: bool, plot_path: str | None,
            store_path: str | None) -> None:
    if plot_path:
        plot(result, plot_path)
    if store_path:
        asyncio.run(_save(result, store_path))
    if as_json:
        sys.stdout.write(_encoder.encode(summary(result)).decode() + "\n")
    else:
        out.print(table(result))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


async def _save(result: Any, path: str) -> None:
    async with Store(path) as store:
        await save(result, store)
