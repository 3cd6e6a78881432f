"""The live executor: orders on the venue's private API, reconciled after every reconnect and
every restart, so the runtime never loses an order and never sends one twice.

It trades through :class:`tickloop.AsyncClient` (REST: place, cancel, list orders and fills)
and hears about its orders on a private :class:`tickloop.StreamClient` (order events, fills
inside them). Invariants:

* **Journal first.** Every order gets a client order id, and the intent (bot, symbol, side,
  size, price, id) is committed to the store, status ``pending``, *before* the request is sent.
  The REST client retries a placement with the same id, and the venue answers a repeated id
  with the existing order, so a placement creates at most one order.
* **One source of events, deduplicated.** Order events come from the private stream, from the
  REST answers, and from reconciliation; each is applied once: a fill once per
  ``(order id, trade id)``, a status change once per (status, filled size).
* **Reconciliation** runs at start and after every ``Reconnected`` of the private stream: the
  venue's orders (``status=all``) and recent fills are compared with what is known; a fill
  missed while disconnected is applied (and reaches the bot and the portfolio) and an order that
  ended meanwhile gets its final event. At start, a journal entry still ``pending`` whose id the
  venue does not know never reached it: it is marked rejected (``lost before reaching the
  venue``) and never resent; one the venue knows is adopted.
* Fills already in the store at start are known (the engine replays them into the portfolios),
  so a restart counts no fill twice.

Needs a store (``Engine(store=...)``): without a journal, a crash could leave an order the
runtime does not know about.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from ..client.rest import AsyncClient
from ..client.stream import StreamClient
from ..exceptions import ConfigError, ExchangeError
from ..models import (
    Fill,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Reconnected,
    Side,
    TimeInForce,
    Trade,
)
from .clock import Clock
from .executor import BookOf, Emit
from .store import Store

__all__ = ["LiveExecutor"]

log = logging.getLogger("tickloop.runtime.live")
_ZERO = Decimal(0)
_KIND_OF_FINAL = {
    OrderStatus.CANCELED: OrderEventKind.CANCELED,
    OrderStatus.EXPIRED: OrderEventKind.EXPIRED,
    OrderStatus.REJECTED: OrderEventKind.REJECTED,
}


class LiveExecutor:
    """Orders on the venue (module docstring). ``credentials`` is a
    :class:`tickloop.Credentials`; ``rest_url``/``ws_url`` the venue's addresses;
    ``stream_options`` / ``rest_options`` go to the private StreamClient / the AsyncClient
    (reconnect backoff, timeouts)."""

    name = "live"

    def __init__(self, credentials: Any, *, rest_url: str | None = None,
                 ws_url: str | None = None, venue: str | None = None,
                 stream_options: dict[str, Any] | None = None,
                 rest_options: dict[str, Any] | None = None,
                 lost_after: float = 1.0) -> None:
        if credentials is None:
            raise ConfigError("the live executor needs credentials", field="credentials")
        self._credentials = credentials
        self.rest_url = rest_url
        self.ws_url = ws_url
        self._venue = venue
        if not lost_after >= 0:
            raise ConfigError(f"lost_after must be >= 0 seconds, got {lost_after!r}",
                              field="lost_after")
        self.lost_after = float(lost_after)
        self._stream_options = dict(stream_options or {})
        self._rest_options = dict(rest_options or {})
        self._emit: Emit | None = None
        self._clock: Clock | None = None
        self.venue = venue or "sim"
        self.rest: AsyncClient | None = None
        self.feed: StreamClient | None = None
        self.store: Store | None = None
        self._orders: dict[str, Order] = {}  # venue id -> latest known state
        self._bot_of: dict[str, str] = {}  # client order id -> bot
        # journal rows of a previous process still ``pending``: sent or not, nobody knows yet
        self._pending: dict[str, dict[str, Any]] = {}
        self._fills: set[tuple[str, int]] = set()
        self._reconciling: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: Reconciliations run, fills and final states they recovered, pending intents lost.
        self.reconciliations = 0
        self.recovered_fills = 0
        self.recovered_states = 0
        self.lost = 0

    # ------------------------------------------------------------------ lifecycle

    def bind(self, *, emit: Emit, book: BookOf, clock: Clock, venue: str) -> None:
        self._emit = emit
        self._clock = clock
        self.venue = self._venue or venue

    async def start(self, store: Store | None) -> None:
        if store is None:
            raise ConfigError("the live executor needs the engine's store (its journal)",
                              field="store")
        self.store = store
        await self._load_journal(store)
        self.rest = AsyncClient(self.venue, url=self.rest_url, credentials=self._credentials,
                                **self._rest_options)
        self.feed = StreamClient(self.venue, url=self.ws_url, rest=self.rest,
                                 credentials=self._credentials, **self._stream_options)
        await self.feed.start()
        await self.feed.subscribe_status(self._on_status)
        await self.feed.subscribe_orders(self._on_stream)
        await self.feed.subscribe_fills(self._on_fill)
        await self.reconcile()

    async def close(self) -> None:
        task, self._reconciling = self._reconciling, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if self.feed is not None:
            await self.feed.aclose()
        if self.rest is not None:
            await self.rest.close()

    async def _load_journal(self, store: Store) -> None:
        after = None
        while True:
            page = await store.orders(limit=1000, after=after)
            for row in page.items:
                if row["venue"] != self.venue:
                    continue
                cid = row["client_order_id"]
                self._bot_of[cid] = row["bot"]
                if row["status"] == "pending":
                    self._pending[cid] = row
                elif row["order_id"]:
                    self._orders[row["order_id"]] = _order_of_row(row)
            if page.next is None:
                break
            after = page.next
        after = None
        while True:
            page = await store.fills(limit=1000, after=after)
            for row in page.items:
                if row["venue"] == self.venue:
                    self._fills.add((row["order_id"], int(row["trade_id"])))
            if page.next is None:
                break
            after = page.next

    # ------------------------------------------------------------------ events in

    def _apply(self, event: OrderEvent) -> None:
        """Apply one order event once: a fill (``event.fill``) once per trade, a state change
        once per (status, filled size)."""
        order = event.order
        bot = self._bot_of.get(order.client_order_id or "")
        if bot is None:
            return  # an order of this key the runtime did not place
        self._pending.pop(order.client_order_id or "", None)
        known = self._orders.get(order.id)
        fill = event.fill
        if fill is not None:
            key = (order.id, fill.trade_id)
            if key in self._fills:
                return
            self._fills.add(key)
        elif known is not None and known.status == order.status \
                and known.filled_size == order.filled_size:
            return
        newer = known is None or order.filled_size >= known.filled_size or order.status.is_final
        reopened = known is not None and known.status.is_final and not order.status.is_final
        if newer and not reopened:
            self._orders[order.id] = order
        emit = self._emit
        assert emit is not None
        emit(bot, event)

    def _on_fill(self, fill: Fill) -> None:
        """A fill from the private stream (the venue sends fills apart from order events)."""
        order = self._orders.get(fill.order_id)
        if order is None:
            if self._bot_of.get(fill.client_order_id or "") is None:
                return
            # the order event has not arrived yet: the fill's own data is enough to book it
            order = Order(venue=self.venue, symbol=fill.symbol, id=fill.order_id,
                          client_order_id=fill.client_order_id, side=fill.side,
                          type=OrderType.LIMIT, price=fill.price, size=fill.size,
                          filled_size=fill.size, status=OrderStatus.PARTIALLY_FILLED,
                          created_ts=fill.ts, updated_ts=fill.ts)
        self._apply(OrderEvent(venue=self.venue, kind=OrderEventKind.FILL, order=order,
                               fill=fill, ts=fill.ts))

    def _on_stream(self, event: OrderEvent) -> None:
        if event.fill is not None:  # the fill is booked from the fills stream, once
            event = OrderEvent(venue=event.venue, kind=event.kind, order=event.order,
                               ts=event.ts, recv_ts=event.recv_ts)
        self._apply(event)

    def _on_status(self, event: Any) -> None:
        if isinstance(event, Reconnected) and (self._reconciling is None
                                               or self._reconciling.done()):
            self._reconciling = asyncio.get_running_loop().create_task(
                self._reconcile_logged(), name="tickloop-live-reconcile")

    async def _reconcile_logged(self) -> None:
        try:
            await self.reconcile()
        except Exception:
            log.exception("%s: reconciliation failed; the next reconnect retries it", self.venue)

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self) -> None:
        """Bring what is known in line with the venue (module docstring)."""
        rest = self.rest
        assert rest is not None
        async with self._lock:
            self.reconciliations += 1
            venue_orders = await rest.orders(status="all")
            fills = await rest.fills(limit=1000)
            by_id = {o.id: o for o in venue_orders}
            by_cid = {o.client_order_id: o for o in venue_orders if o.client_order_id}
            for fill in fills:  # oldest first: the order's state as of its last fill
                order = by_id.get(fill.order_id)
                if order is None or (fill.order_id, fill.trade_id) in self._fills:
                    continue
                if self._bot_of.get(order.client_order_id or "") is None:
                    continue
                self.recovered_fills += 1
                self._apply(OrderEvent(venue=self.venue, kind=OrderEventKind.FILL, order=order,
                                       fill=fill, ts=fill.ts))
            for order in venue_orders:
                if self._bot_of.get(order.client_order_id or "") is None:
                    continue
                known = self._orders.get(order.id)
                if known is not None and known.status == order.status \
                        and known.filled_size == order.filled_size:
                    continue
                if known is not None:
                    self.recovered_states += 1
                kind = _KIND_OF_FINAL.get(order.status, OrderEventKind.ACCEPTED
                                          if not order.filled_size else OrderEventKind.AMENDED)
                self._apply(OrderEvent(venue=self.venue, kind=kind, order=order,
                                       ts=order.updated_ts))
            orphans = [(cid, row) for cid, row in self._pending.items() if cid not in by_cid]
        if not orphans:
            return
        # Journaled by a process that died while sending them: a request already on the wire
        # may still land, so look again by client order id after ``lost_after`` seconds.
        clock = self._clock
        assert clock is not None
        await clock.sleep(self.lost_after)
        for cid, row in orphans:
            if cid not in self._pending:
                continue  # it turned up meanwhile (stream or reconciliation)
            try:
                order = await rest.order_by_client_id(cid)
            except ExchangeError as exc:
                if exc.status != 404:
                    raise
            else:
                self._apply(OrderEvent(venue=self.venue, kind=OrderEventKind.ACCEPTED,
                                       order=order, ts=order.updated_ts))
                continue
            self._pending.pop(cid, None)
            self.lost += 1
            ts = clock.now_ns()
            lost = _order_of_row(row, status=OrderStatus.REJECTED,
                                 reason="lost before reaching the venue", ts=ts)
            self._orders.setdefault(lost.id, lost)
            emit = self._emit
            assert emit is not None
            emit(row["bot"], OrderEvent(venue=self.venue, kind=OrderEventKind.REJECTED,
                                        order=lost, ts=ts))

    # ------------------------------------------------------------------ orders out

    async def place(self, bot: str, *, symbol: str, side: Side, type: OrderType, size: Decimal,
                    price: Decimal | None, time_in_force: TimeInForce, post_only: bool,
                    client_order_id: str) -> Order:
        rest, store, clock = self.rest, self.store, self._clock
        assert rest is not None and store is not None and clock is not None
        self._bot_of[client_order_id] = bot
        row: dict[str, Any] = {"bot": bot, "venue": self.venue, "symbol": symbol,
               "client_order_id": client_order_id, "side": str(side), "type": str(type),
               "price": None if price is None else str(price), "size": str(size),
               "time_in_force": str(time_in_force), "post_only": post_only,
               "created_ts": clock.now_ns()}
        await store.record_intent(**row)  # committed before anything is sent
        order = await rest.place_order(
            symbol, side=side, type=type, size=size, price=price,
            time_in_force=None if type is OrderType.MARKET else time_in_force,
            post_only=post_only, client_order_id=client_order_id)
        self._apply(OrderEvent(venue=self.venue, kind=OrderEventKind.ACCEPTED, order=order,
                               ts=order.created_ts))
        return self._orders.get(order.id, order)

    async def cancel(self, bot: str, order_id: str) -> Order | None:
        rest = self.rest
        assert rest is not None
        known = self._orders.get(order_id)
        if known is None or self._bot_of.get(known.client_order_id or "") != bot \
                or known.status.is_final:
            return None
        try:
            order = await rest.cancel_order(order_id)
        except ExchangeError as exc:
            if exc.status in (400, 404, 409, 422):
                return None  # not open any more: the stream or reconciliation says how it ended
            raise
        self._apply(OrderEvent(venue=self.venue, kind=OrderEventKind.CANCELED, order=order,
                               ts=order.updated_ts))
        return order

    async def cancel_all(self, bot: str, symbol: str | None = None) -> list[Order]:
        out = []
        for order in self.open_orders(bot):
            if symbol is None or order.symbol == symbol:
                done = await self.cancel(bot, order.id)
                if done is not None:
                    out.append(done)
        return out

    def known_orders(self) -> list[Order]:
        """Every order the executor knows, of every bot, by venue id."""
        return [self._orders[k] for k in sorted(self._orders)]

    def known_fills(self) -> set[tuple[str, int]]:
        return set(self._fills)

    def open_orders(self, bot: str) -> list[Order]:
        bot_of = self._bot_of
        return sorted((o for o in self._orders.values() if not o.status.is_final
                       and bot_of.get(o.client_order_id or "") == bot),
                      key=lambda o: (o.created_ts, o.id))

    def open_size(self, bot: str, symbol: str) -> tuple[Decimal, Decimal]:
        buy = sell = _ZERO
        for o in self.open_orders(bot):
            if o.symbol == symbol:
                if o.side is Side.BUY:
                    buy += o.remaining
                else:
                    sell += o.remaining
        return buy, sell

    def on_trade(self, trade: Trade) -> None:
        """Live orders are filled by the venue, not by the market data."""


def _order_of_row(row: dict[str, Any], *, status: OrderStatus | None = None,
                  reason: str | None = None, ts: int | None = None) -> Order:
    price = row.get("price")
    filled = row.get("filled_size") or "0"
    avg = row.get("avg_price")
    return Order(
        venue=row["venue"], symbol=row["symbol"],
        id=row.get("order_id") or row["client_order_id"],
        client_order_id=row["client_order_id"], side=Side(row["side"]),
        type=OrderType(row["type"]), price=None if price is None else Decimal(price),
        size=Decimal(row["size"]), filled_size=Decimal(filled),
        avg_price=None if avg is None else Decimal(avg),
        status=status or OrderStatus(row["status"]),
        time_in_force=TimeInForce(row.get("time_in_force") or "gtc"),
        post_only=bool(row.get("post_only")), reject_reason=reason or row.get("reject_reason"),
        created_ts=int(row.get("created_ts") or 0),
        updated_ts=ts if ts is not None else int(row.get("updated_ts") or 0))

