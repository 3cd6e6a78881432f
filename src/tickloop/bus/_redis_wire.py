"""The Redis backend's sans-I/O core: entry encoding, the topic -> stream layout, dedupe.

Nothing here touches a socket or a clock; :mod:`tickloop.bus.redis` does the I/O around it.

* **Encoding.** One stream entry holds one field, ``e``, whose value is the event's envelope as
  one msgpack array ``[type, topic, id, source, ts, mono, payload]`` (msgspec). The payload is
  decoded only after the topic matched: built-in payloads by their ``model`` tag through one
  decoder over every tickloop model, a user's registered Struct through a decoder made once for
  its class (:func:`tickloop.bus.payload_class`).
* **Layout.** A topic lives in the stream named after its first dot-separated segment
  (``trade.sim.BTC-USD`` -> ``tickloop:trade``), so a reader's XREAD/XREADGROUP names a small,
  known set of keys. A pattern whose first segment is literal (``trade.*``) reads one stream; a
  pattern with a wildcard in its first segment (``*``, ``tr*``) reads every registered stream its
  literal prefix can reach. The cost: a reader receives every entry of its streams and drops
  the topics its pattern does not match (a subscriber to ``trade.sim.BTC-USD`` reads all trades).
* **Dedupe.** ``(source, id)`` names one event everywhere. :class:`DedupeWindow` remembers the
  last ``size`` handled keys and which keys are in flight, so an entry seen twice (a publisher
  retry after a lost reply, a re-read pending entry, a reclaimed one) reaches handlers once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Union

import msgspec

from .. import models
from ..exceptions import ConfigError, ProtocolError
from .events import _TYPE_OF, Event, payload_class, topic_matcher

__all__ = [
    "FIELD",
    "DedupeWindow",
    "EntryCodec",
    "StreamLayout",
    "WireEntry",
]

#: The one field of every stream entry.
FIELD = b"e"


class WireEntry(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """An envelope as stored; the payload stays raw until the topic matched."""

    type: str
    topic: str
    id: int
    source: str
    ts: int
    mono: int
    payload: msgspec.Raw


def _model_classes() -> tuple[tuple[type[Any], ...], dict[str, type[Any]]]:
    """(the tagged models one msgspec decoder can read, {tag: model} for those it cannot)."""
    typed = []
    loose: dict[str, type[Any]] = {}
    for name in models.__all__:
        obj = getattr(models, name)
        if not (isinstance(obj, type) and issubclass(obj, msgspec.Struct)):
            continue
        tag = obj.__struct_config__.tag
        if tag is None:
            continue
        try:
            msgspec.msgpack.Decoder(obj)
        except TypeError:
            # A field msgspec cannot decode by type (Signal.value: Decimal | float | str).
            loose[str(tag)] = obj
        else:
            typed.append(obj)
    return tuple(typed), loose


_MODELS, _LOOSE = _model_classes()
_LOOSE_TYPES = frozenset(_TYPE_OF[cls] for cls in _LOOSE.values() if cls in _TYPE_OF)


class EntryCodec:
    """Encodes events to entry values and back; one instance per bus (decoders are reused)."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._wire = msgspec.msgpack.Decoder(WireEntry)
        self._models: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
            Union[_MODELS]  # noqa: UP007
        )
        self._user: dict[type[msgspec.Struct], msgspec.msgpack.Decoder[Any]] = {}
        self._untyped = msgspec.msgpack.Decoder()

    def encode(self, event: Event) -> bytes:
        return self._encoder.encode(
            (event.type, event.topic, event.id, event.source, event.ts, event.mono, event.payload)
        )

    def entry(self, value: bytes) -> WireEntry:
        """The envelope of one entry value, payload not decoded; ProtocolError if malformed."""
        try:
            return self._wire.decode(value)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"undecodable bus entry: {exc}") from exc

    def _loose(self, raw: msgspec.Raw) -> Any:
        # Built from the untyped map: a field of several str-like types comes back as what
        # msgpack holds (a Decimal as its string). Other models of the same event type still
        # go through the typed decoder.
        fields = self._untyped.decode(raw)
        if not isinstance(fields, dict):
            raise ValueError("payload is not a map")
        cls = _LOOSE.get(fields.pop("model", None))
        if cls is None:
            return self._models.decode(raw)
        return cls(**fields)

    def event(self, wire: WireEntry) -> Event:
        """The event of an envelope; ProtocolError for a payload this process cannot decode
        (an unregistered user type, or one registered with another shape)."""
        cls = payload_class(wire.type)
        try:
            if cls is None and wire.type in _LOOSE_TYPES:
                payload = self._loose(wire.payload)
            elif cls is None:
                payload = self._models.decode(wire.payload)
            else:
                decoder = self._user.get(cls)
                if decoder is None:
                    decoder = self._user[cls] = msgspec.msgpack.Decoder(cls)
                payload = decoder.decode(wire.payload)
        except (msgspec.DecodeError, TypeError, ValueError) as exc:
            raise ProtocolError(
                f"bus entry {wire.source}#{wire.id} on {wire.topic!r}: payload of type "
                f"{wire.type!r} cannot be decoded here ({exc}); a user type must be registered "
                "with tickloop.bus.register_event_type in every process"
            ) from exc
        return Event(
            type=wire.type,
            topic=wire.topic,
            id=wire.id,
            source=wire.source,
            ts=wire.ts,
            mono=wire.mono,
            payload=payload,
        )


