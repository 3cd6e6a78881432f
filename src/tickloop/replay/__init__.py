"""Replay of recordings.

* :class:`Replay`: the replay transport. A recording (tickloop's or cryptofeed's) played into
  the live code path with no socket: ``StreamClient(..., transport=replay)`` and its REST
  client's ``http.transport = replay.http`` (``replay.client()`` wires both).
* :class:`ReplayServer`: a loopback WebSocket + REST server playing cryptofeed recordings back
  over real sockets, for end-to-end tests of the socket path itself.
"""

from __future__ import annotations

from .server import RecordedSession, ReplayServer
from .transport import Replay, ReplayConnection, ReplayStats

__all__ = ["RecordedSession", "Replay", "ReplayConnection", "ReplayServer", "ReplayStats"]
