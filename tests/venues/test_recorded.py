"""The reader of cryptofeed-format recordings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tickloop.exceptions import ProtocolError
from tickloop.venues.recorded import Direction, read_recording, seconds_to_ns

pytestmark = pytest.mark.playback


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BINANCE.ws.1.0", {Direction.OPEN: 1, Direction.RECEIVED: 265}),
        ("BINANCE_US.ws.1.0", {Direction.OPEN: 1, Direction.RECEIVED: 480}),
        ("BINANCE.http.0.0", {Direction.HTTP: 4}),
        ("COINBASE.ws.28.0", {Direction.OPEN: 1, Direction.SENT: 3, Direction.RECEIVED: 9946}),
        ("KRAKEN.ws.50.0", {Direction.OPEN: 1, Direction.SENT: 1, Direction.RECEIVED: 4321}),
        ("OKX.ws.1.0", {Direction.OPEN: 1, Direction.SENT: 3, Direction.RECEIVED: 410}),
    ],
)
def test_counts_every_line(recorded_data: Path, name: str, expected: dict[Direction, int]) -> None:
    assert Counter(r.direction for r in read_recording(recorded_data / name)) == expected


def test_fields_of_each_direction(recorded_data: Path) -> None:
    records = list(read_recording(recorded_data / "KRAKEN.ws.48.0"))
    opened, sent, first = records[:3]
    assert opened.direction is Direction.OPEN and opened.url == "wss://ws.kraken.com"
    assert opened.ts == 1618678132_368463000 and opened.frame == b""
    assert sent.direction is Direction.SENT and sent.ts == 1618678132_830970000
    assert sent.frame.startswith(b'{"event":"subscribe"') and sent.frame.endswith(b"}")
    assert first.direction is Direction.RECEIVED and first.url == "wss://ws.kraken.com"
    assert first.frame.startswith(b'{"connectionID"') and first.ts == 1618678132_831468000
    (http, *_) = read_recording(recorded_data / "BINANCE.http.0.0")
    assert http.url == "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000"
    assert http.ts == 1633998512_320639000 and http.frame.startswith(b'{"lastUpdateId"')


def test_timestamps_are_exact() -> None:
    assert seconds_to_ns("1618678132.9348202") == 1618678132_934820200
    assert seconds_to_ns(b"1618678132") == 1618678132_000000000
    for bad in ("", "12a", "1.2.3", "1.1234567890"):
        with pytest.raises(ValueError):
            seconds_to_ns(bad)


def test_lines_out_of_format_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "X.ws.1.0"
    path.write_bytes(b"wss://x <-> 1.5\n1.6: {}\n\n\nwss://x ?? 1.7: {}\n")
    reader = read_recording(path)
    assert [r.direction for r in (next(reader), next(reader))] == [
        Direction.OPEN,
        Direction.RECEIVED,
    ]
    with pytest.raises(ProtocolError, match=r"X\.ws\.1\.0:5"):
        next(reader)
    path.write_bytes(b"1.6 no separator\n")
    with pytest.raises(ProtocolError):
        list(read_recording(path))
