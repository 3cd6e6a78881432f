"""docs/runtime.md's complete example runs as printed and prints what the page says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def test_runtime_doc_complete_example_runs(tmp_path: Path) -> None:
    section = DOC.read_text().split("## A complete example", 1)[1].split("\n## ", 1)[0]
    code, expected = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    want = expected.splitlines()
    assert len(lines) == len(want), proc.stdout
    for got, line in zip(lines, want, strict=True):
        if line.endswith("..."):
            assert got.startswith(line[:-3]), (got, line)
        else:
            assert got == line
