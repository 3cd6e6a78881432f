"""pip-audit of the environment the suite runs in, tolerant of an unreachable advisory source.

Run by scripts/test. Known vulnerabilities fail it (exit 1). An advisory source that cannot be
reached (no internet), or one that answers for none of the dependencies, does not fail it: it
prints that the dependencies could NOT be checked, so nobody reads silence as a clean audit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TIMEOUT = 120  # seconds: an advisory source that hangs is an unreachable one


def main() -> int:
    exe = Path(sys.executable).with_name("pip-audit")
    cmd = [str(exe), "--progress-spinner", "off", "--skip-editable", "--format", "json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        print("pip-audit: not installed (it is in the test extra): NOT checked")
        return 0
    except subprocess.TimeoutExpired:
        print(f"pip-audit: no answer within {TIMEOUT} s: dependencies NOT checked")
        return 0
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"pip-audit: could not reach the advisory database ({last[:200]}): NOT checked")
        return 0
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    if vulnerable:
        for dep in vulnerable:
            ids = ", ".join(v.get("id", "?") for v in dep["vulns"])
            print(f"pip-audit: {dep['name']} {dep['version']}: {ids}")
        print(f"pip-audit: {len(vulnerable)} vulnerable dependencies")
        return 1
    if not audited:
        print(
            f"pip-audit: the advisory source answered for none of {len(deps)} dependencies "
            "(offline, or a mirror without its API): NOT checked"
        )
        return 0
    skipped = len(deps) - len(audited)
    print(f"pip-audit: {len(audited)} dependencies audited, none vulnerable ({skipped} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
