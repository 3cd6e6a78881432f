"""tickloop.client.route: the per-message step, the same in its compiled and pure-Python forms.

Every test runs on each class the build has (the mypyc-compiled ``FrameRouter`` and
``PureFrameRouter``; in the pure-Python leg they are one class): events are dispatched by their
exact type in order, a message the codec refuses and a sink that raises are reported and never
stop the others, and what is not an ``Exception`` (cancellation, KeyboardInterrupt) goes up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tickloop.client import route
from tickloop.exceptions import ProtocolError

ROUTERS = sorted({route.FrameRouter, route.PureFrameRouter}, key=lambda c: c.__module__)


class A:
    def __init__(self, n: int) -> None:
        self.n = n


class B(A):
    """A subclass: dispatched by its own type only, never by its base's sink."""


class Calls:
    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []
        self.malformed: list[tuple[Exception, int]] = []
        self.failed: list[tuple[Exception, Any]] = []

    def sink(self, name: str) -> Any:
        return lambda event: self.got.append((name, event))

    def router(self, cls: Any, decode: Any, dispatch: dict[type, Any]) -> Any:
        return cls(
            decode,
            dispatch,
            lambda exc, size: self.malformed.append((exc, size)),
            lambda exc, event: self.failed.append((exc, event)),
        )


@pytest.fixture(params=ROUTERS, ids=lambda c: c.__module__.rpartition(".")[2])
def cls(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_events_go_to_the_sink_of_their_exact_type_in_order(cls: Any) -> None:
    calls = Calls()
    events = [A(1), B(2), "no sink", A(3)]
    seen: list[tuple[Any, int]] = []

    def decode(data: Any, now_ns: int) -> list[Any]:
        seen.append((bytes(data), now_ns))
        return events

    router = calls.router(cls, decode, {A: calls.sink("a"), B: calls.sink("b")})
    router.on_frame(memoryview(b"frame"), 42)
    assert seen == [(b"frame", 42)]
    assert [(name, e.n) for name, e in calls.got] == [("a", 1), ("b", 2), ("a", 3)]
    assert router.events == 4  # every event decoded counts, dispatched or not
    router.on_frame(b"again", 43)
    assert router.events == 8 and len(calls.got) == 6
    assert calls.malformed == calls.failed == []


def test_a_sink_added_later_is_used_at_once(cls: Any) -> None:
    calls = Calls()
    dispatch: dict[type, Any] = {}
    router = calls.router(cls, lambda data, now: (A(1),), dispatch)  # a tuple is fine too
    router.on_frame(b"x", 0)
    dispatch[A] = calls.sink("late")
    router.on_frame(b"x", 0)
    assert [name for name, _ in calls.got] == ["late"]
    assert router.events == 2


def test_a_refused_message_is_reported_with_its_size_and_skipped(cls: Any) -> None:
    calls = Calls()
    error = ProtocolError("bad frame")

    def decode(data: Any, now_ns: int) -> list[Any]:
        if bytes(data) == b"bad":
            raise error
        if bytes(data) == b"bug":
            raise KeyError("a codec bug")
        return [A(1)]

    router = calls.router(cls, decode, {A: calls.sink("a")})
    router.on_frame(memoryview(b"bad"), 0)
    router.on_frame(b"bug", 0)
    router.on_frame(b"ok", 0)
    assert calls.malformed[0] == (error, 3)
    assert type(calls.malformed[1][0]) is KeyError and calls.malformed[1][1] == 3
    assert len(calls.got) == 1 and router.events == 1


def test_a_sink_that_raises_is_reported_and_the_other_events_go_on(cls: Any) -> None:
    calls = Calls()
    first, second = A(1), A(2)

    def sink(event: A) -> None:
        if event is first:
            raise ValueError("a consumer bug")
        calls.got.append(("a", event))

    router = calls.router(cls, lambda data, now: [first, second], {A: sink})
    router.on_frame(b"x", 0)
    assert [(type(exc), event) for exc, event in calls.failed] == [(ValueError, first)]
    assert calls.got == [("a", second)]


@pytest.mark.parametrize("where", ["decode", "sink"])
@pytest.mark.parametrize("kind", [asyncio.CancelledError, KeyboardInterrupt])
def test_what_is_not_an_exception_goes_up(cls: Any, where: str, kind: type) -> None:
    calls = Calls()

    def decode(data: Any, now_ns: int) -> list[Any]:
        if where == "decode":
            raise kind()
        return [A(1), A(2)]

    def sink(event: A) -> None:
        raise kind()

    router = calls.router(cls, decode, {A: sink})
    with pytest.raises(kind):
        router.on_frame(b"x", 0)
    assert calls.malformed == calls.failed == []


class Codec:
    """A codec whose ``decode`` is a bound method (the router calls its function with it)."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, int]] = []

    def decode(self, data: Any, now_ns: int) -> list[Any]:
        self.seen.append((bytes(data), now_ns))
        if data == b"bad":
            raise ProtocolError("refused")
        return [A(len(self.seen))]


def test_a_bound_decode_and_any_other_callable_decode_alike(cls: Any) -> None:
    codec = Codec()
    for decode in (codec.decode, lambda data, now: Codec.decode(codec, data, now)):
        calls = Calls()
        router = calls.router(cls, decode, {A: calls.sink("a")})
        router.on_frame(b"x", 5)
        router.on_frame(b"bad", 6)
        router.on_frame(memoryview(b"y"), 7)
        assert [e.n for _, e in calls.got] == [len(codec.seen) - 2, len(codec.seen)]
        assert [size for _, size in calls.malformed] == [3] and router.events == 2
    assert codec.seen == [(b"x", 5), (b"bad", 6), (b"y", 7)] * 2



def test_a_decode_that_returns_no_iterable_is_refused_like_an_unreadable_message(
    cls: Any,
) -> None:
    calls = Calls()
    router = calls.router(cls, lambda data, now: 7, {A: calls.sink("a")})
    router.on_frame(b"xyz", 1)
    router.on_frame(b"x", 1)
    assert calls.got == [] and router.events == 0
    assert [(type(exc), size) for exc, size in calls.malformed] == [(TypeError, 3), (TypeError, 1)]
