"""The toy venue: a complete tickloop venue plug-in in four small modules.

``stream.py`` is the WebSocket codec, ``rest.py`` the REST codec, ``auth.py`` the request
signer; this module puts them together as the :class:`tickloop.venues.Venue` that the entry
point ``toy = "toy_venue:VENUE"`` (pyproject.toml) names. Once the package is installed,
``StreamClient("toy", url=...)`` and ``AsyncClient("toy", url=...)`` find it by that name.

The toy protocol (one server port; the WebSocket at ``/ws``, REST under ``/toy/v1``):

* symbols: tickloop's ``TOY-USD`` is the venue's ``toy_usd``;
* subscribe ``{"op": "sub", "id": 1, "streams": ["trades.toy_usd"]}``, answered
  ``{"ack": 1, "streams": [...]}``; ``"op": "unsub"`` is answered ``{"unack": 2, ...}``; a
  refusal is ``{"error": "unknown_symbol", "id": 1, "stream": "trades.toy_usd"}``;
* a trade ``{"ch": "trades", "sym": "toy_usd", "id": 7, "px": "1.25", "qty": "2",
  "side": "b", "ts": <ns>}`` (``side`` ``b``/``s``); ping ``{"op": "ping"}``, pong
  ``{"pong": <ns>}``;
* REST ``GET /markets``, ``/book/<sym>``, ``/trades/<sym>``; private (signed, see ``auth.py``)
  ``GET /balances``, ``/positions``, ``/fills``; errors ``{"error": "...", "message": "..."}``.
"""

from tickloop.venues import Venue

from .auth import ToyAuth
from .rest import ToyRest
from .stream import ToyCodec

__all__ = ["VENUE", "ToyAuth", "ToyCodec", "ToyRest"]

VENUE = Venue("toy", stream=ToyCodec, rest=ToyRest, authorizer=ToyAuth)
