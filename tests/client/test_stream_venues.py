"""StreamClient end to end on real venue data: recorded Binance, Binance.US, Coinbase and Kraken
sessions served by tickloop's ReplayServer on 127.0.0.1, consumed through the public API
(``StreamClient("binance" | "coinbase" | "kraken", url=...)``), compared with what the venue's
codec decodes from the same file offline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websockets

from tickloop import StreamClient
from tickloop.models import (
    BookDelta,
    BookSnapshot,
    Candle,
    Disconnected,
    Gap,
    Reconnected,
    Ticker,
    Trade,
)
from tickloop.replay import ReplayServer
from tickloop.venues import stream_codec
from tickloop.venues.base import Channel, Codec, Subscribed, Subscription
from tickloop.venues.binance import BinanceCodec
from tickloop.venues.coinbase import CoinbaseCodec
from tickloop.venues.kraken import KrakenCodec
from tickloop.venues.recorded import Direction, read_recording

from .helpers import until

pytestmark = [pytest.mark.playback, pytest.mark.timeout(60)]

Event = Trade | Ticker | Candle


@dataclass(frozen=True)
class Case:
    venue: str
    file: str
    channel: str  # "trades", "tickers", "candles"
    path: str  # the replay server path of the session
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file.split('.ws')[0].lower()}-{self.channel}"


CASES = [
    Case("binance", "BINANCE.ws.1.0", "trades", "/stream"),
    Case("binance", "BINANCE.ws.1.0", "tickers", "/stream", {"ticker_stream": "bookTicker"}),
    Case("binance", "BINANCE.ws.1.0", "candles", "/stream"),
    Case("binance", "BINANCE_US.ws.1.0", "trades", "/stream"),
    Case("binance", "BINANCE_US.ws.1.0", "tickers", "/stream", {"ticker_stream": "bookTicker"}),
    Case("binance", "BINANCE_US.ws.1.0", "candles", "/stream"),
    Case("coinbase", "COINBASE.ws.28.0", "trades", "/coinbase"),
    Case("coinbase", "COINBASE.ws.28.0", "tickers", "/coinbase"),
    Case("kraken", "KRAKEN.ws.48.0", "trades", "/kraken"),
    Case("kraken", "KRAKEN.ws.49.0", "tickers", "/kraken"),
]
MODEL = {"trades": Trade, "tickers": Ticker, "candles": Candle}


# ----------------------------------------------------------------------------------- helpers


def received(path: Path) -> list[bytes]:
    return [r.frame for r in read_recording(path) if r.direction is Direction.RECEIVED]


def offline(path: Path, codec: Codec, model: type) -> list[Any]:
    """What the codec decodes from the recording, frame by frame, with no network."""
    return [e for f in received(path) for e in codec.decode(f, 0) if isinstance(e, model)]


def recorded_symbols(case: Case, path: Path) -> list[str]:
    """The symbols the recorded client subscribed to, tickloop style (``BTC-USD``)."""
    codec = stream_codec(case.venue)()
    symbols: set[str] = set()
    for frame in received(path):
        for event in codec.decode(frame, 0):
            if isinstance(event, Subscribed):
                symbols.update(s.symbol for s in event.subscriptions if s.symbol is not None)
            elif isinstance(event, Trade | Ticker | Candle | BookSnapshot | BookDelta):
                symbols.add(event.symbol)
    return sorted(symbols)


def digits(event: Any) -> tuple[Any, ...]:
    """Every field, Decimals as their exact text (``0.10`` != ``0.1``), without ``recv_ts``.
    Where the venue sends no time (Binance bookTicker, Kraken v1 ticker) ``ts`` is the receive
    time, so it is left out too."""
    fields = msgspec.structs.asdict(event)
    fields.pop("recv_ts")
    if isinstance(event, Ticker) and event.venue in ("binance", "kraken"):
        assert event.ts == event.recv_ts
        fields.pop("ts")
    return tuple((k, str(v) if isinstance(v, Decimal) else v) for k, v in fields.items())


def conflation_key(event: Any) -> Any:
    return (event.symbol, event.open_time) if isinstance(event, Candle) else event.symbol


def is_subsequence(part: list[Any], whole: list[Any]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def by_symbol(events: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for event in events:
        out.setdefault(event.symbol, []).append(digits(event))
    return out


def sent_by_client(srv: ReplayServer, connection: int | None = None) -> list[dict[str, Any]]:
    return [
        json.loads(text)
        for number, text in srv.client_messages
        if connection is None or number == connection
    ]


def without_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in ("id", "reqid")} for m in messages]


def subscribe_stream(feed: StreamClient, case: Case, symbols: list[str]) -> Any:
    if case.channel == "trades":
        return feed.trades(symbols)
    if case.channel == "tickers":
        return feed.tickers(symbols)
    return feed.candles(symbols, "1m")


async def subscribe_handler(
    feed: StreamClient, case: Case, symbols: list[str], handler: Callable[[Any], None]
) -> None:
    if case.channel == "trades":
        await feed.subscribe_trades(symbols, handler)
    elif case.channel == "tickers":
        await feed.subscribe_tickers(symbols, handler)
    else:
        await feed.subscribe_candles(symbols, "1m", handler)


def check_subscribe_frames(case: Case, path: Path, messages: list[dict[str, Any]]) -> None:
    """The client's subscribe frames are the venue's documented ones, naming what the recorded
    client subscribed to (Binance: the streams of the recorded combined-stream URL; Coinbase and
    Kraken: the subscribe frames recorded in the file)."""
    records = list(read_recording(path))
    if case.venue == "binance":
        suffix = {"trades": "@aggTrade", "tickers": "@bookTicker", "candles": "@kline_1m"}
        url = next(r.url for r in records if r.direction is Direction.OPEN)
        streams = [s for s in url.partition("streams=")[2].split("/") if s]
        wanted = {s for s in streams if s.endswith(suffix[case.channel])}
        assert len(messages) == 1
        (msg,) = messages
        assert set(msg) == {"method", "params", "id"} and msg["method"] == "SUBSCRIBE"
        assert isinstance(msg["id"], int) and set(msg["params"]) == wanted
        return
    sent = [json.loads(r.frame) for r in records if r.direction is Direction.SENT]
    if case.venue == "coinbase":
        name = {"trades": "matches", "tickers": "ticker"}[case.channel]
        (recorded,) = [m for m in sent if m["channels"] == [name]]
        (msg,) = messages
        assert set(msg) == {"type", "product_ids", "channels"}
        assert msg["type"] == "subscribe" and msg["channels"] == [name]
        assert sorted(msg["product_ids"]) == sorted(recorded["product_ids"])
        return
    (recorded,) = sent
    (msg,) = messages
    assert set(msg) == {"event", "reqid", "pair", "subscription"} and isinstance(msg["reqid"], int)
    assert msg["event"] == "subscribe" and msg["subscription"] == recorded["subscription"]
    assert sorted(msg["pair"]) == sorted(recorded["pair"])


async def read_until_caught_up(stream: Any, handler_events: list[Any], total: int) -> list[Any]:
    """``async for`` over the stream until the callback has seen all ``total`` events (it runs in
    the same dispatch, so by then every event was pushed to the iterator too) and the iterator's
    backlog is empty."""
    got: list[Any] = []

    async def consume() -> None:
        async for item in stream:
            got.append(item)
            if len(handler_events) >= total and not len(stream.consumer):
                return

    await asyncio.wait_for(consume(), 30)  # a hang guard, not a timing goal
    return got


# ------------------------------------------------------------------- same data as offline


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_stream_equals_offline_decode(case: Case, recorded_data: Path) -> None:
    path = recorded_data / case.file
    codec_cls = stream_codec(case.venue)
    expected = offline(path, codec_cls(**case.options), MODEL[case.channel])
    symbols = recorded_symbols(case, path)
    expected = [e for e in expected if e.symbol in symbols]
    assert expected  # the recording holds some of this channel
    assert all("-" in s and s == s.upper() for s in symbols)
    async with (
        ReplayServer(
            [path], start_on_message=True, close_at_end=False, subscribed_only=True
        ) as srv,
        StreamClient(
            case.venue, url=srv.url(case.path), rest_url=srv.rest_url, codec_options=case.options
        ) as feed,
    ):
        handled: list[Any] = []
        async with subscribe_stream(feed, case, symbols) as stream:
            await subscribe_handler(feed, case, symbols, handled.append)
            iterated = await read_until_caught_up(stream, handled, len(expected))
            await until(
                lambda: srv.ended == 1 and feed.stats()["frames"] >= srv.frames_sent,
                "the whole recording read",
            )
            assert len(stream.consumer) == 0  # nothing more came after the expected events
            conflated = stream.consumer.stats.conflated
        stats = feed.stats()
        check_subscribe_frames(case, path, sent_by_client(srv))
    # the callback sees every event, in order, with the venue's digits
    assert [digits(e) for e in handled] == [digits(e) for e in expected]
    assert all(e.venue == case.venue and e.symbol in symbols for e in handled)
    assert stats["malformed"] == 0 and stats["unknown"] == 0 and stats["connections"] == 1
    if case.channel == "trades":  # never conflated, never dropped
        assert [digits(e) for e in iterated] == [digits(e) for e in expected]
        assert conflated == 0 and stats["duplicates"] == 0
        return
    # tickers and candles are conflated per key for a consumer that lags (documented): every
    # event is either delivered or counted as replaced, each key's deliveries are in order, and
    # each key's latest value always arrives.
    assert len(iterated) + conflated == len(expected)
    want: dict[Any, list[Any]] = {}
    for e in expected:
        want.setdefault(conflation_key(e), []).append(digits(e))
    seen: dict[Any, list[Any]] = {}
    for e in iterated:
        seen.setdefault(conflation_key(e), []).append(digits(e))
    assert seen.keys() == want.keys()
    for key, values in seen.items():
        assert is_subsequence(values, want[key]) and values[-1] == want[key][-1]


# ------------------------------------------------------------- malformed and unknown frames

INJECTED = {
    "binance": (
        b'{"stream":"omgbusd@aggTrade","data":{"e":"aggTrade","E":16339982',
        b'{"stream":"omgbusd@avgPrice","data":{"e":"avgPrice","s":"OMGBUSD","w":"13.7"}}',
    ),
    "coinbase": (
        b'{"type":"match","trade_id":1568268,"maker_order_id":"5b',
        b'{"type":"status","products":[],"currencies":[]}',
    ),
    "kraken": (
        b'[993,[["263.60000","0.11',
        b'{"event":"newFeature","status":"online"}',
    ),
}
INJECT_FILES = {
    "binance": "BINANCE_US.ws.1.0",
    "coinbase": "COINBASE.ws.28.0",
    "kraken": "KRAKEN.ws.48.0",
}
PATHS = {"binance": "/stream", "coinbase": "/coinbase", "kraken": "/kraken"}


def with_injected(source: Path, target: Path, frames: tuple[bytes, ...], before: int) -> Path:
    """A copy of ``source`` (in a temporary directory, never the repository) with ``frames``
    received just before its ``before``-th received frame, at the same recorded time."""
    out: list[bytes] = []
    index = 0
    for line in source.read_bytes().splitlines():
        if line[:1].isdigit():
            if index == before:
                stamp = line.partition(b": ")[0]
                out.extend(stamp + b": " + f for f in frames)
            index += 1
        out.append(line)
    target.write_bytes(b"\n".join(out) + b"\n")
    return target


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken"])
async def test_malformed_and_unknown_frames_are_counted_and_skipped(
    venue: str, recorded_data: Path, tmp_path: Path
) -> None:
    source = recorded_data / INJECT_FILES[venue]
    expected = offline(source, stream_codec(venue)(), Trade)
    # injected in the middle of the trades: some come before, the rest must still arrive
    middle = [i for i, f in enumerate(received(source)) if offline_trades(venue, f)]
    path = with_injected(source, tmp_path / source.name, INJECTED[venue], middle[len(middle) // 2])
    symbols = sorted({t.symbol for t in expected})
    async with (
        ReplayServer([path], start_on_message=True, close_at_end=False) as srv,
        StreamClient(venue, url=srv.url(PATHS[venue]), rest_url=srv.rest_url) as feed,
    ):
        handled: list[Trade] = []
        await feed.subscribe_trades(symbols, handled.append)
        await until(lambda: len(handled) >= len(expected), "every trade delivered")
        await until(lambda: feed.stats()["frames"] >= len(received(path)), "every frame read")
        stats = feed.stats()
    assert [digits(t) for t in handled] == [digits(t) for t in expected]
    assert stats["malformed"] == 1 and stats["unknown"] == 1
    assert stats["connections"] == 1 and stats["reconnects"] == 0


def offline_trades(venue: str, frame: bytes) -> bool:
    codec = stream_codec(venue)()
    try:
        return any(isinstance(e, Trade) for e in codec.decode(frame, 0))
    except Exception:
        return False


# ------------------------------------------------------------------- the memoryview path


@pytest.mark.parametrize(
    "venue, file",
    [
        ("binance", "BINANCE.ws.1.0"),
        ("coinbase", "COINBASE.ws.28.0"),
        ("kraken", "KRAKEN.ws.48.0"),
        ("kraken", "KRAKEN.ws.50.0"),
    ],
)
def test_codecs_decode_the_sessions_memoryview_payloads(
    venue: str, file: str, recorded_data: Path
) -> None:
    # WsSession hands codecs picows' memoryview of each payload, not bytes: every codec must
    # decode it to the same events (they failed every frame before).
    frames = received(recorded_data / file)
    from_bytes, from_views = stream_codec(venue)(), stream_codec(venue)()
    for frame in frames:
        view: Any = memoryview(frame)  # Codec.decode is annotated bytes; the session passes this
        assert from_views.decode(view, 7) == from_bytes.decode(frame, 7)


# ------------------------------------------------------------------------ forced disconnect


def rest_aggtrades(path: Path, symbol: str) -> dict[str, bytes]:
    """Binance ``GET /api/v3/aggTrades?symbol=&fromId=&limit=1000`` answers for every fromId,
    built from the recorded aggTrade stream (the venue's trade log, as its REST API serves it)."""
    rows = []
    for frame in received(path):
        msg = json.loads(frame)
        data = msg.get("data", {})
        if data.get("e") == "aggTrade" and data["s"] == symbol:
            rows.append({k: data[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M")})
    bodies = {}
    for from_id in range(rows[0]["a"] - 1, rows[-1]["a"] + 2):
        page = [r for r in rows if r["a"] >= from_id][:1000]
        url = f"http://venue/api/v3/aggTrades?symbol={symbol}&fromId={from_id}&limit=1000"
        bodies[url] = json.dumps(page).encode()
    return bodies


def rest_coinbase_trades(path: Path) -> dict[str, bytes]:
    """Coinbase ``GET /products/{id}/trades?after=&limit=1000`` answers (newest first, ids below
    ``after``) for every cursor the backfill can ask, from the recorded matches."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for frame in received(path):
        msg = json.loads(frame)
        if msg.get("type") in ("match", "last_match"):
            row = {k: msg[k] for k in ("time", "trade_id", "price", "size", "side")}
            rows.setdefault(msg["product_id"], []).append(row)
    bodies = {}
    for product, trades in rows.items():
        for since in range(trades[0]["trade_id"] - 1, trades[-1]["trade_id"] + 1):
            after = since + 1001
            page = [t for t in reversed(trades) if since < t["trade_id"] < after]
            url = f"http://venue/products/{product}/trades?after={after}&limit=1000"
            bodies[url] = json.dumps(page).encode()
    return bodies


def positions(path: Path, venue: str) -> list[tuple[int, Trade]]:
    codec = stream_codec(venue)()
    return [
        (i, e)
        for i, f in enumerate(received(path))
        for e in codec.decode(f, 0)
        if isinstance(e, Trade)
    ]


async def test_kraken_disconnect_reconnects_resubscribes_and_reports_time_gaps(
    recorded_data: Path,
) -> None:
    path = recorded_data / "KRAKEN.ws.48.0"
    drop_after, drop_lost = 30, 5  # frame 32 (two XMR/USD trades) is sent while away
    trades = positions(path, "kraken")
    symbols = recorded_symbols(Case("kraken", path.name, "trades", "/kraken"), path)
    expected = [t for i, t in trades if not drop_after <= i < drop_after + drop_lost]
    lost = [t for i, t in trades if drop_after <= i < drop_after + drop_lost]
    assert lost and len(expected) < len(trades)
    async with (
        ReplayServer(
            [path],
            start_on_message=True,
            close_at_end=False,
            subscribed_only=True,
            drop_after=drop_after,
            drop_lost=drop_lost,
        ) as srv,
        StreamClient("kraken", url=srv.url("/kraken"), base_wait=0.01, max_wait=0.05) as feed,
    ):
        statuses: list[Any] = []
        await feed.subscribe_status(statuses.append)
        status_stream = feed.status()
        handled: list[Trade] = []
        async with feed.trades(symbols) as stream:
            await feed.subscribe_trades(symbols, handled.append)
            iterated = await read_until_caught_up(stream, handled, len(expected))
        await until(lambda: feed.counters["gaps"] == len(symbols), "a gap per symbol")
        # the iterator view of status sees the same events as the callback
        from_iterator = [await anext(status_stream) for _ in statuses]
        assert from_iterator == statuses
        stats = feed.stats()
    assert [digits(t) for t in handled] == [digits(t) for t in expected]
    assert [digits(t) for t in iterated] == [digits(t) for t in expected]
    # the second connection subscribed again by itself, with the same frame
    assert srv.connections == 2
    assert without_ids(sent_by_client(srv, 2)) == without_ids(sent_by_client(srv, 1))
    assert [m["subscription"] for m in sent_by_client(srv, 2)] == [{"name": "trade"}]
    kinds = [type(s).__name__ for s in statuses if not isinstance(s, Gap)]
    assert kinds == ["Connected", "Disconnected", "Reconnected"]
    (disconnected,) = [s for s in statuses if isinstance(s, Disconnected)]
    (reconnected,) = [s for s in statuses if isinstance(s, Reconnected)]
    gaps = [s for s in statuses if isinstance(s, Gap)]
    # no trade ids on Kraken v1: the gap is a time range, from the loss of the connection to the
    # stream's confirmation on the new one, never recovered; the last pair's confirmation
    # completes the reconnect, so its Gap follows the Reconnected event
    assert sorted(g.symbol for g in gaps) == symbols
    for gap in gaps:
        assert gap.recovered is False and gap.channel == "trades" and gap.venue == "kraken"
        assert gap.first_missing is None and gap.last_missing is None
        assert gap.start_ts == disconnected.ts
        assert gap.end_ts is not None and disconnected.ts <= gap.end_ts
    assert isinstance(statuses[-1], Gap) and statuses[-1].end_ts >= reconnected.ts  # type: ignore[operator]
    assert stats["reconnects"] == 1 and stats["gaps"] == len(symbols)
    assert stats["gaps_recovered"] == 0


@pytest.mark.parametrize("venue", ["binance", "coinbase"])
async def test_disconnect_is_backfilled_over_rest(venue: str, recorded_data: Path) -> None:
    if venue == "binance":
        path, ws_path = recorded_data / "BINANCE_US.ws.1.0", "/stream"
        drop_after, drop_lost = 225, 10  # aggTrades 425089-425092 are sent while away
        bodies = rest_aggtrades(path, "OMGBUSD")
    else:
        path, ws_path = recorded_data / "COINBASE.ws.28.0", "/coinbase"
        drop_after, drop_lost = 3000, 1000  # six matches are sent while away
        bodies = rest_coinbase_trades(path)
    trades = positions(path, venue)
    symbols = recorded_symbols(Case(venue, path.name, "trades", ws_path), path)
    lost = [t for i, t in trades if drop_after <= i < drop_after + drop_lost]
    before = {t.symbol for i, t in trades if i < drop_after}
    assert lost and {t.symbol for t in lost} <= before  # each has a trade id to resume from
    async with (
        ReplayServer(
            [path],
            start_on_message=True,
            close_at_end=False,
            subscribed_only=True,
            drop_after=drop_after,
            drop_lost=drop_lost,
            http_bodies=bodies,
        ) as srv,
        StreamClient(
            venue, url=srv.url(ws_path), rest_url=srv.rest_url, base_wait=0.01, max_wait=0.05
        ) as feed,
    ):
        statuses: list[Any] = []
        await feed.subscribe_status(statuses.append)
        handled: list[Trade] = []
        async with feed.trades(symbols) as stream:
            await feed.subscribe_trades(symbols, handled.append)
            iterated = await read_until_caught_up(stream, handled, len(trades))
        await until(lambda: feed.counters["reconnected"] == 1, "reconnected")
        await until(lambda: srv.ended == 1, "the resumed connection reached the end")
        await until(lambda: feed.stats()["frames"] >= srv.frames_sent, "every frame read")
        stats = feed.stats()
    # every trade of the recording, the lost ones from REST, once each, in id order per symbol
    assert by_symbol(handled) == by_symbol([t for _, t in trades])
    assert by_symbol(iterated) == by_symbol([t for _, t in trades])
    assert len(handled) == len(iterated) == len(trades)
    recovered = [s for s in statuses if isinstance(s, Gap) and s.recovered]
    for symbol in {t.symbol for t in lost}:
        ids = [t.id for t in lost if t.symbol == symbol and t.id is not None]
        (gap,) = [g for g in recovered if g.symbol == symbol]
        assert gap.first_missing is not None and gap.last_missing is not None
        assert gap.first_missing <= min(ids) and max(ids) <= gap.last_missing
    assert stats["backfilled"] >= len(lost) and stats["reconnects"] == 1
    # symbols without any trade before the drop have no id to backfill from: the outage is a
    # time-range Gap, recovered=False (nothing is silent)
    quiet = sorted(set(symbols) - before)
    unrecovered = sorted(s.symbol for s in statuses if isinstance(s, Gap) and not s.recovered)
    assert unrecovered == quiet
    assert srv.connections == 2
    # the second connection subscribed again by itself, with the same frames
    assert without_ids(sent_by_client(srv, 2)) == without_ids(sent_by_client(srv, 1))


# ------------------------------------------------------------------------------- sharding


class TinyKraken(KrakenCodec):
    max_streams_per_connection = 3
    max_messages_per_second = 1000.0


class TinyCoinbase(CoinbaseCodec):
    max_streams_per_connection = 4
    max_messages_per_second = 1000.0


class TinyBinance(BinanceCodec):
    max_streams_per_connection = 1
    max_messages_per_second = 1000.0


def named_symbols(venue: str, messages: list[dict[str, Any]]) -> list[str]:
    """The symbols a connection's subscribe frames name, tickloop style."""
    if venue == "binance":
        return sorted(
            BinanceCodec().symbol(p.partition("@")[0].upper())
            for m in messages
            for p in m["params"]
        )
    if venue == "kraken":
        return sorted(KrakenCodec().symbol(p) for m in messages for p in m["pair"])
    return sorted(p for m in messages for p in m["product_ids"])


@pytest.mark.parametrize(
    "venue, file, codec",
    [
        ("binance", "BINANCE_US.ws.1.0", TinyBinance),
        ("kraken", "KRAKEN.ws.48.0", TinyKraken),
        ("coinbase", "COINBASE.ws.28.0", TinyCoinbase),
    ],
)
async def test_sharding_spreads_streams_over_connections(
    venue: str, file: str, codec: type[Codec], recorded_data: Path
) -> None:
    path = recorded_data / file
    case = Case(venue, file, "trades", PATHS[venue])
    symbols = recorded_symbols(case, path)
    expected = [t for t in offline(path, stream_codec(venue)(), Trade) if t.symbol in symbols]
    limit = codec.max_streams_per_connection
    async with (
        ReplayServer(
            [path], start_on_message=True, close_at_end=False, subscribed_only=True
        ) as srv,
        StreamClient(venue, url=srv.url(PATHS[venue]), rest_url=srv.rest_url, codec=codec) as feed,
    ):
        handled: list[Trade] = []
        await feed.subscribe_trades(symbols, handled.append)
        await until(lambda: len(handled) >= len(expected), "every trade delivered")
        carried = [
            sorted(s.symbol or "" for s in session.subscriptions) for session in feed.sessions
        ]
        connections = srv.connections
        stats = feed.stats()
        messages = {n: sent_by_client(srv, n) for n in range(1, connections + 1)}
    assert len(carried) == connections == -(-len(symbols) // limit) > 1
    assert all(len(c) <= limit for c in carried)
    assert sorted(s for c in carried for s in c) == symbols  # each stream on one connection
    # each connection subscribed its own streams, in the venue's format
    assert sorted(named_symbols(venue, msgs) for msgs in messages.values()) == sorted(carried)
    assert by_symbol(handled) == by_symbol(expected) and len(handled) == len(expected)
    assert stats["connections"] == connections and stats["duplicates"] == 0


async def test_backfill_that_cannot_be_answered_ends_in_an_unrecovered_gap(
    recorded_data: Path,
) -> None:
    path = recorded_data / "BINANCE_US.ws.1.0"
    drop_after, drop_lost = 225, 10  # aggTrades 425089-425092 are sent while away
    trades = positions(path, "binance")
    lost_ids = [t.id for i, t in trades if drop_after <= i < drop_after + drop_lost]
    expected = [t for i, t in trades if not drop_after <= i < drop_after + drop_lost]
    async with (
        ReplayServer(
            [path],
            start_on_message=True,
            close_at_end=False,
            subscribed_only=True,
            drop_after=drop_after,
            drop_lost=drop_lost,
        ) as srv,  # no REST answers: every backfill request is a 404
        StreamClient(
            "binance", url=srv.url("/stream"), rest_url=srv.rest_url, base_wait=0.01, max_wait=0.05
        ) as feed,
    ):
        statuses: list[Any] = []
        await feed.subscribe_status(statuses.append)
        handled: list[Trade] = []
        await feed.subscribe_trades("OMG-BUSD", handled.append)
        await until(lambda: len(handled) >= len(expected), "the trades held back delivered")
        stats = feed.stats()
    # the trades sent while away are missing; those held back during the backfill attempts
    # come after the Gap, once each and in order
    assert [digits(t) for t in handled] == [digits(t) for t in expected]
    gaps = [s for s in statuses if isinstance(s, Gap)]
    assert gaps and all(not g.recovered and g.symbol == "OMG-BUSD" for g in gaps)
    assert gaps[0].first_missing == lost_ids[0]
    assert gaps[0].last_missing in (lost_ids[-1], None)
    assert stats["gaps_recovered"] == 0 and stats["backfilled"] == 0


# ------------------------------------------------------------- the replay server's new knobs


async def test_replay_sends_a_connection_only_what_it_subscribed(recorded_data: Path) -> None:
    path = recorded_data / "BINANCE_US.ws.1.0"
    frames = received(path)
    async with ReplayServer([path], subscribed_only=True, start_on_message=True) as srv:
        # a combined-stream URL names its streams; a SUBSCRIBE adds, an UNSUBSCRIBE removes
        url = srv.url("/stream") + "?streams=omgbusd@aggTrade/crvusdt@bookTicker"
        got: list[bytes] = []
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(
                json.dumps({"method": "SUBSCRIBE", "params": ["omgbusd@kline_1m"], "id": 1})
            )
            await ws.send(
                json.dumps({"method": "UNSUBSCRIBE", "params": ["crvusdt@bookTicker"], "id": 2})
            )
            async for msg in ws:
                got.append(msg.encode() if isinstance(msg, str) else msg)
    data = [f for f in got if f.startswith(b'{"stream"')]
    wanted = [
        f
        for f in frames
        if f.startswith((b'{"stream":"omgbusd@aggTrade"', b'{"stream":"omgbusd@kline_1m"'))
    ]
    # the bookTicker frames sent before the UNSUBSCRIBE arrived may be there; no others
    assert [f for f in data if b"@bookTicker" not in f] == wanted
    assert all(f.startswith(b'{"stream":"crvusdt@bookTicker"') for f in data if f not in wanted)
    assert srv.ended == 1 and len(wanted) == 11 + 5  # aggTrades and kline updates


async def test_an_outage_of_a_stream_left_meanwhile_is_not_reported_later() -> None:
    # The session's owner API, driven directly (nothing listens on the address): a Kraken trade
    # stream is lost, its consumer leaves during the outage, a new one subscribes later; when
    # that one is confirmed, no Gap dates back to the old outage.
    async with StreamClient("kraken", url="ws://127.0.0.1:9/", base_wait=0.05) as feed:
        statuses: list[Any] = []
        await feed.subscribe_status(statuses.append)
        sub = Subscription(Channel.TRADES, "XMR-USD")
        first = feed.trades("XMR-USD")
        async with first:
            (session,) = feed.sessions
            feed.on_lost(session, [sub], 1)
        second = feed.trades("XMR-USD")
        async with second:
            feed.on_confirmed(session, (sub,))
            assert not [s for s in statuses if isinstance(s, Gap)]
            # while a stream that was carried through an outage does get its Gap
            feed.on_lost(session, [sub], 2)
            feed.on_confirmed(session, (sub,))
        gaps = [s for s in statuses if isinstance(s, Gap)]
        assert len(gaps) == 1 and gaps[0].start_ts == 2 and not gaps[0].recovered
