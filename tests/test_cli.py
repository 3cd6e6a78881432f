"""The command line: version, help, and a one-line error for a bad argument."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from tickloop import __version__
from tickloop.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tickloop {__version__}"


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "tickloop" in result.stdout


def test_unknown_option_is_one_clear_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tickloop", "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "--bogus" in proc.stderr
    assert "Traceback" not in proc.stderr
