"""The event bus: one pub/sub for everything in the process (and, over Redis Streams, beyond it).

.. code-block:: python

    from tickloop.bus import Bus

    async with Bus() as bus:                       # Bus("redis://127.0.0.1:6379/0"): Redis
        sub = bus.subscribe("trade.*", maxsize=1000, policy="drop_newest")
        event = bus.publish("trade.sim.BTC-USD", trade)   # a plain call; returns the Event
        async for ev in sub:                       # ev.topic, ev.id, ev.payload
            ...

See :mod:`tickloop.bus.events` (envelope, types, topic patterns), :mod:`tickloop.bus.base` (the
interface), :mod:`tickloop.bus.subscription` (policies, consumption, the backend seam),
:mod:`tickloop.bus.local` (the in-process backend) and :mod:`tickloop.bus.feed` (StreamClient ->
bus), and docs/bus.md.
"""

from .base import DEFAULT_MAXSIZE, Bus, default_source
from .events import (
    Event,
    EventType,
    event_type_of,
    payload_class,
    register_event_type,
    topic_matcher,
)
from .feed import STATUS_KINDS, FeedLink, status_topic
from .local import LocalBus
from .subscription import Handler, Inbox, Policy, Subscription

__all__ = [
    "DEFAULT_MAXSIZE",
    "STATUS_KINDS",
    "Bus",
    "Event",
    "EventType",
    "FeedLink",
    "Handler",
    "Inbox",
    "LocalBus",
    "Policy",
    "Subscription",
    "default_source",
    "event_type_of",
    "payload_class",
    "register_event_type",
    "status_topic",
    "topic_matcher",
]
