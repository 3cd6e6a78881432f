"""tickloop.venues.levels: the C level decoder gives exactly what the pure decoder gives.

Results and errors are compared on generated texts (plain, spaced, escaped, broken), on every
level array of the recorded Binance sessions, through the codecs; the table's bound, the heap
spill past the stack's levels, reference counts on the error paths and the digest check are
tested on the compiled module itself.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import struct
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop import _native
from tickloop.models import BookDelta, BookLevel, BookSnapshot
from tickloop.venues import levels
from tickloop.venues.base import DecimalCache
from tickloop.venues.binance import BinanceCodec, BinanceRest
from tickloop.venues.levels import PureLevelDecoder, level_decoder
from tickloop.venues.recorded import Direction, read_recording
from tickloop.venues.sim import SimCodec

#: The compiled decoder's own tests: deselected in the pure-Python leg (tests/conftest.py).
pytestmark = pytest.mark.compiled

D = Decimal


def need_native() -> None:
    """Under CI (a clean clone installed with a C compiler) the C decoder must be built: fail.
    Elsewhere (a checkout installed without one) there is nothing to compare: skip."""
    if levels.NATIVE:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("the install did not build tickloop.venues._levels_native")
    pytest.skip("no C level decoder in this checkout (install with a C compiler to build it)")


def outcome(decode: Any, *args: Any) -> Any:
    """What a decoder makes of ``args``: its result, or the exception's type and message."""
    try:
        return decode(*args)
    except Exception as exc:
        return (type(exc), str(exc))


def both(cache: DecimalCache | None = None, **kwargs: Any) -> tuple[Any, PureLevelDecoder]:
    need_native()
    cache = DecimalCache() if cache is None else cache
    return level_decoder(cache, native=True, **kwargs), PureLevelDecoder(cache)


def test_the_install_built_the_c_decoder_under_ci() -> None:
    need_native()
    decoder = level_decoder(DecimalCache())
    assert type(decoder).__module__ == "tickloop.venues._levels_native"
    assert type(BinanceCodec()._levels) is type(decoder)
    assert type(SimCodec()._levels) is type(decoder)
    assert type(BinanceRest()._levels) is type(decoder)


def test_plain_levels_are_interned_booklevels() -> None:
    native, pure = both()
    text = b'[["100.50","1.25000000"],["100.40","0.00000000"]]'
    got = native(text)
    assert (
        got
        == pure(text)
        == (
            BookLevel(D("100.50"), D("1.25000000")),
            BookLevel(D("100.40"), D("0.00000000")),
        )
    )
    assert type(got) is tuple and all(type(level) is BookLevel for level in got)
    # the venue's digits are kept
    assert [str(level.size) for level in got] == ["1.25000000", str(D("0.00000000"))]
    again = native(text)
    assert all(a.price is b.price and a.size is b.size for a, b in zip(got, again, strict=True))
    # the very Decimals the codec's cache holds, whichever decoder built them
    assert got[0].price is native.cache["100.50"] is pure(text)[0].price
    assert native.fallbacks == 0


@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b" [ ] ",
        b'[["1","2"]]',
        b' \n[ [ "1" ,\t"2" ] , ["3","4"] ]\r\n',
        b'[["1","2"],]',  # trailing comma
        b'[["1","2"]',  # truncated
        b'[["1","2"]] x',  # trailing characters
        b'[["1","x"]]',  # not a number
        b'[["1","NaN"]]',  # not finite
        b'[["1","Infinity"]]',
        b'[["1",""]]',
        b'[["\\u0031","2"]]',  # an escape: the pure decoder reads it
        b'[["1\\"","2"]]',
        b'[["\xc3\xa9","2"]]',  # non-ASCII
        b'[[1,"2"]]',  # a number where a string belongs
        b'[["1","2","3"]]',  # three elements
        b'[["1"]]',
        b"[[]]",
        b'{"a":1}',
        b"null",
        b"",
        b"[",
        b'[["1","2"],["3","4"],["5","6"],["7","oops"]]',  # error after levels were built
        b'[["' + b"1" * 60 + b'","2"]]',  # longer than the table's keys
        b'[["' + b"1" * 24 + b'","' + b"2" * 25 + b'"]]',  # the longest key, and one past it
    ],
)
def test_every_shape_gives_the_pure_result_or_error(text: bytes) -> None:
    native, pure = both()
    assert outcome(native, text) == outcome(pure, text)


