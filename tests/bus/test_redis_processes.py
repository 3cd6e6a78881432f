"""The Redis bus across processes: a consumer killed with SIGKILL and restarted, two consumers
splitting a group, a feed process and a consumer process sharing a StreamClient's trades, and a
redis-server killed and restarted under a running publisher and consumer.

Every process is bounded in time (``communicate`` / ``wait`` with a limit, then killed)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tickloop.bus import Bus, Event
from tickloop.bus.redis import RedisBus
from tickloop.models import Disconnected, Reconnected, Side, Trade
from tickloop.sim import SimExchange

from .redis_server import RedisServer

PROC = str(Path(__file__).with_name("redis_proc.py"))
LIMIT = 30.0  # seconds: only stops a broken run from hanging (not a timing goal)


def trade(i: int) -> Trade:
    return Trade(venue="sim", symbol="BTC-USD", id=i, price=Decimal("100.5"),
                 size=Decimal("1"), side=Side.SELL, ts=i)


class Proc:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, PROC, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    async def line(self) -> str:
        assert self.p.stdout is not None
        out = await asyncio.wait_for(asyncio.to_thread(self.p.stdout.readline), LIMIT)
        if not out:
            raise AssertionError(f"process ended: {self.errors()}")
        return out.decode().strip()

    def errors(self) -> str:
        if self.p.poll() is None:
            return "(still running)"
        assert self.p.stderr is not None
        return self.p.stderr.read().decode(errors="replace")[-3000:]

    async def wait(self) -> int:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.p.wait), LIMIT)
        except TimeoutError:
            self.p.kill()
            raise

    def kill(self) -> None:
        """End the process and close its pipes (an unclosed pipe is a ResourceWarning that
        another test's gc.collect() would report as its own)."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        for pipe in (self.p.stdout, self.p.stderr):
            if pipe is not None:
                pipe.close()

    async def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return await self.wait()


def records(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        parts = line.decode().split()
        out.append((parts[0], int(parts[1])))
    return out


async def wait_lines(path: Path, n: int, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT
    while len(records(path)) < n:
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what} ({len(records(path))} of {n})")
        await asyncio.sleep(0.02)


async def group_pending(url: str, stream: str, group: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return int((await client.xpending(stream, group))["pending"])
    finally:
        await client.aclose()


def consumer(url: str, out: Path, name: str, *extra: str) -> Proc:
    return Proc("consume", "--url", url, "--group", "g", "--name", name, "--out", str(out),
                *extra)


async def test_consumer_killed_mid_stream_resumes_with_every_event_once(
    redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "handled.txt"
    async with Bus(redis_url, name="pub") as pub:
        sent = [pub.publish("trade.sim.BTC-USD", trade(i)) for i in range(1, 1501)]
        assert isinstance(pub, RedisBus) and await pub.flush(within=LIMIT)
        first = consumer(redis_url, out, "c1", "--hang-after", "600")
        try:
            assert await first.line() == "ready"
            await wait_lines(out, 600, "first consumer handled 600")
            first.p.send_signal(signal.SIGKILL)  # mid-stream: its handler is stuck on #601
            assert await first.wait() == -signal.SIGKILL
        finally:
            first.kill()
        first_records = records(out)
        first_handled = set(first_records)
        # More events while no consumer runs.
        sent += [pub.publish("trade.sim.BTC-USD", trade(i)) for i in range(1501, 2001)]
        assert await pub.flush(within=LIMIT)
    again = consumer(redis_url, out, "c1", "--expect", "2000")
    try:
        assert await again.line() == "ready"
        assert await again.wait() == 0, again.errors()
    finally:
        again.kill()
    got = records(out)
    counts = Counter(got)
    assert set(counts) == {(e.source, e.id) for e in sent}  # every event, after dedupe
    # Only events the killed consumer had handled (and not yet acknowledged when it died) come
    # twice, and no more than twice. How many that is depends on how far its acknowledger had
    # got, which is the machine's timing: the test asserts which events, not how many.
    doubled = {k for k, c in counts.items() if c > 1}
    assert all(c <= 2 for c in counts.values())
    assert doubled <= first_handled
    # The restarted consumer first re-read what it had been given and not acknowledged, oldest
    # first (the handled ones its acknowledger had not reached, then #601...), then new ones.
    rest = got[len(first_records):]
    redone = [k for k in first_records if k in doubled]
    assert rest[: len(redone)] == redone
    assert rest[len(redone)][1] == sent[600].id
    assert await group_pending(redis_url, "tickloop:trade", "g|trade.*") == 0


async def test_two_consumers_split_a_group_with_nothing_lost_or_doubled(
    redis_url: str, tmp_path: Path
) -> None:
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = [consumer(redis_url, outs[0], "a", "--read-count", "20"),
             consumer(redis_url, outs[1], "b", "--read-count", "20")]
    try:
        for p in procs:
            assert await p.line() == "ready"
        async with Bus(redis_url, name="pub") as pub:
            assert isinstance(pub, RedisBus)
            sent = []
            for burst in range(40):
                sent += [pub.publish("trade.sim.BTC-USD", trade(burst * 50 + i))
                         for i in range(50)]
                assert await pub.flush(within=LIMIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIMIT
        while sum(len(records(o)) for o in outs) < len(sent):
            assert loop.time() < deadline, "consumers never handled everything"
            await asyncio.sleep(0.02)
        for p in procs:
            assert await p.stop() == 0, p.errors()
    finally:
        for p in procs:
            p.kill()
    a, b = records(outs[0]), records(outs[1])
    assert a and b  # both took part
    assert len(a) + len(b) == len(sent)
    assert set(a) | set(b) == {(e.source, e.id) for e in sent}
    assert not set(a) & set(b)
    assert await group_pending(redis_url, "tickloop:trade", "g|trade.*") == 0


async def test_feed_and_consumer_processes_share_the_sims_trades(
    redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "trades.txt"
    async with SimExchange(seed=11, symbols=["BTC-USD"], rate=200) as ex:
        store = consumer(redis_url, out, "store")
        feed = Proc("feed", "--url", redis_url, "--ws", ex.ws_url, "--symbol", "BTC-USD")
        try:
            assert await store.line() == "ready"
            assert await feed.line() == "ready"
            await wait_lines(out, 300, "300 trades through Redis")
            assert await feed.stop() == 0, feed.errors()
            published = int((await feed.line()).split()[1])
            await wait_lines(out, published, "every published trade")
            assert await store.stop() == 0, store.errors()
        finally:
            feed.kill()
            store.kill()
        truth = ex.trades("BTC-USD")
    lines = [line.split() for line in out.read_text().splitlines()]
    got = [(int(f[3]), Decimal(f[4]), Decimal(f[5]), f[6], int(f[7])) for f in lines]
    assert len(got) == published
    first, last = got[0][0], got[-1][0]
    expected = [(t.id, t.price, t.size, str(t.side), t.ts) for t in truth
                if t.id is not None and first <= t.id <= last]
    assert got == expected
    assert all(f[2] == "trade.sim.BTC-USD" for f in lines)


async def test_redis_restart_loses_no_acknowledged_or_confirmed_event(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url
    handled: list[Event] = []
    status: list[Any] = []
    async with (
        Bus(url, name="pub", base_wait=0.02, max_wait=0.2) as pub,
        Bus(url, name="con", base_wait=0.02, max_wait=0.2, claim_idle=0.5) as con,
    ):
        assert isinstance(pub, RedisBus) and isinstance(con, RedisBus)
        con.subscribe("trade.*", group="g", handler=handled.append)
        con.subscribe("status.*", handler=lambda ev: status.append(ev.payload))
        sent = [pub.publish("trade.sim.BTC-USD", trade(i)) for i in range(1, 501)]
        assert await pub.flush(within=LIMIT)
        confirmed = {(e.source, e.id) for e in sent}
        await asyncio.wait_for(_until(lambda: len(handled) >= 500), LIMIT)
        await asyncio.wait_for(_until(lambda: con.stats()["redis"]["acks_pending"] == 0), LIMIT)
        own_redis.kill()  # SIGKILL: appendfsync always kept every write it answered
        # While Redis is away: publishing goes on into the buffer.
        sent += [pub.publish("trade.sim.BTC-USD", trade(i)) for i in range(501, 801)]
        await asyncio.wait_for(_until(lambda: not pub.connected), LIMIT)
        own_redis.start()
        assert await pub.flush(within=LIMIT)
        await asyncio.wait_for(_until(lambda: len({(e.source, e.id) for e in handled})
                                      >= 800), LIMIT)
        assert pub.stats()["redis"]["publish_dropped"] == 0
    keys = [(e.source, e.id) for e in handled]
    assert set(keys) == {(e.source, e.id) for e in sent}
    # Nothing acknowledged before the kill came again.
    assert Counter(keys[:500]) == Counter(confirmed)
    assert all(c == 1 for k, c in Counter(keys).items() if k in confirmed)
    assert any(isinstance(s, Disconnected) and s.venue == "redis" for s in status)
    assert any(isinstance(s, Reconnected) and s.venue == "redis" for s in status)
    client = aioredis.Redis.from_url(url)
    try:
        assert await client.xlen("tickloop:trade") >= 800
    finally:
        await client.aclose()


async def _until(condition: Any) -> None:
    while not condition():  # noqa: ASYNC110  (polled state of another object; bounded by callers)
        await asyncio.sleep(0.01)


async def test_publisher_buffer_is_bounded_drops_the_oldest_and_says_so(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url
    async with Bus(url, name="pub", buffer_size=50, batch_size=10, base_wait=0.02,
                   max_wait=0.1, drop_interval=0.05) as pub:
        assert isinstance(pub, RedisBus)
        notices = pub.subscribe("bus.dropped.*")
        status = pub.subscribe("status.*")
        assert await pub.ready()
        own_redis.kill()
        sent = [pub.publish("trade.sim.BTC-USD", trade(i)) for i in range(1, 201)]
        assert pub.stats()["redis"]["buffered"] <= 50
        dropped = pub.stats()["redis"]["publish_dropped"]
        assert dropped >= 150
        notice = await asyncio.wait_for(notices.__anext__(), LIMIT)
        assert notice.payload.subscription == "redis-publisher"
        assert notice.payload.policy == "drop_oldest" and notice.payload.total == dropped
        down = await asyncio.wait_for(status.__anext__(), LIMIT)
        assert isinstance(down.payload, Disconnected)
        own_redis.start()
        assert await pub.flush(within=LIMIT)
        assert pub.stats()["redis"]["confirmed"] == len(sent) - dropped
    client = aioredis.Redis.from_url(url)
    try:
        entries = await client.xrange("tickloop:trade")
    finally:
        await client.aclose()
    codec = pub.codec
    ids = [codec.entry(fields[b"e"]).id for _, fields in entries]
    # What reached Redis is the newest stretch (plus what was in flight when Redis went).
    assert sent[-1].id in ids and len(set(ids)) == len(sent) - dropped
    assert set(ids) >= {e.id for e in sent[-40:]}


def test_writer_buffer_drops_its_oldest_unsent_event() -> None:
    from tickloop.bus._redis_io import Link, Retrying, Writer
    from tickloop.bus._redis_wire import StreamLayout

    drops: list[int] = []
    link = Link("redis://x", lambda topic, payload: None, lambda: 0.0)
    writer = Writer(None, StreamLayout(), Retrying(link, 0.0, 1.0),  # type: ignore[arg-type]
                    maxlen=None, batch_size=2, linger=0.0, buffer_size=4,
                    on_drop=drops.append)
    for i in range(10):
        writer.put(b"k", str(i).encode())
    assert writer.dropped == 6 and sum(drops) == 6
    assert [v for _, v in writer._buffer] == [b"6", b"7", b"8", b"9"]
