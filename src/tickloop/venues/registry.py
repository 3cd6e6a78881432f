"""The venue registry: a venue's name -> its :class:`Venue` (stream codec, REST codec, signer).

A venue is found, in this order, among

1. venues registered in code with :func:`register` (a program's own venue, or a replacement);
2. the built-in venues (``sim``, ``binance``, ``coinbase``, ``kraken``), each declared in its
   module as ``PLUGIN`` and named in :data:`BUILTIN` by the same ``module:attribute`` path an
   entry point uses, so they are loaded by the same code as plug-ins;
3. installed plug-ins: entry points of group :data:`ENTRY_POINT_GROUP` (``tickloop.venues``)
   whose name is the venue's name and whose value is a ``module:attribute`` holding a
   :class:`Venue`. An entry point named like a built-in venue is never consulted.

A venue is imported on first use, so a program that only talks to the sim never imports the
others. Loaded venues are kept; a name found nowhere is looked up again next time (a plug-in
installed meanwhile is found). Every failure is one typed line: :class:`UnknownVenue` for a
name found nowhere, :class:`VenueLoadError` naming the venue and the entry point for a plug-in
that cannot be imported or is not a valid :class:`Venue`.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ..exceptions import ConfigError, UnknownVenue, VenueLoadError
from .base import Authorizer, Codec, PublicRest

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Venue",
    "authorizer",
    "get",
    "names",
    "register",
    "rest_codec",
    "stream_codec",
    "unregister",
]

#: The entry point group plug-in packages declare their venues in.
ENTRY_POINT_GROUP = "tickloop.venues"

#: The built-in venues, as ``module:attribute`` paths to their :class:`Venue`.
BUILTIN: dict[str, str] = {
    "sim": "tickloop.venues.sim:PLUGIN",
    "binance": "tickloop.venues.binance:PLUGIN",
    "coinbase": "tickloop.venues.coinbase:PLUGIN",
    "kraken": "tickloop.venues.kraken:PLUGIN",
}

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class Venue:
    """One venue's implementation of tickloop's venue contract.

    ``name``: lower case letters, digits, ``-`` and ``_`` (what ``StreamClient(name)`` and
    ``AsyncClient(name)`` take). ``stream``: its :class:`~tickloop.venues.base.Codec` subclass
    (None: no streams). ``rest``: its :class:`~tickloop.venues.base.PublicRest` subclass
    (None: no REST), which may implement capability contracts such as ``TradingRest``.
    ``authorizer``: its :class:`~tickloop.venues.base.Authorizer` subclass (None: no private
    calls). Each class's ``venue`` attribute must be ``name``. Checked on construction: a
    ConfigError names the field.
    """

    name: str
    stream: type[Codec] | None = None
    rest: type[PublicRest] | None = None
    authorizer: type[Authorizer] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"venue name {self.name!r} must be 1-32 lower case letters, digits, '-' or '_', "
                "starting with a letter",
                field="name",
            )
        if self.stream is None and self.rest is None:
            raise ConfigError(
                f"venue {self.name!r} has neither a stream codec nor a REST codec", field="stream"
            )
        for field, cls, base in (
            ("stream", self.stream, Codec),
            ("rest", self.rest, PublicRest),
            ("authorizer", self.authorizer, Authorizer),
        ):
            if cls is None:
                continue
            where = f"venue {self.name!r}: {field}"
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise ConfigError(
                    f"{where} must be a subclass of tickloop.venues.{base.__name__}, "
                    f"got {cls!r}",
                    field=field,
                )
            if inspect.isabstract(cls):
                missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
                raise ConfigError(
                    f"{where} {cls.__name__} does not implement {missing}", field=field
                )
            declared = getattr(cls, "venue", None)
            if declared != self.name:
                raise ConfigError(
                    f"{where} {cls.__name__}.venue is {declared!r}, not {self.name!r}",
                    field=field,
                )


_lock = threading.Lock()
_registered: dict[str, Venue] = {}  # register()
_loaded: dict[str, Venue] = {}  # built-ins and plug-ins, once loaded


def register(venue: Venue, *, replace: bool = False) -> Venue:
    """Make ``venue`` available by its name to every client. Registering a name that is
    already registered, built in or loaded from a plug-in is a ConfigError unless
    ``replace=True``. Returns ``venue`` (so a module can write ``X = register(Venue(...))``)."""
    if not isinstance(venue, Venue):
        raise ConfigError(
            f"register() takes a tickloop.venues.Venue, got {type(venue).__name__}",
            field="venue",
        )
    with _lock:
        taken = venue.name in _registered or venue.name in BUILTIN or venue.name in _loaded
        if taken and not replace:
            raise ConfigError(
                f"venue {venue.name!r} already exists; pass replace=True to replace it",
                field="venue",
            )
        _registered[venue.name] = venue
    return venue


def unregister(name: str) -> None:
    """Forget a venue registered in code or loaded from a plug-in (a built-in venue comes
    back as built; a plug-in is loaded again on next use). Unknown names are ignored."""
    with _lock:
        _registered.pop(name, None)
        _loaded.pop(name, None)


def get(name: str) -> Venue:
    """The venue called ``name`` (module docstring for where it is looked up). Raises
    :class:`UnknownVenue` or :class:`VenueLoadError`, one line each."""
    if not isinstance(name, str):
        raise UnknownVenue(f"a venue name is a string, got {type(name).__name__}", venue="?")
    with _lock:
        found = _registered.get(name)
        if found is None:
            found = _loaded.get(name)
    if found is not None:
        return found
    path = BUILTIN.get(name)
    venue = _load_target(name, path, path) if path is not None else _load_plugin(name)
    with _lock:
        return _loaded.setdefault(name, venue)


def names() -> list[str]:
    """Every venue name known now: registered, built in and declared by installed plug-ins
    (listing does not import any of them)."""
    known = set(BUILTIN) | set(_registered) | set(_loaded)
    known.update(ep.name for ep in _entry_points())
    return sorted(known)


def stream_codec(venue: str) -> type[Codec]:
    """The WebSocket codec class of ``venue`` (ConfigError if it has none)."""
    cls = get(venue).stream
    if cls is None:
        raise ConfigError(f"venue {venue!r} has no stream codec", field="venue", venue=venue)
    return cls


def rest_codec(venue: str) -> type[PublicRest]:
    """The REST codec class of ``venue`` (ConfigError if it has none)."""
    cls = get(venue).rest
    if cls is None:
        raise ConfigError(f"venue {venue!r} has no REST codec", field="venue", venue=venue)
    return cls


def authorizer(venue: str) -> type[Authorizer] | None:
    """The request signer class of ``venue``, or None when it offers no private calls."""
    return get(venue).authorizer


# ------------------------------------------------------------------------------- loading


def _entry_points() -> list[metadata.EntryPoint]:
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN]


def _load_plugin(name: str) -> Venue:
    matches = [ep for ep in _entry_points() if ep.name == name]
    if not matches:
        known = ", ".join(names())
        raise UnknownVenue(
            f"unknown venue {name!r} (known: {known}; a plug-in declares an entry point in "
            f"group {ENTRY_POINT_GROUP!r})",
            venue=name,
        )
    targets = sorted({ep.value for ep in matches})
    if len(targets) > 1:
        raise VenueLoadError(
            f"venue plug-in {name!r} is declared twice, as {' and '.join(targets)}",
            venue=name,
            target=targets[0],
        )
    ep = matches[0]
    dist = getattr(ep, "dist", None)
    origin = f"entry point {ep.value}" + (f" of {dist.name}" if dist is not None else "")
    return _load_target(name, ep.value, origin)


def _load_target(name: str, target: str, origin: str) -> Venue:
    module_name, _, attr = target.partition(":")
    kind = "built-in venue" if name in BUILTIN else "venue plug-in"
    try:
        obj: Any = importlib.import_module(module_name.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
    except Exception as exc:
        raise VenueLoadError(
            f"{kind} {name!r} ({origin}) failed to load: {_one_line(exc)}",
            venue=name,
            target=target,
        ) from exc
    if not isinstance(obj, Venue):
        raise VenueLoadError(
            f"{kind} {name!r} ({origin}) is a {type(obj).__name__}, not a tickloop.venues.Venue",
            venue=name,
            target=target,
        )
    if obj.name != name:
        raise VenueLoadError(
            f"{kind} {name!r} ({origin}) holds the venue {obj.name!r}",
            venue=name,
            target=target,
        )
    return obj


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 300:
        first = first[:297] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
