"""tickloop.venues.keys: the colon count that lets a codec skip the duplicate-key scan.

A frame whose colons equal ``exact_keys`` of the struct it decoded into cannot give a key twice
(the proof is in ``exact_keys``'s docstring). These tests hold the count to ``bytes.count``,
``exact_keys`` to its rules, and the Binance hot path to the promise that matters: a frame with
a key given twice is refused whatever else it leaves out to make its colons add up, and the
recorded sessions' frames take the path without the scan. They run on both builds (the pure
leg runs tests/venues), so the C count and its pure fallback are each held to the same answers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickloop.exceptions import ProtocolError
from tickloop.models import BookDelta, Trade
from tickloop.venues import binance, keys
from tickloop.venues.binance import BinanceCodec
from tickloop.venues.keys import colons, duplicated_key, exact_keys, pure_colons
from tickloop.venues.recorded import Direction, read_recording

AGG = {"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 5, "p": "1.5", "q": "2", "f": 1}
AGG |= {"l": 2, "T": 1, "m": False, "M": True}
TRADE = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 5, "p": "1.5", "q": "2", "T": 1}
TRADE |= {"m": True, "M": True}
DEPTH = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 10, "u": 11}
DEPTH |= {"b": [["100.0", "1.0"]], "a": [["101.0", "0.0"]]}
STREAMS = {"aggTrade": "btcusdt@aggTrade", "trade": "btcusdt@trade", "depthUpdate": "btcusdt@depth"}


def text(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def pairs(items: list[tuple[str, Any]]) -> bytes:
    """An object from ``items`` in order, a key as often as it is listed."""
    body = ",".join(f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}" for k, v in items)
    return ("{" + body + "}").encode()


def combined(event: bytes, stream: str) -> bytes:
    return b'{"stream":' + json.dumps(stream).encode() + b',"data":' + event + b"}"


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The frames the Binance codec sent to the duplicate-key scan."""
    seen: list[bytes] = []
    scan = binance.duplicate_keys

    def counted(frame: bytes | memoryview) -> int:
        seen.append(bytes(frame))
        return scan(frame)

    monkeypatch.setattr(binance, "duplicate_keys", counted)
    return seen


# ------------------------------------------------------------------------------------ colons


@pytest.fixture(params=["avx2", "sse2"])
def simd(request: pytest.FixtureRequest) -> Any:
    """The C count's two paths, each where this machine can run it (the AVX2 one is chosen at
    import where the CPU has it; sse2 forces the other)."""
    if not keys.NATIVE:
        yield "pure"
        return
    native: Any = keys._native
    before = native.set_colons_avx2(request.param == "avx2")
    try:
        yield request.param
    finally:
        native.set_colons_avx2(before)


@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    # the fixture only chooses the path: the same for every example of one run
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=300), st.integers(0, 40))
def test_the_count_is_bytes_count_on_any_bytes_and_any_view(
    simd: str, data: bytes, cut: int
) -> None:
    """Random bytes, biased to colons, of every length (the C count's 16- and 32-byte blocks,
    its overlapped tail, texts shorter than a block), as bytes and as views that start
    mid-text; with each SIMD path the CPU has."""
    text = data.replace(b"a", b":")
    expected = text.count(b":")
    assert colons(text) == pure_colons(text) == expected
    view = memoryview(text)[min(cut, len(text)) :]
    assert colons(view) == pure_colons(view) == bytes(view).count(b":")


def test_the_count_reads_only_its_text(simd: str) -> None:
    """Colons just outside a view are not counted, whatever its length and offset."""
    rng = random.Random(14)
    for _ in range(2000):
        text = bytes(rng.choice(b":x") for _ in range(rng.randint(0, 200)))
        start = rng.randint(0, len(text))
        end = rng.randint(start, len(text))
        assert colons(memoryview(text)[start:end]) == text[start:end].count(b":")
    if keys.NATIVE:
        with pytest.raises(TypeError):
            colons("not bytes")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- exact_keys


class Flat(msgspec.Struct):
    a: int
    b: str
    c: float
    d: bool
    r: msgspec.Raw
    levels: list[tuple[str, str]]


class Nested(msgspec.Struct):
    x: int
    inner: Flat


class Tagged(msgspec.Struct, tag_field="kind", tag="t"):
    x: int


class Defaulted(msgspec.Struct):
    x: int
    y: int = 0


class Mapping(msgspec.Struct):
    x: dict[str, int]


class Optional(msgspec.Struct):
    x: int | None


class Listed(msgspec.Struct):
    x: list[Flat]


class Positional(msgspec.Struct, array_like=True):
    x: int


def test_exact_keys_counts_only_what_a_decode_must_have_seen() -> None:
    assert exact_keys(Flat) == 6
    assert exact_keys(Nested) == 1 + 1 + 6
    assert exact_keys(Tagged) == 2  # the tag is a key too
    # a field that may be absent, or whose value may hold keys of its own: no count is exact
    for loose in (Defaulted, Mapping, Optional, Listed, Positional):
        assert exact_keys(loose) == -1, loose


