"""The replay transport: recordings played through StreamClient's own code path, no socket.

Real recordings (cryptofeed's Binance, Coinbase and Kraken sessions) give the trades and books
the live-path tests expect: every trade as the codec decodes the recorded frame (receive time
included: the recorded one), and final books equal to a brute-force rebuild. Replays are
deterministic: the event log of two replays hashes the same.
"""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickloop.book import BinanceSync
from tickloop.models import BookDelta, BookInvalid, BookSnapshot, Trade
from tickloop.replay import Replay
from tickloop.venues import stream_codec
from tickloop.venues.binance import BinanceCodec, BinanceRest
from tickloop.venues.recorded import Direction, read_recording

pytestmark = [pytest.mark.playback, pytest.mark.timeout(120)]

Levels = list[tuple[Decimal, Decimal]]


def decoded(path: Path, venue: str) -> list[Any]:
    codec = stream_codec(venue)()
    return [
        e
        for r in read_recording(path)
        if r.direction is Direction.RECEIVED
        for e in codec.decode(r.frame, r.ts)
    ]


class Log:
    """Every event a consumer got, in order, as bytes: what the determinism test hashes."""

    def __init__(self) -> None:
        self.trades: list[Trade] = []
        self.books: dict[str, Any] = {}
        self.status: list[Any] = []
        self.lines: list[bytes] = []

    def on_trade(self, trade: Trade) -> None:
        self.trades.append(trade)
        self.lines.append(msgspec.json.encode(trade))

    def on_book(self, view: Any) -> None:
        self.books[view.symbol] = view
        self.lines.append(
            msgspec.json.encode([view.symbol, view.sequence, view.ts, view.bids(10), view.asks(10)])
        )

    def on_status(self, event: Any) -> None:
        self.status.append(event)
        self.lines.append(msgspec.json.encode(event))

    def digest(self) -> str:
        return hashlib.sha256(b"\n".join(self.lines)).hexdigest()


async def replay_feed(
    files: list[Path], *, trades: list[str] = (), books: list[str] = (),  # type: ignore[assignment]
    depth: int | None = None, speed: float | None = None, **options: Any
) -> tuple[Log, Replay, dict[str, tuple[Levels, Levels]]]:
    log = Log()
    final: dict[str, tuple[Levels, Levels]] = {}
    async with Replay(files, speed=speed) as replay, replay.client(**options) as feed:
        await feed.subscribe_status(log.on_status)
        # a recording made by another client: subscribe to everything at once, as it did
        calls = []
        if trades:
            calls.append(feed.subscribe_trades(trades, log.on_trade))
        if books:
            calls.append(feed.subscribe_books(books, log.on_book, depth=depth))
        await asyncio.gather(*calls)
        await replay.wait()
        for symbol in books:
            book = feed.book(symbol)
            assert book is not None and book.valid, symbol
            final[symbol] = (book.bids(), book.asks())
    return log, replay, final


def brute_force(messages: list[Any], depth: int | None = None) -> dict[str, tuple[Levels, Levels]]:
    sides: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
    for m in messages:
        if isinstance(m, BookSnapshot):
            sides[m.symbol] = ({p: s for p, s in m.bids if s}, {p: s for p, s in m.asks if s})
        elif isinstance(m, BookDelta) and m.symbol in sides:
            for side, levels in zip(sides[m.symbol], (m.bids, m.asks), strict=True):
                for p, s in levels:
                    if s:
                        side[p] = s
                    else:
                        side.pop(p, None)
        else:
            continue
        if depth is not None:
            bids, asks = sides[m.symbol]
            sides[m.symbol] = (
                dict(sorted(bids.items(), reverse=True)[:depth]),
                dict(sorted(asks.items())[:depth]),
            )
    return {
        sym: (sorted(b.items(), reverse=True), sorted(a.items())) for sym, (b, a) in sides.items()
    }


# ------------------------------------------------------------------------- real: trades

TRADE_FILES = [
    ("binance", "BINANCE.ws.1.0"),
    ("binance", "BINANCE_US.ws.1.0"),
    ("coinbase", "COINBASE.ws.28.0"),
    ("kraken", "KRAKEN.ws.48.0"),
]


@pytest.mark.parametrize(("venue", "name"), TRADE_FILES, ids=[n for _, n in TRADE_FILES])
async def test_real_recordings_give_the_recorded_trades(
    venue: str, name: str, recorded_data: Path
) -> None:
    path = recorded_data / name
    expected = [e for e in decoded(path, venue) if isinstance(e, Trade)]
    symbols = sorted({t.symbol for t in expected})
    assert expected and symbols
    log, replay, _ = await replay_feed([path], trades=symbols)
    # every trade, in order, exactly as decoded from the recorded frame: its receive time too
    assert log.trades == expected
    assert replay.stats.frames == sum(
        1 for r in read_recording(path) if r.direction is Direction.RECEIVED
    )
    assert replay.stats.dropped == 0
    assert [type(s).__name__ for s in log.status] == ["Connected"]


