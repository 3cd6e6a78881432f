"""Sparse field selection: ``Selection("symbol", "status", book=Selection("bids", "asks"))``.

One grammar shared by the embedded exchange (which filters its answers) and the REST client
(which asks for them): ``symbol,status,book(bids,asks)``. See docs/protocol.md, *Field
selection*. Sans-I/O: parse, render, apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .exceptions import InvalidRequest

__all__ = ["Selection"]

_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class Selection:
    """A set of selected fields, some with a nested selection. Immutable and hashable."""

    __slots__ = ("_fields",)

    def __init__(self, *names: str, **nested: Selection) -> None:
        fields: dict[str, Selection | None] = {}
        for name in names:
            _check_name(name)
            fields[name] = None
        for name, sub in nested.items():
            _check_name(name)
            if not isinstance(sub, Selection):
                raise InvalidRequest(
                    f"nested selection for {name!r} must be a Selection", field=name
                )
            fields[name] = sub
        if not fields:
            raise InvalidRequest("a selection needs at least one field", field="fields")
        self._fields = fields

    @property
    def fields(self) -> Mapping[str, Selection | None]:
        return self._fields

    def render(self) -> str:
        """The ``fields=`` query value."""
        parts = []
        for name, sub in self._fields.items():
            parts.append(name if sub is None else f"{name}({sub.render()})")
        return ",".join(parts)

    __str__ = render

    def __repr__(self) -> str:
        return f"Selection({self.render()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selection) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self.render())

    @classmethod
    def parse(cls, text: str) -> Selection:
        """Parse ``symbol,status,book(bids,asks)``; InvalidRequest(field="fields") if malformed."""
        if len(text) > MAX_LENGTH:
            raise InvalidRequest(f"fields longer than {MAX_LENGTH} characters", field="fields")
        selection, pos = _parse(text, 0, "")
        if pos != len(text):
            raise InvalidRequest(f"unexpected {text[pos]!r} at {pos} in fields", field="fields")
        return selection

    def apply(self, value: Any, *, _path: str = "") -> Any:
        """Keep only the selected fields of a JSON-like value (a dict, or a list of dicts).

        An unknown field, or a nested selection on a field that is not an object, raises
        InvalidRequest whose ``field`` is the dotted path (``book.bogus``).
        """
        if isinstance(value, list):
            return [self.apply(item, _path=_path) for item in value]
        if not isinstance(value, dict):
            raise InvalidRequest(f"{_path or 'value'} is not an object", field=_path or "fields")
        out: dict[str, Any] = {}
        for name, sub in self._fields.items():
            path = f"{_path}.{name}" if _path else name
            if name not in value:
                raise InvalidRequest(f"unknown field {path!r}", field=path)
            item = value[name]
            if sub is None:
                out[name] = item
            elif item is None:
                out[name] = None
            else:
                out[name] = sub.apply(item, _path=path)
        return out


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(f"bad field name {name!r}", field="fields")


#: Bounds on a selection: no response of the sim nests deeper than a few levels, and a parser
#: that recursed once per "(" would otherwise be a RecursionError away from a 500.
MAX_DEPTH = 16
MAX_LENGTH = 4096


def _parse(text: str, pos: int, path: str, depth: int = 0) -> tuple[Selection, int]:
    if depth > MAX_DEPTH:
        raise InvalidRequest(
            f"fields nested deeper than {MAX_DEPTH} levels at {pos}", field="fields"
        )
    names: list[str] = []
    nested: dict[str, Selection] = {}
    while True:
        match = _NAME.match(text, pos)
        if match is None:
            raise InvalidRequest(f"expected a field name at {pos} in fields", field="fields")
        name = match.group()
        pos = match.end()
        if pos < len(text) and text[pos] == "(":
            sub, pos = _parse(text, pos + 1, f"{path}{name}.", depth + 1)
            if pos >= len(text) or text[pos] != ")":
                raise InvalidRequest(f"missing ')' after {path}{name}", field="fields")
            pos += 1
            nested[name] = sub
        else:
            names.append(name)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return Selection(*names, **nested), pos
