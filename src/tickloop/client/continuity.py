"""Trade continuity, sans-I/O: the trades a consumer sees equal the exchange's trade log.

One :class:`TradeContinuity` per symbol sits between the WebSocket and the consumers. It relies on
trade ids that are contiguous per symbol (``Codec.contiguous_trade_ids``) and has three jobs:

* **dedupe**: a trade whose id is not above the last one delivered is a duplicate and is dropped;
* **detect**: a trade whose id jumps past ``last + 1`` reveals missed trades (a lost or truncated
  frame); so does any reconnect, which the caller reports with :meth:`begin_recovery`;
* **merge**: while recovering, live trades are buffered (bounded) and REST pages of "trades since
  id" are merged in, so the output stays in id order with no gap and no duplicate; when the
  missing trades cannot be fetched, a :class:`~tickloop.models.Gap` with ``recovered=False`` says
  what was lost, and the stream goes on after it;
* **distrust**: an id more than ``max_jump`` past the last one is held back, not believed: if the
  next trade continues from it, the jump was real (a Gap, as for any hole); if the next trade
  continues the old sequence, it was bogus and is dropped (counted in ``bogus``). One absurd id
  can then never make every later real trade look like a duplicate.

A Gap means a gap: after a reconnect with no backfill, the first live trade tells whether any
id was missed (ids are contiguous); nothing is reported when none was.

No I/O and no clock: the caller does the REST calls (:attr:`since_id` says from where) and passes
``ts`` (nanoseconds, for the Gap events). Theory of operation: the caller must start a backfill
only once the live subscription is confirmed again, so that REST covers everything up to the
request and the live stream everything after it; the union then has no hole, and duplicates are
removed here by id.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..models import Gap, Trade

__all__ = ["Merge", "TradeContinuity"]


@dataclass(slots=True)
class Merge:
    """What a backfill step produced: trades to deliver (in order), gaps to report, and whether
    the recovery is over."""

    trades: list[Trade] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    done: bool = False


class TradeContinuity:
    """Dedupe, gap detection and backfill merging for one symbol's trades (module docstring)."""

    __slots__ = (
        "_buffer",
        "_first_missing",
        "_interrupted_ts",
        "_newest_at_request",
        "_recovered_hi",
        "_recovered_lo",
        "_released",
        "bogus",
        "duplicates",
        "in_flight",
        "last_id",
        "max_buffer",
        "max_jump",
        "recovered",
        "recovering",
        "suspect",
        "symbol",
        "venue",
    )

    def __init__(
        self, venue: str, symbol: str, *, max_buffer: int = 100_000, max_jump: int = 1_000_000
    ) -> None:
        if max_jump < 1:
            raise ValueError(f"max_jump must be >= 1, not {max_jump!r}")
        self.venue = venue
        self.symbol = symbol
        self.max_buffer = max_buffer
        self.max_jump = max_jump
        self.bogus = 0  # trades dropped because their id jumped absurdly and nothing followed it
        #: The trade held back because its id jumped past ``max_jump`` (None most of the time;
        #: a plain slot, not a property: TradeFeed.on_trade reads it for every trade).
        self.suspect: Trade | None = None
        self._released: Trade | None = None
        self.last_id: int | None = None  # id of the last trade delivered
        self.recovering = False
        self.in_flight = False  # a backfill request is under way (set by the caller)
        self.duplicates = 0
        self.recovered = 0  # trades delivered from backfill
        self._buffer: deque[Trade] = deque()
        self._first_missing: int | None = None
        self._interrupted_ts: int | None = None
        self._recovered_lo: int | None = None
        self._recovered_hi: int | None = None
        self._newest_at_request: int | None = None

    def __len__(self) -> int:
        """Live trades held back while recovering."""
        return len(self._buffer)

    @property
    def buffer_full(self) -> bool:
        return len(self._buffer) >= self.max_buffer

    @property
    def since_id(self) -> int | None:
        """The id to backfill from, or None when there is nothing to ask."""
        return self.last_id if self.recovering else None

    @property
    def wants_backfill(self) -> bool:
        return self.recovering and not self.in_flight and self.last_id is not None

    def request(self) -> int:
        """Mark a backfill request as under way; returns the ``since_id`` to ask for."""
        assert self.recovering and self.last_id is not None
        self.in_flight = True
        self._newest_at_request = self._buffer[-1].id if self._buffer else None
        return self.last_id

    # ------------------------------------------------------------------------------- live path
    def on_live(self, trade: Trade) -> bool:
        """True: deliver ``trade`` now. False: it was a duplicate or is held back (recovering,
        or an absurd jump waiting for a second trade to vouch for it)."""
        tid = trade.id
        last = self.last_id
        if tid is not None and last is not None and (
            tid - last > self.max_jump or self.suspect is not None
        ):
            return self._judge_jump(trade, tid)
        if not self.recovering:
            if last is None or tid is None or tid == last + 1:
                self.last_id = tid
                return True
            if tid <= last:
                self.duplicates += 1
                return False
            self.recovering = True
            self._first_missing = last + 1
            self._buffer.append(trade)
            return False
        if tid is None:
            return True
        newest = self._buffer[-1].id if self._buffer else last
        if newest is not None and tid <= newest:
            self.duplicates += 1
            return False
        self._buffer.append(trade)
        return False

    def _judge_jump(self, trade: Trade, tid: int) -> bool:
        suspect = self.suspect
        if suspect is None:
            self.suspect = trade  # believed only once the next trade continues from it
            return False
        sid = suspect.id
        assert sid is not None
        if sid < tid <= sid + self.max_jump:
            # The next trade continues from the jump: it was real. Take both through the
            # normal path (a hole before the suspect is then a gap like any other).
            self.suspect = None
            self._max_jump_once(suspect)
            return self._max_jump_once(trade)
        if tid - (self.last_id or 0) > self.max_jump:
            self.suspect = trade  # another absurd id: it replaces the first, still unproven
            self.bogus += 1
            return False
        # The stream went on from the old sequence: the jump was bogus. This trade is handed
        # back through :meth:`released` (False here), so the caller sees the bogus count move.
        self.suspect = None
        self.bogus += 1
        if self.on_live(trade):
            self._released = trade
        return False

    def released(self) -> Trade | None:
        """A trade to deliver now that ``on_live`` returned False for (after a bogus jump)."""
        trade, self._released = self._released, None
        return trade

    def _max_jump_once(self, trade: Trade) -> bool:
        """``on_live`` without the jump check (for a jump a second trade vouched for)."""
        jump, self.max_jump = self.max_jump, 1 << 62
        try:
            return self.on_live(trade)
        finally:
            self.max_jump = jump

    def begin_recovery(self, ts: int) -> None:
        """The stream was interrupted (a disconnect): hold live trades until a backfill ran."""
        if self.last_id is None:
            return  # nothing delivered yet: there is no position to continue from
        if not self.recovering:
            self.recovering = True
            self._first_missing = self.last_id + 1
        if self._interrupted_ts is None:
            self._interrupted_ts = ts

    # --------------------------------------------------------------------------- backfill path
    def on_backfill(self, trades: list[Trade], *, complete: bool, ts: int) -> Merge:
        """Merge one REST page of trades with id > :attr:`since_id`, oldest first. ``complete``
        says the page reached the end of the log at the time of the request (fewer than the
        page limit). The caller asks again from :attr:`since_id` until ``done``."""
        merge = Merge()
        self.in_flight = False
        if not self.recovering or self.last_id is None:
            merge.done = not self.recovering
            return merge
        progressed = False
        last = self.last_id
        out = merge.trades
        for trade in trades:
            tid = trade.id
            if tid is None or tid <= last:
                continue
            if tid != last + 1:
                # The exchange's own log lacks these ids: nothing can recover them.
                merge.gaps.append(self._gap(last + 1, tid - 1, ts, recovered=False))
            out.append(trade)
            last = tid
            progressed = True
            self.recovered += 1
            if self._recovered_lo is None:
                self._recovered_lo = tid
            self._recovered_hi = tid
        self.last_id = last
        self._drain(merge)
        held = self._newest_at_request
        first_held = self._buffer[0].id if self._buffer else None
        if (
            complete
            and not progressed
            and held is not None
            and first_held is not None
            and first_held <= held
        ):
            # Still a hole before the first held-back trade, that trade was already held back
            # when the request went out (so the missing ones are older than the request), and
            # the answer reached the end of the log without them: they cannot be fetched.
            self._skip_hole(merge, ts)
            self._drain(merge)
        if not self._buffer and complete:
            self._finish(merge, ts)
        return merge

    def give_up(self, ts: int) -> Merge:
        """Backfill is impossible (no REST, repeated failures, buffer full): deliver what was held
        back and report what is missing with ``recovered=False``."""
        merge = Merge()
        self.in_flight = False
        if not self.recovering:
            merge.done = True
            return merge
        if self._buffer:
            self._skip_hole(merge, ts)
            self._drain(merge)
            while self._buffer:  # holes between held-back trades
                self._skip_hole(merge, ts)
                self._drain(merge)
        else:
            merge.gaps.append(self._gap(self._first_missing, None, ts, recovered=False))
        self._finish(merge, ts)
        return merge

    # -------------------------------------------------------------------------------- helpers
    def _drain(self, merge: Merge) -> None:
        buffer = self._buffer
        last = self.last_id
        assert last is not None
        while buffer:
            tid = buffer[0].id
            assert tid is not None
            if tid <= last:
                buffer.popleft()
                self.duplicates += 1
            elif tid == last + 1:
                merge.trades.append(buffer.popleft())
                last = tid
            else:
                break
        self.last_id = last

    def _skip_hole(self, merge: Merge, ts: int) -> None:
        last = self.last_id
        assert last is not None and self._buffer
        first = self._buffer[0].id
        assert first is not None
        if first > last + 1:  # a Gap means a gap: none when the held trade continues the log
            merge.gaps.append(self._gap(last + 1, first - 1, ts, recovered=False))
        self.last_id = first - 1

    def _gap(self, first: int | None, last: int | None, ts: int, *, recovered: bool) -> Gap:
        return Gap(
            venue=self.venue,
            symbol=self.symbol,
            channel="trades",
            first_missing=first,
            last_missing=last,
            start_ts=self._interrupted_ts,
            end_ts=ts,
            recovered=recovered,
            ts=ts,
        )

    def _finish(self, merge: Merge, ts: int) -> None:
        if self._recovered_lo is not None:
            merge.gaps.append(self._gap(self._recovered_lo, self._recovered_hi, ts, recovered=True))
        self.recovering = False
        self.in_flight = False
        self._first_missing = None
        self._interrupted_ts = None
        self._recovered_lo = None
        self._recovered_hi = None
        merge.done = True
