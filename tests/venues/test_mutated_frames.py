"""Real frames, damaged at random (truncations, byte flips, insertions): every codec either
decodes them or raises ProtocolError, never another exception."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tickloop.exceptions import ProtocolError
from tickloop.venues.base import Codec
from tickloop.venues.binance import BinanceCodec
from tickloop.venues.coinbase import CoinbaseCodec
from tickloop.venues.kraken import KrakenCodec
from tickloop.venues.recorded import Direction, read_recording

INSERTS = [b'"', b"1", b"null", b"[", b"{}", b"-", b"e9", b',"x":1']


def mutate(frame: bytes, rng: random.Random) -> bytes:
    data = bytearray(frame)
    op = rng.randrange(4)
    at = rng.randrange(len(data))
    if op == 0:
        del data[at:]
    elif op == 1:
        data[at] = rng.randrange(256)
    elif op == 2:
        data[at:at] = rng.choice(INSERTS)
    else:
        del data[at : rng.randrange(at, len(data) + 1)]
    return bytes(data)


@pytest.mark.parametrize(
    ("codec_class", "recording"),
    [
        (BinanceCodec, "BINANCE_US.ws.1.0"),
        (CoinbaseCodec, "COINBASE.ws.28.0"),
        (KrakenCodec, "KRAKEN.ws.50.0"),
    ],
)
def test_mutated_recorded_frames_raise_only_protocol_error(
    recorded_data: Path, codec_class: type[Codec], recording: str
) -> None:
    frames = [
        r.frame
        for r in read_recording(recorded_data / recording)
        if r.direction is Direction.RECEIVED and len(r.frame) < 3000
    ]
    rng = random.Random(20261122)
    codec = codec_class()
    rejected = 0
    for _ in range(3000):
        try:
            codec.decode(mutate(rng.choice(frames), rng), 0)
        except ProtocolError:
            rejected += 1
    assert rejected > 1000  # most mutations break the frame, and each is a ProtocolError
