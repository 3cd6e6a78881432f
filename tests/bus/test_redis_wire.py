"""The Redis backend's sans-I/O core: entry encoding, the stream layout, the dedupe window."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from tickloop import models
from tickloop.bus import Event, register_event_type
from tickloop.bus._redis_wire import DedupeWindow, EntryCodec, StreamLayout
from tickloop.exceptions import ConfigError, ProtocolError

TS = 1_700_000_000_000_000_000

PAYLOADS = [
    models.Trade(venue="sim", symbol="BTC-USD", id=7, price=Decimal("100.10"),
                 size=Decimal("0.5000"), side=models.Side.BUY, ts=TS),
    models.BookSnapshot(venue="kraken", symbol="BTC-USD", sequence=3,
                        bids=(models.BookLevel(Decimal("301727260.79999999"), Decimal("1")),),
                        asks=(), ts=TS),
    models.Reconnected(venue="redis", url="redis://h:1/0", connection=0, downtime=1.5,
                       attempts=2, ts=TS),
    models.Signal(bot="b", symbol="BTC-USD", name="z", value=1.25, ts=TS),
    models.Signal(bot="b", name="word", value="up", ts=TS),
    models.Equity(equity=Decimal("10.00"), cash=Decimal("5"), ts=TS),
]


def envelope(payload: object, type_name: str, topic: str = "x.y") -> Event:
    return Event(type=type_name, topic=topic, id=1, source="s", ts=TS, mono=5, payload=payload)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_builtin_payloads_round_trip_by_tag(payload: object) -> None:
    from tickloop.bus import event_type_of

    codec = EntryCodec()
    event = envelope(payload, event_type_of(payload))
    wire = codec.entry(codec.encode(event))
    assert wire.topic == "x.y" and (wire.source, wire.id) == ("s", 1)
    assert codec.event(wire) == event


def test_book_levels_keep_the_venues_digits() -> None:
    codec = EntryCodec()
    event = envelope(PAYLOADS[1], "book")
    back = codec.event(codec.entry(codec.encode(event)))
    assert str(back.payload.bids[0].price) == "301727260.79999999"


class Fancy(msgspec.Struct, frozen=True):
    a: int
    b: list[str]


class Other(msgspec.Struct, frozen=True):
    a: str


def test_user_types_decode_through_their_registered_class() -> None:
    register_event_type("test.fancy", Fancy)
    codec = EntryCodec()
    event = envelope(Fancy(a=1, b=["x"]), "test.fancy")
    assert codec.event(codec.entry(codec.encode(event))) == event
    # A type this process never registered: a clear error, not a wrong payload.
    unknown = envelope(Other(a="q"), "test.unregistered")
    with pytest.raises(ProtocolError, match="register_event_type"):
        codec.event(codec.entry(codec.encode(unknown)))


def test_malformed_entries_are_protocol_errors() -> None:
    codec = EntryCodec()
    with pytest.raises(ProtocolError):
        codec.entry(b"\xc1")
    with pytest.raises(ProtocolError):
        codec.entry(msgspec.msgpack.encode(["too", "short"]))


def test_topics_map_to_the_stream_of_their_first_segment() -> None:
    layout = StreamLayout("tl")
    assert layout.key("trade.sim.BTC-USD") == b"tl:trade"
    assert layout.key("status") == b"tl:status"
    assert layout.fixed_key("trade.*") == b"tl:trade"
    assert layout.fixed_key("trade.sim.BTC-USD") == b"tl:trade"
    assert layout.fixed_key("*") is None
    assert layout.fixed_key("tr?de.*") is None
    with pytest.raises(ConfigError):
        StreamLayout("a b")


def test_wildcard_patterns_pick_the_streams_their_literal_prefix_reaches() -> None:
    layout = StreamLayout("tl")
    keys = [b"tl:trade", b"tl:trader", b"tl:order", b"tl:book", b"other:trade", layout.registry]
    assert layout.candidates("*", keys) == [b"tl:book", b"tl:order", b"tl:trade", b"tl:trader"]
    assert layout.candidates("tr*", keys) == [b"tl:trade", b"tl:trader"]
    assert layout.candidates("trade*", keys) == [b"tl:trade", b"tl:trader"]
    assert layout.candidates("trade.*", keys) == [b"tl:trade"]
    assert layout.candidates("?rder.x", keys) == [b"tl:book", b"tl:order", b"tl:trade",
                                                 b"tl:trader"]


def test_dedupe_window_delivers_once_and_acks_every_copy() -> None:
    window = DedupeWindow(size=3)
    assert window.arrive(("s", 1), "e1") == DedupeWindow.DELIVER
    assert window.arrive(("s", 1), "e1-copy") == DedupeWindow.IN_FLIGHT
    assert window.done(("s", 1)) == ["e1", "e1-copy"]
    assert window.arrive(("s", 1), "e1-again") == DedupeWindow.HANDLED
    assert window.duplicates == 2
    # Bounded: the oldest handled key falls out.
    for i in range(2, 5):
        window.arrive(("s", i), i)
        window.done(("s", i))
    assert len(window) == 3
    assert window.arrive(("s", 1), "late") == DedupeWindow.DELIVER
    # An abandoned delivery is forgotten, not marked handled.
    assert window.arrive(("t", 9), "x") == DedupeWindow.DELIVER
    assert window.forget(("t", 9)) == ["x"]
    assert window.arrive(("t", 9), "x2") == DedupeWindow.DELIVER
    with pytest.raises(ConfigError):
        DedupeWindow(0)
