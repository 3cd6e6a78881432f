"""The compiled (mypyc) copy of the book engine: built by the install, used only when current,
and turned off on request. The property tests run every book property on both classes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import tickloop.book
from tickloop import _native
from tickloop.book import engine
from tickloop.models import BookDelta, BookLevel, Side

D = Decimal


def need_compiled() -> None:
    """Under CI (a clean clone installed with a C compiler) the compiled class must be there:
    fail. Elsewhere (a checkout installed without one) there is nothing to check: skip."""
    if engine.NATIVE:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("the install did not compile the book engine (tickloop.book.engine.NATIVE)")
    pytest.skip("no compiled copy in this checkout (install with a C compiler to build it)")


@pytest.mark.compiled
def test_the_install_compiled_the_engine_under_ci() -> None:
    """A silent fallback under CI would test and measure the wrong class."""
    need_compiled()
    assert engine.NATIVE
    assert engine.OrderBook is not engine.PureOrderBook
    assert engine.OrderBook.__module__ == "tickloop.book._engine_native"
    assert tickloop.book.OrderBook is engine.OrderBook


def test_both_classes_give_the_same_book() -> None:
    books = [engine.PureOrderBook("v", "X-Y"), engine.OrderBook("v", "X-Y")]
    for book in books:
        book.update_bid(D("100.50"), D("1"))
        book.update_ask(D("101"), D("2"))
        book.apply_delta(
            BookDelta(
                venue="v",
                symbol="X-Y",
                bids=(BookLevel(D("100.75"), D("3")), BookLevel(D("100.50"), D("0"))),
                asks=(BookLevel(D("100.90"), D("0.5")),),
                sequence=7,
            )
        )
    pure, compiled = books
    assert compiled.bids() == pure.bids() == [(D("100.75"), D("3"))]
    assert compiled.asks() == pure.asks() == [(D("100.90"), D("0.5")), (D("101"), D("2"))]
    assert (compiled.best_bid, compiled.best_ask, compiled.sequence) == (
        pure.best_bid,
        pure.best_ask,
        pure.sequence,
    )
    assert compiled.mid == pure.mid and compiled.vwap(Side.SELL, D(1)) == pure.vwap(Side.SELL, D(1))
    assert repr(compiled) == repr(pure)


@pytest.mark.compiled
def test_a_copy_built_from_other_source_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    need_compiled()
    source = Path(engine.__file__)
    assert _native.native_module(engine.__name__, str(source)) is not None
    edited = tmp_path / "engine.py"
    edited.write_bytes(source.read_bytes() + b"\n# edited after the build\n")
    with caplog.at_level(logging.WARNING, logger="tickloop.native"):
        assert _native.native_module(engine.__name__, str(edited)) is None
    assert "built from other source" in caplog.text


def test_no_compiled_copy_is_none() -> None:
    assert _native.native_module("tickloop.models", _native.__file__) is None
    assert _native.native_name("tickloop.book.engine") == "tickloop.book._engine_native"


def test_the_environment_turns_the_compiled_copy_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_native.PURE_ENV, "1")
    assert _native.native_module(engine.__name__, engine.__file__) is None
    monkeypatch.setenv(_native.PURE_ENV, "0")
    assert _native.pure_requested() is False
    code = (
        "import tickloop.book, tickloop.book.engine as e; "
        "assert not e.NATIVE and tickloop.book.OrderBook is e.PureOrderBook; print('pure')"
    )
    env = dict(os.environ, **{_native.PURE_ENV: "1"})
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"
