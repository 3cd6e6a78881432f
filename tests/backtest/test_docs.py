"""docs/backtest.md's complete example runs as printed and prints what the page says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "backtest.md"


def test_backtest_doc_complete_example_runs(tmp_path: Path) -> None:
    section = DOC.read_text().split("## A complete example", 1)[1].split("\n## ", 1)[0]
    code, expected = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected.splitlines()
    assert (tmp_path / "equity.png").read_bytes()[:4] == b"\x89PNG"


def test_the_documented_error_line_is_the_real_one(tmp_path: Path) -> None:
    line = re.search(r"tickloop: error: (BTC-USD\.csv, line 8: .*)", DOC.read_text())
    assert line is not None
    rows = ["open_time,open,high,low,close,volume"]
    rows += [f"{1_767_225_600_000 + 1000 * i},100,100,100,100,1" for i in range(6)]
    rows.append("1767225606000,100.1,99.5,99.8,99.9,1")
    (tmp_path / "BTC-USD.csv").write_text("\n".join(rows) + "\n")
    proc = subprocess.run([sys.executable, "-m", "tickloop", "backtest", "BTC-USD.csv",
                           "--bot", "tickloop.examples:SmaCross"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"tickloop: error: {line.group(1)}\n"


def test_backtest_doc_recording_example_runs(tmp_path: Path) -> None:
    section = DOC.read_text().split("## Backtesting on a recording", 1)[1].split("\n## ", 1)[0]
    code, expected = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected.splitlines()
