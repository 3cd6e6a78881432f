"""The recording format: writer and reader round trip, rotation by size and by time, the index,
a recording cut short, bad input, and cryptofeed's files read as the same records."""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from tickloop.exceptions import ConfigError
from tickloop.record import Record, RecordKind, RecordWriter, RestExchange, open_recording
from tickloop.venues.recorded import Direction, read_recording

pytestmark = pytest.mark.timeout(60)


def sample(n: int) -> list[Record]:
    kinds = [RecordKind.CONNECT, RecordKind.SENT, RecordKind.RECEIVED, RecordKind.RECEIVED,
             RecordKind.REST, RecordKind.STATUS, RecordKind.DISCONNECT]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        data = f'{{"i":{i},"pad":"{"x" * (i % 50)}"}}'.encode()
        mono, wall = 1_000_000_000 + i * 1_000, 1_700_000_000_000_000_000 + i
        out.append(Record(kind, i % 3, mono, wall, data))
    return out


def write(path: Path, records: list[Record], **options: object) -> RecordWriter:
    writer = RecordWriter(path, meta={"venue": "sim"}, **options)  # type: ignore[arg-type]
    for r in records:
        writer.write(r.kind, r.conn, r.data, r.mono_ns, r.wall_ns)
    writer.close()
    return writer


def test_round_trip_keeps_every_record_exactly(tmp_path: Path) -> None:
    records = sample(5000)
    writer = write(tmp_path / "rec", records)
    rec = open_recording(tmp_path / "rec")
    assert list(rec.records()) == records
    assert rec.meta == {"venue": "sim"} and rec.venue == "sim" and rec.source == "tickloop"
    index = msgspec.json.decode((tmp_path / "rec" / "index.json").read_bytes())
    assert index["format"] == "tickloop-recording" and index["version"] == 1
    assert index["complete"] is True
    (seg,) = index["segments"]
    assert seg["records"] == 5000 == writer.records
    assert seg["first_mono_ns"] == records[0].mono_ns and seg["last_mono_ns"] == records[-1].mono_ns
    assert seg["first_wall_ns"] == records[0].wall_ns and seg["last_wall_ns"] == records[-1].wall_ns
    assert seg["counts"] == dict(sorted(Counter(r.kind.name.lower() for r in records).items()))
    assert seg["raw_bytes"] == sum(24 + len(r.data) for r in records)
    # compressed: the file is zstd and smaller than its records
    data = (tmp_path / "rec" / seg["file"]).read_bytes()
    assert data[:4] == b"\x28\xb5\x2f\xfd"
    assert len(data) == seg["compressed_bytes"] < seg["raw_bytes"]


def test_rotation_by_size(tmp_path: Path) -> None:
    records = sample(3000)
    writer = write(tmp_path / "rec", records, max_segment_bytes=20_000, flush_bytes=4096)
    index = msgspec.json.decode((tmp_path / "rec" / "index.json").read_bytes())
    segs = index["segments"]
    assert len(segs) == writer.segments > 5
    assert [s["file"] for s in segs] == [f"seg-{i:05d}.tlr.zst" for i in range(len(segs))]
    assert sum(s["records"] for s in segs) == 3000
    # a segment is finished at the first record past the bound, never holds much more
    assert all(s["raw_bytes"] < 20_000 + 200 for s in segs)
    for a, b in itertools.pairwise(segs):
        assert a["last_mono_ns"] < b["first_mono_ns"]
    assert list(open_recording(tmp_path / "rec").records()) == records


