"""Reader for recorded venue sessions in cryptofeed's ``sample_data`` text format.

A ``*.ws.N.0`` file holds one WebSocket session: its first line is ``URL <-> ts`` (the
connection opened), frames the client sent are ``URL <- ts: {json}`` and frames it received are
``ts: {json}``. A ``*.http.N.0`` file holds REST answers as ``URL -> ts: {json body}``. Timestamps
are epoch seconds with a fraction; they are returned as integer nanoseconds, parsed from the
digits (no float rounding). The raw message is returned as the exact bytes that were recorded, so
codecs under test see what the venue sent. Blank lines (some files end with them) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from ..exceptions import ProtocolError

__all__ = ["Direction", "RecordedFrame", "read_recording", "seconds_to_ns"]


class Direction(StrEnum):
    OPEN = "open"  # ``URL <-> ts``: a WebSocket connection was opened (frame is empty)
    SENT = "sent"  # ``URL <- ts: msg``: the client sent ``msg``
    RECEIVED = "received"  # ``ts: msg``: the client received ``msg``
    HTTP = "http"  # ``URL -> ts: body``: a REST answer to a GET of ``URL``


class RecordedFrame(NamedTuple):
    direction: Direction
    url: str  # for RECEIVED, the URL of the connection the frame arrived on
    ts: int  # ns since the epoch
    frame: bytes


def seconds_to_ns(text: str | bytes) -> int:
    """``"1618678132.368463"`` -> nanoseconds, exactly (no float)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9:
        raise ValueError(f"not a timestamp in seconds: {text!r}")
    return int(whole) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


_ARROWS = {b"<->": Direction.OPEN, b"<-": Direction.SENT, b"->": Direction.HTTP}


def _parse_line(line: bytes, url: str, path: Path, lineno: int) -> RecordedFrame:
    where = f"{path.name}:{lineno}"
    try:
        if line[:1].isdigit():
            ts, sep, frame = line.partition(b": ")
            if not sep:
                raise ValueError("no ': ' after the timestamp")
            return RecordedFrame(Direction.RECEIVED, url, seconds_to_ns(ts), frame)
        line_url, _, rest = line.partition(b" ")
        arrow, _, rest = rest.partition(b" ")
        direction = _ARROWS.get(arrow)
        if direction is None:
            raise ValueError(f"unknown arrow {arrow!r}")
        if direction is Direction.OPEN:
            return RecordedFrame(direction, line_url.decode(), seconds_to_ns(rest), b"")
        ts, sep, frame = rest.partition(b": ")
        if not sep:
            raise ValueError("no ': ' after the timestamp")
        return RecordedFrame(direction, line_url.decode(), seconds_to_ns(ts), frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{where}: not a recorded frame ({exc})") from exc


def read_recording(path: str | Path) -> Iterator[RecordedFrame]:
    """Every frame of a recorded session file, in file order.

    Raises :class:`ProtocolError` (naming file and line) for a line that is not in the format.
    """
    path = Path(path)
    url = ""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            record = _parse_line(line, url, path, lineno)
            if record.direction is Direction.OPEN:
                url = record.url
            yield record
