"""The public surface is explicit: every module's ``__all__`` names things that exist."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import tickloop


def _modules() -> list[str]:
    names = ["tickloop"]
    for info in pkgutil.walk_packages(tickloop.__path__, "tickloop."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    for attr in getattr(module, "__all__", ()):
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


@pytest.mark.parametrize(
    "name", ["tickloop", "tickloop.models", "tickloop.sim", "tickloop.book", "tickloop.venues"]
)
def test_public_packages_declare_all(name: str) -> None:
    assert importlib.import_module(name).__all__


def test_root_exports_error_tree_and_clients() -> None:
    for attr in tickloop.exceptions.__all__:
        assert getattr(tickloop, attr) is getattr(tickloop.exceptions, attr)
        assert issubclass(getattr(tickloop, attr), tickloop.TickloopError)
    for attr in ("AsyncClient", "Client", "StreamClient", "Credentials", "Selection"):
        assert attr in tickloop.__all__


def test_unset_is_exported_for_sparse_results() -> None:
    # REST results with a field selection leave the other fields UNSET: the sentinel users
    # test against comes from the package root, the same object msgspec uses.
    import msgspec

    assert tickloop.UNSET is msgspec.UNSET and "UNSET" in tickloop.__all__
    from tickloop.client.results import Market

    market = Market(symbol="BTC-USD")
    assert market.tick_size is tickloop.UNSET and not tickloop.is_set(market.tick_size)
    assert tickloop.is_set(market.symbol)
