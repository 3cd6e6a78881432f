"""docs/backtest.md's replay example runs as printed and prints what the page says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "backtest.md"

pytestmark = pytest.mark.timeout(120)


def test_replay_doc_example_runs(tmp_path: Path) -> None:
    section = DOC.read_text().split("## Replaying", 1)[1].split("\n## ", 1)[0]
    code, expected = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=100, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected.splitlines()
    assert (tmp_path / "rec" / "index.json").exists()


def test_the_documented_error_lines_are_the_real_ones(tmp_path: Path) -> None:
    text = DOC.read_text().split("## Recording", 1)[1].split("\n## ", 1)[0]
    (line,) = re.findall(r"`(tickloop: error: --seconds 0 must be > 0)`", text)
    proc = subprocess.run([sys.executable, "-m", "tickloop", "record", "out", "--seconds", "0"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == line + "\n"
