"""Each leg of the test command runs the build it names: the pure-Python modules when
``TICKLOOP_PURE_PYTHON`` is set (the fallback a user without a C compiler gets), the compiled
ones otherwise (required under CI, where the install fails rather than fall back)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tickloop.book
from tickloop._native import gc_native, pure_requested
from tickloop.book import engine
from tickloop.bus import local as bus_local
from tickloop.client import reader, route, stream
from tickloop.runtime import fanout
from tickloop.venues import keys, levels
from tickloop.venues.base import DecimalCache
from tickloop.venues.binance import BinanceCodec
from tickloop.venues.sim import SimCodec

COMPILED_MODULES = (
    "tickloop._gc_native",
    "tickloop.bus._bus_native",
    "tickloop.client._reader_native",
    "tickloop.book._engine_native",
    "tickloop.client._route_native",
    "tickloop.runtime._coro_native",
    "tickloop.runtime._fanout_native",
    "tickloop.venues._levels_native",
)

# Imports the whole package (streams, REST, the sim, every codec) and lists the compiled modules
# it loaded: in a fresh process, so no test that imports one on purpose can change the answer.
LOADED = (
    "import sys, tickloop, tickloop.client, tickloop.sim, tickloop.replay, tickloop.runtime, "
    "tickloop.venues; "
    "from tickloop.venues import binance, coinbase, kraken, sim; "
    "binance.BinanceCodec(); sim.SimCodec(); "
    f"print(','.join(m for m in {COMPILED_MODULES!r} if m in sys.modules))"
)


def loaded_compiled_modules() -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return {name for name in done.stdout.strip().split(",") if name}


def test_this_run_uses_the_build_it_names() -> None:
    if pure_requested():
        assert not engine.NATIVE and not levels.NATIVE and not route.NATIVE
        assert route.FrameRouter is route.PureFrameRouter
        assert not fanout.NATIVE and fanout.Fanout is fanout.PureFanout
        assert fanout._first_step is None
        assert engine._frozen_into is None and gc_native() is None
        assert not bus_local.NATIVE and not reader.NATIVE
        assert tickloop.book.OrderBook is engine.OrderBook is engine.PureOrderBook
        assert levels.WireLevels == list[tuple[str, str]]
        assert type(levels.level_decoder(DecimalCache())) is levels.PureLevelDecoder
        assert type(BinanceCodec()._levels).__name__ == "partial"  # interned_levels, pure
        assert type(SimCodec()._levels).__name__ == "partial"
        assert not keys.NATIVE and keys.duplicate_keys is keys.pure_duplicate_keys
        assert loaded_compiled_modules() == set()
        return
    if not (engine.NATIVE and levels.NATIVE and route.NATIVE and fanout.NATIVE):
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"the compiled leg runs without its compiled modules (book engine: "
                f"{engine.NATIVE}, level decoder: {levels.NATIVE}, frame router: {route.NATIVE}, "
                f"market fan-out: {fanout.NATIVE})"
            )
        pytest.skip("this checkout was installed without a C compiler: nothing compiled to check")
    assert tickloop.book.OrderBook is engine.OrderBook is not engine.PureOrderBook
    assert route.FrameRouter is not route.PureFrameRouter
    assert route.FrameRouter.__module__ == "tickloop.client._route_native"
    assert fanout.Fanout.__module__ == "tickloop.runtime._fanout_native"
    assert fanout.Running.__module__ == "tickloop.runtime._fanout_native"
    assert fanout._first_step is not None
    assert fanout._first_step.__module__ == "tickloop.runtime._coro_native"
    assert engine._frozen_into.__module__ == "tickloop._gc_native"
    assert bus_local.NATIVE and reader.NATIVE
    assert stream.Stream.__mro__[1].__module__ == "tickloop.client._reader_native"
    assert type(BinanceCodec()._levels).__module__ == "tickloop.venues._levels_native"
    assert keys.NATIVE and keys.duplicate_keys.__module__ == "tickloop.venues._levels_native"
    assert loaded_compiled_modules() == set(COMPILED_MODULES)
