"""The base of the async iterators over a consumer's buffer: ``Stream`` (the streaming
client's ``async for``) and the bus's ``Subscription``.

:data:`Reader` holds the fields their ``__anext__`` reads and, in the compiled build, is the C
type ``tickloop.client._reader_native.Reader``, whose ``__anext__`` takes a buffered event with
no coroutine made (its source says how, and what it hands to the class's ``_anext_slow``: an
empty buffer, a stream not started yet, an ``on_done`` bus backend). In the pure-Python build it
is :class:`PureReader`, and each class's ``__anext__`` is its ``_anext_slow``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._native import native_extension
from .consumers import Consumer, ConsumerStats, Overflow

__all__ = ["NATIVE", "PureReader", "Reader", "bind", "register_inbox"]

_native = native_extension(
    "tickloop.client._reader_native", str(Path(__file__).with_name("_reader_native.c"))
)
#: True when :data:`Reader` is the C type.
NATIVE = _native is not None


class PureReader:
    """The fields :data:`Reader` holds (set by the subclass's ``__init__``)."""

    __slots__ = ("_buffer", "_done_hook", "_inbox", "_low", "_popleft", "_pressure", "_stats")

    _buffer: deque[Any]
    #: the consumer whose buffer this reads
    _inbox: Consumer
    #: whether the consumer has an ``on_done`` (a bus inbox) the C type must look at
    _done_hook: bool
    #: the consumer's low water mark + 1 (a paused consumer is relieved at or below it)
    _low: int
    _popleft: Callable[[], Any]
    #: whether the consumer's policy may pause its source (BACKPRESSURE: never changes)
    _pressure: bool
    _stats: ConsumerStats


if TYPE_CHECKING or _native is None:
    Reader = PureReader
else:
    _native.set_stats_type(ConsumerStats)
    Reader = _native.Reader


def bind(reader: PureReader, consumer: Consumer) -> None:
    """Set ``reader``'s fields from ``consumer`` (in the subclass's ``__init__``)."""
    reader._inbox = consumer
    reader._buffer = consumer._buffer
    reader._stats = consumer.stats
    reader._low = consumer.low_water + 1
    reader._done_hook = hasattr(consumer, "on_done")
    reader._popleft = consumer._buffer.popleft
    reader._pressure = consumer.policy is Overflow.BACKPRESSURE


def register_inbox(inbox_cls: type[Consumer]) -> None:
    """Name the bus's inbox class (a Consumer with an ``on_done`` slot): the C ``__anext__``
    then reads its ``on_done``, and every consumer's ``paused``, in place."""
    if _native is not None:
        _native.set_consumer_types(Consumer, inbox_cls)
