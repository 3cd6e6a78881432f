"""Trades on the streaming client: what ``feed.trades(...)`` runs on, beside the book feed.

:class:`TradeFeed` keeps one :class:`~tickloop.client.continuity.TradeContinuity` (sans-I/O:
dedupe, gap detection, backfill merging) per symbol whose trades some consumer wants, feeds it
the live trades from the socket callback, and carries out what it needs: after an interruption,
an owned task pages the venue's "trades since id" over REST and merges them in, so a consumer
sees the exchange's trade log with no gap and no duplicate, or a
:class:`~tickloop.models.Gap` saying what could not be recovered.

Where the venue's trade ids are not contiguous (``Codec.contiguous_trade_ids`` False: Kraken
v1), nothing is tracked by id: an interruption is reported as a Gap with its time range once the
stream is subscribed again.

The client calls :meth:`watch` when a trades subscription starts and :meth:`forget` when it ends,
:meth:`on_confirmed`, :meth:`on_lost` and :meth:`on_refused` from its sessions;
:meth:`on_trade` is the sessions' sink for every Trade. Backfill tasks belong to the client's
:class:`~tickloop.client.tasks.TaskOwner`, which cancels and awaits them when it closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Protocol

from ..exceptions import TickloopError
from ..models import Gap, Malformed, StatusEvent, Trade
from ..venues.base import Channel
from .backoff import Backoff
from .consumers import Consumer
from .continuity import Merge, TradeContinuity
from .tasks import TaskOwner

__all__ = ["TradeFeed", "TradeSource"]

log = logging.getLogger("tickloop.client.trades")


class TradeSource(Protocol):
    """What trade backfill needs from a REST client (``tickloop.client.rest.AsyncClient``)."""

    async def trades(
        self, symbol: str, *, since_id: int | None = None, limit: int | None = None
    ) -> list[Trade]: ...


class TradeFeed:
    """The trades of one StreamClient (module docstring)."""

    def __init__(
        self,
        venue: str,
        *,
        routes: dict[Hashable, tuple[Consumer, ...]],
        track_ids: bool,
        source: Callable[[], TradeSource | None],
        publish: Callable[[StatusEvent], None],
        report: Callable[[StatusEvent], None],
        counters: dict[str, int],
        tasks: TaskOwner,
        page: int = 1000,
        max_jump: int = 1_000_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.venue = venue
        self._routes = routes
        #: Ids are tracked (dedupe, gap detection, backfill) only where they are contiguous.
        self.track_ids = track_ids
        self._source = source
        self._publish = publish  # a Gap, on the status stream
        self._report = report  # a Malformed, through the client's counting status path
        self.counters = counters  # the client's: gaps, gaps_recovered, backfilled, bogus ids
        self._tasks = tasks
        self.page = page
        self.max_jump = max_jump
        #: Stamps gaps and backfill merges (Unix ns): the client's wall clock (a replay's
        #: recorded time in a replay).
        self._clock = clock
        self._continuity: dict[str, TradeContinuity] = {}
        self._bogus_seen: dict[str, int] = {}  # symbol -> TradeContinuity.bogus reported
        self._backfills: dict[str, asyncio.Task[None]] = {}
        self._interrupted: dict[str, int] = {}  # symbol -> when a stream without ids was lost

    @property
    def duplicates(self) -> int:
        """Trades dropped because their id was not above the last one delivered."""
        return sum(c.duplicates for c in self._continuity.values())

    # ------------------------------------------------------------------- subscription events
    def watch(self, symbol: str) -> None:
        """A trades subscription of ``symbol`` starts."""
        if self.track_ids:
            self._continuity.setdefault(
                symbol, TradeContinuity(self.venue, symbol, max_jump=self.max_jump)
            )

    def forget(self, symbol: str) -> None:
        """The trades subscription of ``symbol`` ended (unsubscribed or refused)."""
        self._continuity.pop(symbol, None)
        self._interrupted.pop(symbol, None)  # an outage of a stream no one reads
        task = self._backfills.pop(symbol, None)
        if task is not None:
            task.cancel()

    def on_confirmed(self, symbol: str) -> None:
        cont = self._continuity.get(symbol)
        if cont is not None and cont.recovering:
            self._recover(cont)
        start = self._interrupted.pop(symbol, None)
        if start is not None:
            now = self._clock()
            self._gap(
                Gap(
                    venue=self.venue,
                    symbol=symbol,
                    channel=Channel.TRADES.value,
                    start_ts=start,
                    end_ts=now,
                    recovered=False,
                    ts=now,
                )
            )

    def on_lost(self, symbol: str, ts: int) -> None:
        cont = self._continuity.get(symbol)
        if cont is not None and cont.last_id is not None:
            cont.begin_recovery(ts)
        elif cont is not None or not self.track_ids:
            # No id to backfill from (no trade seen yet, or a venue without ids): the outage
            # is reported as a time-range Gap once resubscribed.
            self._interrupted.setdefault(symbol, ts)

    def on_refused(self, symbol: str) -> None:
        self._continuity.pop(symbol, None)

    # ------------------------------------------------------------------------------- hot path
    def on_trade(self, trade: Trade) -> None:
        cont = self._continuity.get(trade.symbol)
        if cont is None:
            pass
        elif (
            not cont.recovering
            and cont.suspect is None
            and (last := cont.last_id) is not None
            and (tid := trade.id) is not None
            and tid - last == 1
        ):
            # the commonest case, the next id, taken here with no call: what on_live does for it
            # (max_jump >= 1, so the next id is never a jump)
            cont.last_id = tid
        elif not cont.on_live(trade):
            if cont.bogus != self._bogus_seen.get(trade.symbol, 0):
                self._bogus(cont)
                released = cont.released()
                if released is not None:
                    for consumer in self._routes.get(trade.symbol, ()):
                        consumer.push(released)
            if cont.recovering:
                self._recover(cont)
            return
        consumers = self._routes.get(trade.symbol)
        if consumers:
            for consumer in consumers:
                consumer.push(trade)

    # ------------------------------------------------------------------------------ recovery
    def _bogus(self, cont: TradeContinuity) -> None:
        """A trade id that jumped absurdly was not followed: dropped, counted and reported."""
        seen = self._bogus_seen.get(cont.symbol, 0)
        self._bogus_seen[cont.symbol] = cont.bogus
        self.counters["bogus_trade_ids"] += cont.bogus - seen
        self._report(
            Malformed(
                venue=self.venue,
                connection=-1,
                reason=(
                    f"a trade id more than {cont.max_jump} past the last one ({cont.last_id}) "
                    "was not followed by the stream: dropped"
                ),
                limit="max_trade_id_jump",
                symbol=cont.symbol,
                channel=Channel.TRADES.value,
                count=cont.bogus,
                ts=self._clock(),
            )
        )

    def _recover(self, cont: TradeContinuity) -> None:
        if cont.buffer_full:
            self._deliver(cont, cont.give_up(self._clock()))
            return
        if not cont.wants_backfill or cont.symbol in self._backfills or self._tasks.closed:
            return
        source = self._source()
        if source is None:
            # No backfill: the first live trade after the outage tells whether any id was
            # missed (ids are contiguous), so a Gap is reported only for a real hole.
            if len(cont):
                self._deliver(cont, cont.give_up(self._clock()))
            return
        self._backfills[cont.symbol] = self._tasks.spawn(
            self._backfill(cont, source), name=f"tickloop-backfill-{cont.symbol}"
        )

    async def _backfill(self, cont: TradeContinuity, source: TradeSource) -> None:
        backoff = Backoff(base_wait=0.05, max_wait=2.0, max_retries=8)
        try:
            while cont.wants_backfill and self._continuity.get(cont.symbol) is cont:
                since = cont.request()
                try:
                    page = await source.trades(cont.symbol, since_id=since, limit=self.page)
                except (TickloopError, OSError) as exc:
                    cont.in_flight = False
                    wait = backoff.next_wait()
                    if wait is None:
                        log.warning("%s: backfill of %s failed: %s", self.venue, cont.symbol, exc)
                        self._deliver(cont, cont.give_up(self._clock()))
                        return
                    await asyncio.sleep(wait)
                    continue
                merge = cont.on_backfill(page, complete=len(page) < self.page, ts=self._clock())
                self.counters["backfilled"] += len(page)
                self._deliver(cont, merge)
                if merge.done:
                    return
        finally:
            cont.in_flight = False
            if self._backfills.get(cont.symbol) is asyncio.current_task():
                del self._backfills[cont.symbol]

    def _deliver(self, cont: TradeContinuity, merge: Merge) -> None:
        if self._continuity.get(cont.symbol) is not cont:
            return
        consumers = self._routes.get(cont.symbol, ())
        for trade in merge.trades:
            for consumer in consumers:
                consumer.push(trade)
        for gap in merge.gaps:
            self._gap(gap)

    def _gap(self, gap: Gap) -> None:
        self.counters["gaps"] += 1
        if gap.recovered:
            self.counters["gaps_recovered"] += 1
        self._publish(gap)
