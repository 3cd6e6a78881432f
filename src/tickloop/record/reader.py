"""Reading recordings: tickloop's own (:mod:`tickloop.record.format`) and cryptofeed's
``sample_data`` files (:mod:`tickloop.venues.recorded`), both as one stream of :class:`Record`.

:func:`open_recording` takes a tickloop recording directory, one cryptofeed file, or a list of
cryptofeed files (``*.ws.N.0`` sessions and ``*.http.N.0`` REST answers of one venue). A
cryptofeed recording becomes the same records a tickloop one holds: each ``.ws`` file is one
connection (``CONNECT``, then its ``SENT`` and ``RECEIVED`` frames), each recorded REST answer a
``REST`` record (status 200), all merged in recorded time order; cryptofeed kept only the wall
clock, so it stands for the monotonic one too.

A tickloop recording cut short (no ``complete`` index, or segments the index does not list yet)
is read up to its last whole record; a corrupt one raises :class:`~tickloop.exceptions.ConfigError`
naming the file.
"""

from __future__ import annotations

import abc
import heapq
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import zstandard

from ..exceptions import ConfigError, ProtocolError
from ..venues.recorded import Direction, read_recording
from .format import FORMAT, HEADER, INDEX, Index, Record, RecordKind, RestExchange

__all__ = ["Recording", "open_recording"]

_unpack = HEADER.unpack_from
_HEADER_SIZE = HEADER.size
_KINDS = {int(k): k for k in RecordKind}

#: cryptofeed file-name prefix -> tickloop venue
_CRYPTOFEED_VENUES = {
    "binance": "binance",
    "binance_us": "binance",
    "coinbase": "coinbase",
    "kraken": "kraken",
}


class Recording(abc.ABC):
    """A recording to read (or replay): ``meta`` (venue, URLs, ...) and :meth:`records`."""

    def __init__(self, meta: dict[str, Any], source: str) -> None:
        self.meta = meta
        self.source = source  # "tickloop" or "cryptofeed"

    @property
    def venue(self) -> str:
        return str(self.meta.get("venue", "sim"))

    @abc.abstractmethod
    def records(self) -> Iterator[Record]:
        """The records, in order."""

    def __iter__(self) -> Iterator[Record]:
        return self.records()


class TickloopRecording(Recording):
    def __init__(self, path: Path) -> None:
        index_path = path / INDEX
        try:
            index = msgspec.json.decode(index_path.read_bytes(), type=Index)
        except FileNotFoundError:
            raise ConfigError(
                f"{path} is not a recording (no {INDEX})", field="recording"
            ) from None
        except msgspec.DecodeError as exc:
            raise ConfigError(
                f"{index_path}: not a recording index ({exc})", field="recording"
            ) from None
        if index.format != FORMAT:
            raise ConfigError(f"{index_path}: not a tickloop recording", field="recording")
        super().__init__(index.meta, "tickloop")
        self.path = path
        self.index = index
        listed = [s.file for s in index.segments]
        # Segments begun after the index was last written (a recording cut short) follow.
        extra = sorted(
            p.name for p in path.glob("seg-*.tlr.zst") if p.name not in set(listed)
        )
        self.files = [path / name for name in [*listed, *extra]]

    @property
    def complete(self) -> bool:
        return self.index.complete

    def records(self) -> Iterator[Record]:
        for file in self.files:
            yield from _segment_records(file)


