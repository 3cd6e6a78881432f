"""tickloop's models as web values: returned from a FastAPI route as they are.

FastAPI serialises a route's result in one of two ways, and both are covered here for every
tickloop model (and result struct such as ``Market``), so a route's author never converts:

* with a return annotation or ``response_model`` (``-> list[Trade]``), through pydantic: the
  models answer pydantic's ``__get_pydantic_core_schema__`` hook with a serialiser that is
  :func:`msgspec.to_builtins` (exact prices as strings, unset fields left out, enums as their
  values) and a JSON schema derived from msgspec's, so /docs shows the real fields;
* without one, through ``jsonable_encoder``, which falls back to ``vars(obj)``: the models'
  ``__dict__`` is that same builtins view.

pydantic is imported only when pydantic asks, so it is not a dependency of tickloop.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["WebStruct", "json_schema", "pydantic_core_schema"]


def pydantic_core_schema(cls: type[msgspec.Struct]) -> Any:
    from pydantic_core import core_schema

    def validate(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        return msgspec.convert(value, cls)  # e.g. a request body given as a model

    return core_schema.no_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(msgspec.to_builtins),
    )


def json_schema(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """msgspec's JSON schema of ``cls`` with its ``$defs`` inlined (OpenAPI keeps its own
    component table, which pydantic fills; a foreign ``$ref`` would dangle there)."""
    schema = msgspec.json.schema(cls)
    defs = schema.pop("$defs", {})

    def inline(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in seen:  # a recursive type: stop at an open object
                    return {"type": "object", "title": name}
                return inline(defs[name], seen | {name})
            return {k: inline(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v, seen) for v in node]
        return node

    return inline(schema, frozenset())  # type: ignore[no-any-return]


class WebStruct(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of tickloop's models and result structs: a FastAPI route returns them as they are."""

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        # jsonable_encoder's last resort is vars(obj): give it the JSON view.
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return pydantic_core_schema(cls)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return json_schema(cls)
