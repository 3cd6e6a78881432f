from __future__ import annotations

from pathlib import Path

import pytest

#: Real recorded exchange messages, kept in the repository (tests/data/README.md says what each
#: file is, where it came from and its licence), so a clone needs nothing beside it.
RECORDED_DATA = Path(__file__).resolve().parent / "data" / "cryptofeed"


@pytest.fixture(scope="session")
def recorded_data() -> Path:
    """The folder of cryptofeed-format recorded sessions (tests/data/cryptofeed)."""
    if not RECORDED_DATA.is_dir():
        pytest.fail(f"recorded data not found at {RECORDED_DATA} (it ships in the repository)")
    return RECORDED_DATA
