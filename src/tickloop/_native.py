"""Compiled copies of hot pure-Python modules, used when they were built and are current.

A few sans-I/O cores (the order book engine first) are plain, fully typed Python. When the
package is installed from source with a C compiler at hand, the build (``hatch_build.py``)
also compiles a copy of each with mypyc, the compiler that ships with mypy: the same code,
without the interpreter's per-bytecode cost. The pure module stays the source of truth and is
always importable; at its end it asks :func:`native_module` for its compiled copy and, when
there is a current one, rebinds its public names to the compiled versions.

A copy is used only when the digest compiled into it matches the pure module's source file, so
editing the source in a checkout falls back to the edited Python (with one warning) instead of
running stale compiled code. ``TICKLOOP_PURE_PYTHON=1`` in the environment turns the compiled
copies off (at build time: they are not built).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from pathlib import Path
from types import ModuleType

__all__ = [
    "PURE_ENV",
    "gc_native",
    "native_extension",
    "native_module",
    "native_name",
    "source_digest",
]

log = logging.getLogger("tickloop.native")

#: Set to a non-empty value other than ``0``: build and use no compiled copy.
PURE_ENV = "TICKLOOP_PURE_PYTHON"
#: The line in a pure module after which nothing is compiled (its native-copy selection).
TAIL_MARKER = "# -- compiled copy (see tickloop._native); nothing below is compiled --"


def pure_requested() -> bool:
    value = os.environ.get(PURE_ENV, "")
    return value not in ("", "0")


def native_name(module: str) -> str:
    """``tickloop.book.engine`` -> ``tickloop.book._engine_native``."""
    package, _, leaf = module.rpartition(".")
    return f"{package}._{leaf}_native" if package else f"_{leaf}_native"


def source_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def native_module(module: str, source_file: str) -> ModuleType | None:
    """The compiled copy of ``module`` (whose source is ``source_file``), or None when there is
    none, it is turned off, or it was compiled from another version of the source."""
    return native_extension(native_name(module), source_file, label=module)


def native_extension(name: str, source_file: str, *, label: str | None = None) -> ModuleType | None:
    """The extension module ``name`` built from ``source_file`` (a pure module's compiled copy,
    or a hand-written C module), or None when it is not built, compiled copies are turned off,
    or it was built from another version of the source (one warning, naming ``label``)."""
    if pure_requested():
        return None
    try:
        native = importlib.import_module(name)
    except ImportError:
        return None
    try:
        current = source_digest(Path(source_file).read_bytes())
    except OSError:  # no source beside the package (a zipped or stripped install): trust it
        return native
    if getattr(native, "SOURCE_DIGEST", None) != current:
        log.warning(
            "the compiled copy of %s was built from other source; using the pure-Python "
            "module (reinstall the package to rebuild it)",
            label or name,
        )
        return None
    return native


_GC_NATIVE: list[ModuleType | None] = []


def gc_native() -> ModuleType | None:
    """The C module ``tickloop._gc_native`` (``untrack``, ``frozen``: containers the cycle
    collector need not walk; see its source) when it is built and current, else None. Looked up
    once."""
    if not _GC_NATIVE:
        _GC_NATIVE.append(
            native_extension("tickloop._gc_native", str(Path(__file__).with_name("_gc_native.c")))
        )
    return _GC_NATIVE[0]
