"""Trade continuity, sans-I/O: dedupe, gap detection and backfill merging without a network."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.client.continuity import TradeContinuity
from tickloop.models import Side, Trade


def trade(i: int) -> Trade:
    return Trade(
        venue="sim",
        symbol="BTC-USD",
        id=i,
        price=Decimal("100.00"),
        size=Decimal("0.0100"),
        side=Side.BUY,
        ts=i,
    )


def ids(trades: list[Trade]) -> list[int]:
    return [t.id for t in trades if t.id is not None]


def test_in_order_trades_pass_and_duplicates_are_dropped() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    assert [c.on_live(trade(i)) for i in (5, 6, 7)] == [True, True, True]
    assert c.on_live(trade(6)) is False
    assert c.on_live(trade(7)) is False
    assert c.duplicates == 2
    assert c.on_live(trade(8)) is True
    assert not c.recovering


def test_a_jump_holds_back_live_trades_until_backfill_fills_the_hole() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.on_live(trade(1))
    assert c.on_live(trade(4)) is False  # 2 and 3 were lost
    assert c.recovering and c.wants_backfill
    assert c.on_live(trade(5)) is False
    assert c.request() == 1
    assert not c.wants_backfill  # one request at a time
    merge = c.on_backfill([trade(2), trade(3), trade(4), trade(5)], complete=True, ts=99)
    assert ids(merge.trades) == [2, 3, 4, 5]
    assert merge.done and not c.recovering
    assert len(merge.gaps) == 1
    gap = merge.gaps[0]
    assert gap.recovered and (gap.first_missing, gap.last_missing) == (2, 5)
    assert c.duplicates == 2  # 4 and 5 were held back and also came by REST
    assert c.on_live(trade(6)) is True


def test_reconnect_recovery_pages_until_caught_up() -> None:
    c = TradeContinuity("sim", "BTC-USD", max_buffer=10)
    c.on_live(trade(10))
    c.begin_recovery(ts=1)
    assert c.on_live(trade(2600)) is False  # the first live trade after the reconnect
    out: list[Trade] = []
    pages = 0
    while c.wants_backfill:
        since = c.request()
        page = [trade(i) for i in range(since + 1, min(since + 1000, 2600) + 1)]
        merge = c.on_backfill(page, complete=len(page) < 1000, ts=2)
        out += merge.trades
        pages += 1
    assert pages == 3
    assert ids(out) == list(range(11, 2601))
    assert c.last_id == 2600 and not c.recovering


def test_reconnect_with_nothing_missed_reports_no_gap() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.on_live(trade(3))
    c.begin_recovery(ts=1)
    c.request()
    merge = c.on_backfill([], complete=True, ts=2)
    assert merge.done and merge.trades == [] and merge.gaps == []
    assert c.on_live(trade(4)) is True


def test_a_hole_the_exchange_cannot_fill_is_reported_not_recovered() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.on_live(trade(1))
    c.on_live(trade(5))
    c.request()
    merge = c.on_backfill([], complete=True, ts=7)  # REST has nothing either
    assert ids(merge.trades) == [5]
    assert merge.done
    (gap,) = merge.gaps
    assert not gap.recovered and (gap.first_missing, gap.last_missing) == (2, 4)


def test_a_hole_newer_than_the_request_is_asked_again_not_given_up() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.on_live(trade(1))
    c.begin_recovery(ts=0)
    c.request()  # nothing held back yet when this went out
    c.on_live(trade(4))  # 2, 3 happened after the request and were lost in transit
    merge = c.on_backfill([], complete=True, ts=1)
    assert merge.gaps == [] and not merge.done and c.wants_backfill
    c.request()
    merge = c.on_backfill([trade(2), trade(3), trade(4)], complete=True, ts=2)
    assert ids(merge.trades) == [2, 3, 4] and merge.done
    assert merge.gaps[0].recovered


def test_give_up_delivers_what_was_held_back_and_says_what_is_missing() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.on_live(trade(1))
    c.on_live(trade(3))
    c.on_live(trade(4))
    c.on_live(trade(7))
    merge = c.give_up(ts=5)
    assert ids(merge.trades) == [3, 4, 7]
    assert [(g.first_missing, g.last_missing, g.recovered) for g in merge.gaps] == [
        (2, 2, False),
        (5, 6, False),
    ]
    assert merge.done and c.on_live(trade(8))


def test_give_up_after_a_disconnect_reports_the_time_range() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.on_live(trade(1))
    c.begin_recovery(ts=100)
    merge = c.give_up(ts=250)
    (gap,) = merge.gaps
    assert (gap.start_ts, gap.end_ts, gap.first_missing, gap.recovered) == (100, 250, 2, False)


def test_before_any_trade_there_is_nothing_to_recover() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.begin_recovery(ts=1)
    assert not c.recovering
    assert c.on_live(trade(40)) is True


def test_buffer_full_is_visible() -> None:
    c = TradeContinuity("sim", "BTC-USD", max_buffer=3)
    c.on_live(trade(1))
    for i in (5, 6, 7):
        c.on_live(trade(i))
    assert c.buffer_full and len(c) == 3


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 400),
    loss=st.floats(0, 0.5),
    dup=st.floats(0, 0.3),
)
def test_any_loss_and_duplication_pattern_yields_the_log(
    seed: int, n: int, loss: float, dup: float
) -> None:
    """Live delivery loses and repeats trades at random, reconnects happen at random; with a
    REST log to backfill from, the output is always exactly the log."""
    rng = random.Random(seed)
    log = [trade(i) for i in range(1, n + 1)]
    c = TradeContinuity("sim", "BTC-USD")
    out: list[Trade] = []
    produced = 0  # how much of the log exists "now"

    def pump() -> None:
        while c.wants_backfill:
            since = c.request()
            page = [t for t in log[:produced] if t.id is not None and t.id > since][:50]
            merge = c.on_backfill(page, complete=len(page) < 50, ts=0)
            out.extend(merge.trades)
            assert all(g.recovered for g in merge.gaps)

    out.append(log[0])
    c.on_live(log[0])
    produced = 1
    for t in log[1:]:
        produced += 1
        if rng.random() < 0.05:
            c.begin_recovery(ts=0)
        if rng.random() < loss:
            continue
        for _ in range(2 if rng.random() < dup else 1):
            if c.on_live(t):
                out.append(t)
        if rng.random() < 0.3:
            pump()
    c.begin_recovery(ts=0)  # end: make sure the tail is fetched
    pump()
    assert ids(out) == list(range(1, n + 1))


# ---------------------------------------------------------------- issue 15, cases 5 and 9


def test_case5_an_absurd_jump_is_held_and_dropped_when_the_stream_goes_on() -> None:
    c = TradeContinuity("sim", "BTC-USD", max_jump=1000)
    assert c.on_live(trade(1)) and c.on_live(trade(2))
    assert c.on_live(trade(10**15)) is False  # held: not believed yet
    assert c.last_id == 2 and c.suspect is not None
    assert c.on_live(trade(3)) is False  # the old sequence goes on: the jump was bogus
    assert c.bogus == 1 and c.released() == trade(3)
    assert c.on_live(trade(4)) is True
    assert c.duplicates == 0 and not c.recovering


def test_case5_a_real_jump_is_believed_once_a_second_trade_follows_it() -> None:
    c = TradeContinuity("sim", "BTC-USD", max_jump=1000)
    c.on_live(trade(1))
    assert c.on_live(trade(50_000)) is False
    assert c.on_live(trade(50_001)) is False  # vouched: now a hole 2..49999 to recover
    assert c.recovering and c.bogus == 0
    merge = c.give_up(ts=5)
    assert ids(merge.trades) == [50_000, 50_001]
    assert [(g.first_missing, g.last_missing) for g in merge.gaps] == [(2, 49_999)]


def test_case9_a_reconnect_that_lost_nothing_is_no_gap() -> None:
    c = TradeContinuity("sim", "BTC-USD")
    c.on_live(trade(1))
    for i in range(2, 102):  # 100 reconnects, each followed by the next trade in the log
        c.begin_recovery(ts=i)
        assert c.on_live(trade(i)) is False  # held until it is known whether a hole exists
        merge = c.give_up(ts=i)
        assert ids(merge.trades) == [i]
        assert merge.gaps == []
    c.begin_recovery(ts=200)
    c.on_live(trade(105))
    merge = c.give_up(ts=201)
    assert [(g.first_missing, g.last_missing) for g in merge.gaps] == [(102, 104)]
