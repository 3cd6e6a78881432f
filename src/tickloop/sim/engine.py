"""The embedded exchange's matching engine: books, accounts and orders, sans-I/O.

Theory of operation. Every public call takes the time (``ts``, ns) as a parameter, changes the
state, and returns what happened as a list of immutable events (:class:`TradeEvent`,
:class:`OrderUpdate`, :class:`BookUpdate`); the server turns them into protocol messages. Nothing
here reads a clock, opens a socket or imports asyncio.

Numbers are integers inside. A price is a count of ticks and a size a count of lots (see
:class:`~tickloop.sim.market.MarketSpec`). Balances are integers in units of ``10**-scale`` of
every asset, one ``scale`` for the whole engine, chosen at construction so that every notional
(``ticks * lots``) and every fee (``notional * fee rate``) is a whole number of units: balances,
fees and the conservation of assets are exact, with no rounding anywhere.

Invariants, checked by the property tests:

* A book is never crossed after a call: an incoming order takes every crossing level it can
  before it rests, and self-trade prevention cancels the account's own crossing orders.
* Price-time priority: a level is a FIFO queue; amend (size down only) keeps the place.
* For every account and asset ``0 <= locked <= total``; ``locked`` is exactly what the
  account's open orders need (the remaining notional plus the maker fee on it for a buy, the
  remaining size for a sell). An order is placed only if it can pay for everything it may do,
  so matching never drives a balance below what is locked.
* The sum of every asset over all accounts, the fee account included, changes only through
  :meth:`Engine.open_account`.
* Per symbol, trade ids are 1, 2, 3, ... and each call that changed a book yields exactly one
  :class:`BookUpdate` listing every changed level with its new total (0 removes it); its ``seq``
  is the previous one plus 1 (plus 2 after :meth:`Engine.skip_sequence`).

Orders are placed atomically: a rejected order (:class:`Rejected`) changes nothing.

Who hears of orders. :attr:`Engine.order_listeners` names the accounts whose
:class:`OrderUpdate` events the calls return (``None``, the default: every account). The hub
points it at the accounts someone subscribed to privately, so the synthetic flow's place and
cancel calls, a few a step, make no order snapshots that would be dropped unread. It changes
only which events are returned: the state, the return values, the market events (trades, book
updates) and what the queries answer are the same whatever it holds.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, KeysView, Mapping, Set
from decimal import Decimal
from fractions import Fraction
from itertools import count

import msgspec

from ..exceptions import OrderRejected
from ..models import (
    Fill,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    Trade,
)
from .market import DEFAULT_MARKETS, MarketSpec, fixed_text, market_for

__all__ = [
    "DEFAULT_MARKETS",
    "BookUpdate",
    "Engine",
    "EngineEvent",
    "FillRecord",
    "MarketSpec",
    "OrderUpdate",
    "Rejected",
    "SimOrder",
    "TradeEvent",
    "market_for",
]

_BUY = Side.BUY
_SELL = Side.SELL
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET
_GTC = TimeInForce.GTC
_FOK = TimeInForce.FOK
_OPEN = OrderStatus.OPEN
_PARTIAL = OrderStatus.PARTIALLY_FILLED
_FILLED = OrderStatus.FILLED
_CANCELED = OrderStatus.CANCELED
_EXPIRED = OrderStatus.EXPIRED
_EV_ACCEPTED = OrderEventKind.ACCEPTED
_EV_FILL = OrderEventKind.FILL
_EV_AMENDED = OrderEventKind.AMENDED
_EV_CANCELED = OrderEventKind.CANCELED
_EV_EXPIRED = OrderEventKind.EXPIRED
_MAKER = Liquidity.MAKER
_TAKER = Liquidity.TAKER

MAX_CLIENT_ORDER_ID = 64
_ZERO = Decimal(0)


def _fraction_decimal(value: Fraction, decimals: int) -> Decimal:
    """``value * 10**-decimals`` as a Decimal: exact when it terminates, else 28 digits."""
    if value.denominator == 1:
        return Decimal(fixed_text(value.numerator, decimals))
    return (Decimal(value.numerator) / Decimal(value.denominator)).scaleb(-decimals)


# --------------------------------------------------------------------------- events
# Frozen msgspec Structs rather than frozen dataclasses: a frozen dataclass sets each field
# through object.__setattr__, which made an order snapshot (16 fields) cost 2.8 us, several
# times a flow step; a Struct is built in C (0.18 us; idle machine, 2026-12-04). gc=False:
# they hold only strings, numbers, enums and each other, never a cycle.


class TradeEvent(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    trade_id: int
    price: int
    size: int
    taker_side: Side
    ts: int
    maker_order_id: str
    taker_order_id: str
    maker_account: str
    taker_account: str

    def to_model(self, spec: MarketSpec, venue: str = "sim") -> Trade:
        return Trade(
            venue=venue,
            symbol=self.symbol,
            id=self.trade_id,
            price=Decimal(spec.price_text(self.price)),
            size=Decimal(spec.size_text(self.size)),
            side=self.taker_side,
            ts=self.ts,
        )


class BookUpdate(msgspec.Struct, frozen=True, gc=False):
    """The levels one engine call changed: ``(ticks, new total lots)``, 0 = removed; bids best
    (highest) first, asks best (lowest) first."""

    symbol: str
    seq: int
    prev_seq: int
    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]
    ts: int


class SimOrder(msgspec.Struct, frozen=True, gc=False):
    """An immutable copy of an order at one moment. ``quote_filled`` is the sum of
    ``price * size`` (ticks times lots) over its fills, for the average price."""

    id: str
    account: str
    client_order_id: str | None
    symbol: str
    side: Side
    type: OrderType
    price: int | None
    size: int
    filled: int
    quote_filled: int
    status: OrderStatus
    time_in_force: TimeInForce
    post_only: bool
    reject_reason: str | None
    created_ts: int
    updated_ts: int

    @property
    def remaining(self) -> int:
        return self.size - self.filled

    def avg_price(self, spec: MarketSpec) -> Decimal | None:
        if not self.filled:
            return None
        return _fraction_decimal(Fraction(self.quote_filled, self.filled), spec.price_precision)

    def to_model(self, spec: MarketSpec, venue: str = "sim") -> Order:
        return Order(
            venue=venue,
            symbol=self.symbol,
            id=self.id,
            client_order_id=self.client_order_id,
            side=self.side,
            type=self.type,
            price=None if self.price is None else Decimal(spec.price_text(self.price)),
            size=Decimal(spec.size_text(self.size)),
            filled_size=Decimal(spec.size_text(self.filled)),
            avg_price=self.avg_price(spec),
            status=self.status,
            time_in_force=self.time_in_force,
            post_only=self.post_only,
            reject_reason=self.reject_reason,
            created_ts=self.created_ts,
            updated_ts=self.updated_ts,
        )


class FillRecord(msgspec.Struct, frozen=True, gc=False):
    account: str
    order_id: str
    client_order_id: str | None
    trade_id: int
    symbol: str
    side: Side
    price: int
    size: int
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    ts: int

    def to_model(self, spec: MarketSpec, venue: str = "sim") -> Fill:
        return Fill(
            venue=venue,
            symbol=self.symbol,
            order_id=self.order_id,
            client_order_id=self.client_order_id,
            trade_id=self.trade_id,
            side=self.side,
            price=Decimal(spec.price_text(self.price)),
            size=Decimal(spec.size_text(self.size)),
            fee=self.fee,
            fee_asset=self.fee_asset,
            liquidity=self.liquidity,
            ts=self.ts,
        )


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    account: str
    kind: OrderEventKind
    order: SimOrder
    fill: FillRecord | None
    ts: int

    def to_model(self, spec: MarketSpec, venue: str = "sim") -> OrderEvent:
        return OrderEvent(
            venue=venue,
            kind=self.kind,
            order=self.order.to_model(spec, venue),
            fill=None if self.fill is None else self.fill.to_model(spec, venue),
            ts=self.ts,
        )


EngineEvent = TradeEvent | BookUpdate | OrderUpdate


class Rejected(OrderRejected):
    """A typed rejection: the call changed nothing and no order is kept.

    ``reason`` is one of ``unknown_symbol``, ``unknown_account``, ``invalid_side``,
    ``invalid_type``, ``invalid_time_in_force``, ``invalid_size``, ``invalid_price``,
    ``invalid_post_only``, ``invalid_client_order_id`` (a malformed request: ``field`` names the
    offending argument), ``unknown_order`` (``field`` is ``order_id``), and, with ``field`` None
    (a well-formed request the engine refuses), ``insufficient_balance``,
    ``post_only_would_take``, ``fok_not_filled``, ``amend_not_smaller``, ``amend_below_filled``.
    """

    def __init__(self, reason: str, field: str | None = None, message: str | None = None) -> None:
        super().__init__(reason, code=reason, venue="sim")
        self.reason = reason
        self.field = field
        self.message = message or reason.replace("_", " ")

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- internal state


class _Order:
    __slots__ = (
        "account",
        "cid",
        "created_ts",
        "filled",
        "id",
        "key",
        "num",
        "post_only",
        "price",
        "quote_filled",
        "side",
        "size",
        "status",
        "symbol",
        "tif",
        "type",
        "updated_ts",
    )

    def __init__(
        self,
        num: int,
        account: str,
        cid: str | None,
        symbol: str,
        side: Side,
        type_: OrderType,
        price: int | None,
        size: int,
        tif: TimeInForce,
        post_only: bool,
        ts: int,
    ) -> None:
        self.num = num
        self.id = str(num)
        self.account = account
        self.cid = cid
        self.symbol = symbol
        self.side = side
        self.type = type_
        self.price = 0 if price is None else price  # 0: a market order (never on the book)
        # Book key: the price for asks, minus the price for bids, so ascending keys are best first.
        self.key = 0 if price is None else (-price if side is _BUY else price)
        self.size = size
        self.filled = 0
        self.quote_filled = 0
        self.status = _OPEN
        self.tif = tif
        self.post_only = post_only
        self.created_ts = ts
        self.updated_ts = ts

    def snapshot(self) -> SimOrder:
        return SimOrder(
            self.id,
            self.account,
            self.cid,
            self.symbol,
            self.side,
            self.type,
            self.price or None,
            self.size,
            self.filled,
            self.quote_filled,
            self.status,
            self.tif,
            self.post_only,
            None,
            self.created_ts,
            self.updated_ts,
        )


class _Level:
    __slots__ = ("orders", "total")

    def __init__(self) -> None:
        self.orders: deque[_Order] = deque()
        self.total = 0


class _Position:
    __slots__ = ("cost", "qty", "realized")

    def __init__(self) -> None:
        self.qty = 0  # signed lots
        self.cost = Fraction(0)  # ticks * lots at the average entry price, signed like qty
        self.realized = Fraction(0)  # ticks * lots, before fees


class _Account:
    __slots__ = (
        "cids",
        "closed",
        "fills",
        "index",
        "locked",
        "name",
        "open",
        "positions",
        "total",
        "track_positions",
    )

    def __init__(self, name: str, assets: Iterable[str], track_positions: bool = True) -> None:
        self.name = name
        self.total: dict[str, int] = dict.fromkeys(assets, 0)
        self.locked: dict[str, int] = dict.fromkeys(self.total, 0)
        self.open: dict[str, _Order] = {}
        self.closed: deque[_Order] = deque()
        self.index: dict[str, _Order] = {}
        self.cids: dict[str, str] = {}
        self.fills: deque[FillRecord] = deque()
        self.positions: dict[str, _Position] = {}
        self.track_positions = track_positions


class _Book:
    __slots__ = (
        "ask_keys",
        "ask_levels",
        "asks_changed",
        "base",
        "base_unit",
        "bid_keys",
        "bid_levels",
        "bids_changed",
        "buy_lock_unit",
        "last_price",
        "maker_fee_unit",
        "next_trade_id",
        "quote",
        "quote_unit",
        "seq",
        "skip",
        "spec",
        "symbol",
        "taker_fee_unit",
        "trade_base",
        "trades",
    )

    def __init__(self, spec: MarketSpec, scale: int, taker_fee: Decimal, maker_fee: Decimal):
        self.spec = spec
        self.symbol = spec.symbol
        self.base = spec.base
        self.quote = spec.quote
        notional_scale = scale - spec.price_precision - spec.size_precision
        self.base_unit: int = 10 ** (scale - spec.size_precision)  # balance units per lot
        self.quote_unit: int = 10**notional_scale  # balance units per tick*lot
        self.taker_fee_unit = _exact_int(Fraction(taker_fee) * self.quote_unit)
        self.maker_fee_unit = _exact_int(Fraction(maker_fee) * self.quote_unit)
        self.buy_lock_unit = self.quote_unit + self.maker_fee_unit  # per tick*lot resting
        self.bid_levels: dict[int, _Level] = {}  # key = -price
        self.bid_keys: list[int] = []  # ascending keys: best bid first
        self.ask_levels: dict[int, _Level] = {}  # key = price
        self.ask_keys: list[int] = []
        self.bids_changed: dict[int, int] = {}  # key -> total before this call
        self.asks_changed: dict[int, int] = {}
        self.seq = 0
        self.skip = 0
        self.next_trade_id = 1
        self.trades: list[TradeEvent] = []
        self.trade_base = 0  # id of trades[0] minus 1
        self.last_price: int | None = None

    def add(self, order: _Order) -> None:
        key = order.key
        if order.side is _BUY:
            levels, keys, changed = self.bid_levels, self.bid_keys, self.bids_changed
        else:
            levels, keys, changed = self.ask_levels, self.ask_keys, self.asks_changed
        level = levels.get(key)
        if level is None:
            level = levels[key] = _Level()
            bisect.insort(keys, key)
        if key not in changed:
            changed[key] = level.total
        level.orders.append(order)
        level.total += order.size - order.filled

    def remove(self, order: _Order) -> None:
        key = order.key
        if order.side is _BUY:
            levels, keys, changed = self.bid_levels, self.bid_keys, self.bids_changed
        else:
            levels, keys, changed = self.ask_levels, self.ask_keys, self.asks_changed
        level = levels[key]
        if key not in changed:
            changed[key] = level.total
        level.orders.remove(order)
        level.total -= order.size - order.filled
        if not level.orders:
            del levels[key]
            del keys[bisect.bisect_left(keys, key)]

    def reduce(self, order: _Order, lots: int) -> None:
        key = order.key
        if order.side is _BUY:
            level, changed = self.bid_levels[key], self.bids_changed
        else:
            level, changed = self.ask_levels[key], self.asks_changed
        if key not in changed:
            changed[key] = level.total
        level.total -= lots

    def flush(self, ts: int) -> BookUpdate | None:
        bids: tuple[tuple[int, int], ...] = ()
        asks: tuple[tuple[int, int], ...] = ()
        if self.bids_changed:
            bids = _changes(self.bids_changed, self.bid_levels, -1)
        if self.asks_changed:
            asks = _changes(self.asks_changed, self.ask_levels, 1)
        if not bids and not asks:
            return None
        prev = self.seq + self.skip
        self.seq = prev + 1
        self.skip = 0
        return BookUpdate(self.symbol, self.seq, prev, bids, asks, ts)


def _changes(
    changed: dict[int, int], levels: dict[int, _Level], sign: int
) -> tuple[tuple[int, int], ...]:
    out = []
    for key in sorted(changed):
        level = levels.get(key)
        new = 0 if level is None else level.total
        if new != changed[key]:
            out.append((key * sign, new))
    changed.clear()
    return tuple(out)


def _exact_int(value: Fraction) -> int:
    if value.denominator != 1:
        raise ValueError(f"{value} is not a whole number of balance units")
    return value.numerator


def _decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


# --------------------------------------------------------------------------- the engine


class Engine:
    """Books, accounts and orders of the embedded exchange (see the module docstring).

    ``history_limit`` bounds, per account, the closed orders (with their client order ids) and
    the fills kept for queries; ``max_trades`` bounds each symbol's trade log (the oldest are
    dropped; ids stay contiguous). ``None`` keeps everything.

    ``order_listeners``: the accounts whose :class:`OrderUpdate` events the calls return, read
    at each call (the caller may keep changing the set it gave); ``None`` returns every
    account's. Nothing else depends on it (see the module docstring).
    """

    def __init__(
        self,
        markets: Iterable[MarketSpec],
        *,
        taker_fee: Decimal = Decimal("0.001"),
        maker_fee: Decimal = Decimal(0),
        fee_account: str = "fees",
        history_limit: int | None = 10_000,
        max_trades: int | None = 100_000,
    ) -> None:
        taker_fee, maker_fee = Decimal(taker_fee), Decimal(maker_fee)
        for name, fee in (("taker_fee", taker_fee), ("maker_fee", maker_fee)):
            if not fee.is_finite() or not 0 <= fee < 1:
                raise ValueError(f"{name} must be within [0, 1), not {fee}")
        self.markets: dict[str, MarketSpec] = {spec.symbol: spec for spec in markets}
        if not self.markets:
            raise ValueError("an engine needs at least one market")
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.fee_account = fee_account
        self.history_limit = history_limit
        self.max_trades = max_trades
        fee_places = max(_decimal_places(taker_fee), _decimal_places(maker_fee))
        #: balances are integers in units of 10**-scale of every asset
        self.scale = max(
            spec.price_precision + spec.size_precision + fee_places
            for spec in self.markets.values()
        )
        self._unit: int = 10**self.scale
        self._books = {
            symbol: _Book(spec, self.scale, taker_fee, maker_fee)
            for symbol, spec in self.markets.items()
        }
        assets: dict[str, None] = {}
        for spec in self.markets.values():
            assets[spec.base] = None
            assets[spec.quote] = None
        self._assets = tuple(assets)
        self._accounts: dict[str, _Account] = {}
        self._order_numbers = count(1)
        self._fees = self._open(fee_account)
        self.order_listeners: Set[str] | None = None

    # ------------------------------------------------------------------ accounts and balances

    def default_balances(self) -> dict[str, Decimal]:
        """What a new key starts with: 1,000,000 of each quote asset, 100 of each base asset."""
        out = {spec.base: Decimal(100) for spec in self.markets.values()}
        out.update({spec.quote: Decimal(1_000_000) for spec in self.markets.values()})
        return out

    def has_account(self, account: str) -> bool:
        return account in self._accounts

    def open_account(
        self,
        account: str,
        balances: Mapping[str, Decimal] | None = None,
        *,
        track_positions: bool = True,
    ) -> None:
        """Create ``account`` with ``balances`` (default :meth:`default_balances`); an account that
        exists already is left as it is. ValueError for a negative amount or one finer than
        ``10**-scale``. ``track_positions=False`` skips the position bookkeeping (exact rational
        arithmetic on every fill) for accounts nobody asks about, like the synthetic flow's."""
        if account in self._accounts:
            return
        amounts = self.default_balances() if balances is None else balances
        units = {asset: self._to_units(Decimal(amount), asset) for asset, amount in amounts.items()}
        acct = self._open(account, track_positions)
        for asset, value in units.items():
            acct.total[asset] = acct.total.get(asset, 0) + value
            acct.locked.setdefault(asset, 0)

    def _open(self, account: str, track_positions: bool = True) -> _Account:
        acct = self._accounts[account] = _Account(account, self._assets, track_positions)
        return acct

    def _to_units(self, amount: Decimal, asset: str) -> int:
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"balance of {asset} must be a finite amount >= 0, not {amount}")
        _, digits, exponent = amount.as_tuple()
        assert isinstance(exponent, int)
        coefficient = int("".join(map(str, digits)) or "0")
        shift = exponent + self.scale
        factor: int = 10 ** abs(shift)
        if shift >= 0:
            return coefficient * factor
        whole, rest = divmod(coefficient, factor)
        if rest:
            raise ValueError(f"balance of {asset} {amount} has more than {self.scale} decimals")
        return whole

    def _units_decimal(self, units: int) -> Decimal:
        if not units:
            return _ZERO  # a maker's fee, most of the time: Decimals are immutable
        whole, rest = divmod(units, self._unit)
        if not rest:
            return Decimal(whole)
        return Decimal(fixed_text(units, self.scale).rstrip("0"))

    def balances(self, account: str) -> dict[str, tuple[Decimal, Decimal]]:
        """asset -> (total, available); ``{}`` for an unknown account."""
        acct = self._accounts.get(account)
        if acct is None:
            return {}
        to_dec = self._units_decimal
        return {
            asset: (to_dec(total), to_dec(total - acct.locked[asset]))
            for asset, total in acct.total.items()
        }

    def balance_units(self, account: str) -> dict[str, tuple[int, int]]:
        """asset -> (total, locked) in units of ``10**-scale`` (exact integers, for checks)."""
        acct = self._accounts.get(account)
        if acct is None:
            return {}
        return {asset: (total, acct.locked[asset]) for asset, total in acct.total.items()}

    def accounts(self) -> list[str]:
        return list(self._accounts)

    def positions(self, account: str) -> list[Position]:
        """Net base holding per symbol traded, with the average entry price and the realised
        profit and loss in the quote asset (before fees)."""
        acct = self._accounts.get(account)
        if acct is None:
            return []
        out = []
        for symbol in sorted(acct.positions):
            pos = acct.positions[symbol]
            spec = self.markets[symbol]
            out.append(
                Position(
                    venue="sim",
                    symbol=symbol,
                    size=Decimal(spec.size_text(pos.qty)),
                    avg_price=(
                        _fraction_decimal(pos.cost / pos.qty, spec.price_precision)
                        if pos.qty
                        else None
                    ),
                    realized_pnl=_fraction_decimal(
                        pos.realized, spec.price_precision + spec.size_precision
                    ),
                )
            )
        return out

    def total_assets(self) -> dict[str, Decimal]:
        """Sum of every asset over all accounts, the fee account included: conserved."""
        sums: dict[str, int] = {}
        for acct in self._accounts.values():
            for asset, total in acct.total.items():
                sums[asset] = sums.get(asset, 0) + total
        return {asset: self._units_decimal(units) for asset, units in sums.items()}

    # ------------------------------------------------------------------ orders

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            raise Rejected("unknown_symbol", "symbol", f"unknown symbol {symbol!r}")
        return book

    def _account(self, account: str) -> _Account:
        acct = self._accounts.get(account)
        if acct is None:
            raise Rejected("unknown_account", "account", f"unknown account {account!r}")
        return acct

    def place(
        self,
        account: str,
        symbol: str,
        side: Side,
        type: OrderType,
        size: int,
        price: int | None = None,
        *,
        time_in_force: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        client_order_id: str | None = None,
        ts: int,
    ) -> tuple[SimOrder, list[EngineEvent]]:
        """Place an order; raises :class:`Rejected`. A ``client_order_id`` the account already
        used returns ``(that order, [])`` and creates nothing (idempotent replay). Market orders
        never rest: what they cannot fill expires, whatever ``time_in_force`` says (FOK still
        fills entirely or is rejected)."""
        acct = self._accounts.get(account)
        if client_order_id is not None and acct is not None:
            existing = acct.cids.get(client_order_id)
            if existing is not None:
                return acct.index[existing].snapshot(), []
        book = self._book(symbol)
        if acct is None:
            acct = self._account(account)
        # (the enum lookups are skipped for values that are members already, as the flow's are)
        try:
            side = side if side.__class__ is Side else Side(side)
        except ValueError:
            raise Rejected("invalid_side", "side", f"invalid side {side!r}") from None
        try:
            type_ = type if type.__class__ is OrderType else OrderType(type)
        except ValueError:
            raise Rejected("invalid_type", "type", f"invalid order type {type!r}") from None
        try:
            tif = (
                time_in_force
                if time_in_force.__class__ is TimeInForce
                else TimeInForce(time_in_force)
            )
        except ValueError:
            raise Rejected(
                "invalid_time_in_force", "time_in_force", f"invalid time in force {time_in_force!r}"
            ) from None
        spec = book.spec
        if isinstance(size, bool) or not isinstance(size, int) or size < spec.min_size_lots:
            raise Rejected(
                "invalid_size",
                "size",
                f"size must be a whole number of lots >= {spec.min_size_lots}",
            )
        is_buy = side is _BUY
        limit_key: int | None
        if type_ is _LIMIT:
            if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
                raise Rejected("invalid_price", "price", "a limit order needs a price > 0 ticks")
            limit_key = price if is_buy else -price
        else:
            if price is not None:
                raise Rejected("invalid_price", "price", "a market order takes no price")
            limit_key = None
        if post_only and (type_ is _MARKET or tif is not _GTC):
            raise Rejected(
                "invalid_post_only", "post_only", "post_only needs a limit order with gtc"
            )
        if client_order_id is not None and not (
            isinstance(client_order_id, str) and 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID
        ):
            raise Rejected(
                "invalid_client_order_id",
                "client_order_id",
                f"client_order_id must be 1 to {MAX_CLIENT_ORDER_ID} characters",
            )
        opp_keys = book.ask_keys if is_buy else book.bid_keys
        if post_only and opp_keys and limit_key is not None and opp_keys[0] <= limit_key:
            raise Rejected("post_only_would_take", None, "post-only order would take liquidity")

        # What the order will do, before anything changes: the fills it will get (skipping the
        # account's own orders, which self-trade prevention cancels) and what they cost.
        fill_lots, notional = self._dry_run(book, is_buy, account, size, limit_key)
        if tif is _FOK and fill_lots < size:
            raise Rejected("fok_not_filled", None, "fill-or-kill order cannot be filled entirely")
        rests = type_ is _LIMIT and tif is _GTC and fill_lots < size
        if is_buy:
            need = notional * (book.quote_unit + book.taker_fee_unit)
            if rests and price is not None:
                need += (size - fill_lots) * price * book.buy_lock_unit
            asset = book.quote
        else:
            need = size * book.base_unit
            asset = book.base
        if acct.total[asset] - acct.locked[asset] < need:
            raise Rejected("insufficient_balance", None, f"insufficient {asset} balance")

        order = _Order(
            next(self._order_numbers),
            account,
            client_order_id,
            symbol,
            side,
            type_,
            price,
            size,
            tif,
            post_only,
            ts,
        )
        acct.index[order.id] = order
        if client_order_id is not None:
            acct.cids[client_order_id] = order.id
        listeners = self.order_listeners
        heard = listeners is None or account in listeners
        events: list[EngineEvent] = []
        if heard:
            events.append(OrderUpdate(account, _EV_ACCEPTED, order.snapshot(), None, ts))
        if opp_keys:
            self._match(book, order, acct, limit_key, ts, events)
        remaining = order.size - order.filled
        if remaining == 0:
            order.status = _FILLED
            self._close(acct, order)
        elif rests:
            acct.locked[asset] += (
                remaining * order.price * book.buy_lock_unit
                if is_buy
                else remaining * book.base_unit
            )
            acct.open[order.id] = order
            book.add(order)
        else:
            order.status = _EXPIRED
            order.updated_ts = ts
            self._close(acct, order)
            if heard:
                events.append(OrderUpdate(account, _EV_EXPIRED, order.snapshot(), None, ts))
        update = book.flush(ts)
        if update is not None:
            events.append(update)
        return order.snapshot(), events

    def _dry_run(
        self, book: _Book, is_buy: bool, account: str, size: int, limit_key: int | None
    ) -> tuple[int, int]:
        """(lots the order would fill now, their notional in ticks*lots)."""
        if is_buy:
            keys, levels, sign = book.ask_keys, book.ask_levels, 1
        else:
            keys, levels, sign = book.bid_keys, book.bid_levels, -1
        left = size
        notional = 0
        for key in keys:
            if limit_key is not None and key > limit_key:
                break
            price = key * sign
            for resting in levels[key].orders:
                if resting.account == account:
                    continue
                take = resting.size - resting.filled
                if take >= left:
                    return size, notional + left * price
                left -= take
                notional += take * price
        return size - left, notional

    def _match(
        self,
        book: _Book,
        order: _Order,
        acct: _Account,
        limit_key: int | None,
        ts: int,
        events: list[EngineEvent],
    ) -> None:
        if order.side is _BUY:
            keys, levels, changed = book.ask_keys, book.ask_levels, book.asks_changed
        else:
            keys, levels, changed = book.bid_keys, book.bid_levels, book.bids_changed
        account = order.account
        left = order.size - order.filled
        while left and keys:
            key = keys[0]
            if limit_key is not None and key > limit_key:
                break
            level = levels[key]
            if key not in changed:
                changed[key] = level.total
            queue = level.orders
            while queue and left:
                maker = queue[0]
                maker_left = maker.size - maker.filled
                if maker.account == account:
                    # Self-trade prevention: cancel the resting order, go on matching.
                    queue.popleft()
                    level.total -= maker_left
                    self._retire(acct, maker, _CANCELED, ts)
                    listeners = self.order_listeners
                    if listeners is None or account in listeners:
                        events.append(
                            OrderUpdate(account, _EV_CANCELED, maker.snapshot(), None, ts)
                        )
                    continue
                lots = left if left < maker_left else maker_left
                level.total -= lots
                left -= lots
                if lots == maker_left:
                    queue.popleft()
                self._fill(book, order, maker, lots, ts, events)
            if not queue:
                del levels[key]
                del keys[0]

    def _fill(
        self,
        book: _Book,
        taker: _Order,
        maker: _Order,
        lots: int,
        ts: int,
        events: list[EngineEvent],
    ) -> None:
        price = maker.price
        notional = price * lots
        quote_units = notional * book.quote_unit
        base_units = lots * book.base_unit
        taker_fee = notional * book.taker_fee_unit
        maker_fee = notional * book.maker_fee_unit
        accounts = self._accounts
        tacct = accounts[taker.account]
        macct = accounts[maker.account]
        base, quote = book.base, book.quote
        if taker.side is _BUY:
            tacct.total[base] += base_units
            tacct.total[quote] -= quote_units + taker_fee
            macct.total[base] -= base_units
            macct.locked[base] -= base_units
            macct.total[quote] += quote_units - maker_fee
            signed = lots
        else:
            tacct.total[base] -= base_units
            tacct.total[quote] += quote_units - taker_fee
            macct.total[quote] -= quote_units + maker_fee
            macct.locked[quote] -= quote_units + maker_fee
            macct.total[base] += base_units
            signed = -lots
        self._fees.total[quote] += taker_fee + maker_fee

        trade_id = book.next_trade_id
        book.next_trade_id = trade_id + 1
        book.last_price = price
        symbol = book.symbol
        trade = TradeEvent(
            symbol,
            trade_id,
            price,
            lots,
            taker.side,
            ts,
            maker.id,
            taker.id,
            maker.account,
            taker.account,
        )
        trades = book.trades
        trades.append(trade)
        if self.max_trades is not None and len(trades) >= self.max_trades + 1024:
            drop = len(trades) - self.max_trades
            del trades[:drop]
            book.trade_base += drop
        events.append(trade)

        listeners = self.order_listeners
        for o, acct, liquidity, fee_units, delta in (
            (maker, macct, _MAKER, maker_fee, -signed),
            (taker, tacct, _TAKER, taker_fee, signed),
        ):
            o.filled += lots
            o.quote_filled += notional
            o.updated_ts = ts
            done = o.filled == o.size
            o.status = _FILLED if done else _PARTIAL
            if done and o is maker:
                del acct.open[o.id]
                self._close(acct, o)
            fill = FillRecord(
                o.account,
                o.id,
                o.cid,
                trade_id,
                symbol,
                o.side,
                price,
                lots,
                self._units_decimal(fee_units),
                quote,
                liquidity,
                ts,
            )
            fills = acct.fills
            fills.append(fill)
            if self.history_limit is not None and len(fills) > self.history_limit:
                fills.popleft()
            if acct.track_positions:
                _move_position(acct, symbol, delta, price)
            if listeners is None or o.account in listeners:
                events.append(OrderUpdate(o.account, _EV_FILL, o.snapshot(), fill, ts))

    def _heard(self, account: str) -> bool:
        """Whether the calls return the account's OrderUpdates (see ``order_listeners``)."""
        listeners = self.order_listeners
        return listeners is None or account in listeners

    def _retire(self, acct: _Account, order: _Order, status: OrderStatus, ts: int) -> None:
        """Take a resting order off the account's open orders and release what it locked (the
        caller takes it off the book)."""
        book = self._books[order.symbol]
        left = order.size - order.filled
        if order.side is _BUY:
            acct.locked[book.quote] -= left * order.price * book.buy_lock_unit
        else:
            acct.locked[book.base] -= left * book.base_unit
        order.status = status
        order.updated_ts = ts
        del acct.open[order.id]
        self._close(acct, order)

    def _close(self, acct: _Account, order: _Order) -> None:
        closed = acct.closed
        closed.append(order)
        limit = self.history_limit
        if limit is not None and len(closed) > limit:
            old = closed.popleft()
            del acct.index[old.id]
            if old.cid is not None:
                acct.cids.pop(old.cid, None)

    def cancel(self, account: str, order_id: str, *, ts: int) -> tuple[SimOrder, list[EngineEvent]]:
        """Cancel an open order; :class:`Rejected` ``unknown_order`` if it is not open."""
        acct = self._accounts.get(account)
        order = None if acct is None else acct.open.get(order_id)
        if order is None or acct is None:
            raise Rejected("unknown_order", "order_id", f"no open order {order_id!r}")
        book = self._books[order.symbol]
        book.remove(order)
        self._retire(acct, order, _CANCELED, ts)
        snap = order.snapshot()
        events: list[EngineEvent] = []
        if self._heard(account):
            events.append(OrderUpdate(account, _EV_CANCELED, snap, None, ts))
        update = book.flush(ts)
        if update is not None:
            events.append(update)
        return snap, events

    def cancel_all(
        self, account: str, symbol: str | None = None, *, ts: int
    ) -> tuple[list[SimOrder], list[EngineEvent]]:
        """Cancel the account's open orders (in ``symbol``, or everywhere)."""
        if symbol is not None:
            self._book(symbol)
        acct = self._accounts.get(account)
        if acct is None:
            return [], []
        canceled: list[SimOrder] = []
        events: list[EngineEvent] = []
        books: dict[str, _Book] = {}
        heard = self._heard(account)
        for order in [o for o in acct.open.values() if symbol is None or o.symbol == symbol]:
            book = books.setdefault(order.symbol, self._books[order.symbol])
            book.remove(order)
            self._retire(acct, order, _CANCELED, ts)
            snap = order.snapshot()
            canceled.append(snap)
            if heard:
                events.append(OrderUpdate(account, _EV_CANCELED, snap, None, ts))
        for book in books.values():
            update = book.flush(ts)
            if update is not None:
                events.append(update)
        return canceled, events

    def amend(
        self, account: str, order_id: str, new_size: int, *, ts: int
    ) -> tuple[SimOrder, list[EngineEvent]]:
        """Reduce an open order's (total) size; it keeps its place in the queue. Rejected
        ``unknown_order``, ``amend_not_smaller`` (not below the current size) or
        ``amend_below_filled`` (not above what is already filled)."""
        acct = self._accounts.get(account)
        order = None if acct is None else acct.open.get(order_id)
        if order is None or acct is None:
            raise Rejected("unknown_order", "order_id", f"no open order {order_id!r}")
        if isinstance(new_size, bool) or not isinstance(new_size, int):
            raise Rejected("invalid_size", "size", "size must be a whole number of lots")
        if new_size >= order.size:
            raise Rejected("amend_not_smaller", None, "an amend can only reduce the size")
        if new_size <= order.filled:
            raise Rejected("amend_below_filled", None, "the new size must be above the filled size")
        book = self._books[order.symbol]
        lots = order.size - new_size
        book.reduce(order, lots)
        if order.side is _BUY:
            acct.locked[book.quote] -= lots * order.price * book.buy_lock_unit
        else:
            acct.locked[book.base] -= lots * book.base_unit
        order.size = new_size
        order.updated_ts = ts
        snap = order.snapshot()
        events: list[EngineEvent] = []
        if self._heard(account):
            events.append(OrderUpdate(account, _EV_AMENDED, snap, None, ts))
        update = book.flush(ts)
        if update is not None:
            events.append(update)
        return snap, events

    # ------------------------------------------------------------------ order queries

    def order(self, account: str, order_id: str) -> SimOrder | None:
        acct = self._accounts.get(account)
        order = None if acct is None else acct.index.get(order_id)
        return None if order is None else order.snapshot()

    def order_is_open(self, account: str, order_id: str) -> bool:
        acct = self._accounts.get(account)
        return acct is not None and order_id in acct.open

    def open_order_ids(self, account: str) -> KeysView[str]:
        """The ids of the account's open orders: a live view (empty for an unknown account),
        for a caller testing many ids at once."""
        acct = self._accounts.get(account)
        return ({} if acct is None else acct.open).keys()

    def order_by_client_id(self, account: str, client_order_id: str) -> SimOrder | None:
        acct = self._accounts.get(account)
        order_id = None if acct is None else acct.cids.get(client_order_id)
        if acct is None or order_id is None:
            return None
        return acct.index[order_id].snapshot()

    def orders(
        self, account: str, symbol: str | None = None, *, open_only: bool = True
    ) -> list[SimOrder]:
        """The account's orders, oldest first (closed ones as far as ``history_limit`` keeps)."""
        acct = self._accounts.get(account)
        if acct is None:
            return []
        found: Iterable[_Order] = acct.open.values()
        if not open_only:
            found = sorted(acct.index.values(), key=lambda o: o.num)
        return [o.snapshot() for o in found if symbol is None or o.symbol == symbol]

    def fills(self, account: str, symbol: str | None = None) -> list[FillRecord]:
        """The account's fills, oldest first (as far as ``history_limit`` keeps)."""
        acct = self._accounts.get(account)
        if acct is None:
            return []
        return [f for f in acct.fills if symbol is None or f.symbol == symbol]

    # ------------------------------------------------------------------ market data views

    def depth(
        self, symbol: str, n: int | None = None
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids best first, asks best first) as (ticks, total lots), ``n`` levels a side."""
        book = self._book(symbol)
        bid_levels, ask_levels = book.bid_levels, book.ask_levels
        bid_keys = book.bid_keys if n is None else book.bid_keys[:n]
        ask_keys = book.ask_keys if n is None else book.ask_keys[:n]
        return (
            [(-key, bid_levels[key].total) for key in bid_keys],
            [(key, ask_levels[key].total) for key in ask_keys],
        )

    def best(self, symbol: str) -> tuple[int | None, int | None]:
        """(best bid, best ask) in ticks, None for an empty side."""
        book = self._book(symbol)
        return (
            -book.bid_keys[0] if book.bid_keys else None,
            book.ask_keys[0] if book.ask_keys else None,
        )

    def level_counts(self, symbol: str) -> tuple[int, int]:
        """Number of (bid, ask) price levels."""
        book = self._book(symbol)
        return len(book.bid_keys), len(book.ask_keys)

    def seq(self, symbol: str) -> int:
        return self._book(symbol).seq

    def skip_sequence(self, symbol: str) -> None:
        """The next BookUpdate gets ``seq = seq + 2`` (``prev_seq = seq + 1`` was never sent)."""
        self._book(symbol).skip += 1

    def trades(self, symbol: str, since_id: int = 0, limit: int | None = None) -> list[TradeEvent]:
        """Trades with ``trade_id > since_id``, oldest first (ids 1, 2, 3, ...; the oldest beyond
        ``max_trades`` are no longer kept)."""
        book = self._book(symbol)
        start = max(0, since_id - book.trade_base)
        end = None if limit is None else start + max(0, limit)
        return book.trades[start:end]

    def last_trade_id(self, symbol: str) -> int:
        return self._book(symbol).next_trade_id - 1

    def last_price(self, symbol: str) -> int | None:
        return self._book(symbol).last_price


def _move_position(acct: _Account, symbol: str, delta: int, price: int) -> None:
    """Apply a fill of ``delta`` signed lots at ``price`` to the account's position."""
    pos = acct.positions.get(symbol)
    if pos is None:
        pos = acct.positions[symbol] = _Position()
    qty = pos.qty
    if qty == 0 or (qty > 0) == (delta > 0):
        pos.cost += price * delta
        pos.qty = qty + delta
        return
    closing = min(abs(delta), abs(qty))
    avg = pos.cost / qty
    pos.realized += (price - avg) * (closing if qty > 0 else -closing)
    new_qty = qty + delta
    if new_qty == 0:
        pos.cost = Fraction(0)
    elif (new_qty > 0) == (qty > 0):
        pos.cost = avg * new_qty
    else:
        pos.cost = Fraction(price * new_qty)
    pos.qty = new_qty
