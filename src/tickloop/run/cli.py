"""``tickloop run`` and ``tickloop init``: arguments onto the configuration, then the run.

A config file is read and decoded first, the command line's options override it, and the
result is validated (:func:`tickloop.run.config.validate`) before anything starts, so every
mistake is one line naming the field (``--port`` or ``bots[1].params.fast``). Without a file
and with ``--symbols``, the default bots are spread over the markets given.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from rich.console import Console

from ..exceptions import ConfigError
from .config import EXAMPLE_CONFIG, RunConfig, load_config, validate

__all__ = ["init_command", "run_command"]


def _configure(config: str | None, *, host: str | None, port: int | None, venue: str | None,
               url: str | None, symbols: str | None, seed: int | None, rate: float | None,
               store: str | None) -> RunConfig:
    cfg = load_config(config) if config is not None else RunConfig()
    if venue is not None:
        cfg.venue.name = venue
    if url is not None:
        cfg.venue.url = url
    if seed is not None:
        cfg.venue.seed = seed
    if rate is not None:
        cfg.venue.rate = rate
    if host is not None:
        cfg.server.host = host
    if port is not None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port: must be within 0..65535, got {port}", field="--port")
        cfg.server.port = port
    if store is not None:
        cfg.store.path = store
    if symbols is not None:
        names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        if not names:
            raise ConfigError("--symbols: no symbol given", field="--symbols")
        cfg.symbols = names
        if config is None:  # the default bots follow the markets asked for
            for n, bot in enumerate(cfg.bots):
                bot.symbols = [names[n % len(names)]]
    return cfg


def run_command(*, config: str | None, check: bool, host: str | None, port: int | None,
                venue: str | None, url: str | None, symbols: str | None, seed: int | None,
                rate: float | None, store: str | None, duration: float | None) -> int:
    """Validate, then (unless ``check``) run; the exit status."""
    if duration is not None and not duration > 0:
        raise ConfigError(f"--duration: must be > 0, got {duration:g}", field="--duration")
    try:
        cfg = _configure(config, host=host, port=port, venue=venue, url=url, symbols=symbols,
                         seed=seed, rate=rate, store=store)
        prepared = validate(cfg)
    except ConfigError as exc:
        if config is not None and not exc.message.startswith(str(config)):
            raise ConfigError(f"{config}: {exc.message}", field=exc.field) from None
        raise
    console = Console()
    if check:
        bots = ", ".join(f"{b.id} ({type(b).__name__})" for b in prepared.bots) or "none"
        where = "the embedded exchange" if prepared.embedded else (cfg.venue.url or "default")
        port_text = "8000 (or the next free one)" if cfg.server.port is None \
            else str(cfg.server.port)
        console.print(f"{config or 'defaults'}: ok - venue {cfg.venue.name} ({where}), "
                      f"markets {', '.join(cfg.symbols)}, bots {bots}, store "
                      f"{prepared.store_path}, server {cfg.server.host}:{port_text}",
                      highlight=False, soft_wrap=True)
        return 0
    from .platform import run_platform

    _log_to(console)
    outcome = asyncio.run(run_platform(prepared, duration=duration, console=console))
    return outcome.exit_code


def _log_to(console: Console) -> None:
    """tickloop's warnings (a stalled loop, a bot's circuit breaker) through the console, so
    that they print above the live summary instead of through it."""
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False,
                          markup=False)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger("tickloop")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def init_command(path: str, *, force: bool = False) -> None:
    """Write :data:`EXAMPLE_CONFIG` to ``path`` (refusing to overwrite without ``force``)."""
    target = Path(path)
    if target.exists() and not force:
        raise ConfigError(f"{target} exists already (--force overwrites it)", field="path")
    try:
        target.write_text(EXAMPLE_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}", field="path") from None
    print(f"wrote {target}: edit it, check it with `tickloop run --check {target}`, "
          f"run it with `tickloop run {target}`")
