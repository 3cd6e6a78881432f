"""``"*"``: every market of the venue, end to end.

Against the embedded exchange (its market list over REST), for trades, tickers, candles, books
and raw book messages, as ``async for`` and as handlers; ``None`` and ``[]`` mean the same;
sharding by the venue's streams-per-connection limit; unsubscribing ``"*"``; clear errors. And
against a recorded Binance session served by the ReplayServer, whose market list
(``/api/v3/exchangeInfo``) decides what ``"*"`` subscribes to.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tickloop import ConfigError, InvalidRequest, StreamClient, StreamError
from tickloop.models import BookDelta, BookSnapshot, Candle, Instrument, Ticker, Trade
from tickloop.replay import ReplayServer
from tickloop.sim import SimExchange
from tickloop.venues.base import Channel, Subscription
from tickloop.venues.binance import BinanceCodec
from tickloop.venues.recorded import Direction, read_recording
from tickloop.venues.sim import SimCodec

from .helpers import until

pytestmark = pytest.mark.timeout(60)

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


@pytest.fixture
async def ex() -> AsyncIterator[SimExchange]:
    async with SimExchange(seed=11, symbols=SYMBOLS, rate=200) as ex:
        yield ex


def feed_for(ex: SimExchange, **options: Any) -> StreamClient:
    options.setdefault("base_wait", 0.01)
    options.setdefault("max_wait", 0.1)
    return StreamClient("sim", url=ex.ws_url, **options)


async def test_trades_star_iterates_every_market(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        seen: dict[str, list[int]] = {}
        async with feed.trades("*") as stream:
            async for trade in stream:
                assert isinstance(trade, Trade)
                assert trade.id is not None
                seen.setdefault(trade.symbol, []).append(trade.id)
                if set(seen) == set(SYMBOLS) and all(len(v) >= 3 for v in seen.values()):
                    break
        for ids in seen.values():  # each market's trade log, in order, none missed
            assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert await feed.markets() == SYMBOLS
        await until(lambda: feed.upstream() == {}, "unsubscribed after the stream ended")


@pytest.mark.parametrize("every", ["*", None, []], ids=["star", "none", "empty"])
async def test_subscribe_trades_every_market_with_one_handler(ex: SimExchange, every: Any) -> None:
    async with feed_for(ex) as feed:
        got: list[Trade] = []
        await feed.subscribe_trades(every, handler=got.append)
        assert feed.upstream() == {Subscription(Channel.TRADES, s): 1 for s in SYMBOLS}
        await until(lambda: {t.symbol for t in got} == set(SYMBOLS), "trades of every market")
        await feed.unsubscribe_trades(every, got.append)
        assert feed.upstream() == {}


async def test_tickers_candles_and_books_of_every_market(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        tickers: list[Ticker] = []
        candles: list[Candle] = []
        raw: list[BookSnapshot | BookDelta] = []
        await feed.subscribe_tickers("*", handler=tickers.append)
        await feed.subscribe_candles("*", "1s", handler=candles.append)
        await feed.subscribe_book_deltas("*", handler=raw.append)
        books: set[str] = set()
        async with feed.books("*", depth=5) as stream:
            async for view in stream:
                assert view.valid and view.best_bid is not None
                books.add(view.symbol)
                if books == set(SYMBOLS):
                    break
        await until(lambda: {t.symbol for t in tickers} == set(SYMBOLS), "tickers of all")
        await until(lambda: {c.symbol for c in candles} == set(SYMBOLS), "candles of all")
        assert {c.interval for c in candles} == {"1s"}
        await until(lambda: {m.symbol for m in raw} == set(SYMBOLS), "book messages of all")
        assert {s.symbol for s in feed.upstream() if s.channel is Channel.BOOK} == set(SYMBOLS)
        await feed.unsubscribe_candles("*", "1s", candles.append)
        await feed.unsubscribe_book_deltas(None)
        await feed.unsubscribe_tickers([])
        assert feed.upstream() == {}


async def test_star_beside_symbols_and_shared_with_a_named_consumer(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        one: list[Trade] = []
        every: list[Trade] = []
        await feed.subscribe_trades("BTC-USD", handler=one.append)
        await feed.subscribe_trades(["ETH-USD", "*"], handler=every.append)  # "*" wins
        upstream = feed.upstream()
        assert upstream[Subscription(Channel.TRADES, "BTC-USD")] == 2  # one upstream, shared
        assert len(upstream) == len(SYMBOLS)
        await until(lambda: {t.symbol for t in every} == set(SYMBOLS), "every market")
        await feed.unsubscribe_trades("*", every.append)
        assert feed.upstream() == {Subscription(Channel.TRADES, "BTC-USD"): 1}


class TwoPerConnection(SimCodec):
    max_streams_per_connection: ClassVar[int] = 2


async def test_star_is_sharded_by_the_venues_limits(ex: SimExchange) -> None:
    async with feed_for(ex, codec=TwoPerConnection) as feed:
        got: list[Trade] = []
        await feed.subscribe_trades("*", handler=got.append)
        assert len(feed.sessions) == 2
        assert sorted(len(s.subscriptions) for s in feed.sessions) == [1, 2]
        await until(lambda: {t.symbol for t in got} == set(SYMBOLS), "trades over both")


async def test_bad_symbols_are_a_config_error_naming_the_field(ex: SimExchange) -> None:
    async with feed_for(ex) as feed:
        for bad in (123, [""], ["BTC-USD", None]):
            with pytest.raises(ConfigError) as info:
                feed.trades(bad)
            assert info.value.field == "symbols"
        with pytest.raises(ConfigError) as info:
            await feed.subscribe_tickers(4.5, handler=print)  # type: ignore[arg-type]
        assert info.value.field == "symbols"
        assert feed.upstream() == {}


async def test_star_without_a_market_list_says_why(ex: SimExchange) -> None:
    unused = socket_port()
    async with feed_for(ex, rest_url=f"http://127.0.0.1:{unused}/api/v1") as feed:
        feed_rest_retries_off(feed)
        with pytest.raises(StreamError) as info:
            await feed.subscribe_trades("*", handler=print)
        assert "market list" in str(info.value)
        assert feed.upstream() == {}
        stream = feed.trades("*")
        with pytest.raises(StreamError):
            await anext(stream)
        with pytest.raises(StreamError):  # again, at once: the stream ended with that error
            await anext(stream)


def socket_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def feed_rest_retries_off(feed: StreamClient) -> None:
    """A REST client that gives up at once (the address refuses connections)."""
    from tickloop.client.rest import AsyncClient

    feed._rest = AsyncClient("sim", url=feed._rest_url, max_retries=0, timeout=5.0)
    feed._own_rest = True


# ----------------------------------------------------------------------- a real venue's data


def _binance_info(symbols: dict[str, str]) -> bytes:
    """An exchangeInfo answer (Binance's shape) listing ``symbols`` (venue name -> status)."""

    def entry(name: str, status: str) -> dict[str, Any]:
        base, quote = {
            "NKNUSDT": ("NKN", "USDT"),
            "BLZETH": ("BLZ", "ETH"),
            "LRCBTC": ("LRC", "BTC"),
            "RUNEEUR": ("RUNE", "EUR"),
            "XYZBTC": ("XYZ", "BTC"),
        }[name]
        return {
            "symbol": name,
            "status": status,
            "baseAsset": base,
            "quoteAsset": quote,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.00000100"},
                {"filterType": "LOT_SIZE", "stepSize": "0.01000000", "minQty": "0.01000000"},
            ],
        }

    info = {"timezone": "UTC", "symbols": [entry(n, s) for n, s in symbols.items()]}
    return json.dumps(info).encode()


