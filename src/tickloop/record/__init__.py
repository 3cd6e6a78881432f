"""Recording what the live path sees, in tickloop's own format (:mod:`.format`).

.. code-block:: python

    from tickloop.record import Recorder, record, open_recording

    await record("rec", seconds=60, venue="sim", symbols=["BTC-USD"])   # tickloop record
    for r in open_recording("rec").records():
        r.kind, r.conn, r.mono_ns, r.wall_ns, r.data

Replaying a recording through the live code path: :mod:`tickloop.replay`.
"""

from __future__ import annotations

from .format import Record, RecordKind, RestExchange
from .reader import Recording, open_recording
from .recorder import CHANNELS, Recorder, RecordStats, record
from .writer import RecordWriter

__all__ = [
    "CHANNELS",
    "Record",
    "RecordKind",
    "RecordStats",
    "RecordWriter",
    "Recorder",
    "Recording",
    "RestExchange",
    "open_recording",
    "record",
]
