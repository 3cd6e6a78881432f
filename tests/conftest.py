from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Real recorded exchange messages (see ../shared/data/README.md). Read in place, never copied.
SHARED_DATA = Path(
    os.environ.get("TICKLOOP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED_DATA / "cryptofeed"
    if not path.is_dir():
        pytest.fail(f"recorded data not found at {path}; set TICKLOOP_SHARED_DATA")
    return path