@pytest.mark.playback
async def test_binance_star_subscribes_every_listed_market(recorded_data: Path) -> None:
    path = recorded_data / "BINANCE.ws.1.0"
    frames = [r.frame for r in read_recording(path) if r.direction is Direction.RECEIVED]
    codec = BinanceCodec()
    expected = [e for f in frames for e in codec.decode(f, 0) if isinstance(e, Trade)]
    listed = {"NKNUSDT": "TRADING", "BLZETH": "TRADING", "LRCBTC": "TRADING", "XYZBTC": "BREAK"}
    expected = [t for t in expected if t.symbol in ("NKN-USDT", "BLZ-ETH", "LRC-BTC")]
    assert {t.symbol for t in expected} == {"NKN-USDT", "LRC-BTC"}  # BLZ-ETH: no trade
    async with (
        ReplayServer(
            [path],
            start_on_message=True,
            close_at_end=False,
            subscribed_only=True,
            http_bodies={"https://api.binance.com/api/v3/exchangeInfo": _binance_info(listed)},
        ) as srv,
        StreamClient("binance", url=srv.url("/stream"), rest_url=srv.rest_url) as feed,
    ):
        got: list[Trade] = []
        await feed.subscribe_trades("*", handler=got.append)
        # The market in a trading break is not subscribed; RUNE-EUR is not listed at all.
        assert set(feed.upstream()) == {
            Subscription(Channel.TRADES, s) for s in ("NKN-USDT", "BLZ-ETH", "LRC-BTC")
        }
        sent = " ".join(str(m) for m in srv.client_messages)
        assert "nknusdt@aggTrade" in sent and "xyzbtc" not in sent and "runeeur" not in sent
        await until(lambda: len(got) >= len(expected), "every recorded trade of those markets")
        assert [(t.symbol, t.id, t.price, t.size, t.ts) for t in got] == [
            (t.symbol, t.id, t.price, t.size, t.ts) for t in expected
        ]


