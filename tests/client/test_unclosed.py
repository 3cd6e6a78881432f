"""A client that was never closed is reported where users look, as aiohttp reports "Unclosed
client session": through the event loop's exception handler (an ERROR on the ``asyncio``
logger, printed by default) as well as a ResourceWarning (hidden by default)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tickloop import AsyncClient, StreamClient
from tickloop.models import Trade
from tickloop.sim import SimExchange

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=5, symbols=["BTC-USD"], rate=50) as ex:
        yield ex


def unclosed(records: list[logging.LogRecord]) -> list[str]:
    return [
        r.getMessage().splitlines()[0]
        for r in records
        if r.name == "asyncio" and r.getMessage().startswith("Unclosed ")
    ]


async def test_unclosed_stream_client_goes_to_the_loops_exception_handler(
    ex: SimExchange, caplog: pytest.LogCaptureFixture
) -> None:
    contexts: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    try:
        feed = StreamClient("sim", url=ex.ws_url)
        await feed.start()
        await asyncio.sleep(0)  # its reconciler task starts waiting (no longer in the ready queue)
        name = repr(feed)
        gc.collect()  # earlier tests' garbage reports now, not below
        contexts.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del feed
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    reports = [c for c in contexts if c.get("message", "").startswith("Unclosed")]
    assert [c["message"] for c in reports] == ["Unclosed StreamClient('sim')"]
    assert repr(reports[0]["stream_client"]) == name
    warned = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert any(m.startswith("Unclosed StreamClient('sim')") for m in warned)


async def test_closed_or_never_started_clients_are_not_reported(
    ex: SimExchange, caplog: pytest.LogCaptureFixture
) -> None:
    gc.collect()
    caplog.clear()
    async with StreamClient("sim", url=ex.ws_url) as feed:
        got: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", got.append)
    never = StreamClient("sim", url=ex.ws_url)  # nothing to close: no task, no socket
    async with AsyncClient("sim", url=ex.rest_url) as rest:
        await rest.markets()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del feed, never, rest
        gc.collect()
    assert unclosed(caplog.records) == []


async def test_unclosed_rest_client_is_reported_too(
    ex: SimExchange, caplog: pytest.LogCaptureFixture
) -> None:
    rest = AsyncClient("sim", url=ex.rest_url)
    await rest.markets()  # opens the connection pool
    gc.collect()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="asyncio"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del rest
        gc.collect()
    assert unclosed(caplog.records) == ["Unclosed AsyncClient('sim')"]


SCRIPT = textwrap.dedent(
    """
    import asyncio
    from tickloop import AsyncClient, StreamClient
    from tickloop.sim import SimExchange

    async def main():
        async with SimExchange(seed=1, symbols=["BTC-USD"], rate=50) as ex:
            feed = StreamClient("sim", url=ex.ws_url)
            await feed.start()
            trades = []
            await feed.subscribe_trades("BTC-USD", trades.append)
            rest = AsyncClient("sim", url=ex.rest_url)
            await rest.markets()
            print("forgot to close", flush=True)

    asyncio.run(main())  # reported as the loop's objects are collected, at the latest at exit
    """
)


def test_visible_by_default_without_dev_mode() -> None:
    # A plain `python script.py`: no -X dev, no -W, no logging configured.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDEVMODE", "PYTHONWARNINGS")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "forgot to close" in done.stdout
    assert "Unclosed StreamClient('sim')" in done.stderr
    assert "Unclosed AsyncClient('sim')" in done.stderr
    assert "ResourceWarning" not in done.stderr  # what was all there was, and it was hidden