json_text = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["0", "0.00000000", "1e5", "-0", "1E-7", "NaN", "inf", "", "x", "1.2.3"]),
    st.text(max_size=8),
)
spaces = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


@st.composite
def level_texts(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(json_text, json_text), max_size=70))
    sep = draw(spaces)
    parts = [
        f"[{sep}{json.dumps(p, ensure_ascii=draw(st.booleans()))}{sep},"
        f"{draw(spaces)}{json.dumps(q)}{sep}]"
        for p, q in pairs
    ]
    text = (f"{draw(spaces)}[{sep}" + f",{sep}".join(parts) + f"{sep}]{draw(spaces)}").encode()
    if draw(st.integers(0, 5)) == 0 and text:  # sometimes break it
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.binary(max_size=3)) + text[at + 1 :]
    return text


@settings(max_examples=400)
@given(level_texts(), st.integers(1, 64))
def test_the_c_decoder_equals_the_pure_one(text: bytes, max_entries: int) -> None:
    """Same levels (the very interned Decimals) or the same error, for any text, with a table
    small enough to be emptied mid-text."""
    cache = DecimalCache()
    native, pure = both(cache, max_entries=max_entries)
    first = outcome(native, text)
    reference = outcome(pure, text)
    assert first == reference
    assert outcome(native, text) == first  # again, now from the table
    if first and isinstance(first[0], BookLevel):  # levels: the very Decimals the cache holds
        for got, want in zip(first, reference, strict=True):
            assert got.price is want.price and got.size is want.size
    assert native.entries <= max_entries


