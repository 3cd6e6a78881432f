"""The recording writer: records in, compressed segment files and their index out.

Synchronous and cheap on purpose: :meth:`RecordWriter.write` packs a 24-byte header and appends
it and the payload to a buffer; only when the buffer holds ``flush_bytes`` is it compressed (one
zstd block) and written, so the live path pays a ``struct.pack`` and a copy per message and the
compression is amortised over hundreds of messages. A segment is finished, and the next begun,
when it holds ``max_segment_bytes`` of records or spans ``max_segment_seconds``; the index is
rewritten (to a temporary file, then renamed) each time, and at :meth:`close`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

import msgspec
import zstandard

from ..exceptions import ConfigError
from .format import FORMAT, HEADER, INDEX, VERSION, Index, RecordKind, SegmentInfo, segment_name

__all__ = ["RecordWriter", "check_out"]

_pack = HEADER.pack
_HEADER_SIZE = HEADER.size
_names = {int(kind): kind.name.lower() for kind in RecordKind}
_RECEIVED = RecordKind.RECEIVED


def check_out(out: str | Path) -> Path:
    """``out`` as a Path if a recording can be written there (it does not exist, or is an empty
    directory); else a ConfigError naming it."""
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"{path} already exists and is not an empty directory", field="out")
    return path


class RecordWriter:
    """Writes one recording directory (see :mod:`tickloop.record.format`).

    ``out`` must not exist yet, or be an empty directory. ``meta`` goes into the index as is
    (venue, URLs, what was subscribed). Not thread-safe: use it from one thread (the loop's).
    """

    def __init__(
        self,
        out: str | Path,
        *,
        meta: dict[str, Any] | None = None,
        max_segment_bytes: int = 256 * 1024 * 1024,
        max_segment_seconds: float = 3600.0,
        level: int = 3,
        flush_bytes: int = 256 * 1024,
    ) -> None:
        if max_segment_bytes < 1:
            raise ConfigError("max_segment_bytes must be >= 1", field="max_segment_bytes")
        if not max_segment_seconds > 0:
            raise ConfigError("max_segment_seconds must be > 0", field="max_segment_seconds")
        if flush_bytes < 1:
            raise ConfigError("flush_bytes must be >= 1", field="flush_bytes")
        self.path = check_out(out)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {self.path}: {exc.strerror}", field="out") from None
        self.max_segment_bytes = max_segment_bytes
        self.max_segment_ns = int(max_segment_seconds * 1e9)
        self.flush_bytes = flush_bytes
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._index = Index(FORMAT, VERSION, dict(meta or {}), [])
        self._closed = False
        #: Records offered after close (not written).
        self.late = 0
        self._done_records = 0  # of finished segments
        self._done_bytes = 0
        self._fh: IO[bytes] | None = None
        self._cobj: Any = None
        self._buffer = bytearray()
        self._open_segment()
        self._write_index()  # a recording cut short is recognisable as one from the start

    def __repr__(self) -> str:
        return f"<RecordWriter {self.path} records={self.records}>"

    @property
    def meta(self) -> dict[str, Any]:
        return self._index.meta

    @property
    def records(self) -> int:
        """Records written so far, over every segment."""
        return self._done_records + self._seg_records

    @property
    def raw_bytes(self) -> int:
        """Uncompressed bytes of the records written so far."""
        return self._done_bytes + self._seg_bytes

    @property
    def segments(self) -> int:
        """Segments begun so far (the current one included)."""
        return len(self._index.segments) + (self._fh is not None)

    @property
    def compressed_bytes(self) -> int:
        done = sum(s.compressed_bytes for s in self._index.segments)
        return done + (self._fh.tell() if self._fh is not None else 0)

    def _open_segment(self) -> None:
        name = segment_name(len(self._index.segments))
        self._seg_name = name
        self._fh = open(self.path / name, "wb")  # noqa: SIM115 (closed in _finish_segment)
        self._cobj = self._compressor.compressobj()
        self._seg_records = 0
        self._seg_bytes = 0
        self._seg_first_mono = self._seg_first_wall = 0
        self._seg_last_mono = self._seg_last_wall = 0
        self._seg_counts = [0] * (max(RecordKind) + 1)  # by kind

    def write(
        self,
        kind: RecordKind,
        conn: int,
        data: bytes | bytearray | memoryview,
        mono_ns: int | None = None,
        wall_ns: int | None = None,
    ) -> None:
        """Append one record; times default to now. After :meth:`close` a record is not written
        but counted in :attr:`late` (a connection may end after its recording did: the live
        path must not fail for it)."""
        if mono_ns is None:
            mono_ns = time.monotonic_ns()
        if wall_ns is None:
            wall_ns = time.time_ns()
        self._append(kind, conn, data, mono_ns, wall_ns)

    def received(self, conn: int, data: bytes | memoryview, wall_ns: int) -> None:
        """Append a RECEIVED record stamped now (monotonic) and ``wall_ns``: the live path's
        one call per message, kept short."""
        self._append(_RECEIVED, conn, data, time.monotonic_ns(), wall_ns)

    def _append(
        self,
        kind: int,
        conn: int,
        data: bytes | bytearray | memoryview,
        mono_ns: int,
        wall_ns: int,
    ) -> None:
        if self._closed:
            self.late += 1
            return
        if self._seg_records:
            if (
                self._seg_bytes >= self.max_segment_bytes
                or mono_ns - self._seg_first_mono >= self.max_segment_ns
            ):
                self._rotate()
                self._seg_first_mono, self._seg_first_wall = mono_ns, wall_ns
        else:
            self._seg_first_mono, self._seg_first_wall = mono_ns, wall_ns
        size = len(data)
        buffer = self._buffer
        buffer += _pack(kind, 0, conn, mono_ns, wall_ns, size)
        buffer += data
        self._seg_records += 1
        self._seg_bytes += _HEADER_SIZE + size
        self._seg_last_mono = mono_ns
        self._seg_last_wall = wall_ns
        self._seg_counts[kind] += 1
        if len(buffer) >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Compress what is buffered as one zstd block and write it (readable from then on)."""
        if self._fh is None:
            return
        if self._buffer:
            chunk = self._cobj.compress(bytes(self._buffer))
            self._buffer.clear()
            chunk += self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            self._fh.write(chunk)
        self._fh.flush()

    def _rotate(self) -> None:
        self._finish_segment()
        self._write_index()
        self._open_segment()

    def _finish_segment(self) -> None:
        fh = self._fh
        if fh is None:
            return
        self.flush()
        fh.write(self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
        compressed = fh.tell()
        fh.close()
        self._fh = None
        counts = {_names[k]: n for k, n in enumerate(self._seg_counts) if n}
        self._index.segments.append(
            SegmentInfo(
                file=self._seg_name,
                records=self._seg_records,
                raw_bytes=self._seg_bytes,
                compressed_bytes=compressed,
                first_mono_ns=self._seg_first_mono,
                last_mono_ns=self._seg_last_mono,
                first_wall_ns=self._seg_first_wall,
                last_wall_ns=self._seg_last_wall,
                counts=dict(sorted(counts.items())),
            )
        )
        self._done_records += self._seg_records
        self._done_bytes += self._seg_bytes
        self._seg_records = self._seg_bytes = 0

    def _write_index(self) -> None:
        tmp = self.path / (INDEX + ".tmp")
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(self._index), indent=2) + b"\n")
        os.replace(tmp, self.path / INDEX)

    def close(self) -> None:
        """Finish the last segment and write the complete index. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finish_segment()
        self._index.complete = True
        self._write_index()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