# -------------------------------------------------------------------------- real: books


async def test_kraken_books_verify_every_checksum_and_equal_a_brute_force_rebuild(
    recorded_data: Path,
) -> None:
    path = recorded_data / "KRAKEN.ws.50.0"
    messages = [e for e in decoded(path, "kraken") if isinstance(e, BookSnapshot | BookDelta)]
    symbols = sorted({m.symbol for m in messages})
    assert len(symbols) == 10
    log, _, final = await replay_feed([path], books=symbols, depth=1000)
    assert not [s for s in log.status if isinstance(s, BookInvalid)]  # every checksum held
    assert final == brute_force(messages, depth=1000)
    # one delivery per update (no conflation asked), the last one the final book's top
    assert len(log.lines) - len(log.status) == len(messages)
    for symbol, view in log.books.items():
        assert view.bids(10) == final[symbol][0][:10]


async def test_coinbase_books_and_trades_together(recorded_data: Path) -> None:
    path = recorded_data / "COINBASE.ws.28.0"
    events = decoded(path, "coinbase")
    messages = [e for e in events if isinstance(e, BookSnapshot | BookDelta)]
    trades = [e for e in events if isinstance(e, Trade)]
    symbols = sorted({m.symbol for m in messages})
    log, _, final = await replay_feed(
        [path], books=symbols, trades=sorted({t.symbol for t in trades})
    )
    assert not [s for s in log.status if isinstance(s, BookInvalid)]
    assert final == brute_force(messages)
    assert log.trades == trades


async def test_binance_books_sync_by_the_rest_snapshot_rule_on_recorded_snapshots(
    recorded_data: Path,
) -> None:
    ws, http = recorded_data / "BINANCE.ws.1.0", recorded_data / "BINANCE.http.0.0"
    # offline, the live-path test's way: diffs and REST snapshots in the order they arrived
    codec, rest = BinanceCodec(), BinanceRest()
    items: list[tuple[int, int, Any]] = []
    for n, rec in enumerate(read_recording(ws)):
        if rec.direction is Direction.RECEIVED:
            items += [(rec.ts, n, m) for m in codec.decode(rec.frame, rec.ts)
                      if isinstance(m, BookDelta)]
    for n, rec in enumerate(read_recording(http)):
        symbol = codec.symbol(rec.url.partition("symbol=")[2].partition("&")[0])
        items.append((rec.ts, n, rest.parse_book(rec.frame, symbol, recv_ts=rec.ts)))
    syncs: dict[str, BinanceSync] = {}
    for _, _, m in sorted(items, key=lambda t: (t[0], t[1])):
        sync = syncs.get(m.symbol)
        if sync is None:
            sync = syncs[m.symbol] = BinanceSync(m.symbol, depth=1000)
            sync.start()
        if isinstance(m, BookSnapshot):
            sync.on_snapshot(m)
        else:
            sync.on_update(m)
    expected = {s: (y.book.bids(), y.book.asks()) for s, y in syncs.items()}
    assert len(expected) == 4
    log, replay, final = await replay_feed([ws, http], books=sorted(expected), depth=1000)
    assert final == expected
    assert replay.stats.rest_answers == 4 and replay.stats.rest_missing == 0
    assert not [s for s in log.status if isinstance(s, BookInvalid)]


# ------------------------------------------------------------------------- determinism


async def test_two_replays_give_the_same_event_log_bit_for_bit(recorded_data: Path) -> None:
    files = [recorded_data / "BINANCE.ws.1.0", recorded_data / "BINANCE.http.0.0"]
    symbols = sorted({e.symbol for e in decoded(files[0], "binance") if isinstance(e, Trade)})
    digests = []
    for _ in range(2):
        log, _, _ = await replay_feed(files, trades=symbols, books=symbols, depth=1000)
        assert log.trades and log.books
        digests.append(log.digest())
    assert digests[0] == digests[1]


async def test_a_scaled_pace_gives_the_same_events_as_fast(recorded_data: Path) -> None:
    path = recorded_data / "KRAKEN.ws.48.0"
    symbols = sorted({e.symbol for e in decoded(path, "kraken") if isinstance(e, Trade)})
    fast, _, _ = await replay_feed([path], trades=symbols)
    paced, replay, _ = await replay_feed([path], trades=symbols, speed=5000.0)
    assert paced.digest() == fast.digest() and replay.speed == 5000.0
