"""The public surface is explicit: everything in ``__all__`` exists and is documented."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["tickloop", "tickloop.models", "tickloop.exceptions", "tickloop.venues.base"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


def test_root_exports_error_tree() -> None:
    import tickloop

    for attr in tickloop.exceptions.__all__:
        assert getattr(tickloop, attr) is getattr(tickloop.exceptions, attr)
        assert issubclass(getattr(tickloop, attr), tickloop.TickloopError)
