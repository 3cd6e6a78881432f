"""tickloop's recording format: typed records in zstd-compressed segment files, with an index.

A recording is a directory::

    OUT/index.json          what the recording holds: venue, URLs, segments and their time ranges
    OUT/seg-00000.tlr.zst   records, zstd-compressed, in the order they happened
    OUT/seg-00001.tlr.zst   the next segment (a new one is started by size or by time)

Each record is a fixed 24-byte little-endian header followed by its payload::

    kind u8 | reserved u8 | conn u16 | mono_ns i64 | wall_ns i64 | length u32 | payload

``mono_ns`` is the monotonic clock (``time.monotonic_ns``) and ``wall_ns`` the wall clock
(``time.time_ns``) when the recorder saw the record; ``conn`` numbers the physical WebSocket
connections of the recording (1, 2, ... in the order they were opened: a reconnect is a new
number; 0 for records of no connection). Payloads by kind (:class:`RecordKind`): the raw
frame for ``RECEIVED`` and ``SENT`` (the exact bytes, never re-encoded); JSON for ``CONNECT``
(``{"url"}``), ``DISCONNECT`` (``{"reason", "limit", "by_client"}``; ``by_client``: the
session itself closed it) and ``STATUS`` (the status event as
tickloop's tagged JSON); msgpack for ``REST`` (:class:`RestExchange`: the request, the
answer's status, headers and body, and when it was sent).

A segment is written in compressed blocks as the recording goes, so a recording cut short (a
crash, SIGKILL) is readable up to its last flushed block; ``index.json`` is rewritten, atomically,
when a segment is finished and when the recording is closed (``complete: true``).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, NamedTuple

import msgspec

__all__ = [
    "FORMAT",
    "HEADER",
    "INDEX",
    "VERSION",
    "Record",
    "RecordKind",
    "RestExchange",
    "SegmentInfo",
    "segment_name",
]

FORMAT = "tickloop-recording"
VERSION = 1
INDEX = "index.json"

#: kind, reserved, conn, mono_ns, wall_ns, payload length
HEADER = struct.Struct("<BBHqqI")


class RecordKind(IntEnum):
    CONNECT = 1  # a WebSocket connection was opened (JSON: url)
    RECEIVED = 2  # a whole message received on ``conn`` (raw bytes)
    SENT = 3  # a message the client sent on ``conn`` (raw bytes)
    DISCONNECT = 4  # the connection ``conn`` ended (JSON: reason)
    REST = 5  # one REST request and its answer (msgpack RestExchange)
    STATUS = 6  # a status event of the stream client (Connected, Reconnected, Gap, ...)


class Record(NamedTuple):
    kind: RecordKind
    conn: int
    mono_ns: int
    wall_ns: int
    data: bytes


class RestExchange(msgspec.Struct, frozen=True, array_like=True):
    """One REST exchange: ``target`` is the path and query exactly as sent (``/api/v3/depth?
    symbol=BTCUSDT&limit=1000``); headers are the answer's only (a request's may carry keys)."""

    method: str
    target: str
    status: int
    body: bytes
    headers: dict[str, str]
    sent_mono_ns: int
    sent_wall_ns: int


class SegmentInfo(msgspec.Struct, frozen=True):
    file: str
    records: int
    raw_bytes: int  # uncompressed bytes of the records
    compressed_bytes: int
    first_mono_ns: int
    last_mono_ns: int
    first_wall_ns: int
    last_wall_ns: int
    counts: dict[str, int]  # records per kind name


class Index(msgspec.Struct):
    format: str
    version: int
    meta: dict[str, Any]
    segments: list[SegmentInfo]
    complete: bool = False


def segment_name(number: int) -> str:
    return f"seg-{number:05d}.tlr.zst"
