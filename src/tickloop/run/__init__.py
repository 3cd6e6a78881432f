"""``tickloop run``: the whole platform in one command (see docs/run.md).

:mod:`tickloop.run.config` is the TOML configuration and its checks, :mod:`tickloop.run.platform`
starts the embedded exchange (or connects to a venue), the bus, the store, the bots and the web
server in one event loop and shuts them down in order, :mod:`tickloop.run.summary` is the
terminal summary, and :mod:`tickloop.run.remote` the commands that talk to a running
instance's API (``tickloop bots``, ``pause``, ``resume``, ``tail``, ``book``).
"""

from .config import EXAMPLE_CONFIG, RunConfig, load_config, validate

__all__ = ["EXAMPLE_CONFIG", "RunConfig", "load_config", "validate"]
