"""Parameter sweeps and the pieces ``tickloop backtest`` is made of: naming a bot class, typing
``name=value`` parameters, and running every combination of swept values over a process pool.

:func:`combinations` gives the grid in a fixed order (the first swept name varies slowest), and
:func:`sweep` returns one row per combination in that order, whatever order the workers finish
in; each worker reads the candles once (the pool's initializer). A combination the bot refuses
(``fast=20, slow=20``) is a row with an ``error`` and no metrics.
"""

from __future__ import annotations

import importlib
import itertools
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from ..runtime.bot import Bot
from .data import load_candles
from .runner import Backtest

__all__ = ["bot_class", "check_swept", "combinations", "make_bot", "parse_assignments",
           "run_one", "sweep"]


def bot_class(spec: str) -> type[Bot]:
    """``"tickloop.examples:SmaCross"`` -> the class (a :class:`Bot` subclass)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"--bot {spec!r} is not module:Class", field="--bot")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"--bot {spec!r}: cannot import {module}: {exc}", field="--bot") \
            from None
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"--bot {spec!r}: {module} has no {name}", field="--bot")
    if not (isinstance(obj, type) and issubclass(obj, Bot)):
        raise ConfigError(f"--bot {spec!r} is not a tickloop Bot class", field="--bot")
    return obj


def parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """``["fast=5", "slow=20"]`` -> ``{"fast": "5", "slow": "20"}`` (values typed later, by
    the bot's parameters)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"{option} {item!r} is not name=value", field=option)
        out[name] = value.strip()
    return out


def make_bot(cls: type[Bot], params: dict[str, str], symbols: Sequence[str] | None = None,
             bot_id: str | None = None) -> Bot:
    """A bot of ``cls`` with text parameters typed by its ``Params`` (a bad one is a
    one-line :class:`ConfigError` naming it)."""
    name = bot_id or cls.__name__.lower()
    typed: dict[str, Any] = dict(params)
    return cls(name, symbols=list(symbols) if symbols else None, **typed)


def check_swept(cls: type[Bot], swept: dict[str, list[str]]) -> None:
    """Every swept name is a parameter of ``cls`` (else a one-line error naming it)."""
    known = cls.Params.__struct_fields__
    for name in swept:
        if name not in known:
            raise ConfigError(f"--sweep {name}: {cls.__name__} has no parameter {name!r}"
                              + (f" (one of {', '.join(known)})" if known else ""),
                              field="--sweep")


def combinations(swept: dict[str, list[str]]) -> list[dict[str, str]]:
    names = list(swept)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(swept[n] for n in names))]


_CANDLES: list[Any] = []


def _load(paths: list[str], interval: str | None) -> None:
    _CANDLES[:] = load_candles([Path(p) for p in paths], interval=interval)


def run_one(spec: str, params: dict[str, str], symbols: list[str] | None,
            options: dict[str, Any]) -> dict[str, Any]:
    """One backtest in a worker (on the candles its initializer read)."""
    from .report import summary

    try:
        bot = make_bot(bot_class(spec), params, symbols)
        result = Backtest(bot, _CANDLES, **options)
    except ConfigError as exc:
        return {"params": params, "error": str(exc)}
    return summary(result.run_sync())


def sweep(spec: str, fixed: dict[str, str], swept: dict[str, list[str]],
          paths: list[str], *, symbols: list[str] | None = None,
          interval: str | None = None, options: dict[str, Any] | None = None,
          workers: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Every combination of ``swept`` (over ``fixed``), one row each, in combination order;
    ``progress(done, total)`` after each one finishes."""
    check_swept(bot_class(spec), swept)
    grid = [{**fixed, **combo} for combo in combinations(swept)]
    rows: list[dict[str, Any] | None] = [None] * len(grid)
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_load,
                             initargs=(paths, interval)) as pool:
        futures = {pool.submit(run_one, spec, params, symbols, options or {}): i
                   for i, params in enumerate(grid)}
        for done, future in enumerate(as_completed(futures), 1):
            rows[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(grid))
    return [r for r in rows if r is not None]
