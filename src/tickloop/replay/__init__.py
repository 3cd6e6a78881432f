"""Replay of recorded venue sessions: a loopback server that plays them back as the venue did."""

from __future__ import annotations

from .server import RecordedSession, ReplayServer

__all__ = ["RecordedSession", "ReplayServer"]
