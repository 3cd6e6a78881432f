"""The build hook that compiles the book engine and builds the C level decoder (``hatch_build.py``):
wheel's files, the digest the copy carries and that the package checks, the pure-Python
fallback when the C compiler fails, and the switches that skip the compile or make a failure
fatal (CI)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tickloop_build_hook", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load_hook()


class Said:
    def __init__(self) -> None:
        self.info: list[str] = []
        self.warnings: list[str] = []


def build(version: str, said: Said, data: dict[str, Any] | None = None) -> Path | None:
    data = {"force_include": {}} if data is None else data
    work: Path | None = hook.native_build(
        ROOT, version, data, said.info.append, said.warnings.append
    )
    return work


@pytest.fixture
def no_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither TICKLOOP_PURE_PYTHON nor TICKLOOP_REQUIRE_NATIVE set: the default build."""
    for name in ("TICKLOOP_PURE_PYTHON", "TICKLOOP_REQUIRE_NATIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
@pytest.mark.usefixtures("no_switches")
def test_a_wheel_build_compiles_a_copy_that_loads_and_matches_its_source() -> None:
    said = Said()
    data: dict[str, Any] = {"force_include": {}}
    work = build("standard", said, data)
    assert work is not None, said.warnings
    try:
        shipped = set(data["force_include"].values())
        assert f"tickloop/book/_engine_native{SUFFIX}" in shipped
        assert f"tickloop/venues/_levels_native{SUFFIX}" in shipped
        assert data["pure_python"] is False and data["infer_tag"] is True
        assert all(Path(path).is_file() for path in data["force_include"])
        assert said.info and "compiled" in said.info[0] and not said.warnings

        source = (ROOT / "src/tickloop/book/engine.py").read_bytes()
        copy = (work / "tree/tickloop/book/_engine_native.py").read_text()
        assert hook.TAIL_MARKER not in copy and "native_module(__name__" not in copy
        assert f'SOURCE_DIGEST = "{hashlib.sha256(source).hexdigest()}"' in copy

        # The compiled module runs from the build's tree, in another process.
        code = (
            "from decimal import Decimal as D; "
            "import tickloop.book._engine_native as n; "
            "b = n.OrderBook(); b.update_bid(D('1.5'), D('2')); b.update_ask(D('1.75'), D('1')); "
            "assert b.bids() == [(D('1.5'), D('2'))] and b.mid == D('1.625'); "
            "print(type(b).__module__, n.SOURCE_DIGEST)"
        )
        env = dict(os.environ, PYTHONPATH=str(work / "tree"))
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        module, digest = done.stdout.split()
        assert module == "tickloop.book._engine_native"
        assert digest == hashlib.sha256(source).hexdigest()

        # The C level decoder too: built with its source's digest, and working.
        c_source = (ROOT / "src/tickloop/venues/_levels_native.c").read_bytes()
        built = work / f"tree/tickloop/venues/_levels_native{SUFFIX}"
        code = (
            "import importlib.util as u, sys; from decimal import Decimal as D; "
            f"s = u.spec_from_file_location('tickloop.venues._levels_native', {str(built)!r}); "
            "n = u.module_from_spec(s); s.loader.exec_module(n); "
            "from tickloop.models import BookLevel; from tickloop.venues.base import DecimalCache; "
            "from tickloop.venues.levels import PureLevelDecoder; c = DecimalCache(); "
            "f = n.LevelDecoder(c, BookLevel, PureLevelDecoder(c)); "
            "assert f(b'[[\"1.5\",\"2\"]]') == ((D('1.5'), D('2')),); print(n.SOURCE_DIGEST)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [hashlib.sha256(c_source).hexdigest()]
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.usefixtures("no_switches")
def test_without_a_working_compiler_the_install_is_pure_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CC", "/bin/false")  # what setuptools compiles with: always fails
    said = Said()
    data: dict[str, Any] = {"force_include": {}}
    assert build("standard", said, data) is None
    assert data == {"force_include": {}}  # a pure wheel: nothing added, tag left alone
    assert len(said.warnings) == 1
    assert "not compiling the native modules" in said.warnings[0]
    assert "installing pure Python" in said.warnings[0]


def test_require_native_makes_a_failed_compile_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(src: Path, work: Path) -> list[tuple[Path, str]]:
        raise RuntimeError("mypyc failed: no compiler")

    monkeypatch.setattr(hook, "compile_native", broken)
    monkeypatch.delenv("TICKLOOP_PURE_PYTHON", raising=False)
    monkeypatch.setenv("TICKLOOP_REQUIRE_NATIVE", "1")
    with pytest.raises(RuntimeError, match="compiling the native modules failed"):
        build("standard", Said())
    monkeypatch.setenv("TICKLOOP_REQUIRE_NATIVE", "0")
    said = Said()
    assert build("standard", said) is None and len(said.warnings) == 1


def test_pure_python_requested_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(src: Path, work: Path) -> list[tuple[Path, str]]:
        raise AssertionError("compiled although TICKLOOP_PURE_PYTHON is set")

    monkeypatch.setattr(hook, "compile_native", must_not_run)
    monkeypatch.setenv("TICKLOOP_PURE_PYTHON", "1")
    said = Said()
    data: dict[str, Any] = {"force_include": {}}
    assert build("standard", said, data) is None
    assert data == {"force_include": {}} and "building pure Python" in said.info[0]


def test_the_copy_is_named_as_the_package_looks_for_it() -> None:
    from tickloop._native import TAIL_MARKER, native_name

    assert hook.TAIL_MARKER == TAIL_MARKER
    for rel in hook.COMPILED:
        module = rel[: -len(".py")].replace("/", ".")
        assert hook.native_rel(rel)[: -len(".py")].replace("/", ".") == native_name(module)
        assert TAIL_MARKER in (ROOT / "src" / rel).read_text()
    for name, rel in hook.EXTENSIONS:
        assert (ROOT / "src" / rel).is_file()
        assert name == rel[: -len(".c")].replace("/", ".")
    from tickloop.venues import levels

    assert "tickloop.venues._levels_native" in [name for name, _ in hook.EXTENSIONS]
    assert Path(levels.__file__).with_name("_levels_native.c").is_file()
