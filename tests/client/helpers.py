"""Shared helpers of the streaming-client tests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


async def until(condition: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    """Poll ``condition``; the limit only stops a broken run from hanging (not a timing goal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


def open_sockets() -> int:
    """Sockets this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count
