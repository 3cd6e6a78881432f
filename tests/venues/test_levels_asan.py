"""The hand-written C level decoder is memory-clean: its own tests, run against a copy built with
AddressSanitizer (every allocation through the system allocator, so ASan sees each one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tickloop import _native

#: Runs the compiled decoder's tests: deselected in the pure-Python leg (tests/conftest.py).
pytestmark = pytest.mark.compiled

SOURCE = Path(__file__).resolve().parents[2] / "src/tickloop/venues/_levels_native.c"
TESTS = Path(__file__).with_name("test_levels_native.py")


def unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"AddressSanitizer check cannot run: {why}")
    pytest.skip(f"AddressSanitizer check cannot run here: {why}")


@pytest.mark.slow
@pytest.mark.timeout(480)  # bounds its steps' own timeouts (compile 120 s, run 300 s)
def test_the_c_decoder_passes_its_tests_under_address_sanitizer(tmp_path: Path) -> None:
    compiler = shutil.which("gcc")
    if compiler is None:
        unavailable("no gcc")
        return
    found = subprocess.run(
        [compiler, "-print-file-name=libasan.so"], capture_output=True, text=True, timeout=30
    )
    libasan = found.stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        unavailable("gcc has no libasan")
        return
    built = tmp_path / "_levels_native_asan.so"
    digest = _native.source_digest(SOURCE.read_bytes())
    compile_ = subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-g",
            "-O1",
            "-fsanitize=address",
            "-fno-omit-frame-pointer",
            f"-I{sysconfig.get_paths()['include']}",
            f'-DTICKLOOP_SOURCE_DIGEST="{digest}"',
            str(SOURCE),
            "-o",
            str(built),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compile_.returncode == 0, compile_.stderr
    runner = tmp_path / "run.py"
    runner.write_text(
        textwrap.dedent(
            f"""
            import importlib.util, sys
            name = "tickloop.venues._levels_native"
            spec = importlib.util.spec_from_file_location(name, {str(built)!r})
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
            import tickloop.venues.levels as levels
            levels._native = module  # every decoder the codecs make is the sanitized build
            import pytest
            sys.exit(pytest.main([
                "-q", "-p", "no:cacheprovider", {str(TESTS)!r},
                "-k", "not other_source and not pure_python_switch",
            ]))
            """
        )
    )
    env = dict(
        os.environ,
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99",
        PYTHONMALLOC="malloc",
    )
    done = subprocess.run(
        [sys.executable, str(runner)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert "AddressSanitizer" not in output, output[-4000:]
    assert done.returncode == 0, output[-4000:]
    assert " passed" in output and "failed" not in output
