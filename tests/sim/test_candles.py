"""Candle aggregation from sim trades: intervals, OHLCV, closing rules, exact decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickloop.models import Candle, Side
from tickloop.sim.candles import INTERVAL_NS, CandleAggregator
from tickloop.sim.engine import TradeEvent
from tickloop.sim.market import MarketSpec

S = 1_000_000_000
SPEC = MarketSpec("ABC-USD", "ABC", "USD", price_precision=2, size_precision=3)
DAY0 = 1_700_006_400 * S  # a UTC midnight


def trade(trade_id: int, price: int, size: int, ts: int, symbol: str = "ABC-USD") -> TradeEvent:
    return TradeEvent(symbol, trade_id, price, size, Side.BUY, ts, "m", "t", "a", "b")


def by_interval(candles: list[Candle]) -> dict[str, list[Candle]]:
    out: dict[str, list[Candle]] = {}
    for c in candles:
        out.setdefault(c.interval, []).append(c)
    return out


def test_first_trade_opens_a_candle_per_interval() -> None:
    agg = CandleAggregator()
    ts = DAY0 + 3723 * S + 500_000_000  # 01:02:03.5
    out = agg.on_trade(trade(1, 10010, 1500, ts), SPEC)
    assert [c.interval for c in out] == ["1s", "1m", "5m", "15m", "1h", "1d"]
    starts = {c.interval: (c.open_time, c.close_time) for c in out}
    assert starts["1s"] == (DAY0 + 3723 * S, DAY0 + 3724 * S)
    assert starts["1m"] == (DAY0 + 3720 * S, DAY0 + 3780 * S)
    assert starts["5m"] == (DAY0 + 3600 * S, DAY0 + 3900 * S)
    assert starts["15m"] == (DAY0 + 3600 * S, DAY0 + 4500 * S)
    assert starts["1h"] == (DAY0 + 3600 * S, DAY0 + 7200 * S)
    assert starts["1d"] == (DAY0, DAY0 + 86400 * S)
    c = out[0]
    assert (c.venue, c.symbol, c.trades, c.closed) == ("sim", "ABC-USD", 1, False)
    # exact decimals with the market's digits
    assert (str(c.open), str(c.high), str(c.low), str(c.close)) == ("100.10",) * 4
    assert str(c.volume) == "1.500"


def test_ohlcv_within_an_interval() -> None:
    agg = CandleAggregator(intervals=("1m",))
    for i, price in enumerate([10000, 10300, 9900, 10100]):
        [c] = agg.on_trade(trade(i + 1, price, 1000, DAY0 + i * S), SPEC)
    assert (c.open, c.high, c.low, c.close) == (
        Decimal("100.00"),
        Decimal("103.00"),
        Decimal("99.00"),
        Decimal("101.00"),
    )
    assert c.volume == Decimal(4) and c.trades == 4 and not c.closed
    assert agg.candles("ABC-USD", "1m") == [c]


def test_a_trade_in_the_next_interval_closes_the_candle() -> None:
    agg = CandleAggregator(intervals=("1s", "1m"))
    agg.on_trade(trade(1, 10000, 1000, DAY0 + 100), SPEC)
    out = by_interval(agg.on_trade(trade(2, 10100, 2000, DAY0 + S + 5), SPEC))
    closed, opened = out["1s"]
    assert closed.closed and closed.open_time == DAY0 and closed.close == Decimal("100.00")
    assert not opened.closed and opened.open_time == DAY0 + S and opened.open == Decimal("101.00")
    [minute] = out["1m"]
    assert not minute.closed and minute.trades == 2 and minute.volume == Decimal(3)
    history = agg.candles("ABC-USD", "1s")
    assert [c.closed for c in history] == [True, False]
    assert agg.candles("ABC-USD", "1s", limit=1) == [history[-1]]
    assert agg.candles("ABC-USD", "1s", limit=0) == []


def test_close_due_closes_intervals_that_ended_without_a_trade() -> None:
    agg = CandleAggregator(intervals=("1s", "1m"))
    agg.on_trade(trade(1, 10000, 1000, DAY0 + 10), SPEC)
    assert agg.close_due(DAY0 + S - 1) == []
    [closed] = agg.close_due(DAY0 + S)
    assert closed.interval == "1s" and closed.closed and closed.close_time == DAY0 + S
    assert agg.close_due(DAY0 + 2 * S) == []  # nothing open, nothing to close twice
    [minute] = agg.close_due(DAY0 + 61 * S)
    assert minute.interval == "1m" and minute.closed
    # the next trade opens fresh candles and reports no second close
    out = agg.on_trade(trade(2, 10200, 1000, DAY0 + 65 * S), SPEC)
    assert [c.closed for c in out] == [False, False]
    assert [c.open_time for c in agg.candles("ABC-USD", "1s")] == [DAY0, DAY0 + 65 * S]


def test_a_trade_stamped_in_the_past_goes_into_the_open_candle() -> None:
    agg = CandleAggregator(intervals=("1s",))
    agg.on_trade(trade(1, 10000, 1000, DAY0 + 5 * S), SPEC)
    [c] = agg.on_trade(trade(2, 9000, 1000, DAY0 + 4 * S), SPEC)
    assert c.open_time == DAY0 + 5 * S and c.low == Decimal("90.00") and c.trades == 2


def test_symbols_are_separate_and_history_is_bounded() -> None:
    other = MarketSpec("XYZ-USD", "XYZ", "USD", price_precision=0, size_precision=0)
    agg = CandleAggregator(intervals=("1s",), max_candles=3)
    for i in range(10):
        agg.on_trade(trade(i + 1, 10000 + i, 1, DAY0 + i * S), SPEC)
    agg.on_trade(trade(1, 7, 2, DAY0, symbol="XYZ-USD"), other)
    history = agg.candles("ABC-USD", "1s")
    assert len(history) == 4  # 3 closed kept + the open one
    assert [c.open_time for c in history] == [DAY0 + i * S for i in range(6, 10)]
    [xyz] = agg.candles("XYZ-USD", "1s")
    assert (str(xyz.open), str(xyz.volume)) == ("7", "2")
    assert agg.candles("NOPE-USD", "1s") == []
    assert agg.candles("ABC-USD", "1h") == []


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown interval"):
        CandleAggregator(intervals=("2m",))
    with pytest.raises(ValueError):
        CandleAggregator(max_candles=0)
    with pytest.raises(ValueError, match="unknown interval"):
        CandleAggregator().candles("ABC-USD", "7s")
    assert list(INTERVAL_NS) == ["1s", "1m", "5m", "15m", "1h", "1d"]


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 3 * S),  # time to the next trade
            st.integers(1, 500),  # price, ticks
            st.integers(1, 100),  # size, lots
            st.booleans(),  # call close_due first
        ),
        min_size=1,
        max_size=80,
    )
)
def test_candles_add_up_and_close_once(steps: list[tuple[int, int, int, bool]]) -> None:
    agg = CandleAggregator(intervals=("1s", "5m", "1d"))
    ts = DAY0 - 7 * S
    closed: set[tuple[str, int]] = set()
    for dt, price, size, housekeeping in steps:
        ts += dt
        out = agg.close_due(ts) if housekeeping else []
        out += agg.on_trade(trade(1, price, size, ts), SPEC)
        for c in out:
            key = (c.interval, c.open_time)
            assert key not in closed, "a candle changed after it closed"
            if c.closed:
                closed.add(key)
    volume = sum(size for _, _, size, _ in steps)
    prices = [Decimal(SPEC.price_text(price)) for _, price, _, _ in steps]
    for interval in agg.intervals:
        candles = agg.candles("ABC-USD", interval)
        duration = INTERVAL_NS[interval]
        assert sum(c.volume for c in candles) == Decimal(SPEC.size_text(volume))
        assert sum(c.trades for c in candles) == len(steps)
        assert max(c.high for c in candles) == max(prices)
        assert min(c.low for c in candles) == min(prices)
        assert candles[0].open == prices[0] and candles[-1].close == prices[-1]
        for c in candles:
            assert c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close)
            assert c.open_time % duration == 0 and c.close_time == c.open_time + duration
        assert [c.open_time for c in candles] == sorted({c.open_time for c in candles})
        assert all(c.closed for c in candles[:-1])