def test_bytes_memoryview_bytearray_and_raw_are_read_alike() -> None:
    native, pure = both()
    text = b'[["10.5","2"],["10.25","0"]]'
    expected = pure(text)
    for form in (text, memoryview(text), bytearray(text), msgspec.Raw(text)):
        assert native(form) == expected
    wrapped = msgspec.json.decode(b'{"b":' + text + b"}", type=dict[str, msgspec.Raw])
    assert native(wrapped["b"]) == expected
    with pytest.raises(TypeError):
        native("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        native()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        native(text, text)  # type: ignore[call-arg]


def test_many_levels_spill_past_the_stack() -> None:
    native, pure = both()
    for n in (31, 32, 33, 64, 65, 1000):
        text = json.dumps([[f"{i}.5", f"{i % 7}"] for i in range(n)]).encode()
        got = native(text)
        assert len(got) == n and got == pure(text)


class CountingCache(DecimalCache):
    """A DecimalCache that counts its lookups: the C decoder reaches it only for a string its
    table does not hold, so the count says exactly which strings the table remembered."""

    __slots__ = ("lookups",)

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def __getitem__(self, text: str) -> Decimal:
        self.lookups += 1
        return super().__getitem__(text)


def lookups_of(decoder: Any, text: bytes) -> int:
    """How many strings of ``text`` the decoder had to look up in its DecimalCache."""
    cache = decoder.cache
    before = cache.lookups
    decoder(text)
    return int(cache.lookups - before)


def twice(s: str) -> bytes:
    """One level whose price and size are the same string: the second read of it must come from
    the table, having been remembered by the first."""
    return f'[["{s}","{s}"]]'.encode()


MASK64 = (1 << 64) - 1


def home_slot(text: str, seed: int, capacity: int) -> int:
    """The slot the C table hashes ``text`` to: its hash_key() over the string's bytes read as
    three native-endian words, zero-padded (the test of the full-window rule needs strings that
    provably share a window)."""
    h = seed
    for word in struct.unpack("=3Q", text.encode().ljust(24, b"\0")):
        h = ((h ^ word) * 0xFF51AFD7ED558CCD) & MASK64
        h ^= h >> 32
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    h ^= h >> 29
    return h & (capacity - 1)


@pytest.mark.parametrize("seed", [0, 1, 0xDEADBEEF, MASK64])
def test_a_full_probe_window_gives_its_first_slot_to_the_new_string(seed: int) -> None:
    """33 strings that hash to one slot of a 256-slot table (it does not grow below 128
    entries): the first 32 fill the probe window, the 33rd replaces the first, which is then
    looked up in the cache again and, remembered again, replaces the 33rd."""
    need_native()
    native = level_decoder(CountingCache(), native=True, max_entries=64, seed=seed)
    assert native.capacity == 256
    by_slot: dict[int, list[str]] = {}
    for i in itertools.count():
        text = f"{i}.5"
        same = by_slot.setdefault(home_slot(text, seed, 256), [])
        same.append(text)
        if len(same) == 33:
            break
    first, *middle, last = same
    for n, text in enumerate([first, *middle], 1):
        assert lookups_of(native, twice(text)) == 1
        assert (native.entries, native.evictions) == (n, 0)
    assert lookups_of(native, twice(last)) == 1  # remembered at once, in the first's slot
    assert (native.entries, native.evictions) == (32, 1)
    assert lookups_of(native, twice(last)) == 0
    assert all(lookups_of(native, twice(text)) == 0 for text in middle)
    assert lookups_of(native, twice(first)) == 1  # it gave way: through the cache, once
    assert (native.entries, native.evictions) == (32, 2)
    assert lookups_of(native, twice(first)) == 0
    assert lookups_of(native, twice(last)) == 1
    assert (
        native(twice(first)) == native(twice(first)) == PureLevelDecoder(native.cache)(twice(first))
    )


def test_the_table_is_bounded_and_emptied_when_full() -> None:
    native, pure = both(max_entries=8)
    assert native.max_entries == 8
    for i in range(100):
        text = f'[["{i}.25","{i}"],["{i}.75","1"]]'.encode()
        assert native(text) == pure(text)
        assert 0 < native.entries <= 8
    native.forget()
    assert native.entries == 0
    assert native(b'[["1","2"]]') == pure(b'[["1","2"]]')
    assert native.entries == 2


# With this hash, seeds 6 and 7 each fill one probe window on the way (one eviction): the
# growing path of the rule is exercised, not only the empty-slot one. None: a random seed.
@pytest.mark.parametrize("seed", [*range(12), None])
def test_every_string_is_remembered_right_after_its_lookup(seed: int | None) -> None:
    """10,000 distinct strings through a growing table, for any seed: each is looked up in the
    cache once and is then in the table; the table holds each of them unless a later one took
    its slot (a full probe window) or a rehash could not place it, and it counts those."""
    need_native()
    native = level_decoder(CountingCache(), native=True, seed=seed)
    for i in range(10_000):
        text = twice(f"{i}.5")
        assert lookups_of(native, text) == 1
        assert lookups_of(native, text) == 0
    assert native.entries + native.evictions == 10_000
    assert native.capacity >= 2 * native.entries
    assert native.cache.lookups == 10_000


def test_no_reference_is_leaked_or_lost_on_any_path() -> None:
    native, _ = both()
    cache = native.cache
    native(b'[["1","2"],["3","4"]]')
    # the pure decoder (the fallback of the error paths below) interns prices in cache.positive
    PureLevelDecoder(cache)(b'[["1","2"],["3","4"]]')
    held = {text: sys.getrefcount(cache[text]) for text in ("1", "2", "3", "4")}
    for _ in range(1000):
        native(b'[["1","2"],["3","4"]]')
        for text in (b'[["1","2"],["3","x"]]', b'[["1","2"],["3","4"],]', b'[["1","2"],[3,"4"]]'):
            with pytest.raises((ValueError, msgspec.DecodeError)):
                native(text)
    gc.collect()
    assert {text: sys.getrefcount(cache[text]) for text in held} == held
    kept, kept_pure = native(b'[["1","2"]]'), PureLevelDecoder(cache)(b'[["1","2"]]')
    level, level_pure = kept[0], kept_pure[0]
    assert sys.getrefcount(level) == sys.getrefcount(level_pure)  # the tuple's, and locals


def test_the_constructor_checks_its_arguments() -> None:
    need_native()
    from tickloop.venues import _levels_native

    cache = DecimalCache()
    with pytest.raises(TypeError, match="tuple subclass"):
        _levels_native.LevelDecoder(cache, dict, PureLevelDecoder(cache))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        _levels_native.LevelDecoder(cache, BookLevel, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entries"):
        _levels_native.LevelDecoder(cache, BookLevel, PureLevelDecoder(cache), max_entries=0)


def test_native_false_gives_the_pure_decoder() -> None:
    assert type(level_decoder(DecimalCache(), native=False)) is PureLevelDecoder


def test_a_build_from_other_source_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    need_native()
    source = Path(levels.__file__).with_name("_levels_native.c")
    name = "tickloop.venues._levels_native"
    assert _native.native_extension(name, str(source)) is not None
    edited = tmp_path / "_levels_native.c"
    edited.write_bytes(source.read_bytes() + b"\n/* edited after the build */\n")
    with caplog.at_level(logging.WARNING, logger="tickloop.native"):
        assert _native.native_extension(name, str(edited)) is None
    assert "built from other source" in caplog.text


def test_pure_python_switch_turns_the_c_decoder_off() -> None:
    """Without the C decoder the wire structs hold msgspec's string pairs (one decode pass) and
    the codecs convert them with book_levels: same models, errors of the same form."""
    code = (
        "from tickloop.venues import levels; from tickloop.venues.binance import BinanceCodec; "
        "from tickloop.venues.sim import SimCodec; "
        "c = BinanceCodec(); s = SimCodec(); "
        'd, = c.decode(memoryview(b\'{"stream":"btcusdt@depth@100ms","data":{"e":'
        '"depthUpdate","E":1,"s":"BTCUSDT","U":5,"u":6,'
        '"b":[["100.5","1.0"]],"a":[]}}\'), 0); '
        'u, = s.decode(b\'{"type":"book_update","symbol":"X","seq":2,'
        '"bids":[],"asks":[["7","0"]]}\', 0); '
        "print(levels.NATIVE, levels.WireLevels, type(c._levels).__name__, d.bids, u.asks, sep='|')"
    )
    env = dict(os.environ, TICKLOOP_PURE_PYTHON="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    native, wire, decoder, bids, asks = done.stdout.strip().split("|")
    assert (native, wire, decoder) == ("False", "list[tuple[str, str]]", "partial")
    assert "BookLevel(price=Decimal('100.5'), size=Decimal('1.0'))" in bids
    assert "BookLevel(price=Decimal('7'), size=Decimal('0'))" in asks


def pure_twin(codec: Any) -> Any:
    twin = type(codec)()
    twin._levels = PureLevelDecoder(twin._d if hasattr(twin, "_d") else twin.decimals)
    return twin


def test_recorded_binance_sessions_decode_alike(recorded_data: Path) -> None:
    """Every frame of the recorded Binance sessions (diffs, partial books, REST snapshots of up
    to 1,000 levels a side): the same models from the C decoder as from the pure one."""
    need_native()
    seen = 0
    for name in ("BINANCE.ws.1.0", "BINANCE_US.ws.1.0"):
        codec = BinanceCodec()
        twin = pure_twin(codec)
        for rec in read_recording(recorded_data / name):
            if rec.direction is Direction.RECEIVED:
                got = outcome(codec.decode, memoryview(rec.frame), rec.ts)
                assert got == outcome(twin.decode, rec.frame, rec.ts)
                if isinstance(got, list):
                    seen += sum(isinstance(m, BookDelta) for m in got)
    assert seen > 500
    rest = BinanceRest()
    twin_rest = BinanceRest()
    twin_rest._levels = PureLevelDecoder(twin_rest._d)
    books = 0
    for name in ("BINANCE.http.0.0", "BINANCE_US.http.0.0"):
        for rec in read_recording(recorded_data / name):
            if "/depth" in rec.url:
                book = rest.parse_book(rec.frame, "BTC-USDT")
                assert isinstance(book, BookSnapshot) and len(book.bids) > 50
                assert book == twin_rest.parse_book(rec.frame, "BTC-USDT")
                books += 1
    assert books >= 4


def test_sim_book_messages_decode_alike() -> None:
    need_native()
    codec = SimCodec()
    twin = pure_twin(codec)
    frames = [
        b'{"type":"book_snapshot","symbol":"BTC-USD","seq":1,"bids":[["100","1"]],'
        b'"asks":[["101","2"],["102","0.5"]],"checksum":5,"ts":7}',
        b'{"type":"book_update","symbol":"BTC-USD","seq":2,"prev_seq":1,"bids":[],'
        b'"asks":[["101","0"]],"ts":8}',
        b'{"type":"book_update","symbol":"BTC-USD","seq":3,"bids":[["100",1]],"asks":[]}',
        b'{"type":"book_update","symbol":"BTC-USD","seq":3,"bids":[["100","abc"]],"asks":[]}',
        b'{"type":"book_update","symbol":"BTC-USD","seq":3,"bids":{},"asks":[]}',
    ]
    for frame in frames:
        assert outcome(codec.decode, frame, 1) == outcome(twin.decode, frame, 1)
    delta = codec.decode(frames[1], 1)[0]
    assert isinstance(delta, BookDelta) and delta.asks == (BookLevel(D("101"), D("0")),)
    with pytest.raises(Exception, match="bad book_update message"):
        codec.decode(frames[2], 1)
    with pytest.raises(Exception, match="bad number in BookUpdate"):
        codec.decode(frames[3], 1)


def test_levels_leave_the_cycle_collector() -> None:
    """CPython never untracks tuple subclasses, nor tuples holding them, so every collection
    would walk each level a consumer holds; the C decoder's levels (two Decimals, no __dict__)
    and their tuple are untracked, the pure decoder's are not."""
    native, pure = both()
    text = b'[["1.5","2"],["1.25","0"]]'
    got = native(text)
    assert not gc.is_tracked(got) and not any(gc.is_tracked(level) for level in got)
    reference = pure(text)
    assert gc.is_tracked(reference[0])
    gc.collect()
    assert got == reference and got[0].price is reference[0].price  # untouched by a collection


def test_levels_with_a_dict_stay_tracked() -> None:
    """A level type whose instances can hold other objects could be part of a cycle."""
    need_native()
    from tickloop.venues import _levels_native

    class Roomy(tuple):  # type: ignore[type-arg]  # no __slots__: instances have a __dict__
        pass

    cache = DecimalCache()
    decoder = _levels_native.LevelDecoder(cache, Roomy, PureLevelDecoder(cache))  # type: ignore[arg-type]
    got = decoder(b'[["1","2"]]')
    assert type(got[0]) is Roomy and got[0] == (D(1), D(2))
    assert gc.is_tracked(got[0]) and gc.is_tracked(got)
    got[0].cycle = got  # type: ignore[attr-defined]  # a cycle the collector must still see
    del got
    assert gc.collect() > 0


def test_only_strings_that_fit_a_slot_are_remembered() -> None:
    native, pure = both()
    fits, too_long = "1." + "5" * 22, "2." + "5" * 23  # 24 and 25 characters
    text = f'[["{fits}","{too_long}"]]'.encode()
    for _ in range(3):
        assert native(text) == pure(text) == (BookLevel(D(fits), D(too_long)),)
    assert native.entries == 1  # the long one is looked up in the DecimalCache every time


# ------------------------------------------------ issue 15: zero prices, levels per message


@pytest.mark.parametrize(
    "text",
    [
        b'[["0","1"]]',
        b'[["1","1"],["0.00","2"]]',
        b'[["0E-8","1"]]',
        b'[["1","1"],["2","2"],["3","3"],["0","4"]]',  # past the pure decoder's unrolled cases
    ],
)
def test_a_zero_price_is_refused_alike_by_both(text: bytes) -> None:
    """A level's size of 0 deletes it; a price of 0 is nothing a venue sends (case 3)."""
    native, pure = both()
    assert outcome(native, text) == outcome(pure, text)
    assert outcome(pure, text)[1].startswith("must be > 0")
    assert native(b'[["0.05","0"]]') == pure(b'[["0.05","0"]]') == ((D("0.05"), D(0)),)


@pytest.mark.parametrize("count", [4, 40])  # 40: past the stack's levels
def test_a_side_over_max_levels_is_refused_at_once(count: int) -> None:
    """More levels on one side than limits.max_levels_per_message: LevelLimitError, typed, from
    the C decoder itself (the pure one is not asked to decode the whole hostile side)."""
    from tickloop.limits import LevelLimitError, Limits

    native, pure = both(DecimalCache(limits=Limits(max_levels_per_message=3)))
    ok = json.dumps([[f"{i + 1}.5", "1"] for i in range(3)]).encode()
    assert native(ok) == pure(ok) and len(native(ok)) == 3
    text = json.dumps([[f"{i + 1}.5", "1"] for i in range(count)]).encode()
    fallbacks = native.fallbacks
    for decode in (native, pure):
        with pytest.raises(LevelLimitError) as info:
            decode(text)
        assert info.value.limit == "max_levels_per_message"
    assert native.fallbacks == fallbacks
    assert native.max_levels == 3


# ------------------------------------------------------ issue 15: duplicate keys of a frame


def _render(value: Any, spaced: bool, escape: bool) -> str:
    """JSON text of a tree whose objects are lists of (key, value) pairs (keys may repeat)."""
    sep = ", " if spaced else ","
    colon = " : " if spaced else ":"
    if isinstance(value, tuple):  # an object
        items = []
        for key, item in value:
            text = json.dumps(key)
            if escape and key:
                text = f'"\\u{ord(key[0]):04x}' + json.dumps(key[1:])[1:]
            items.append(f"{text}{colon}{_render(item, spaced, escape)}")
        return "{" + sep.join(items) + "}"
    if isinstance(value, list):
        return "[" + sep.join(_render(item, spaced, escape) for item in value) + "]"
    return json.dumps(value)


# Keys and strings longer than the scan's 64-byte blocks, and strings made of the bytes it looks
# for (a quote, brackets, a colon), so every path of both scans is taken.
_keys = st.sampled_from(
    ["a", "b", "p", "price", "q", 'x"y', "a\\", "é", "longer_key_name_1", "k" * 70, "k" * 71]
)
_scalars = st.one_of(
    st.integers(),
    st.sampled_from(["a", "p", '"p":', "{", "]", ":", "x" * 100, "[:{" * 30]),
    st.none(),
)
_trees = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(_keys, inner), max_size=5).map(tuple),
    ),
    max_leaves=20,
)


