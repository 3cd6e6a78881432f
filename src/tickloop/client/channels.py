"""The streaming client's channel table: what each kind of stream is, and how it is consumed.

One row per public stream kind (``trades``, ``tickers``, ``candles``, ``books``,
``book_deltas``, ``orders``, ``fills``): the upstream :class:`~tickloop.venues.base.Channel` it
subscribes, the route table its consumers sit in, its default overflow policy and the ones a
consumer may choose, and its conflation key. Every ``feed.<kind>(...)``,
``subscribe_<kind>`` and ``unsubscribe_<kind>`` of :class:`~tickloop.client.stream.StreamClient`
is driven by its row, so the seven kinds cannot drift apart. The same module says what the
symbol arguments accept: one symbol, several, or every market (``"*"``, None, an empty list).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigError
from ..models import Candle
from ..venues.base import Channel, Subscription
from .consumers import BOOK_DELTAS, Overflow

__all__ = [
    "ALL",
    "BY_ROUTE",
    "CHANNELS",
    "Kind",
    "Symbols",
    "held",
    "kind",
    "subscriptions",
    "symbols",
]

#: The symbol that means every market of the venue: ``feed.trades("*")``. ``None`` and an empty
#: list mean the same where a list of symbols is expected.
ALL = "*"

#: What the symbol arguments take: one symbol, several, or every market (``"*"``, None, ``[]``).
Symbols = str | Iterable[str] | None

#: What a stream consumer may ask for (the bus's DROP_* policies are not offered here).
_CLIENT_POLICIES = (Overflow.ERROR, Overflow.CONFLATE, Overflow.BACKPRESSURE)
_LOSSLESS = frozenset({Overflow.ERROR, Overflow.BACKPRESSURE})
_LATEST = frozenset({Overflow.ERROR, Overflow.CONFLATE, Overflow.BACKPRESSURE})


def _candle_key(candle: Candle) -> tuple[str, str, int]:
    # A closed candle is never replaced by the next interval's: the key includes open_time.
    return (candle.symbol, candle.interval, candle.open_time)


def _symbol_key(event: Any) -> str:
    return str(event.symbol)


@dataclass(frozen=True, slots=True)
class Kind:
    """One row of the channel table."""

    name: str  # "trades", as in feed.trades / subscribe_trades
    channel: Channel  # what is subscribed upstream
    route: Channel | str  # the route table of its consumers (BOOK_DELTAS for raw books)
    #: Never drop what cannot be rebuilt (trades, private streams, raw book messages);
    #: conflate the rest.
    default: Overflow
    #: The policies a consumer may choose instead (``overflow=``). Books always conflate: a view
    #: is taken at delivery, so queueing every update would queue copies of one live book.
    allowed: frozenset[Overflow]
    key: Callable[[Any], Hashable] | None = None  # CONFLATE key of its events

    @property
    def private(self) -> bool:
        return self.channel.private

    def policy(self, overflow: Overflow | str | None) -> Overflow:
        """The policy for ``overflow=`` (None: the default); ConfigError naming ``overflow``."""
        if overflow is None:
            return self.default
        try:
            policy = Overflow(overflow)
            if policy not in _CLIENT_POLICIES:
                raise ValueError(policy)
        except ValueError:
            raise ConfigError(
                f"unknown overflow policy {overflow!r}: one of "
                + ", ".join(repr(o.value) for o in _CLIENT_POLICIES),
                field="overflow",
            ) from None
        if policy not in self.allowed:
            raise ConfigError(
                f"overflow={policy.value!r} is not available for {self.route}: one of "
                + ", ".join(sorted(repr(o.value) for o in self.allowed)),
                field="overflow",
            )
        return policy


CHANNELS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("trades", Channel.TRADES, Channel.TRADES, Overflow.ERROR, _LOSSLESS),
        Kind("tickers", Channel.TICKER, Channel.TICKER, Overflow.CONFLATE, _LATEST, _symbol_key),
        Kind("candles", Channel.CANDLES, Channel.CANDLES, Overflow.CONFLATE, _LATEST, _candle_key),
        Kind(
            "books",
            Channel.BOOK,
            Channel.BOOK,
            Overflow.CONFLATE,
            frozenset({Overflow.CONFLATE}),
            _symbol_key,
        ),
        Kind("book_deltas", Channel.BOOK, BOOK_DELTAS, Overflow.ERROR, _LOSSLESS),
        Kind("orders", Channel.ORDERS, Channel.ORDERS, Overflow.ERROR, _LOSSLESS),
        Kind("fills", Channel.FILLS, Channel.FILLS, Overflow.ERROR, _LOSSLESS),
    )
}

#: The row of each route table (what ``change_handler`` and the handler lists are keyed by).
BY_ROUTE: dict[Channel | str, Kind] = {k.route: k for k in CHANNELS.values()}
_BY_ROUTE_NAME = {str(route): row for route, row in BY_ROUTE.items()}  # "ticker", "book", ...


def kind(name: str | Channel) -> Kind:
    """The row named ``name``: a kind (``"tickers"``), or a channel (``"ticker"``)."""
    row = CHANNELS.get(str(name)) or _BY_ROUTE_NAME.get(str(name))
    if row is None:
        raise ConfigError(
            f"unknown channel {name!r}: one of " + ", ".join(repr(n) for n in CHANNELS),
            field="channel",
        )
    return row


def symbols(value: Symbols) -> list[str]:
    """Normalised symbols (upper case, deduplicated, in order); ``[ALL]`` for every market
    (``"*"``, None or an empty list). ConfigError naming ``symbols`` for anything else."""
    if value is None:
        return [ALL]
    if isinstance(value, str):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            raise ConfigError(
                f"symbols must be a symbol, a list of symbols or '*', not {type(value).__name__}",
                field="symbols",
            ) from None
    if not items:
        return [ALL]
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"symbols must be non-empty strings, not {item!r}", field="symbols")
    if ALL in items:
        return [ALL]
    return list(dict.fromkeys(s.upper() for s in items))


def subscriptions(
    row: Kind, value: Symbols = None, interval: str | None = None
) -> tuple[Subscription, ...]:
    """The upstream subscriptions a consumer of ``row`` asks for (``"*"`` kept as the symbol
    until the client expands it into the venue's markets)."""
    if row.private:
        return (Subscription(row.channel),)
    return tuple(Subscription(row.channel, s, interval) for s in symbols(value))


def held(
    current: Iterable[Subscription], value: Symbols, interval: str | None = None
) -> list[Subscription]:
    """Which of ``current`` (a consumer's subscriptions) ``value`` names: by symbol, ``"*"``
    for all, and only those of ``interval`` when one is given (candles)."""
    wanted = set(symbols(value))
    every = ALL in wanted
    return [
        s
        for s in current
        if (every or s.symbol in wanted or s.symbol is None)
        and (interval is None or s.interval == interval)
    ]
