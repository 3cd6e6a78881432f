"""Fixtures and settings for the whole suite.

Runs are deterministic: hypothesis draws the same examples every run (``derandomize``; pass
``--hypothesis-profile=explore`` to search afresh) and never fails an example for its time
(``deadline=None``: the machine may be busy), and recorded data is read from the repository.
Under ``TICKLOOP_PURE_PYTHON=1`` (the pure-Python leg of ``scripts/test``) the tests marked
``compiled``, which test the compiled build itself, are deselected: that build is switched off.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tickloop._native import pure_requested

settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("deterministic")

#: Real recorded exchange messages, kept in the repository (tests/data/README.md says what each
#: file is, where it came from and its licence), so a clone needs nothing beside it.
RECORDED_DATA = Path(__file__).resolve().parent / "data" / "cryptofeed"


@pytest.fixture(scope="session")
def recorded_data() -> Path:
    """The folder of cryptofeed-format recorded sessions (tests/data/cryptofeed)."""
    if not RECORDED_DATA.is_dir():
        pytest.fail(f"recorded data not found at {RECORDED_DATA} (it ships in the repository)")
    return RECORDED_DATA


_XDG = ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")
_HOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Each test process (one per pytest-xdist worker) gets folders of its own for what
    tickloop keeps for the user (the state folder's tokens and demo key, credentials, run
    data), inherited by the commands the tests start: no run touches the user's real files,
    and two workers never share one."""
    home = tempfile.mkdtemp(prefix="tickloop-tests-")
    config.stash[_HOME] = home
    for name in _XDG:
        os.environ[name] = os.path.join(home, name.lower())


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HOME, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not pure_requested():
        return
    compiled = [item for item in items if item.get_closest_marker("compiled") is not None]
    if compiled:
        config.hook.pytest_deselected(items=compiled)
        items[:] = [item for item in items if item.get_closest_marker("compiled") is None]
