"""Replay through the full pipeline, and what recording costs on the live path.

0. The baseline, same frames, same run: ``json.loads`` into dict books and a callback.
1. Records the embedded exchange (in-process, ``--rate`` flow steps/s per symbol) for
   ``--record-seconds`` with ``tickloop.record.record`` (trades and books of ``--symbols``).
2. Replays that recording as fast as possible through the live code path, no socket:
   replay transport -> WsSession -> codec -> trade continuity / book synchroniser ->
   StreamClient -> bus (``Bus.attach``: every trade, every book update as a snapshot of the
   top 10) -> Engine -> a bot's ``on_trade`` / ``on_book``. Reported: events/s reaching the bot
   handlers (trades + books) over the replay's wall time (one core: the loop's).
3. The replay transport alone: the recording read, decompressed and handed to a no-op sink.
4. The recording cost, side by side in the same run: the same replay into a StreamClient with
   trade and book handlers, plain, and with a :class:`~tickloop.record.Recorder` wrapped around
   the transport (every frame written to a zstd recording, as ``tickloop record`` does live):
   frames/s of each and their ratio.
5. The recording cost on the live path: the embedded exchange in a child process
   (``--live-rate``), one StreamClient with trade and book handlers, plain and recording every
   frame; this process's CPU time per frame received, and their ratio.

Rows alternate over ``--runs`` repetitions; the median of each is reported (the shared machine
varies 30-50% between runs; compare within one run).

Run: ``.venv/bin/python bench/bench_replay.py [--quick] [--record-seconds S] [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tickloop import StreamClient
from tickloop.record import Recorder, RecordKind, open_recording, record
from tickloop.replay import Replay
from tickloop.runtime.bot import Bot
from tickloop.runtime.engine import Engine
from tickloop.sim import SimExchange


class Counter(Bot):
    channels = ("trades", "books")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events = 0

    def on_trade(self, trade: Any) -> None:
        self.events += 1

    def on_book(self, book: Any) -> None:
        self.events += 1


async def make_recording(out: Path, symbols: list[str], seconds: float, rate: float) -> int:
    async with SimExchange(seed=7, symbols=symbols, rate=rate) as ex:
        stats = await record(out, seconds=seconds, venue="sim", url=ex.ws_url,
                             rest_url=ex.rest_url, symbols=symbols, channels=["trades", "book"])
    return stats.frames


def naive(rec_path: Path) -> tuple[int, float]:
    """The baseline: the same frames through ``json.loads`` into dict books and a callback (no
    sequence check, no checksum, no bus), in the same process."""
    frames = [r.data for r in open_recording(rec_path).records() if r.kind is RecordKind.RECEIVED]
    books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    events = 0

    def handler(_: Any) -> None:
        nonlocal events
        events += 1

    start = time.perf_counter()
    for frame in frames:
        msg = json.loads(frame)
        kind = msg.get("type")
        if kind == "trade":
            handler(msg)
        elif kind in ("book_update", "book_snapshot"):
            bids, asks = books.setdefault(msg["symbol"], ({}, {}))
            if kind == "book_snapshot":
                bids.clear()
                asks.clear()
            for side, levels in ((bids, msg["bids"]), (asks, msg["asks"])):
                for price, size in levels:
                    if float(size):
                        side[price] = size
                    else:
                        side.pop(price, None)
            handler(books[msg["symbol"]])
    return events, time.perf_counter() - start


class Sink:
    """A session stand-in that takes every frame and does nothing with it."""

    def __init__(self) -> None:
        self.frames = 0

    def on_frame(self, data: Any, now_ns: int) -> None:
        self.frames += 1

    def on_oversized(self, limit: str, size: int, now_ns: int) -> None:
        pass

    def on_closed(self, reason: str, now_ns: int, limit: str | None) -> None:
        pass


async def transport_alone(rec_path: Path) -> tuple[int, float]:
    """The replay transport's own cost: records read, decompressed and handed to a no-op sink
    (sends are not waited for: there is no client)."""
    logging.getLogger("tickloop.replay").setLevel(logging.ERROR)  # "did not happen": expected
    async with Replay(rec_path, wait_timeout=0.0) as replay:
        sink = Sink()
        start = time.perf_counter()
        await replay.connect("ws://replay", {}, sink)
        await replay.wait()
        elapsed = time.perf_counter() - start
    return sink.frames, elapsed


async def full_pipeline(
    rec_path: Path | list[Path], symbols: list[str], venue: str = "sim"
) -> tuple[int, int, float, float]:
    """Events reaching the bot, frames replayed, wall seconds and CPU seconds
    (``time.process_time``, this process) of the replay, engine start excluded."""
    rec = open_recording(rec_path)
    bot = Counter("counter", symbols=symbols)
    async with Replay(rec) as replay:
        feed = replay.client()
        async with feed, Engine([bot], venue=venue, feed=feed):
            start, cpu = time.perf_counter(), time.process_time()
            await replay.wait()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            await asyncio.sleep(0)
    return bot.events, replay.stats.frames, elapsed, cpu


async def binance_client(files: list[str | Path], symbols: list[str]) -> tuple[int, int, float]:
    """The real Binance session into a StreamClient with trade and book handlers (codec, trade
    continuity, the REST snapshot sync rule, each book delivered): events, frames, CPU seconds.
    Not through an Engine: a cryptofeed recording waits only for a connection's first
    subscription, and the engine subscribes books after trades, once the replay has gone by."""
    events = 0

    def count(_: Any) -> None:
        nonlocal events
        events += 1

    async with Replay(files) as replay, replay.client() as feed:
        await asyncio.gather(feed.subscribe_trades(symbols, count),
                             feed.subscribe_books(symbols, count))
        cpu = time.process_time()
        await replay.wait()
        cpu = time.process_time() - cpu
    return events, replay.stats.frames, cpu


def binance_files() -> tuple[list[str | Path], list[str]] | None:
    """The real Binance session in tests/data (diffs, trades, REST snapshots) and its symbols,
    or None when the tests' data is not beside this file."""
    data = Path(__file__).resolve().parent.parent / "tests" / "data" / "cryptofeed"
    ws, http = data / "BINANCE.ws.1.0", data / "BINANCE.http.0.0"
    if not (ws.exists() and http.exists()):
        return None
    from tickloop.venues.binance import BinanceCodec
    from tickloop.venues.recorded import Direction, read_recording

    codec, symbols = BinanceCodec(), set[str | None]()
    for rec in read_recording(ws):
        if rec.direction is Direction.RECEIVED:
            symbols.update(getattr(m, "symbol", None) for m in codec.decode(rec.frame, rec.ts))
    return [ws, http], sorted(s for s in symbols if s)


