"""The ``tickloop`` command line.

Each sub-command is a thin shell over the library: it parses arguments (a bad one gets a
one-line message naming it and exit status 2) and runs one coroutine. Sub-commands register
themselves here; their logic lives in the package they belong to.
"""

from __future__ import annotations

import sys

import typer

from ._version import __version__
from .exceptions import ConfigError

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
    venue: str = typer.Option("sim", "--venue", help="sim, binance, coinbase or kraken."),
    url: str | None = typer.Option(
        None, "--url", help="WebSocket address (default: start the embedded exchange)."
    ),
    symbols: str = typer.Option(
        "BTC-USD,ETH-USD,SOL-USD", "--symbols", help="Comma-separated markets."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the embedded exchange."),
    rate: float = typer.Option(20.0, "--rate", help="Embedded flow steps per second per symbol."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after N seconds."),
) -> None:
    """Live terminal view of markets through StreamClient (the embedded exchange by default)."""
    import asyncio
    import contextlib

    from .live import run_live

    names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    if not names:
        raise ConfigError("no symbol given", field="--symbols")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_live(venue=venue, url=url, symbols=names, seed=seed, rate=rate, duration=duration)
        )


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
        ..., help="Candle CSV file(s) or directories of them (docs/backtest.md)."
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
    """Backtest a bot on candles in simulated time and print its report."""
    from .backtest.cli import run_cli

    run_cli(rec=rec, bot=bot, params=param, sweeps=sweep, symbols=symbols, cash=cash, fee=fee,
            slippage=slippage, interval=interval, as_json=json_out, plot_path=plot,
            store_path=store, workers=workers)


def main(argv: list[str] | None = None) -> None:
    """Entry point. Usage and configuration errors print one line naming the culprit and exit 2;
    everything else is the sub-command's business."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except ConfigError as exc:
        print(f"tickloop: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        # Typer's usage errors (its own or click's, by version) carry exit_code 2.
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            message = exc.format_message()
            if not message:  # bare `tickloop`: the help was shown, nothing went wrong
                sys.exit(0)
            print(f"tickloop: error: {message}", file=sys.stderr)
            sys.exit(2)
        raise