class ClosedMarkets:
    """A REST source whose only market is not open (a trading break), then is."""

    def __init__(self) -> None:
        self.status = "halted"
        self.asked = 0

    async def instruments(self) -> list[Instrument]:
        self.asked += 1
        return [
            Instrument(
                venue="sim",
                symbol="BTC-USD",
                venue_symbol="BTC-USD",
                base="BTC",
                quote="USD",
                price_precision=2,
                size_precision=4,
                tick_size=Decimal("0.01"),
                lot_size=Decimal("0.0001"),
                status=self.status,
            )
        ]

    async def trades(
        self, symbol: str, *, since_id: int | None = None, limit: int | None = None
    ) -> list[Trade]:
        return []


async def test_no_open_market_is_an_error_and_is_asked_again(ex: SimExchange) -> None:
    source = ClosedMarkets()
    async with feed_for(ex, rest=source) as feed:
        with pytest.raises(StreamError, match="no open market"):
            await feed.subscribe_trades("*", handler=print)
        assert feed.upstream() == {}
        source.status = "open"  # the break is over: the next '*' asks again
        got: list[Trade] = []
        await feed.subscribe_trades("*", handler=got.append)
        assert source.asked == 2
        assert feed.upstream() == {Subscription(Channel.TRADES, "BTC-USD"): 1}
        await until(lambda: len(got) >= 1, "trades of the market that opened")
        assert await feed.markets() == ["BTC-USD"] and source.asked == 2  # cached
        assert await feed.markets(refresh=True) == ["BTC-USD"] and source.asked == 3


# ------------------------------------------------------- a venue's own all-market stream


def _ticker24(symbol: str, last: str, event_ms: int) -> dict[str, Any]:
    """A 24hrTicker payload in Binance's documented shape."""
    return {
        "e": "24hrTicker", "E": event_ms, "s": symbol, "p": "0.0015", "P": "250.00",
        "w": "0.0018", "x": "0.0009", "c": last, "Q": "10", "b": "0.00240000",
        "B": "10.00000000", "a": "0.00260000", "A": "100.00000000", "o": "0.0010",
        "h": "0.0025", "l": "0.0010", "v": "10000.00000000", "q": "18", "O": 0,
        "C": 86400000, "F": 0, "L": 18150, "n": 18151,
    }  # fmt: skip


