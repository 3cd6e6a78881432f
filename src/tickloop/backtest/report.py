"""What a backtest leaves behind: a JSON-able summary, a rich table, an equity + drawdown PNG
and rows in the runtime's store.

* :func:`summary`: one dict per bot: what was run (bot, class, parameters, symbols, candles,
  bar length, first open and last close) and every metric of
  :func:`tickloop.backtest.runner` (counts of orders, fills and trades, ``pnl``,
  ``max_drawdown``, ``sharpe``...). The same candles and parameters give the same dict.
* :func:`table`: the summary as a two-column :class:`rich.table.Table`.
* :func:`plot`: the equity curve over the drawdown, with matplotlib on the Agg backend
  (imported here only; it is the ``plot`` extra).
* :func:`save`: the run, its orders, fills, equity points and final positions in the store's
  ``backtest_*`` tables (schema version 3).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from ..exceptions import ConfigError
from ..runtime.store import Store
from . import metrics as m
from .runner import BacktestResult, BotReport

__all__ = ["plot", "save", "summary", "table"]

_NS = 1_000_000_000


def summary(result: BacktestResult, bot: str | None = None) -> dict[str, Any]:
    report = result.report(bot)
    return {
        "bot": report.bot,
        "class": report.cls,
        "params": report.params,
        "symbols": result.symbols,
        "candles": result.candles,
        "bar_seconds": result.bar_seconds,
        "start_ts": result.start_ts,
        "end_ts": result.end_ts,
        **({"frames": result.frames} if result.frames else {}),
        **report.metrics,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table(result: BacktestResult, bot: str | None = None) -> Table:
    data = summary(result, bot)
    out = Table(title=f"backtest {data['bot']} ({data['class']})", show_header=False)
    out.add_column("metric", style="bold")
    out.add_column("value", justify="right")
    for key, value in data.items():
        if key in ("bot", "class"):
            continue
        if key == "params":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif key == "symbols":
            value = ", ".join(value)
        out.add_row(key, _cell(value))
    return out


def plot(result: BacktestResult, path: str | Path, bot: str | None = None) -> Path:
    """Write the equity curve and the drawdown (as a percentage below the running peak) of
    ``bot`` to a PNG at ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'tickloop[plot]'",
                          field="plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    report: BotReport = result.report(bot)
    when = [datetime.fromtimestamp(ts / _NS, UTC) for ts in report.equity_ts]
    curve = [float(e) for e in report.equity]
    dd = [-100 * d for d in m.drawdowns(curve)]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6),
                                      gridspec_kw={"height_ratios": [3, 1]})
    try:
        top.plot(when, curve, linewidth=0.8, color="tab:blue")
        top.set_ylabel("equity")
        top.ticklabel_format(axis="y", useOffset=False, style="plain")
        met = report.metrics
        top.set_title(f"{report.bot} ({report.cls.rpartition(':')[2]}): pnl {met['pnl']:.6g}, "
                      f"max drawdown {100 * met['max_drawdown']:.3g}%, sharpe "
                      f"{_cell(met['sharpe'])}")
        top.grid(alpha=0.3)
        bottom.fill_between(when, dd, 0, color="tab:red", alpha=0.4, linewidth=0)
        bottom.set_ylabel("drawdown %")
        bottom.grid(alpha=0.3)
        locator = AutoDateLocator()  # type: ignore[no-untyped-call]
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(
            ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return out


async def save(result: BacktestResult, store: Store) -> list[int]:
    """Store every bot's run; returns the run ids."""
    ids = []
    digest = result.digest()
    for bot_id in sorted(result.bots):
        report = result.bots[bot_id]
        run = {"bot": report.bot, "class": report.cls, "params": report.params,
               "symbols": result.symbols, "bar_seconds": result.bar_seconds,
               "start_ts": result.start_ts, "end_ts": result.end_ts,
               "candles": result.candles, "metrics": report.metrics, "digest": digest,
               "created_ts": time.time_ns()}
        ids.append(await store.write_backtest(
            run, report.orders, report.fills,
            list(zip(report.equity_ts, report.equity, report.exposed, strict=True)),
            report.positions))
    return ids