def _duplicated(value: Any) -> bool:
    if isinstance(value, tuple):
        keys = [key for key, _ in value]
        return len(keys) != len(set(keys)) or any(_duplicated(item) for _, item in value)
    if isinstance(value, list):
        return any(_duplicated(item) for item in value)
    return False


@settings(max_examples=300, derandomize=True, database=None)
@given(_trees, st.booleans(), st.booleans())
def test_the_duplicate_key_scans_agree_with_the_exact_check(
    tree: Any, spaced: bool, escape: bool
) -> None:
    """C scan, pure scan and exact check on generated JSON: a scan may say "cannot tell" (2),
    never 0 for a text with a duplicated key; the C scan is exact (0/1) on text without
    escapes; the exact check names a key exactly when one object gives it twice."""
    need_native()
    from tickloop.venues import _levels_native
    from tickloop.venues.keys import duplicated_key, pure_duplicate_keys

    text = _render(tree, spaced, escape).encode()
    duplicated = _duplicated(tree)
    assert (duplicated_key(text) is not None) == duplicated
    c_scan = _levels_native.duplicate_keys(text)
    assert c_scan == _levels_native.duplicate_keys(memoryview(text))
    assert pure_duplicate_keys(text) in ((2,) if duplicated else (0, 2))
    if b"\\" not in text:
        assert c_scan == int(duplicated)
    else:
        assert c_scan in ((1, 2) if duplicated else (0, 2))


