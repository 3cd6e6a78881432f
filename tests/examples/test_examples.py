"""The example bots: their cores on made-up prices, and all three trading on the sim on paper."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tickloop.bus import Event
from tickloop.examples import (
    MarketMaker,
    MeanReversion,
    SmaCross,
    SmaSignal,
    ZScore,
    skewed_quotes,
)
from tickloop.exceptions import ConfigError
from tickloop.models import Side
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