async def client_only(rec_path: Path, symbols: list[str], out: Path | None) -> tuple[int, float]:
    rec = open_recording(rec_path)
    events = 0

    def count(_: Any) -> None:
        nonlocal events
        events += 1

    async with Replay(rec) as replay:
        recorder = Recorder(out) if out is not None else None
        transport = recorder.transport(replay) if recorder is not None else replay
        feed = replay.client(transport=transport)
        async with feed:
            await asyncio.gather(feed.subscribe_trades(symbols, count),
                                 feed.subscribe_books(symbols, count))
            start = time.perf_counter()
            await replay.wait()
            elapsed = time.perf_counter() - start
        if recorder is not None:
            recorder.close()
    return replay.stats.frames, elapsed


async def start_sim(rate: float, symbols: list[str]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickloop", "sim", "--port", "0", "--seed", "7",
        "--symbols", ",".join(symbols), "--rate", str(rate), stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        if not line:
            raise RuntimeError("tickloop sim exited before printing its address")
        if "WebSocket" in line:
            return proc, line.split()[-1]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def live_cost(url: str, symbols: list[str], out: Path | None, seconds: float) -> float:
    """Client CPU (this process) per frame received from the sim over a socket, for
    ``seconds`` after a 0.5 s warm-up: plain, or recording every frame (``out``)."""
    recorder = Recorder(out) if out is not None else None
    transport = recorder.transport() if recorder is not None else None
    try:
        async with StreamClient("sim", url=url, transport=transport) as feed:
            await feed.subscribe_trades(symbols, lambda _: None)
            await feed.subscribe_books(symbols, lambda _: None)
            await asyncio.sleep(0.5)
            frames, cpu = feed.stats()["frames"], _cpu()
            await asyncio.sleep(seconds)
            frames, cpu = feed.stats()["frames"] - frames, _cpu() - cpu
    finally:
        if recorder is not None:
            recorder.close()
    return cpu / max(1, frames) * 1e6


async def live_rows(symbols: list[str], rate: float, seconds: float, runs: int,
                    tmp: Path) -> tuple[float, float]:
    proc, url = await start_sim(rate, symbols)
    try:
        plain, recorded = [], []
        for run in range(runs):
            plain.append(await live_cost(url, symbols, None, seconds))
            recorded.append(await live_cost(url, symbols, tmp / f"live-{run}", seconds))
    finally:
        proc.terminate()
        await proc.wait()
    return statistics.median(plain), statistics.median(recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record-seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="sim flow steps/s a symbol")
    parser.add_argument("--symbols", default="BTC-USD,ETH-USD")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--live-rate", type=float, default=500.0,
                        help="sim flow steps/s a symbol for the live rows (a child process)")
    parser.add_argument("--live-seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="2 s recording, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.record_seconds, args.runs, args.live_seconds = 2.0, 1, 1.0
    symbols = [s for s in args.symbols.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        rec_path = Path(tmp) / "rec"
        frames = asyncio.run(make_recording(rec_path, symbols, args.record_seconds, args.rate))
        size = sum(p.stat().st_size for p in rec_path.iterdir())
        print(f"recording: {frames} frames of {len(symbols)} symbols, {size} bytes "
              f"(python {platform.python_version()}, {sys.platform})")
        runs: dict[str, list[float]] = {}
        binance = binance_files()
        detail: dict[str, str] = {}
        gc.collect()
        for run in range(args.runs):
            n, elapsed = naive(rec_path)
            runs.setdefault("naive", []).append(n / elapsed)
            n, elapsed = asyncio.run(transport_alone(rec_path))
            runs.setdefault("transport", []).append(n / elapsed)
            events, frames_seen, elapsed, cpu = asyncio.run(full_pipeline(rec_path, symbols))
            runs.setdefault("pipeline", []).append(events / elapsed)
            runs.setdefault("pipeline_cpu", []).append(cpu / events * 1e6)
            detail["pipeline"] = f"{events} events from {frames_seen} frames"
            if binance is not None:
                events, frames_seen, cpu = asyncio.run(binance_client(*binance))
                runs.setdefault("binance_cpu", []).append(cpu / events * 1e6)
                detail["binance"] = f"{events} events from {frames_seen} frames"
            for name, out in (("plain", None), ("recorded", Path(tmp) / f"again-{run}")):
                n, elapsed = asyncio.run(client_only(rec_path, symbols, out))
                runs.setdefault(name, []).append(n / elapsed)
        best = {name: statistics.median(values) for name, values in runs.items()}
        live_plain, live_recorded = asyncio.run(
            live_rows(symbols, args.live_rate, args.live_seconds, args.runs, Path(tmp))
        )
    print(f"\nmedians of {args.runs} alternating runs\n")
    print("| row | figure |")
    print("|---|---|")
    print(f"| baseline: json.loads -> dict book -> callback | {best['naive']:,.0f} events/s |")
    print(f"| replay -> codec -> book -> bus -> bot handler | {best['pipeline']:,.0f} events/s "
          f"({detail['pipeline']}) |")
    print(f"| same, CPU per event (process_time of the replay) | {best['pipeline_cpu']:.2f} µs "
          f"({1e6 / best['pipeline_cpu']:,.0f} events per CPU-second) |")
    print(f"| pipeline / baseline | {best['pipeline'] / best['naive']:.2f} |")
    if "binance_cpu" in best:
        print(f"| real Binance session (tests/data) -> StreamClient handlers, CPU per event | "
              f"{best['binance_cpu']:.2f} µs ({1e6 / best['binance_cpu']:,.0f} events per "
              f"CPU-second; {detail['binance']}) |")
    print(f"| replay transport alone (read, decompress, hand to a no-op sink) | "
          f"{best['transport']:,.0f} frames/s |")
    print(f"| replay -> StreamClient handlers, plain | {best['plain']:,.0f} frames/s |")
    print(f"| same, recording every frame (Recorder) | {best['recorded']:,.0f} frames/s |")
    print(f"| recorded / plain | {best['recorded'] / best['plain']:.2f} |")
    print(f"| live from the sim (a child process), client CPU per frame, plain | "
          f"{live_plain:.1f} µs |")
    print(f"| same, recording every frame | {live_recorded:.1f} µs |")
    print(f"| live: recorded / plain CPU per frame | {live_recorded / live_plain:.2f} |")


if __name__ == "__main__":
    main()