_WILD = frozenset("*?")


class StreamLayout:
    """Maps topics to stream keys and patterns to the keys they can match (module doc)."""

    def __init__(self, prefix: str = "tickloop") -> None:
        if not prefix or any(c in prefix for c in " *?"):
            raise ConfigError(f"stream prefix {prefix!r}: use a non-empty name without spaces "
                              "or wildcards", field="prefix")
        self.prefix = prefix
        self._head = prefix.encode() + b":"
        #: the set of every stream key the publishers wrote to (for wildcard patterns)
        self.registry = self._head + b"_streams"
        #: dead-letter streams start so; they are never registered for discovery
        self.dead_prefix = self._head + b"_dead:"
        self._keys: dict[str, bytes] = {}

    def key(self, topic: str) -> bytes:
        """The stream key of ``topic``."""
        key = self._keys.get(topic)
        if key is None:
            if not topic:
                raise ConfigError("a topic cannot be empty", field="topic")
            if len(self._keys) >= 65_536:  # topics are few in practice; keep the cache bounded
                self._keys.clear()
            key = self._keys[topic] = self._head + topic.split(".", 1)[0].encode()
        return key

    def dead_key(self, group: bytes) -> bytes:
        """The dead-letter stream of a consumer group (never in the registry)."""
        return self.dead_prefix + group

    def segment(self, key: bytes) -> str:
        return key[len(self._head) :].decode()

    def fixed_key(self, pattern: str) -> bytes | None:
        """The one stream key ``pattern`` can match when its first segment is literal; None
        when it has a wildcard there (then :meth:`candidates` picks among registered keys)."""
        head = pattern.split(".", 1)[0]
        if _WILD.intersection(head):
            return None
        return self._head + head.encode()

    def candidates(self, pattern: str, keys: Iterable[bytes]) -> list[bytes]:
        """The registered ``keys`` whose topics ``pattern`` could match, sorted."""
        fixed = self.fixed_key(pattern)
        if fixed is not None:
            return [fixed]
        literal = pattern
        for i, ch in enumerate(pattern):
            if ch in _WILD:
                literal = pattern[:i]
                break
        # A topic in stream S starts with "S." or is "S": the pattern can match it only when
        # its literal prefix agrees with that start.
        out = []
        for key in keys:
            if not key.startswith(self._head) or key == self.registry:
                continue
            segment = self.segment(key)
            if (segment + ".").startswith(literal) or literal.startswith(segment + "."):
                out.append(key)
        return sorted(set(out))

    @staticmethod
    def matcher(pattern: str) -> Callable[[str], bool]:
        return topic_matcher(pattern)


Key = tuple[str, int]


class DedupeWindow:
    """The last ``size`` handled event keys, plus the keys now in flight.

    :meth:`arrive` says what to do with an entry: deliver it (first sight), skip it while a copy
    is in flight (its entry id is acknowledged with that copy's), or skip it because it was
    handled (acknowledge it now). :meth:`done` closes a key and returns every entry id that
    carried it.
    """

    DELIVER = 0
    IN_FLIGHT = 1
    HANDLED = 2

    def __init__(self, size: int = 100_000) -> None:
        if size < 1:
            raise ConfigError("dedupe_window must be >= 1", field="dedupe_window")
        self.size = size
        self._handled: set[Key] = set()
        self._order: deque[Key] = deque()
        self._inflight: dict[Key, list[Any]] = {}
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._handled)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def arrive(self, key: Key, ref: Any) -> int:
        if key in self._handled:
            self.duplicates += 1
            return self.HANDLED
        refs = self._inflight.get(key)
        if refs is not None:
            self.duplicates += 1
            refs.append(ref)
            return self.IN_FLIGHT
        self._inflight[key] = [ref]
        return self.DELIVER

    def done(self, key: Key) -> list[Any]:
        """Mark ``key`` handled; the refs (entry ids) of every copy of it that arrived."""
        refs = self._inflight.pop(key, None)
        handled = self._handled
        n = len(handled)
        handled.add(key)
        if len(handled) != n:
            order = self._order
            order.append(key)
            if n >= self.size:
                handled.discard(order.popleft())
        return refs if refs is not None else []

    def forget(self, key: Key) -> list[Any]:
        """Drop an in-flight key without marking it handled (its delivery was abandoned)."""
        return self._inflight.pop(key, [])
