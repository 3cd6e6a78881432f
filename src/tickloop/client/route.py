"""The per-message step of a WebSocket session: decode one message, hand each event to its sink.

A transport calls :meth:`FrameRouter.on_frame` once per whole message it receives (the
``on_frame`` of :class:`~tickloop.client.transport.FrameSink`). The message is decoded by the
connection's codec and each event it yields is dispatched synchronously by its exact type
through one dict lookup (``dispatch``: data sinks of the owner and the session's own control
handlers; an event of a type without a sink is counted and dropped). A message the codec cannot
decode (a :class:`~tickloop.exceptions.ProtocolError`, or a bug in the codec) goes to
``malformed`` with its size and is skipped; a sink that raises goes to ``sink_failed`` with the
event, and the message's other events are still dispatched. Neither ends the connection.

This is the one step every market-data message of every venue takes, so it is kept apart, in
plain typed Python, and compiled with mypyc where the install can (``tickloop._native``): the
compiled method is called by the transport without an interpreter frame of its own. The
session (:class:`~tickloop.client.session.WsSession`) builds one router per connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._native import native_module

__all__ = ["Decode", "FrameRouter"]

#: A codec's ``decode``: one message and its receive time (ns) -> the events it holds (a list,
#: as ``Codec.decode`` says; any other iterable is taken too).
Decode = Callable[[Any, int], Any]


class FrameRouter:
    """Decodes each message with ``decode`` and calls ``dispatch[type(event)](event)`` for each
    event (module docstring); ``events`` counts the events decoded."""

    def __init__(
        self,
        decode: Decode,
        dispatch: dict[type, Callable[[Any], None]],
        malformed: Callable[[Exception, int], None],
        sink_failed: Callable[[Exception, Any], None],
    ) -> None:
        self.decode = decode
        # A codec's bound ``decode`` is called as its function with the codec: the call then
        # skips making the bound call's arguments anew (about 120 instructions a message).
        func = getattr(decode, "__func__", None)
        owner = getattr(decode, "__self__", None)
        self._func: Callable[[Any, Any, Any], Any] | None = (
            func if callable(func) and owner is not None else None
        )
        self._owner: Any = owner
        #: Read on every event, never copied: sinks added to it later are used at once.
        self.dispatch = dispatch
        self.malformed = malformed
        self.sink_failed = sink_failed
        self.events = 0

    def on_frame(self, data: Any, now_ns: Any) -> None:
        # ``now_ns`` is an ``int``, typed Any so that the compiled method hands it on as it came
        # (no unboxing to a C integer and boxing again per message)
        func = self._func
        try:
            events: Any = (
                func(self._owner, data, now_ns) if func is not None else self.decode(data, now_ns)
            )
            # A list (what Codec.decode returns) is walked by index in the compiled method,
            # about 290 instructions a message less than through an iterator; any other
            # iterable of events is taken as well, made a list first.
            if type(events) is not list:
                events = list(events)
        except Exception as exc:  # ProtocolError, or a codec bug: never fatal to the connection
            self.malformed(exc, len(data))
            return
        self._dispatch(events)

    def _dispatch(self, events: list[Any]) -> None:
        self.events += len(events)
        dispatch = self.dispatch
        for event in events:
            sink = dispatch.get(type(event))
            if sink is not None:
                try:
                    sink(event)
                except Exception as exc:  # a bug in a sink: counted, the other events go on
                    self.sink_failed(exc, event)


# -- compiled copy (see tickloop._native); nothing below is compiled --

#: The pure-Python class, whichever one :data:`FrameRouter` is (tests run both).
PureFrameRouter = FrameRouter
#: True when :class:`FrameRouter` is this module's class compiled by mypyc.
NATIVE = False
_compiled = native_module(__name__, __file__)
if _compiled is not None and not TYPE_CHECKING:
    FrameRouter = _compiled.FrameRouter
    NATIVE = True
