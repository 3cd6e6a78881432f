"""Build hook: compile the hot sans-I/O modules with mypyc and build the hand-written C ones
(see ``src/tickloop/_native.py``).

For each module in ``COMPILED``, a copy named ``_<name>_native`` (the module up to its
``TAIL_MARKER`` line, plus the digest of the whole source file) is compiled with mypyc and
shipped beside the pure module, which loads it at import time when the digests agree; each C
module of ``EXTENSIONS`` is built from its source with the same kind of digest. A wheel
carries the compiled files; an editable install writes them into ``src/`` beside the sources.

Compiling is best effort: with no C compiler, or ``TICKLOOP_PURE_PYTHON=1`` set, the package is
built pure Python and works the same, slower (``tickloop.book.engine.NATIVE`` tells which).
``TICKLOOP_REQUIRE_NATIVE=1`` makes a failed compile fail the build instead (the test command
sets it under CI, so CI never measures or tests the pure fallback as if it were compiled; it
tests the fallback on purpose in a leg of its own, ``TICKLOOP_PURE_PYTHON=1`` at run time).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: Pure modules compiled, as paths under ``src/``.
COMPILED = (
    "tickloop/book/engine.py",
    "tickloop/client/route.py",
    "tickloop/runtime/fanout.py",
)
#: Hand-written C extension modules: (module name, its C source under ``src/``). Each is built
#: with ``-DTICKLOOP_SOURCE_DIGEST="<sha256 of the source>"`` so the package can tell a current
#: build from a stale one, as it does for the compiled copies.
EXTENSIONS = (
    ("tickloop.venues._levels_native", "tickloop/venues/_levels_native.c"),
    ("tickloop.runtime._coro_native", "tickloop/runtime/_coro_native.c"),
    ("tickloop._gc_native", "tickloop/_gc_native.c"),
    ("tickloop.bus._bus_native", "tickloop/bus/_bus_native.c"),
    ("tickloop.client._reader_native", "tickloop/client/_reader_native.c"),
)
#: What mypy reads to type-check them (the rest of the package is left out so the build needs
#: none of its dependencies but msgspec).
SUPPORT = (
    "tickloop/models.py",
    "tickloop/_web.py",
    "tickloop/checksums.py",
    "tickloop/exceptions.py",
    "tickloop/_native.py",
)
TAIL_MARKER = "# -- compiled copy (see tickloop._native); nothing below is compiled --"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def native_rel(module_path: str) -> str:
    """``tickloop/book/engine.py`` -> ``tickloop/book/_engine_native.py``."""
    folder, _, leaf = module_path.rpartition("/")
    return f"{folder}/_{leaf[:-3]}_native.py"


def compile_native(src: Path, work: Path) -> list[tuple[Path, str]]:
    """Compile every module of ``COMPILED`` found under ``src``; returns (built file, its path
    inside the package tree) pairs. Raises on any failure."""
    tree = work / "tree"
    for rel in SUPPORT:
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)
    targets = []
    for rel in COMPILED:
        data = (src / rel).read_bytes()
        text = data.decode("utf-8")
        if TAIL_MARKER not in text:
            raise RuntimeError(f"{rel} has no compiled-copy marker line")
        body = text.split(TAIL_MARKER)[0]
        digest = hashlib.sha256(data).hexdigest()
        copy = tree / native_rel(rel)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(body + f'\nSOURCE_DIGEST = "{digest}"\n', encoding="utf-8")
        targets.append(native_rel(rel))
    for folder in {Path(rel).parent for rel in (*SUPPORT, *targets)}:
        while str(folder) not in ("", "."):
            (tree / folder / "__init__.py").touch()  # empty: mypy reads nothing else
            folder = folder.parent
    command = [
        sys.executable,
        "-m",
        "mypyc",
        "--ignore-missing-imports",
        "--follow-imports=silent",
        *targets,
    ]
    env = dict(os.environ, MYPYC_OPT_LEVEL="3")
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise RuntimeError("mypyc failed:\n" + "\n".join(tail))
    compile_extensions(src, tree)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built = []
    for path in sorted(tree.rglob(f"*{suffix}")):
        rel = path.relative_to(tree).as_posix()
        if rel.startswith("build/"):
            continue
        built.append((path, rel))
    if not built:
        raise RuntimeError("mypyc produced no extension module")
    return built


_BUILD_EXT = """
import json, sys
from setuptools import Distribution, Extension
modules = [
    Extension(name, [source], define_macros=[("TICKLOOP_SOURCE_DIGEST", '"%s"' % digest)])
    for name, source, digest in json.loads(sys.argv[1])
]
dist = Distribution({"name": "tickloop-native", "ext_modules": modules})
command = dist.get_command_obj("build_ext")
command.inplace = True
dist.run_command("build_ext")
"""


def compile_extensions(src: Path, tree: Path) -> None:
    """Build every module of ``EXTENSIONS`` in place under ``tree`` (setuptools, in a child
    process). Raises on any failure."""
    specs = []
    for name, rel in EXTENSIONS:
        data = (src / rel).read_bytes()
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        specs.append((name, rel, hashlib.sha256(data).hexdigest()))
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_EXT, json.dumps(specs)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise RuntimeError("building the C extensions failed:\n" + "\n".join(tail))


def clean_editable(src: Path) -> None:
    """Remove compiled files an earlier editable install left in ``src/``."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for path in (src / "tickloop").rglob(f"*{suffix}"):
        path.unlink()


def native_build(
    root: Path,
    version: str,
    build_data: dict[str, Any],
    info: Callable[[str], None],
    warn: Callable[[str], None],
) -> Path | None:
    """The hook's work for a wheel (``version`` "standard") or an editable install: compile, then
    ship the files (wheel: ``build_data``; editable: copied into ``src/``), or say why not and
    stay pure. Returns a folder to delete once the wheel is written, if any."""
    src = root / "src"
    if _flag("TICKLOOP_PURE_PYTHON"):
        info("tickloop: TICKLOOP_PURE_PYTHON set, building pure Python")
        if version == "editable":
            clean_editable(src)
        return None
    work = Path(tempfile.mkdtemp(prefix="tickloop-native-"))
    try:
        built = compile_native(src, work)
    except Exception as exc:  # no compiler, no headers, a mypyc error: stay pure
        shutil.rmtree(work, ignore_errors=True)
        if _flag("TICKLOOP_REQUIRE_NATIVE"):
            raise RuntimeError(f"tickloop: compiling the native modules failed: {exc}") from exc
        warn(f"tickloop: not compiling the native modules ({exc}); installing pure Python")
        if version == "editable":
            clean_editable(src)
        return None
    info("tickloop: compiled " + ", ".join(rel for _, rel in built))
    if version == "editable":
        clean_editable(src)
        for path, rel in built:
            shutil.copyfile(path, src / rel)
        shutil.rmtree(work, ignore_errors=True)
        return None
    for path, rel in built:
        build_data["force_include"][str(path)] = rel
    build_data["pure_python"] = False
    build_data["infer_tag"] = True
    return work


class NativeBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel":
            self._work = native_build(
                Path(self.root),
                version,
                build_data,
                self.app.display_info,
                self.app.display_warning,
            )

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
