"""Backtests: the same :class:`~tickloop.runtime.Bot` classes on candles or on a recording, in
simulated time, with the paper matcher, and the reports users compare (docs/backtest.md).

.. code-block:: python

    from tickloop.backtest import load_candles, run_backtest
    from tickloop.examples import SmaCross

    result = run_backtest(SmaCross("b1", fast=5, slow=20), load_candles("BTC-USD.csv"))
    print(result.report().metrics)

Modules: :mod:`~tickloop.backtest.data` (candle CSVs), :mod:`~tickloop.backtest.feed` (candles
as market data, fills on candles), :mod:`~tickloop.backtest.runner` (the driver),
:mod:`~tickloop.backtest.metrics` (pure metric functions), :mod:`~tickloop.backtest.report`
(store, plot, table, JSON), :mod:`~tickloop.backtest.sweep` (parameter sweeps) and
:mod:`~tickloop.backtest.replayed` (on a recording, through the replayed live path).
"""

from .data import COLUMNS, load_candles, read_csv
from .feed import CandleExecutor, CandleFeed
from .replayed import ReplayBacktest, is_recording
from .runner import Backtest, BacktestResult, BotReport, run_backtest

__all__ = [
    "COLUMNS",
    "Backtest",
    "BacktestResult",
    "BotReport",
    "CandleExecutor",
    "CandleFeed",
    "ReplayBacktest",
    "is_recording",
    "load_candles",
    "read_csv",
    "run_backtest",
]
