"""``with SimExchange(...)``: the exchange on a thread of its own, for blocking code."""

from __future__ import annotations

import asyncio
import socket
import threading
from decimal import Decimal

import pytest

import tickloop
from tickloop import Client, ConfigError, Credentials, StreamClient
from tickloop.sim import SimExchange

SYMBOLS = ["BTC-USD", "ETH-USD"]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_blocking_code_trades_against_the_threaded_exchange() -> None:
    before = {t.name for t in threading.enumerate()}
    with SimExchange(seed=7, symbols=SYMBOLS) as ex:
        assert ex.running and ex.port and _port_open(ex.port)
        key = ex.create_api_key()
        with Client("sim", url=ex.rest_url, credentials=Credentials.from_key(key)) as client:
            assert [m.symbol for m in client.markets()] == SYMBOLS
            best_bid = ex.book("BTC-USD").bids[0].price
            order = client.place_order("BTC-USD", side="buy", type="limit", size="0.01",
                                       price=best_bid - Decimal(100))
            assert [o.id for o in client.orders("BTC-USD")] == [order.id]
        ex.pause_flow()
        n = len(ex.trades("BTC-USD"))
        ex.step("BTC-USD", 50)
        assert len(ex.trades("BTC-USD")) >= n
        ex.resume_flow()
        ex.run(ex.faults.disconnect_all())  # a coroutine, run on the exchange's thread
        port = ex.port
    assert not ex.running and not _port_open(port)
    assert {t.name for t in threading.enumerate()} <= before  # the thread has ended


def test_an_async_stream_in_another_loop_sees_the_exchange_trades() -> None:
    with SimExchange(seed=11, symbols=SYMBOLS, rate=200) as ex:

        async def take(n: int) -> list[tickloop.models.Trade]:
            got = []
            async with StreamClient("sim", url=ex.ws_url) as feed:
                async for trade in feed.trades("BTC-USD"):
                    got.append(trade)
                    if len(got) == n:
                        return got
            return got

        got = asyncio.run(take(30))
        truth = {t.id: t for t in ex.trades("BTC-USD")}
        assert [truth[t.id].price for t in got] == [t.price for t in got]


def test_errors_and_misuse() -> None:
    with pytest.raises(ConfigError) as err, SimExchange(symbols=["NOPE"]):
        pass
    assert err.value.field == "symbols"
    ex = SimExchange(seed=1, symbols=SYMBOLS)
    with pytest.raises(ConfigError, match="run\\(\\) is for"):
        ex.run(ex.faults.disconnect_all())
    with ex, pytest.raises(ConfigError, match="already running"):
        ex.__enter__()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError) as err, SimExchange(port=taken.getsockname()[1]):
            pass
        assert err.value.field == "port"


async def test_a_blocking_call_on_the_exchanges_own_loop_says_why_it_timed_out() -> None:
    async with SimExchange(seed=3, symbols=SYMBOLS) as ex:
        with (
            Client("sim", url=ex.rest_url, timeout=1.0, attempt_timeout=0.5) as client,
            pytest.raises(tickloop.TimeoutError) as err,
        ):
            client.markets()  # blocks this loop, which serves the exchange
        assert "with SimExchange(...) as ex:" in str(err.value)
        assert "froze" in str(err.value)


def test_a_timeout_off_any_loop_keeps_its_plain_message() -> None:
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api/v1"
        with (
            Client("sim", url=url, timeout=1.0, attempt_timeout=0.5) as client,
            pytest.raises(tickloop.TimeoutError) as err,
        ):
            client.markets()
        assert "froze" not in str(err.value)
