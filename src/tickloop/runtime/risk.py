"""Pre-trade risk checks: every order a bot asks for is judged here before any executor sees it.

A sans-I/O core. :meth:`RiskEngine.check` takes the order (:class:`OrderIntent`), what the
runtime knows about the account at that moment (:class:`Exposure` for the bot and for all bots),
the market's mid price and the time, and returns a :class:`RiskDecision`; nothing else is read.
The only state kept here is what the checks themselves need: the kill switches and the times of
recently accepted orders (for the orders-per-second limit), which :meth:`RiskEngine.check`
records when it accepts.

Checks, in the order they run (the first failure decides; its name is the decision's
``check`` and the :class:`~tickloop.models.RiskRejected` event's):

``kill_switch``     the engine's or the bot's kill switch is on: no new order at all
``size``            the size is not positive, or a limit order has no positive price
``price_band``      a limit price further than ``price_band`` (a fraction) from the mid; with a
                    band set, an order when there is no mid is refused too (no reference)
``max_order_notional``  price (mid for market orders) x size above the limit
``max_position``    the position after the order, counting the bot's open orders on the same
                    side as if they filled, would exceed the limit in absolute size
``max_open_orders`` as many open orders as allowed already
``max_orders_per_second``  as many orders accepted within the last second as allowed
``max_daily_loss``  the day's PnL (realised + unrealised, from the caller) at or below minus the
                    limit: only orders that reduce the position (without flipping it) pass

Each check runs against the bot's :class:`RiskLimits` and then against the engine-wide ones
(``global`` limits, with exposure summed over every bot); a rejection says which (``scope``).
A limit of None is not checked.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import msgspec

from ..exceptions import ConfigError
from ..models import OrderType, Side

__all__ = [
    "Exposure",
    "OrderIntent",
    "RiskDecision",
    "RiskEngine",
    "RiskLimits",
]

_ZERO = Decimal(0)
# enum members as module names: on Python 3.11 a member read off its class goes through
# EnumType.__getattr__ (~65 ns against ~5): the order path reads many
_BUY = Side.BUY
_LIMIT = OrderType.LIMIT
_WINDOW = 1.0  # seconds, for max_orders_per_second


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Limits for one bot, or for all bots together. None: not checked."""

    max_position: Decimal | None = None  # absolute base size per symbol
    max_order_notional: Decimal | None = None  # quote units per order
    max_open_orders: int | None = None
    max_orders_per_second: int | None = None
    max_daily_loss: Decimal | None = None  # positive quote units
    price_band: Decimal | None = None  # fraction of the mid, e.g. Decimal("0.05") for 5 %

    def __post_init__(self) -> None:
        for name in ("max_position", "max_order_notional", "max_daily_loss", "price_band"):
            value = getattr(self, name)
            if value is not None and not (value.is_finite() and value >= 0):
                raise ConfigError(f"{name} must be >= 0, got {value}", field=name)
        for name in ("max_open_orders", "max_orders_per_second"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}", field=name)


class OrderIntent(msgspec.Struct, frozen=True, kw_only=True):
    """An order a bot asks for, before it is sent anywhere."""

    bot: str
    symbol: str
    side: Side
    size: Decimal
    type: OrderType = OrderType.LIMIT
    price: Decimal | None = None  # None for market orders


class Exposure(msgspec.Struct, frozen=True, kw_only=True):
    """What the account holds at check time, for one bot or summed over all bots."""

    position: Decimal = _ZERO  # signed size of the order's symbol
    open_buy: Decimal = _ZERO  # remaining size of open buy orders of the symbol
    open_sell: Decimal = _ZERO
    open_orders: int = 0  # open orders of every symbol
    daily_pnl: Decimal = _ZERO  # realised + unrealised since the day started


class RiskDecision(msgspec.Struct, frozen=True, kw_only=True):
    """``accepted`` or not; a rejection names the ``check``, its ``scope`` and why."""

    accepted: bool
    check: str | None = None
    scope: Literal["bot", "global"] | None = None
    reason: str = ""


_ACCEPT = RiskDecision(accepted=True)


@dataclass(slots=True)
class _Switch:
    on: bool = False
    reason: str = ""


