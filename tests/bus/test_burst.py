"""A 100k-event burst from a StreamClient against the sim into a slow lossless subscriber.

The exchange is driven in bursts (``ex.step``), each as big as its per-connection send buffer
allows (a venue's socket has a bound too; the sim disconnects a client 10,000 frames behind). The
link publishes every trade and a top-20 book snapshot per book update (large events: an unpaused
backlog of them is tens of megabytes). The subscriber reads ten times slower than the burst
arrives. What must hold: nothing is lost (count in == count out, the trades are the sim's trade
log), the socket was paused, the backlog stayed near the subscription's bound, and the peak RSS
growth stayed bounded (sampled every few milliseconds; without the pause it grows past the
bound more than twice over).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tickloop import StreamClient
from tickloop.bus import Bus
from tickloop.models import BookSnapshot, Trade
from tickloop.sim import SimExchange

from .helpers import until

SYMBOL = "BTC-USD"
EVENTS = 100_000
MAXSIZE = 1000
#: Peak RSS growth allowed (MiB). The exchange runs in this process and itself grows ~40 MiB
#: over the burst (its engine keeps every order and trade); measured with the pause, the whole
#: process grew ~60-70 MiB, and ~295 MiB without it (link ``pause=False``: the backlog reached
#: ~99,600 events).
RSS_BOUND_MIB = 120


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_100k_burst_into_a_slow_lossless_subscriber_loses_nothing_in_bounded_memory(
) -> None:
    async with (
        SimExchange(seed=3, symbols=[SYMBOL], rate=0) as ex,
        StreamClient("sim", url=ex.ws_url, base_wait=0.01, heartbeat_timeout=30.0) as feed,
        Bus() as bus,
    ):
        sub = bus.subscribe("*", policy="lossless", maxsize=MAXSIZE)
        link = await bus.attach(feed, trades=SYMBOL, books=SYMBOL, depth=20, status=False)
        trade_ids: list[int] = []
        counts = {"events": 0, "books": 0}

        async def slow_reader() -> None:
            async for event in sub:
                counts["events"] += 1
                payload = event.payload
                if isinstance(payload, Trade):
                    assert payload.id is not None
                    trade_ids.append(payload.id)
                elif isinstance(payload, BookSnapshot):
                    counts["books"] += 1
                if counts["events"] % 10 == 0:
                    await asyncio.sleep(0.001)  # ~10k events/s at most

        peak = {"rss": 0.0}

        async def sampler() -> None:
            while True:
                peak["rss"] = max(peak["rss"], rss_mib())
                await asyncio.sleep(0.005)

        base = rss_mib()
        reader = asyncio.ensure_future(slow_reader())
        sampling = asyncio.ensure_future(sampler())
        try:
            stats = ex.stats
            while stats.trades + stats.book_updates < EVENTS:
                # The exchange's own send buffer stays well under its 10,000-frame limit.
                await until(
                    lambda: stats.trades + stats.book_updates - stats.frames_sent <= 4000,
                    "the exchange sent its backlog",
                    limit=60.0,
                )
                ex.step(SYMBOL, 400)
                await asyncio.sleep(0)
            last_trade = ex.engine.last_trade_id(SYMBOL)

            await until(
                lambda: bool(trade_ids) and trade_ids[-1] == last_trade
                and counts["events"] == link.published,
                "the reader caught up with the whole burst",
                limit=150.0,
            )
        finally:
            sampling.cancel()
            reader.cancel()
            for task in (sampling, reader):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        growth = peak["rss"] - base
        # count in == count out, and the trades are the exchange's trade log
        assert link.published >= EVENTS and counts["events"] == link.published
        assert sub.dropped == 0
        assert trade_ids == [t.id for t in ex.trades(SYMBOL)]
        assert counts["books"] > EVENTS // 2
        # the socket was paused, and the backlog stayed near the subscription's bound
        assert link.pauses >= 1 and sub.stats()["pauses"] >= 1
        assert feed.sessions[0].stats.pauses >= 1
        assert sub.max_depth <= MAXSIZE + 5000, sub.max_depth
        assert growth < RSS_BOUND_MIB, f"peak RSS grew {growth:.1f} MiB"
        assert ex.stats.slow_disconnects == 0
