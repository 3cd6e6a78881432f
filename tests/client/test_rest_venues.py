"""AsyncClient on real venues' public REST (markets, book, trades) through the PublicRest codecs,
against tickloop.replay.ReplayServer on 127.0.0.1: Binance depth snapshots as recorded from
api.binance.com (tests/data), and bodies shaped as each venue's documentation shows them
where no recording exists."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tickloop import AsyncClient, Client, ConfigError, ExchangeError, InvalidRequest, Selection
from tickloop.client.results import UNSET
from tickloop.replay import ReplayServer

pytestmark = pytest.mark.playback

BINANCE_INFO = (
    b'{"timezone":"UTC","serverTime":1565246363776,"rateLimits":[],"exchangeFilters":[],'
    b'"symbols":[{"symbol":"NKNUSDT","status":"TRADING","baseAsset":"NKN",'
    b'"baseAssetPrecision":8,"quoteAsset":"USDT","quotePrecision":8,"quoteAssetPrecision":8,'
    b'"orderTypes":["LIMIT","MARKET"],"filters":[{"filterType":"PRICE_FILTER",'
    b'"minPrice":"0.00010000","maxPrice":"1000.00000000","tickSize":"0.00010000"},'
    b'{"filterType":"LOT_SIZE","minQty":"1.00000000","maxQty":"9000000.00000000",'
    b'"stepSize":"1.00000000"}]}]}'
)
BINANCE_AGG = (
    b'[{"a":26130,"p":"0.35210000","q":"4.00000000","f":27781,"l":27781,'
    b'"T":1633998512320,"m":true,"M":true},{"a":26131,"p":"0.35220000","q":"1.00000000",'
    b'"f":27782,"l":27782,"T":1633998512400,"m":false,"M":true}]'
)
COINBASE_PRODUCTS = (
    b'[{"id":"BTC-USD","base_currency":"BTC","quote_currency":"USD",'
    b'"quote_increment":"0.01000000","base_increment":"0.00000001","status":"online"}]'
)
COINBASE_BOOK = (
    b'{"bids":[["295.96","4.39088265",2]],"asks":[["295.97","25.23542881",12]],'
    b'"sequence":3,"auction_mode":false,"auction":null,"time":"2023-10-06T17:35:55.219022Z"}'
)
COINBASE_TRADES = (
    b'[{"time":"2014-11-07T22:19:28.578544Z","trade_id":75,"price":"10.00000000",'
    b'"size":"0.01000000","side":"buy"},{"time":"2014-11-07T01:08:43.642366Z",'
    b'"trade_id":74,"price":"100.00000000","size":"0.01000000","side":"sell"}]'
)
KRAKEN_PAIRS = (
    b'{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD",'
    b'"aclass_base":"currency","base":"XXBT","aclass_quote":"currency","quote":"ZUSD",'
    b'"lot":"unit","cost_decimals":5,"pair_decimals":1,"lot_decimals":8,"lot_multiplier":1,'
    b'"ordermin":"0.0001","costmin":"0.5","tick_size":"0.1","status":"online"}}}'
)
KRAKEN_DEPTH = (
    b'{"error":[],"result":{"XXBTZUSD":{"asks":[["30384.10000","2.059",1688671659]],'
    b'"bids":[["30297.00000","0.115",1688671656],["30296.90000","0.500",1688671650]]}}}'
)
KRAKEN_TRADES = (
    b'{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,'
    b'"b","m","",61044952],["30243.30000","0.00376960",1688669598.2804112,"s","l","",'
    b'61044953]],"last":"1688671969993150842"}}'
)
FAST = (1000.0, 1.0)  # the replay server has no budget; real venues' budgets are the default


async def test_binance_recorded_depth_snapshots(recorded_data: Path) -> None:
    recorded = {"NKN-USDT": 499869752, "BLZ-ETH": 281916627, "LRC-BTC": 259345543}
    async with (
        ReplayServer(
            http_files=[recorded_data / "BINANCE.http.0.0"],
            http_bodies={
                "https://api.binance.com/api/v3/exchangeInfo": BINANCE_INFO,
                "https://api.binance.com/api/v3/aggTrades?symbol=NKNUSDT&fromId=26130": BINANCE_AGG,
            },
        ) as srv,
        AsyncClient("binance", url=srv.rest_url, rate_limit=FAST) as client,
    ):
        for symbol, sequence in recorded.items():
            book = await client.book(symbol, depth=1000)
            assert book.venue == "binance" and book.symbol == symbol
            assert book.sequence == sequence
            assert book.bids[0].price < book.asks[0].price
        nkn = await client.book("NKN-USDT", depth=1000)
        assert str(nkn.bids[0].price) == "0.35210000"  # the venue's digits, exactly
        (instrument,) = await client.instruments()
        assert instrument.symbol == "NKN-USDT" and instrument.tick_size == Decimal("0.0001")
        (market,) = await client.markets(fields=Selection("symbol", "lot_size"))
        assert market.venue == "binance" and market.symbol == "NKN-USDT"
        assert market.lot_size == Decimal(1) and market.tick_size is UNSET
        with pytest.raises(InvalidRequest) as bad:
            await client.markets(fields=Selection("symbol", book=Selection("bids")))
        assert bad.value.field == "book"  # the venue has no book in its market listing
        trades = await client.trades("NKN-USDT", since_id=26129)
        assert [t.id for t in trades] == [26130, 26131]
        with pytest.raises(ConfigError):
            await client.balances()  # trading through tickloop's REST client is the sim's
        with pytest.raises(ExchangeError) as missing:
            await client.book("NOPE-USDT", depth=1000)  # the replay answers 404
        assert missing.value.status == 404 and missing.value.venue == "binance"


async def test_coinbase_public_rest() -> None:
    async with (
        ReplayServer(
            http_bodies={
                "https://api.exchange.coinbase.com/products": COINBASE_PRODUCTS,
                "https://api.exchange.coinbase.com/products/BTC-USD/book?level=2": COINBASE_BOOK,
                "https://api.exchange.coinbase.com/products/BTC-USD/trades": COINBASE_TRADES,
            }
        ) as srv,
        AsyncClient("coinbase", url=srv.rest_url, rate_limit=FAST) as client,
    ):
        (instrument,) = await client.instruments()
        assert instrument.symbol == "BTC-USD" and instrument.venue == "coinbase"
        book = await client.book("BTC-USD")
        assert book.sequence == 3 and str(book.asks[0].size) == "25.23542881"
        trades = await client.trades("BTC-USD")
        assert [t.id for t in trades] == [74, 75]  # oldest first


async def test_kraken_public_rest() -> None:
    async with (
        ReplayServer(
            http_bodies={
                "https://api.kraken.com/0/public/AssetPairs": KRAKEN_PAIRS,
                "https://api.kraken.com/0/public/Depth?pair=XBTUSD&count=100": KRAKEN_DEPTH,
                "https://api.kraken.com/0/public/Trades?pair=XBTUSD": KRAKEN_TRADES,
            }
        ) as srv,
        AsyncClient("kraken", url=srv.rest_url, rate_limit=FAST) as client,
    ):
        (market,) = await client.markets()
        assert market.symbol == "BTC-USD" and str(market.tick_size) == "0.1"
        book = await client.book("BTC-USD", depth=100)
        assert [str(p) for p, _ in book.bids] == ["30297.00000", "30296.90000"]
        trades = await client.trades("BTC-USD")
        assert [t.id for t in trades] == [61044952, 61044953]


def test_sync_client_on_a_real_venue_replay(recorded_data: Path) -> None:
    import asyncio
    import threading

    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        async with ReplayServer(http_files=[recorded_data / "BINANCE.http.0.0"]) as srv:
            box["url"] = srv.rest_url
            box["stop"] = stop = asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        with Client("binance", url=str(box["url"]), rate_limit=FAST) as client:
            assert client.book("LRC-BTC", depth=1000).sequence == 259345543
    finally:
        loop = box["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)
