"""docs/server.md's example runs as printed (on a free port, and stopped once it serves)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "server.md"
WAIT = "await asyncio.Event().wait()       # until Ctrl-C"
PROBE = """import httpx
            async with httpx.AsyncClient(base_url=served.url) as http:
                page = await http.get("/")
                markets = await http.get("/api/markets")
                print(page.status_code, [m["symbol"] for m in markets.json()])"""


def test_the_example_serves_the_dashboard(tmp_path: Path) -> None:
    example = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    assert WAIT in example and '"127.0.0.1", 8000' in example
    script = tmp_path / "example.py"
    script.write_text(example.replace(WAIT, PROBE).replace('"127.0.0.1", 8000', '"127.0.0.1", 0'))
    env = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("dashboard at http://127.0.0.1:")
    assert lines[0].endswith(f"control token in {tmp_path / 'state' / 'tickloop' / 'token'}")
    assert lines[1] == "200 ['BTC-USD', 'ETH-USD']"
    assert (tmp_path / "state" / "tickloop" / "token").stat().st_mode & 0o077 == 0
