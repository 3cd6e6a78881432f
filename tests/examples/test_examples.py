"""The example bots: their cores on made-up prices, and all three trading on the sim on paper."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest

from tickloop.backtest import run_backtest
from tickloop.bus import Event
from tickloop.examples import (
    MarketMaker,
    MeanReversion,
    SmaCandleCross,
    SmaCross,
    SmaSignal,
    ZScore,
    skewed_quotes,
)
from tickloop.exceptions import ConfigError
from tickloop.models import Candle, Side
from tickloop.runtime import Engine
from tickloop.sim import SimExchange

D = Decimal


def test_sma_signal_crosses() -> None:
    sig = SmaSignal(2, 4)
    out = [sig.update(D(p)) for p in ["10", "10", "10", "9", "8", "12", "14", "9", "5"]]
    assert out[:5] == [None, None, None, None, None]  # window filling, then the first side
    assert Side.BUY in out and Side.SELL in out
    assert out.index(Side.BUY) < out.index(Side.SELL)
    with pytest.raises(ValueError):
        SmaSignal(5, 5)


def test_skewed_quotes_lean_against_inventory() -> None:
    flat = skewed_quotes(D("100"), D(0), spread=D("0.02"), skew=D("0.01"), tick=D("0.01"))
    assert flat == (D("99.00"), D("101.00"))
    long_ = skewed_quotes(D("100"), D("1"), spread=D("0.02"), skew=D("0.01"), tick=D("0.01"))
    assert long_ == (D("98.00"), D("100.00"))  # long: both quotes lower, selling is likelier
    tight = skewed_quotes(D("100"), D(0), spread=D("0"), skew=D("0"), tick=D("0.01"))
    assert tight[1] - tight[0] == D("0.01")


def test_zscore() -> None:
    z = ZScore(4)
    assert [z.update(D(v)) for v in ("1", "1", "1")] == [None, None, None]
    assert z.update(D(1)) is None  # no spread
    score = z.update(D(5))
    assert score is not None and score > 1


def test_example_parameters_are_validated() -> None:
    with pytest.raises(ConfigError) as err:
        SmaCross("s", fast=30, slow=10)
    assert "fast" in str(err.value)
    with pytest.raises(ConfigError) as err:
        MarketMaker("m", spread="wide")
    assert err.value.field == "spread"


def _walk(n: int, seconds: int) -> list[Candle]:
    rng = random.Random(3)
    price, out = 10_000, []
    for i in range(n):
        o = price
        price += rng.randint(-40, 40)
        t = (1_767_225_600 + i * seconds) * 10**9
        out.append(Candle(venue="backtest", symbol="BTC-USD", interval=f"{seconds}s",
                          open_time=t, close_time=t + seconds * 10**9, open=D(o) / 100,
                          high=D(max(o, price)) / 100, low=D(min(o, price)) / 100,
                          close=D(price) / 100, volume=D(5), closed=True))
    return out


def test_sma_candle_cross_is_sma_cross_deciding_at_each_close() -> None:
    # on one-second candles a tick every second sees each close once: the same strategy, so
    # the same orders, fills, equity and metrics, bit for bit
    candles = _walk(3_000, 1)
    ticked = run_backtest(SmaCross("sma", fast=3, slow=8), candles)
    closed = run_backtest(SmaCandleCross("sma", fast=3, slow=8, candle_interval="1s"), candles)
    assert len(closed.report().fills) > 50
    assert closed.digest() == ticked.digest()
    # on five-second candles it decides once a candle; the tick-driven one five times
    slower = _walk(600, 5)
    per_candle = run_backtest(SmaCandleCross("c", fast=3, slow=8, candle_interval="5s"), slower)
    per_second = run_backtest(SmaCross("c", fast=3, slow=8), slower)
    assert per_candle.digest() != per_second.digest()
    assert all(f.ts % (5 * 10**9) == 0 for f in per_candle.report().fills)  # at an open


def test_candle_interval_is_a_keyword_of_the_constructor() -> None:
    bot = SmaCandleCross("c", candle_interval="5m")
    assert bot.candle_interval == "5m" and SmaCandleCross.candle_interval == "1m"
    assert bot.every is None and bot.channels == ("candles",)
    for bad in ("", "5", "m", "0s", "1w", "1.5m"):
        with pytest.raises(ConfigError) as err:
            SmaCandleCross("c", candle_interval=bad)
        assert err.value.field == "candle_interval" and "candle_interval" in str(err.value)
    with pytest.raises(ConfigError) as err:  # data of another interval: named, not a hang
        run_backtest(SmaCandleCross("c", candle_interval="1m"), _walk(10, 1))
    assert err.value.field == "candle_interval"


async def test_sma_candle_cross_hears_the_sims_candles() -> None:
    async with SimExchange(seed=12, symbols=["BTC-USD"], rate=80) as ex:
        bot = SmaCandleCross("c", fast=1, slow=2, candle_interval="1s")
        async with Engine([bot], url=ex.ws_url) as engine:
            errors: list[Event] = []
            engine.bus.subscribe("bot.error.*", handler=errors.append)
            loop = asyncio.get_running_loop()
            closed: list[Event] = []
            engine.bus.subscribe("candle.*", handler=lambda ev: ev.payload.closed
                                 and closed.append(ev))
            deadline = loop.time() + 20
            while len(closed) < 3:
                assert loop.time() < deadline, "fewer than 3 one-second candles in 20 s"
                await asyncio.sleep(0.05)
            assert errors == []
            # the candles still forming (several a second) are not prices of the averages
            assert engine.stats("c")["handlers"]["on_candle"]["count"] > len(closed)
            assert list(bot.signal_core._prices) == [c.payload.close for c in closed[-2:]]


async def test_all_three_trade_on_the_sim_on_paper() -> None:
    async with SimExchange(seed=11, symbols=["BTC-USD", "ETH-USD"], rate=80) as ex:
        bots = [
            SmaCross("sma", fast=2, slow=4, every=0.05),
            MarketMaker("mm", spread="0.0005", symbols=["ETH-USD"], every=0.05),
            MeanReversion("mr", window=5, entry="0.5", exit="0.1", every=0.05),
        ]
        async with Engine(bots, url=ex.ws_url) as engine:
            errors: list[Event] = []
            orders: dict[str, int] = {}
            engine.bus.subscribe("bot.error.*", handler=errors.append)

            def count(ev: Event) -> None:
                bot = ev.topic.rpartition(".")[2]
                orders[bot] = orders.get(bot, 0) + 1

            engine.bus.subscribe("bot.order.*", handler=count)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not all(orders.get(b.id, 0) for b in bots):
                assert loop.time() < deadline, f"no orders from some bot: {orders}"
                await asyncio.sleep(0.02)
            assert errors == []
            mm = engine.stats("mm")["handlers"]["tick"]
            assert mm["count"] >= 1 and mm["errors"] == 0
        # leaving the engine cancelled every resting order (cancel_on_stop)
        assert [engine.executor.open_orders(b.id) for b in bots] == [[], [], []]
