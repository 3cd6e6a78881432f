"""The event bus: one pub/sub for everything in the process (and, over Redis Streams, beyond it).

See :mod:`tickloop.bus.events` for the envelope, the event types and topic patterns.
"""

from .events import (
    Event,
    EventType,
    event_type_of,
    payload_class,
    register_event_type,
    topic_matcher,
)

__all__ = [
    "Event",
    "EventType",
    "event_type_of",
    "payload_class",
    "register_event_type",
    "topic_matcher",
]
