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