def test_the_block_scan_agrees_with_the_exact_check_across_block_boundaries() -> None:
    """Compact frames (the 64-byte block path of the C scan) of every length up to 600 bytes,
    keys and values straddling block boundaries, a duplicate planted at random or not."""
    need_native()
    import random

    from tickloop.venues import _levels_native
    from tickloop.venues.keys import duplicated_key

    rng = random.Random(15)
    for _ in range(3000):
        names = [f"k{rng.randint(0, 30)}" + "x" * rng.choice([0, 0, 5, 60]) for _ in range(20)]

        def value(depth: int = 0, names: list[str] = names) -> str:
            r = rng.random()
            if r < 0.25 and depth < 4:
                keys = rng.sample(names, rng.randint(0, 4))
                return "{" + ",".join(f"{json.dumps(k)}:{value(depth + 1)}" for k in keys) + "}"
            if r < 0.45 and depth < 4:
                return "[" + ",".join(value(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
            return json.dumps(rng.choice(["a", ":", "{", "]", "x" * rng.randint(0, 90), 1, None]))

        keys = [rng.choice(names) for _ in range(rng.randint(0, 10))]
        text = ("{" + ",".join(f"{json.dumps(k)}:{value()}" for k in keys) + "}").encode()
        assert _levels_native.duplicate_keys(text) == int(duplicated_key(text) is not None), text


def test_the_duplicate_key_scan_reads_only_its_text() -> None:
    """Truncated, nested, unbalanced, huge objects: an answer in 0..2, never a crash; the bounds
    (depth, keys per object) answer 2 rather than work without bound."""
    need_native()
    from tickloop.venues import _levels_native

    scan = _levels_native.duplicate_keys
    frame = b'{"e":"aggTrade","E":1,"s":"BTCUSDT","a":5,"p":"1.5","q":"2","T":1,"m":true}'
    for end in range(len(frame) + 1):
        assert scan(frame[:end]) in (0, 2)
        assert scan(memoryview(frame)[end:]) in (0, 2)
    assert scan(frame.replace(b'"q"', b'"p"')) == 1
    assert scan(b'{"a":' * 40 + b"1" + b"}" * 40) == 2  # deeper than it tracks
    assert scan(b'{"a":' * 20 + b"1" + b"}" * 20) == 0
    many = "{" + ",".join(f'"k{i}":1' for i in range(100)) + "}"
    assert scan(many.encode()) == 2  # an object with more keys than a venue sends
    assert scan(b"}]\"\\") == 2 and scan(b"") == 0 and scan(b'"\\') == 2
    with pytest.raises(TypeError):
        scan("not bytes")  # type: ignore[arg-type]