def test_rotation_by_time(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "rec", max_segment_seconds=10)
    for second in range(35):
        writer.write(RecordKind.RECEIVED, 1, b"{}", mono_ns=second * 1_000_000_000, wall_ns=second)
    writer.close()
    segs = msgspec.json.decode((tmp_path / "rec" / "index.json").read_bytes())["segments"]
    assert [s["records"] for s in segs] == [10, 10, 10, 5]
    assert [s["first_mono_ns"] // 1_000_000_000 for s in segs] == [0, 10, 20, 30]


def test_a_recording_cut_short_reads_up_to_its_last_flushed_block(tmp_path: Path) -> None:
    records = sample(2000)
    writer = RecordWriter(tmp_path / "rec", flush_bytes=1024, max_segment_bytes=30_000)
    for r in records:
        writer.write(r.kind, r.conn, r.data, r.mono_ns, r.wall_ns)
    writer.flush()
    # what a crash leaves: the files as they are now, the last segment unfinished, no full index
    shutil.copytree(tmp_path / "rec", tmp_path / "crashed")
    writer.close()
    rec = open_recording(tmp_path / "crashed")
    assert rec.complete is False  # type: ignore[attr-defined]
    assert list(rec.records()) == records


def test_the_writer_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "x").write_text("x")
    with pytest.raises(ConfigError, match="already exists") as info:
        RecordWriter(tmp_path / "rec")
    assert info.value.field == "out"
    with pytest.raises(ConfigError) as bad:
        RecordWriter(tmp_path / "r2", max_segment_bytes=0)
    assert bad.value.field == "max_segment_bytes"


def test_bad_recordings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_recording(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a recording"):
        open_recording(tmp_path / "empty")
    write(tmp_path / "rec", sample(100))
    seg = tmp_path / "rec" / "seg-00000.tlr.zst"
    seg.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 20)
    with pytest.raises(ConfigError, match="corrupt segment"):
        list(open_recording(tmp_path / "rec").records())
    (tmp_path / "rec" / "index.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a recording index"):
        open_recording(tmp_path / "rec")
    (tmp_path / "FOO.ws.1.0").write_text("wss://x <-> 1.0\n")
    with pytest.raises(ConfigError, match="cannot replay foo"):
        open_recording(tmp_path / "FOO.ws.1.0")
    (tmp_path / "KRAKEN.ws.1.0").write_text("wss://x <-> 1.0\nnonsense line\n")
    with pytest.raises(ConfigError, match=r"KRAKEN.ws.1.0:2"):
        list(open_recording(tmp_path / "KRAKEN.ws.1.0").records())


def test_cryptofeed_files_read_as_records(recorded_data: Path) -> None:
    ws, http = recorded_data / "BINANCE.ws.1.0", recorded_data / "BINANCE.http.0.0"
    rec = open_recording([ws, http])
    assert rec.venue == "binance" and rec.source == "cryptofeed"
    assert rec.meta["url"] == "wss://stream.binance.com:9443/stream"
    assert rec.meta["rest_url"] == "https://api.binance.com"
    records = list(rec.records())
    frames = list(read_recording(ws))
    assert [r.data for r in records if r.kind is RecordKind.RECEIVED] == [
        f.frame for f in frames if f.direction is Direction.RECEIVED
    ]
    assert [r.data for r in records if r.kind is RecordKind.SENT] == [
        f.frame for f in frames if f.direction is Direction.SENT
    ]
    (connect,) = [r for r in records if r.kind is RecordKind.CONNECT]
    assert records[0] == connect and connect.conn == 1
    assert msgspec.json.decode(connect.data)["url"].startswith("wss://stream.binance.com:9443/")
    rest = [msgspec.msgpack.decode(r.data, type=RestExchange) for r in records
            if r.kind is RecordKind.REST]
    bodies = [f.frame for f in read_recording(http)]
    assert [x.body for x in rest] == bodies and len(rest) == 4
    assert rest[0].target == "/api/v3/depth?symbol=NKNUSDT&limit=1000" and rest[0].status == 200
    # merged in recorded time order: the first snapshot came between the first two diffs
    assert [r.wall_ns for r in records] == sorted(r.wall_ns for r in records)
    kinds = [r.kind for r in records]
    assert kinds[:4] == [RecordKind.CONNECT, RecordKind.RECEIVED, RecordKind.REST,
                         RecordKind.RECEIVED]
