"""A request for a turn of the event loop, from consumers that wait to transports that deliver.

A transport hands a session every frame of one socket read in a single event-loop callback: at
full speed that is hundreds or thousands of frames during which no task runs, so an ``async for``
reader woken by the first of them only runs after the last. Conflating readers (books, tickers,
candles: only the latest value matters) would rather run sooner and skip the values in between.

:data:`TURN` is the one flag between the two sides, for the event loop's thread: a consumer that
wakes a waiting reader sets ``TURN.wanted``; a transport checks it after each message it
delivers and, when it is set, clears it and delivers the rest of that read on a later loop
iteration (:class:`~tickloop.client.transport.PicowsTransport` copies them aside and pauses
reading until they are delivered), so the reader gets its turn in between. A transport that
ignores the flag is still correct, only less fair to such readers.
"""

from __future__ import annotations

__all__ = ["TURN", "Turn"]


class Turn:
    """``wanted``: a waiting reader was woken and should run before the next message."""

    __slots__ = ("wanted",)

    def __init__(self) -> None:
        self.wanted = False

    def __repr__(self) -> str:
        return f"Turn(wanted={self.wanted})"


#: The process's flag (read and written on the event loop's thread only).
TURN = Turn()
