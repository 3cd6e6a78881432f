"""The ``tickloop`` command line.

Each sub-command is a thin shell over the library: it parses arguments (a bad one gets a
one-line message naming it and exit status 2) and runs one coroutine. Sub-commands register
themselves here; their logic lives in the package they belong to.
"""

from __future__ import annotations

import typer

from ._version import __version__

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


def main() -> None:
    app()