@settings(max_examples=300, derandomize=True, database=None)
@given(st.lists(st.sampled_from(["x", "a", "b", "zz"]), max_size=8), st.booleans())
def test_a_frame_that_decodes_with_exactly_its_count_of_colons_has_no_key_twice(
    names: list[str], colon_in_value: bool
) -> None:
    """The claim itself, on any object made of a struct's keys and others, repeated or left
    out: wherever the decode succeeds and the colons equal the count, no key is given twice."""

    class Two(msgspec.Struct):
        x: int
        a: str

    decoder = msgspec.json.Decoder(Two)
    frame = pairs([(n, 1 if n == "x" else ("a:b" if colon_in_value else "v")) for n in names])
    try:
        decoder.decode(frame)
    except msgspec.ValidationError:
        return
    if colons(frame) == exact_keys(Two):
        assert duplicated_key(frame) is None and sorted(names) == ["a", "x"]


# ------------------------------------------------------------------------ the Binance codec


@pytest.mark.parametrize("event", [AGG, TRADE, DEPTH], ids=["aggTrade", "trade", "depth"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["raw", "combined"])
def test_exact_frames_skip_the_scan_and_others_take_it(
    event: dict[str, Any], wrapped: bool, scans: list[bytes]
) -> None:
    """Binance's own frames (every key the venue sends, each once) decode without the scan; an
    extra key, a colon in a string or a key twice sends the frame to it."""
    codec = BinanceCodec()

    def frame(message: dict[str, Any]) -> bytes:
        raw = text(message)
        return combined(raw, STREAMS[event["e"]]) if wrapped else raw

    (model,) = codec.decode(frame(event), 0)
    assert isinstance(model, BookDelta if event is DEPTH else Trade)
    assert scans == []
    for other in (event | {"extra": 1}, event | {"s": "BTC:USDT"}):
        codec.decode(frame(other), 0)
        assert scans[-1] == frame(other)
    assert len(scans) == 2


def mutations(event: dict[str, Any]) -> list[bytes]:
    """``event`` with one key given twice, the colons kept equal by leaving another key out
    (every pair of keys), and with the second value of the key different from the first."""
    items = list(event.items())
    out = []
    for twice, (key, value) in enumerate(items):
        for dropped in range(len(items)):
            if dropped == twice:
                continue
            other: Any = value
            if isinstance(value, str):
                other = "9.5" if key in ("p", "q") else value + "X"
            elif isinstance(value, bool):
                other = not value
            elif isinstance(value, int):
                other = value + 1
            elif isinstance(value, list):
                other = [["1.0", "1.0"]]
            kept = [item for i, item in enumerate(items) if i != dropped]
            out.append(pairs([*kept, (key, other)]))
    return out


@pytest.mark.parametrize("event", [AGG, TRADE, DEPTH], ids=["aggTrade", "trade", "depth"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["raw", "combined"])
def test_a_key_twice_is_refused_whatever_key_is_left_out_to_match_the_count(
    event: dict[str, Any], wrapped: bool
) -> None:
    """The attack on the count: give a key twice and leave another out, so the frame's colons
    equal the hot struct's count. The hot decode then misses a required key and the frame takes
    the lenient path, which scans: every such frame is refused as a duplicate or decodes to
    nothing; none is believed."""
    codec = BinanceCodec()
    tried = 0
    for raw in mutations(event):
        frame = combined(raw, STREAMS[event["e"]]) if wrapped else raw
        assert colons(frame) == colons(text(event)) + (2 if wrapped else 0)
        try:
            decoded = codec.decode(frame, 0)
        except ProtocolError as error:
            assert "duplicate JSON key" in str(error), (frame, error)
        else:
            raise AssertionError(f"believed {decoded!r} from {frame!r}")
        tried += 1
    assert tried == len(event) * (len(event) - 1)


def test_the_recorded_sessions_take_the_path_without_the_scan(
    recorded_data: Path, scans: list[bytes]
) -> None:
    """Every recorded Binance diff and aggregate trade decodes without the scan on a codec that
    reads events first (one with no bookTicker or partial-depth stream: the recordings mix
    those in, so each frame gets a fresh codec); the frames that do take it (klines, tickers,
    acks) are those whose struct reads fewer keys than the venue sends."""
    fast = 0
    for name in ("BINANCE.ws.1.0", "BINANCE_US.ws.1.0"):
        for rec in read_recording(recorded_data / name):
            if rec.direction is not Direction.RECEIVED:
                continue
            before = len(scans)
            models = BinanceCodec().decode(bytes(rec.frame), rec.ts)
            if any(isinstance(m, BookDelta | Trade) for m in models):
                assert len(scans) == before, rec.frame
                fast += 1
    assert fast > 500


@pytest.mark.parametrize("event", [AGG, TRADE, DEPTH], ids=["aggTrade", "trade", "depth"])
def test_the_wrapper_key_the_codec_does_not_decode_cannot_make_room_for_a_key_twice(
    event: dict[str, Any],
) -> None:
    """The combined wrapper's ``stream`` is skipped, not decoded: leaving it out to make room
    for a key given twice in the event gives a frame that does not start ``{"s`` (the lenient
    path, which scans); another ``s`` key in its place keeps the extra colon. Every such frame
    is refused."""
    codec = BinanceCodec()
    items = list(event.items())
    for key, value in items:
        other: Any = not value if isinstance(value, bool) else (
            value + 1 if isinstance(value, int) else ("9.5" if isinstance(value, str) else []))
        inner = pairs([*items, (key, other)])  # every key once, and this one twice
        for frame in (
            b'{"data":' + inner + b"}",  # the colons of an exact combined frame
            b'{"data":' + inner + b',"stream":"x"}',
            b'{"sx":"y","data":' + inner + b"}",
            b'{"s":1,"data":' + inner + b"}",
        ):
            with pytest.raises(ProtocolError, match="duplicate JSON key"):
                codec.decode(frame, 0)
