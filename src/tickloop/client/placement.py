"""Shard placement: which WebSocket connection carries each upstream subscription.

A venue bounds how many streams one connection may carry
(``Codec.max_streams_per_connection``); beyond it the streaming client opens another
connection. :class:`Placement` is the map from each upstream
:class:`~tickloop.venues.base.Subscription` to its :class:`~tickloop.client.session.WsSession`,
and the rule for a new one: private streams go together on the connection that is already
logged in; a public stream goes to the first usable connection with room (counting what is
about to be added), else to a new connection. A failed or closed connection is never chosen.
Connections are made by the owner's factory and kept in :attr:`Placement.sessions`, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..venues.base import Subscription
from .session import SessionState, WsSession

__all__ = ["Placement", "usable"]


def usable(session: WsSession) -> bool:
    """Whether ``session`` may carry new subscriptions (not failed, not closed)."""
    return session.state not in (SessionState.FAILED, SessionState.CLOSED)


class Placement(dict[Subscription, WsSession]):
    """Subscription -> the connection carrying it, and where new ones go (module docstring)."""

    def __init__(self, limit: int, new_session: Callable[[int], WsSession]) -> None:
        super().__init__()
        #: Most streams one connection carries (the codec's ``max_streams_per_connection``).
        self.limit = limit
        #: Every connection made, in order (a failed one stays listed: it is counted in stats).
        self.sessions: list[WsSession] = []
        self._new_session = new_session

    def plan(self, subs: Iterable[Subscription]) -> dict[WsSession, list[Subscription]]:
        """Place each of ``subs``; returns what each connection has to add. A subscription still
        carried (left and joined again quickly) stays where it is, with nothing to add."""
        planned: dict[WsSession, list[Subscription]] = {}
        for sub in subs:
            session = self.get(sub)
            if session is not None:
                planned.setdefault(session, [])
                continue
            session = self.place(sub, planned)
            self[sub] = session
            planned.setdefault(session, []).append(sub)
        return planned

    def place(
        self, sub: Subscription, planned: dict[WsSession, list[Subscription]] | None = None
    ) -> WsSession:
        """The connection for ``sub``: for a private stream the one carrying private streams,
        else the first with room (counting what ``planned`` is about to add), else a new one."""
        planned = planned if planned is not None else {}
        if sub.channel.private:
            for session in self.sessions:
                carried = [*session.subscriptions, *planned.get(session, ())]
                if any(s.channel.private for s in carried) and usable(session):
                    return session
        for session in self.sessions:
            load = len(session.subscriptions) + len(planned.get(session, ()))
            if load < self.limit and usable(session):
                return session
        session = self._new_session(len(self.sessions))
        self.sessions.append(session)
        return session

    def by_session(self, subs: Iterable[Subscription]) -> dict[WsSession, list[Subscription]]:
        """Take ``subs`` off their connections; returns what each connection has to remove."""
        out: dict[WsSession, list[Subscription]] = {}
        for sub in subs:
            session = self.pop(sub, None)
            if session is not None:
                out.setdefault(session, []).append(sub)
        return out