ARR_SYMBOLS = {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT", "NKNUSDT": "NKN-USDT"}


def _all_tickers_frame(event_ms: int, last: str) -> bytes:
    data = [_ticker24(s, last, event_ms) for s in ARR_SYMBOLS]
    return json.dumps({"stream": "!ticker@arr", "data": data}, separators=(",", ":")).encode()


def test_binance_codec_decodes_the_all_market_ticker_stream() -> None:
    codec = BinanceCodec()
    assert codec.all_markets() == {Channel.TICKER}
    assert codec.stream_name(Subscription(Channel.TICKER, "*")) == "!ticker@arr"
    tickers = codec.decode(_all_tickers_frame(1672515782136, "0.00250000"), 7)
    assert [t.symbol for t in tickers] == list(ARR_SYMBOLS.values())
    first = tickers[0]
    assert isinstance(first, Ticker)
    assert str(first.last) == "0.00250000" and str(first.bid) == "0.00240000"  # exact digits
    assert first.ts == 1672515782136 * 1_000_000 and first.recv_ts == 7
    raw = codec.decode(memoryview(_all_tickers_frame(1, "0.1")), 0)  # the session's payload type
    assert len(raw) == 3
    book_ticker = BinanceCodec(ticker_stream="bookTicker")
    assert book_ticker.all_markets() == frozenset()
    with pytest.raises(InvalidRequest) as info:
        book_ticker.stream_name(Subscription(Channel.TICKER, "*"))
    assert info.value.field == "symbol"
    with pytest.raises(InvalidRequest):
        codec.stream_name(Subscription(Channel.TRADES, "*"))


async def test_binance_star_tickers_use_the_all_market_stream(tmp_path: Path) -> None:
    # No REST answer is served: the market list is not needed (a request for it would fail).
    path = tmp_path / "BINANCE.ws.arr.0"
    lines = ["wss://stream.binance.com:9443/stream <-> 1672515782.000000"]
    for n in range(3):
        frame = _all_tickers_frame(1672515782136 + n * 1000, f"0.0025000{n}")
        lines.append(f"1672515782.{n:06d}: {frame.decode()}")
    path.write_text("\n".join(lines) + "\n")
    async with (
        # close_at_end: the session ends after its three frames; the client reconnects and
        # resubscribes, and the replay starts again, so the stream goes on.
        ReplayServer([path], start_on_message=True, close_at_end=True) as srv,
        StreamClient("binance", url=srv.url("/stream"), rest_url=srv.rest_url) as feed,
    ):
        got: list[Ticker] = []
        async with feed.tickers([]) as stream:  # an iterator and a handler share the stream
            await feed.subscribe_tickers("*", handler=got.append, overflow="error")
            assert feed.upstream() == {Subscription(Channel.TICKER, "*"): 2}
            assert len(feed.sessions) == 1
            ticker = await anext(stream)
            assert ticker.symbol in ARR_SYMBOLS.values()
        await until(
            lambda: {str(t.last) for t in got if t.symbol == "NKN-USDT"}
            == {"0.00250000", "0.00250001", "0.00250002"},
            "every frame's tickers",
        )
        assert {t.symbol for t in got} == set(ARR_SYMBOLS.values())
        sent = " ".join(message for _, message in srv.client_messages)
        assert '"!ticker@arr"' in sent
        await feed.unsubscribe_tickers("*", got.append)
        await until(lambda: feed.upstream() == {}, "the all-market stream unsubscribed")
        # no connection carries it any more (whether an UNSUBSCRIBE goes out depends on the
        # replay's connection being up at that moment: it closes after every third frame)
        assert all(not session.subscriptions for session in feed.sessions)
