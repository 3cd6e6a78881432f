"""The embedded exchange: matching engine, synthetic flow, REST/WebSocket server and faults.

``SimExchange`` runs it (``async with SimExchange(seed=7) as ex``); ``ex.faults`` is its
:class:`Faults`; ``ex.create_api_key()`` gives a :class:`SimApiKey`. The protocol is
docs/protocol.md; the server's guide is docs/sim.md.
"""

from .auth import SimApiKey
from .exchange import ExchangeStats, SimExchange
from .faults import Faults

__all__ = ["ExchangeStats", "Faults", "SimApiKey", "SimExchange"]
