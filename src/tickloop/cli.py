"""The ``tickloop`` command line.

Each sub-command is a thin shell over the library: it parses arguments (a bad one gets a
one-line message naming it and exit status 2) and runs one coroutine. Sub-commands register
themselves here; their logic lives in the package they belong to.
"""

from __future__ import annotations

import sys

import typer

from ._version import __version__
from .exceptions import ConfigError, TickloopError

app = typer.Typer(
    name="tickloop",
    help="Real-time market data and trading bots, in one asyncio event loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tickloop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """tickloop: stream, book, bus, bots and dashboard in one event loop."""


_SERVER_HELP = ("The running instance's address (default: the one `tickloop run` wrote, "
                "else http://127.0.0.1:8000).")


@app.command("sim")
def _sim(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: a free one)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the synthetic flow."),
    symbols: str = typer.Option("BTC-USD,ETH-USD", "--symbols", help="Comma-separated markets."),
    rate: float = typer.Option(20.0, "--rate", help="Flow steps per second per symbol."),
    heartbeat: float = typer.Option(1.0, "--heartbeat", help="Idle seconds before a heartbeat."),
    fault: list[str] = typer.Option(  # noqa: B008
        [], "--fault", help="NAME=VALUE, e.g. drop_every=5, latency=0.05 (repeatable)."
    ),
) -> None:
    """Run the embedded exchange (REST + WebSocket) until Ctrl-C."""
    from .sim.exchange import run_cli

    run_cli(
        host=host,
        port=port,
        seed=seed,
        symbols=symbols,
        rate=rate,
        heartbeat=heartbeat,
        faults=fault,
    )


@app.command("run")
def _run(
    config: str | None = typer.Argument(
        None, help="A TOML config (tickloop init writes one); none: the defaults."),
    check: bool = typer.Option(False, "--check", help="Only validate the config, then exit."),
    host: str | None = typer.Option(None, "--host", help="Server address (127.0.0.1)."),
    port: int | None = typer.Option(
        None, "--port", help="Server port (8000, or the next free one when not given)."),
    venue: str | None = typer.Option(None, "--venue", help="sim, binance, coinbase or kraken."),
    url: str | None = typer.Option(
        None, "--url", help="The venue's WebSocket address (default: the embedded exchange)."),
    symbols: str | None = typer.Option(
        None, "--symbols", help="Comma-separated markets (BTC-USD,ETH-USD)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the embedded exchange."),
    rate: float | None = typer.Option(
        None, "--rate", help="Embedded flow steps per second per market."),
    store: str | None = typer.Option(None, "--store", help="The SQLite store's path."),
    duration: float | None = typer.Option(
        None, "--duration", help="Stop after N seconds (counted from the start)."),
) -> None:
    """The whole platform: exchange, bots on paper, store, web server and dashboard."""
    from .run.cli import run_command

    code = run_command(config=config, check=check, host=host, port=port, venue=venue, url=url,
                       symbols=symbols, seed=seed, rate=rate, store=store, duration=duration)
    raise typer.Exit(code)


@app.command("init")
def _init(
    path: str = typer.Argument("tickloop.toml", help="Where to write the example config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented example config (what `tickloop run` does with no file)."""
    from .run.cli import init_command

    init_command(path, force=force)


@app.command("bots")
def _bots(
    server: str | None = typer.Option(None, "--server", help=_SERVER_HELP),
) -> None:
    """The bots of a running `tickloop run`: status, PnL, errors."""
    from .run.remote import bots_command

    bots_command(server)


@app.command("pause")
def _pause(
    bot: str = typer.Argument(..., help="The bot's id."),
    server: str | None = typer.Option(None, "--server", help=_SERVER_HELP),
) -> None:
    """Pause a bot of a running `tickloop run` (needs the control token)."""
    from .run.remote import control_command

    control_command(server, bot, "pause")


@app.command("resume")
def _resume(
    bot: str = typer.Argument(..., help="The bot's id."),
    server: str | None = typer.Option(None, "--server", help=_SERVER_HELP),
) -> None:
    """Resume a bot of a running `tickloop run` (needs the control token)."""
    from .run.remote import control_command

    control_command(server, bot, "resume")


@app.command("tail")
def _tail(
    type_: list[str] = typer.Option(  # noqa: B008
        [], "--type", help="Only these event types (repeatable or comma-separated)."),
    topic: list[str] = typer.Option(  # noqa: B008
        [], "--topic", help="Only topics matching these globs (repeatable)."),
    limit: int | None = typer.Option(None, "--limit", help="Stop after N events."),
    server: str | None = typer.Option(None, "--server", help=_SERVER_HELP),
) -> None:
    """Print the events of a running `tickloop run` as they happen (its SSE stream)."""
    from .run.remote import tail_command

    tail_command(server, types=type_, topics=topic, limit=limit)


@app.command("book")
def _book(
    symbol: str = typer.Argument(..., help="The market, e.g. BTC-USD."),
    server: str | None = typer.Option(
        None, "--server", help="Read the book of a running `tickloop run` at this address."),
    venue: str = typer.Option("sim", "--venue", help="sim, binance, coinbase or kraken."),
    url: str | None = typer.Option(
        None, "--url", help="The venue's WebSocket address (default: the embedded exchange)."),
    depth: int = typer.Option(10, "--depth", help="Levels a side."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after N seconds."),
) -> None:
    """A live terminal order book: from the embedded exchange, a venue, or a running server."""
    from .run.remote import book_command

    book_command(symbol, server=server, venue=venue, url=url, depth=depth, duration=duration)


@app.command("chaos")
def _chaos(
    disconnects: int = typer.Option(20, "--disconnects", help="Forced disconnects."),
    stalls: int = typer.Option(3, "--stalls", help="Silent stalls past the watchdog."),
    skips: int = typer.Option(10, "--skips", help="Skipped book sequence numbers."),
    malformed: int = typer.Option(10, "--malformed", help="Truncated frames."),
    hostile: int = typer.Option(10, "--hostile", help="Frames with hostile values."),
    storms: int = typer.Option(3, "--storms", help="429 storms during a backfill."),
    latency: int = typer.Option(3, "--latency-spikes", help="Latency spikes below the watchdog."),
    slow_consumer: bool = typer.Option(True, "--slow-consumer/--no-slow-consumer"),
    bots: bool = typer.Option(True, "--bots/--no-bots", help="A bot that raises, one that blocks."),
    symbols: str = typer.Option("BTC-USD,ETH-USD", "--symbols", help="Comma-separated markets."),
    seed: int = typer.Option(1, "--seed", help="Seed of the flow and of the fault order."),
    quick: bool = typer.Option(False, "--quick", help="A short run: a few faults of each kind."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Inject every fault the embedded exchange knows into one StreamClient run and print the
    figures (trades lost, duplicated, book mismatches, faults not seen once, leaks, RSS drift).
    Exits 1 when a figure that must be zero is not."""
    import asyncio
    import json

    from .chaos import ChaosConfig, print_report, run_chaos

    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    if quick:
        disconnects, stalls, skips, malformed, hostile, storms, latency = 3, 1, 2, 2, 5, 1, 1
    config = ChaosConfig(
        disconnects=disconnects,
        stalls=stalls,
        skips=skips,
        malformed=malformed,
        hostile=hostile,
        storms=storms,
        latency_spikes=latency,
        slow_consumer=slow_consumer,
        bots=bots,
        symbols=names,
        seed=seed,
    )
    report = asyncio.run(run_chaos(config, progress=None if as_json else typer.echo))
    if as_json:
        typer.echo(json.dumps(report.figures(), indent=2))
    else:
        print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@app.command("soak")
def _soak(
    duration: float = typer.Option(1800.0, "--duration", help="Seconds to run (30 minutes)."),
    quick: bool = typer.Option(False, "--quick", help="2 minutes."),
    interval: float = typer.Option(5.0, "--interval", help="Seconds between samples."),
    drift_limit: float = typer.Option(20.0, "--drift-limit", help="MiB of RSS growth allowed."),
    symbols: str = typer.Option("BTC-USD,ETH-USD,SOL-USD", "--symbols", help="Markets."),
    seed: int = typer.Option(1, "--seed", help="Seed of the flow."),
) -> None:
    """Stream from the embedded exchange for a long time, sampling RSS, tasks and file
    descriptors; prints tracemalloc's top growth when RSS drifts. Exits 1 on drift or a leak."""
    import asyncio

    from .soak import print_soak, run_soak

    if quick:
        duration = 120.0
    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    if not names:
        raise ConfigError("no symbol given", field="--symbols")

    def show(sample: object) -> None:
        typer.echo(
            f"{sample.at:7.0f} s  RSS {sample.rss_mib:6.1f} MiB  tasks {sample.tasks:3d}  "  # type: ignore[attr-defined]
            f"fds {sample.fds:3d}  trades {sample.trades}"  # type: ignore[attr-defined]
        )

    report = asyncio.run(
        run_soak(
            duration,
            interval=interval,
            drift_limit_mib=drift_limit,
            symbols=names,
            seed=seed,
            progress=show,
        )
    )
    print_soak(report)
    if not report.ok:
        raise typer.Exit(1)


@app.command("login")
def _login(
    name: str = typer.Argument(..., help="A name for these credentials, e.g. alice."),
    key_id: str | None = typer.Option(None, "--key-id", help="The API key id (else asked)."),
    secret_stdin: bool = typer.Option(
        False, "--secret-stdin", help="Read the secret from standard input (for scripts)."
    ),
    store: str = typer.Option("auto", "--store", help="keyring, file, or auto (keyring if any)."),
) -> None:
    """Store API credentials under NAME, for Credentials.load(NAME). The secret is never echoed."""
    from .client.keystore import store as store_credentials

    if key_id is None:
        key_id = typer.prompt("Key id").strip()
    if secret_stdin:
        secret = sys.stdin.readline().strip()
    else:
        secret = typer.prompt("Secret", hide_input=True).strip()
    where = store_credentials(name, key_id, secret, to=store)
    typer.echo(f"stored credentials {name!r} (key id {key_id}) in {where}")


@app.command("backtest")
def _backtest(
    rec: list[str] = typer.Argument(  # noqa: B008
        ..., help="Candle CSV file(s) or directories of them, or a recording "
        "(a tickloop record directory, or cryptofeed files) (docs/backtest.md)."
    ),
    bot: str = typer.Option(..., "--bot", help="The bot class, module:Class."),
    param: list[str] = typer.Option(  # noqa: B008
        [], "--param", help="NAME=VALUE, typed by the bot's parameters (repeatable)."
    ),
    sweep: list[str] = typer.Option(  # noqa: B008
        [], "--sweep", help="NAME=V1,V2,...: run every combination (repeatable)."
    ),
    symbols: str | None = typer.Option(None, "--symbols", help="Comma-separated markets."),
    cash: str = typer.Option("10000", "--cash", help="Starting cash of the bot."),
    fee: str = typer.Option("0.001", "--fee", help="Fee per fill, a fraction of its notional."),
    slippage: str = typer.Option(
        "0", "--slippage", help="Fraction a market order pays above/below the open."
    ),
    interval: str | None = typer.Option(
        None, "--interval", help="Bar length (1s, 1m, 1h...), if not inferred from the data."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plot: str | None = typer.Option(None, "--plot", help="Write equity + drawdown PNG here."),
    store: str | None = typer.Option(None, "--store", help="Add the run to this store file."),
    workers: int | None = typer.Option(None, "--workers", help="Sweep processes (default: CPUs)."),
) -> None:
    """Backtest a bot on candles or a recording in simulated time and print its report."""
    from .backtest.cli import run_cli

    run_cli(rec=rec, bot=bot, params=param, sweeps=sweep, symbols=symbols, cash=cash, fee=fee,
            slippage=slippage, interval=interval, as_json=json_out, plot_path=plot,
            store_path=store, workers=workers)


@app.command("record")
def _record(
    out: str = typer.Argument(..., help="The recording directory to create (must not exist)."),
    seconds: float = typer.Option(..., "--seconds", help="How long to record."),
    symbols: str | None = typer.Option(
        None, "--symbols", help="Comma-separated markets (default BTC-USD on the sim)."),
    venue: str = typer.Option("sim", "--venue", help="sim, binance, coinbase or kraken."),
    channels: str = typer.Option(
        "trades,book", "--channels", help="Comma-separated: trades, book, tickers, candles."),
    url: str | None = typer.Option(
        None, "--url", help="The venue's WebSocket address (none: the sim, started in-process)."),
    segment_mb: float = typer.Option(
        256.0, "--segment-mb", help="Start a new segment after this many MiB of records."),
    segment_seconds: float = typer.Option(
        3600.0, "--segment-seconds", help="Start a new segment after this many seconds."),
) -> None:
    """Record a venue's raw frames, REST answers and status events to OUT (docs/backtest.md)."""
    from .record.cli import run_cli

    run_cli(out=out, seconds=seconds, venue=venue, url=url, symbols=symbols, channels=channels,
            segment_mb=segment_mb, segment_seconds=segment_seconds)


def main(argv: list[str] | None = None) -> None:
    """Entry point. Usage and configuration errors print one line naming the culprit and exit 2;
    any other tickloop error (a venue or server that cannot be reached, a refused token) one
    line and exit 1."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:  # a command's typer.Exit(code) is returned here
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except ConfigError as exc:
        print(f"tickloop: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except TickloopError as exc:  # an unreachable venue or server, a refused token, ...
        print(f"tickloop: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        # Typer's usage errors (its own or click's, by version) carry exit_code 2.
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            message = exc.format_message()
            if not message:  # bare `tickloop`: the help was shown, nothing went wrong
                sys.exit(0)
            print(f"tickloop: error: {message}", file=sys.stderr)
            sys.exit(2)
        raise