class RiskEngine:
    """Per-bot and engine-wide limits, kill switches, and the recent order times."""

    __slots__ = ("_bot_kill", "_bot_limits", "_global_kill", "_recent", "_recent_all",
                 "default_limits", "global_limits")

    def __init__(
        self,
        *,
        default_limits: RiskLimits | None = None,
        global_limits: RiskLimits | None = None,
    ) -> None:
        #: Limits of a bot that has none of its own.
        self.default_limits = default_limits or RiskLimits()
        #: Limits on all bots together.
        self.global_limits = global_limits or RiskLimits()
        self._bot_limits: dict[str, RiskLimits] = {}
        self._global_kill = _Switch()
        self._bot_kill: dict[str, _Switch] = {}
        self._recent: dict[str, deque[float]] = {}
        self._recent_all: deque[float] = deque()

    # ------------------------------------------------------------------ configuration

    def set_limits(self, bot: str, limits: RiskLimits | None) -> None:
        """Give ``bot`` its own limits (None: back to the defaults)."""
        if limits is None:
            self._bot_limits.pop(bot, None)
        else:
            self._bot_limits[bot] = limits

    def limits(self, bot: str) -> RiskLimits:
        return self._bot_limits.get(bot, self.default_limits)

    def kill(self, bot: str | None = None, reason: str = "kill switch") -> None:
        """Turn on the kill switch of ``bot`` (of the whole engine when None): every new
        order is refused until :meth:`revive`. Cancelling what is open is the caller's job."""
        switch = self._global_kill if bot is None else self._bot_kill.setdefault(bot, _Switch())
        switch.on = True
        switch.reason = reason

    def revive(self, bot: str | None = None) -> None:
        switch = self._global_kill if bot is None else self._bot_kill.get(bot)
        if switch is not None:
            switch.on = False
            switch.reason = ""

    def killed(self, bot: str | None = None) -> bool:
        """Whether ``bot`` may not trade (its switch or the engine's); the engine's with None."""
        if self._global_kill.on:
            return True
        switch = self._bot_kill.get(bot) if bot is not None else None
        return switch is not None and switch.on

    def reads(self, bot: str) -> tuple[bool, bool]:
        """What :meth:`check` reads of an order of ``bot`` under the limits set now: the
        exposures (only ``max_position``, ``max_open_orders`` and ``max_daily_loss`` do), and
        the mid (only ``price_band`` and ``max_order_notional`` do). A caller may skip working
        out what is not read: :meth:`check` then decides the same with any value of it."""
        mine = self._bot_limits.get(bot, self.default_limits)
        every = self.global_limits
        exposure = not (mine.max_position is None and mine.max_open_orders is None
                        and mine.max_daily_loss is None and every.max_position is None
                        and every.max_open_orders is None and every.max_daily_loss is None)
        mid = not (mine.price_band is None and mine.max_order_notional is None
                   and every.price_band is None and every.max_order_notional is None)
        return exposure, mid

    # ------------------------------------------------------------------ the check

    def check(
        self,
        intent: OrderIntent,
        *,
        bot: Exposure,
        total: Exposure,
        mid: Decimal | None,
        now: float,
    ) -> RiskDecision:
        """Judge ``intent`` (see the module docstring). ``bot`` is the bot's exposure, ``total``
        the sum over every bot (this one included); ``now`` a monotonic time in seconds. An
        accepted order is recorded for the orders-per-second limits."""
        if self._global_kill.on:
            return _reject("kill_switch", "global", self._global_kill.reason)
        switch = self._bot_kill.get(intent.bot)
        if switch is not None and switch.on:
            return _reject("kill_switch", "bot", switch.reason)
        if not (intent.size.is_finite() and intent.size > 0):
            return _reject("size", "bot", f"size must be > 0, got {intent.size}")
        price = intent.price
        if intent.type is _LIMIT and (price is None or not price.is_finite()
                                               or price <= 0):
            return _reject("size", "bot", f"a limit order needs a price > 0, got {price}")
        recent = self._recent.get(intent.bot)
        if recent is None:
            recent = self._recent[intent.bot] = deque()
        _expire(recent, now)
        _expire(self._recent_all, now)
        decision = self._check_scope(intent, self.limits(intent.bot), bot, mid, len(recent),
                                     "bot")
        if decision is None:
            decision = self._check_scope(intent, self.global_limits, total, mid,
                                         len(self._recent_all), "global")
        if decision is not None:
            return decision
        recent.append(now)
        self._recent_all.append(now)
        return _ACCEPT

    @staticmethod
    def _check_scope(
        intent: OrderIntent,
        limits: RiskLimits,
        exposure: Exposure,
        mid: Decimal | None,
        recent: int,
        scope: Literal["bot", "global"],
    ) -> RiskDecision | None:
        size = intent.size
        ref = intent.price if intent.price is not None else mid
        band = limits.price_band
        if band is not None:
            if mid is None or mid <= 0:
                return _reject("price_band", scope, "no mid price to check the band against")
            if intent.price is not None and abs(intent.price - mid) > band * mid:
                return _reject("price_band", scope,
                               f"price {intent.price} is more than {band} from the mid {mid}")
        cap = limits.max_order_notional
        if cap is not None:
            if ref is None:
                return _reject("max_order_notional", scope,
                               "no price or mid to value a market order")
            notional = ref * size
            if notional > cap:
                return _reject("max_order_notional", scope,
                               f"notional {notional} above {cap}")
        cap = limits.max_position
        signed = size if intent.side is _BUY else -size
        if cap is not None:
            pending = exposure.open_buy if intent.side is _BUY else -exposure.open_sell
            after = exposure.position + pending + signed
            if abs(after) > cap and abs(after) > abs(exposure.position + pending):
                return _reject("max_position", scope,
                               f"position would reach {after}, limit {cap}")
        cap_n = limits.max_open_orders
        if cap_n is not None and exposure.open_orders >= cap_n:
            return _reject("max_open_orders", scope,
                           f"{exposure.open_orders} orders open, limit {cap_n}")
        cap_n = limits.max_orders_per_second
        if cap_n is not None and recent >= cap_n:
            return _reject("max_orders_per_second", scope,
                           f"{recent} orders within the last second, limit {cap_n}")
        cap = limits.max_daily_loss
        if cap is not None and exposure.daily_pnl <= -cap:
            position = exposure.position
            reduces = position != 0 and (position > 0) != (signed > 0) and size <= abs(position)
            if not reduces:
                return _reject("max_daily_loss", scope,
                               f"daily PnL {exposure.daily_pnl} at or below -{cap}; "
                               "only orders that reduce the position pass")
        return None


def _reject(check: str, scope: Literal["bot", "global"], reason: str) -> RiskDecision:
    return RiskDecision(accepted=False, check=check, scope=scope, reason=reason)


def _expire(times: deque[float], now: float) -> None:
    cutoff = now - _WINDOW
    while times and times[0] <= cutoff:
        times.popleft()