def _segment_records(file: Path) -> Iterator[Record]:
    dobj = zstandard.ZstdDecompressor().decompressobj()
    pending = b""
    kinds = _KINDS
    with file.open("rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            try:
                data = pending + dobj.decompress(chunk)
            except zstandard.ZstdError as exc:
                raise ConfigError(f"{file}: corrupt segment ({exc})", field="recording") from None
            pos = 0
            end = len(data)
            while end - pos >= _HEADER_SIZE:
                kind, _, conn, mono, wall, size = _unpack(data, pos)
                start = pos + _HEADER_SIZE
                if end - start < size:
                    break
                try:
                    record_kind = kinds[kind]
                except KeyError:
                    raise ConfigError(
                        f"{file}: unknown record kind {kind}", field="recording"
                    ) from None
                yield Record(record_kind, conn, mono, wall, data[start : start + size])
                pos = start + size
            pending = data[pos:]


class CryptofeedRecording(Recording):
    def __init__(self, files: Sequence[Path]) -> None:
        ws = sorted(f for f in files if ".ws." in f.name)
        http = sorted(f for f in files if ".http." in f.name)
        if not ws and not http:
            raise ConfigError(
                "no cryptofeed recording among the files (names like BINANCE.ws.1.0)",
                field="recording",
            )
        prefixes = {f.name.partition(".")[0].lower() for f in [*ws, *http]}
        venues = {_CRYPTOFEED_VENUES.get(p) for p in prefixes}
        if None in venues or len(venues) != 1:
            raise ConfigError(
                f"cannot replay {', '.join(sorted(prefixes))}: one venue of "
                + ", ".join(sorted(_CRYPTOFEED_VENUES)),
                field="recording",
            )
        (venue,) = venues
        url = ""
        for f in ws:
            for rec in read_recording(f):
                url = rec.url
                break
            if url:
                break
        rest_url = ""
        for f in http:
            for rec in read_recording(f):
                parts = urlsplit(rec.url)
                rest_url = f"{parts.scheme}://{parts.netloc}"
                break
        meta = {
            "venue": venue,
            "url": url.split("?", 1)[0],
            "rest_url": rest_url,
            "files": [f.name for f in [*ws, *http]],
            "source": "cryptofeed",
        }
        super().__init__(meta, "cryptofeed")
        self.ws_files = ws
        self.http_files = http

    def records(self) -> Iterator[Record]:
        streams: list[Iterable[Record]] = [
            _cryptofeed_ws(f, conn) for conn, f in enumerate(self.ws_files, 1)
        ]
        streams += [_cryptofeed_http(f) for f in self.http_files]
        yield from heapq.merge(*streams, key=lambda r: r.wall_ns)


def _cryptofeed_ws(path: Path, conn: int) -> Iterator[Record]:
    for rec in _checked(path):
        ts = rec.ts
        if rec.direction is Direction.OPEN:
            data = msgspec.json.encode({"url": rec.url})
            yield Record(RecordKind.CONNECT, conn, ts, ts, data)
        elif rec.direction is Direction.SENT:
            yield Record(RecordKind.SENT, conn, ts, ts, rec.frame)
        elif rec.direction is Direction.RECEIVED:
            yield Record(RecordKind.RECEIVED, conn, ts, ts, rec.frame)


def _cryptofeed_http(path: Path) -> Iterator[Record]:
    for rec in _checked(path):
        if rec.direction is not Direction.HTTP:
            continue
        parts = urlsplit(rec.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        exchange = RestExchange("GET", target, 200, rec.frame, {}, rec.ts, rec.ts)
        yield Record(RecordKind.REST, 0, rec.ts, rec.ts, msgspec.msgpack.encode(exchange))


def _checked(path: Path) -> Iterator[Any]:
    try:
        yield from read_recording(path)
    except ProtocolError as exc:
        raise ConfigError(str(exc.message), field="recording") from None


def open_recording(source: str | Path | Sequence[str | Path]) -> Recording:
    """A tickloop recording directory, or cryptofeed file(s) of one venue (module docstring)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            if (path / INDEX).exists() or any(path.glob("seg-*.tlr.zst")):
                return TickloopRecording(path)
            raise ConfigError(f"{path} is not a recording (no {INDEX})", field="recording")
        if not path.exists():
            raise ConfigError(f"{path} does not exist", field="recording")
        return CryptofeedRecording([path])
    paths = [Path(p) for p in source]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"{missing[0]} does not exist", field="recording")
    return CryptofeedRecording(paths)
