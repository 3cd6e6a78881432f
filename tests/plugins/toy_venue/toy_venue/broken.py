"""A plug-in module that fails on import, as one with a missing dependency does."""

import toy_venue_missing_dependency  # type: ignore[import-not-found]  # noqa: F401 (on purpose)
