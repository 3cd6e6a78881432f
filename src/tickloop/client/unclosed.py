"""Reporting a client that was never closed, visibly, the way aiohttp does.

A :class:`ResourceWarning` alone is hidden by Python's default warning filters (it shows only
under ``-X dev`` or ``-W default``), so a user who forgets ``async with`` or ``aclose()`` never
learns why sockets linger. Like aiohttp's "Unclosed client session", :func:`report_unclosed`
does both: it issues the ResourceWarning (for test suites that turn warnings into errors) and
calls the event loop's exception handler, whose default logs an ERROR record on the
``asyncio`` logger, which Python prints to stderr even when logging was never configured. The
context names the object and, under asyncio debug mode, where it was created.

It runs from ``__del__``: it never raises, and never touches a loop other than through
``call_exception_handler`` (which works on a closed loop too).
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
import warnings
from typing import Any

__all__ = ["creation_traceback", "report_unclosed"]


def creation_traceback(loop: asyncio.AbstractEventLoop | None) -> traceback.StackSummary | None:
    """Where an object is being created, kept only in asyncio debug mode (as asyncio does for
    tasks): it costs a stack walk."""
    if loop is not None and loop.get_debug():
        return traceback.StackSummary.from_list(traceback.extract_stack()[:-2])
    return None


def report_unclosed(
    obj: object,
    what: str,
    loop: asyncio.AbstractEventLoop | None,
    *,
    key: str,
    source_traceback: traceback.StackSummary | None = None,
    warn: bool = True,
) -> None:
    """Report ``obj`` (``what`` names it: ``"StreamClient('sim')"``) as never closed: a
    ResourceWarning (unless ``warn`` is False: the caller issued its own), and the loop's
    exception handler with ``message`` ``"Unclosed <what>"`` and ``obj`` under ``key``."""
    message = f"Unclosed {what}"
    # A warnings filter set to "error", or a broken custom handler, must not raise in __del__.
    with contextlib.suppress(Exception):
        if warn:
            warnings.warn(
                f"{message}: close it (async with, or await aclose())",
                ResourceWarning,
                source=obj,
                stacklevel=3,
            )
    if loop is None:
        return
    context: dict[str, Any] = {"message": message, key: obj}
    if source_traceback is not None:
        context["source_traceback"] = source_traceback
    with contextlib.suppress(Exception):
        loop.call_exception_handler(context)
