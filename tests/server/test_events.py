"""The SSE event stream: replay rings, Last-Event-ID resume with exact continuity, lost
notices, filters, conflation of market snapshots, lossless order/fill events, keep-alives and
disconnects; over httpx's ASGI transport (bounded streams) and a streaming ASGI driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tickloop.bus import Bus
from tickloop.exceptions import ConfigError
from tickloop.server import Platform, ReplayRing, TickloopApp, create_app

from .helpers import book, events_of, fill, parse_sse, stream, trade


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with Bus(name="test") as b:
        yield b


async def _app(bus: Bus, **options: Any) -> TickloopApp:
    options.setdefault("token", "t0ken")
    app = create_app(Platform(bus), **options)
    await app.start()
    return app


async def _get(app: TickloopApp, path: str, headers: dict[str, str] | None = None
               ) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path, headers=headers)


def _bus_ids(frames: list[Any]) -> list[int]:
    return [f.json()["id"] for f in events_of(frames)]


async def test_backlog_then_resume_is_exactly_continuous(bus: Bus) -> None:
    app = await _app(bus)
    published = []
    for n in range(30):  # trades and fills interleaved: two intakes, one order
        published.append(bus.publish("trade.sim.BTC-USD", trade(n)).id)
        if n % 3 == 0:
            published.append(bus.publish("fill.sim", fill(n)).id)
    first = await _get(app, "/api/events/stream?backlog=1&limit=12")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(first.text)
    assert frames[0].retry == 1000
    seen = _bus_ids(frames)
    assert seen == published[:12]
    last_id = events_of(frames)[-1].id
    assert last_id is not None
    for n in range(30, 50):  # published while the client is away
        published.append(bus.publish("trade.sim.ETH-USD", trade(n, "ETH-USD")).id)
    rest = await _get(app, f"/api/events/stream?limit={len(published) - 12}",
                      headers={"Last-Event-ID": last_id})
    frames = parse_sse(rest.text)
    assert not [f for f in frames if f.event == "lost"]
    assert seen + _bus_ids(frames) == published  # nothing lost, nothing repeated, in order
    ids = [f.id for f in events_of(parse_sse(first.text)) + events_of(frames)]
    seqs = [int(i.rpartition("-")[2]) for i in ids if i is not None]
    assert seqs == list(range(1, len(published) + 1))
    await app.aclose()


async def test_the_query_parameter_resumes_like_the_header(bus: Bus) -> None:
    app = await _app(bus)
    events = [bus.publish("trade.sim.BTC-USD", trade(n)).id for n in range(5)]
    first = events_of(parse_sse((await _get(app, "/api/events/stream?backlog=1&limit=2")).text))
    rest = await _get(app, f"/api/events/stream?last_event_id={first[-1].id}&limit=3")
    assert [f.json()["id"] for f in first] + _bus_ids(parse_sse(rest.text)) == events
    await app.aclose()


async def test_resume_after_eviction_says_so_then_continues(bus: Bus) -> None:
    app = await _app(bus, replay=10)
    for n in range(30):
        bus.publish("trade.sim.BTC-USD", trade(n))
    epoch = app.hub.epoch
    answer = await _get(app, "/api/events/stream?limit=10",
                        headers={"Last-Event-ID": f"{epoch}-5"})
    frames = parse_sse(answer.text)
    lost = [f for f in frames if f.event == "lost"]
    assert len(lost) == 1 and lost[0].id is None
    assert lost[0].json() == {"reason": "evicted", "after": f"{epoch}-5", "streams": ["market"]}
    assert [f.id for f in events_of(frames)] == [f"{epoch}-{n}" for n in range(21, 31)]
    await app.aclose()


async def test_fills_outlive_a_burst_of_trades_in_their_own_ring(bus: Bus) -> None:
    app = await _app(bus, replay=5)
    first_fill = bus.publish("fill.sim", fill(1))
    for n in range(20):
        bus.publish("trade.sim.BTC-USD", trade(n))
    second_fill = bus.publish("fill.sim", fill(2))
    epoch = app.hub.epoch
    answer = await _get(app, "/api/events/stream?limit=6",
                        headers={"Last-Event-ID": f"{epoch}-1"})
    frames = parse_sse(answer.text)
    assert [f.json()["streams"] for f in frames if f.event == "lost"] == [["market"]]
    got = [f.json() for f in events_of(frames)]
    assert [e["type"] for e in got] == ["trade"] * 5 + ["fill"]
    assert got[-1]["id"] == second_fill.id and first_fill.id == 1
    assert [e["payload"]["id"] for e in got[:5]] == [15, 16, 17, 18, 19]
    await app.aclose()


@pytest.mark.parametrize(("last_id", "reason"),
                         [("0badc0de-3", "restarted"), ("garbage", "unknown")])
async def test_an_id_of_another_run_gets_everything_retained(
        bus: Bus, last_id: str, reason: str) -> None:
    app = await _app(bus)
    published = [bus.publish("trade.sim.BTC-USD", trade(n)).id for n in range(4)]
    answer = await _get(app, "/api/events/stream?limit=4", headers={"Last-Event-ID": last_id})
    frames = parse_sse(answer.text)
    lost = [f.json() for f in frames if f.event == "lost"]
    assert lost == [{"reason": reason, "after": last_id, "streams": ["market", "events"]}]
    assert _bus_ids(frames) == published
    await app.aclose()


async def test_filters_by_type_and_topic(bus: Bus) -> None:
    app = await _app(bus)
    for n in range(6):
        bus.publish("trade.sim.BTC-USD", trade(n))
        bus.publish("trade.sim.ETH-USD", trade(n, "ETH-USD"))
        bus.publish("fill.sim", fill(n))
    fills = parse_sse((await _get(app, "/api/events/stream?backlog=1&types=fill&limit=6")).text)
    assert [f.json()["payload"]["order_id"] for f in events_of(fills)] == [
        f"o{n}" for n in range(6)]
    eth = parse_sse(
        (await _get(app, "/api/events/stream?backlog=1&topics=trade.*.ETH-*&limit=6")).text)
    assert {f.json()["topic"] for f in events_of(eth)} == {"trade.sim.ETH-USD"}
    both = parse_sse(
        (await _get(app, "/api/events/stream?backlog=1&types=fill&topics=trade.*.ETH-*,fill.*"
                    "&limit=6")).text)
    assert {f.json()["type"] for f in events_of(both)} == {"fill"}
    await app.aclose()


async def test_snapshots_conflate_per_topic_trades_and_fills_never(bus: Bus) -> None:
    app = await _app(bus)
    for n in range(50):  # no await: the hub's task has not run, its subscription fills up
        bus.publish("book.sim.BTC-USD", book(n))
        bus.publish("book.sim.ETH-USD", book(n, "ETH-USD"))
        bus.publish("trade.sim.BTC-USD", trade(n))
    for n in range(3000):
        bus.publish("fill.sim", fill(n))
    answer = await _get(app, "/api/events/stream?backlog=1&limit=3052")
    got = [f.json() for f in events_of(parse_sse(answer.text))]
    books = [e for e in got if e["type"] == "book"]
    assert [(b["topic"], b["payload"]["sequence"]) for b in books] == [
        ("book.sim.BTC-USD", 49), ("book.sim.ETH-USD", 49)]
    assert [e["payload"]["id"] for e in got if e["type"] == "trade"] == list(range(50))
    assert [e["payload"]["trade_id"] for e in got if e["type"] == "fill"] == list(range(3000))
    market = next(s for s in bus.stats()["subscriptions"] if s["name"].startswith("sse-market"))
    assert market["conflated"] == 98 and market["dropped"] == 0
    await app.aclose()


async def test_live_stream_disconnect_and_resume_over_asgi(bus: Bus) -> None:
    app = await _app(bus)
    async with stream(app, "/api/events/stream") as first:
        await first.read_until(lambda frames: frames and frames[0].retry is not None)
        assert first.status == 200
        published = [bus.publish("trade.sim.BTC-USD", trade(n)).id for n in range(10)]
        published.append(bus.publish("fill.sim", fill(10)).id)
        frames = await first.read_until(lambda fs: len(events_of(fs)) >= 11)
        assert app.hub.clients == 1
    assert app.hub.clients == 0  # the disconnect ended the server's side
    seen = _bus_ids(frames)
    last_id = events_of(frames)[-1].id
    assert last_id is not None
    published += [bus.publish("trade.sim.BTC-USD", trade(n)).id for n in range(11, 20)]
    async with stream(app, "/api/events/stream", {"Last-Event-ID": last_id}) as again:
        published.append(bus.publish("fill.sim", fill(20)).id)  # live again
        frames = await again.read_until(lambda fs: len(events_of(fs)) >= 10)
    assert seen + _bus_ids(frames) == published
    await app.aclose()


async def test_keep_alive_comments_when_idle(bus: Bus) -> None:
    app = await _app(bus, ping_interval=0.05)
    async with stream(app, "/api/events/stream") as s:
        frames = await s.read_until(lambda fs: sum("ping" in f.comments for f in fs) >= 2)
    assert [f for f in frames if "ping" in f.comments]
    assert not events_of(frames)
    await app.aclose()


async def test_closing_the_app_ends_open_streams(bus: Bus) -> None:
    app = await _app(bus)
    async with stream(app, "/api/events/stream") as s:
        await s.read_until(lambda frames: bool(frames))
        await app.aclose()
        await s.read_until(lambda frames: False)  # returns at the end of the body
        assert s.task is not None
        await s.task
    assert app.hub.clients == 0
    answer = await _get(app, "/api/events/stream")
    assert answer.status_code == 503
    assert not [i for i in bus.subscriptions if i.name.startswith("sse-")]


async def test_a_stream_before_start_is_refused(bus: Bus) -> None:
    app = create_app(Platform(bus), token="t0ken")
    assert (await _get(app, "/api/events/stream")).status_code == 503


async def test_a_slow_reader_behind_the_ring_is_told() -> None:
    async with Bus(name="slow") as bus:
        app = await _app(bus, replay=4)
        async with stream(app, "/api/events/stream") as s:
            await s.read_until(lambda frames: bool(frames))
            for n in range(10):  # all before the reader gets the loop back
                bus.publish("trade.sim.BTC-USD", trade(n))
            frames = await s.read_until(lambda fs: len(events_of(fs)) >= 4)
        lost = [f.json() for f in frames if f.event == "lost"]
        assert [(x["reason"], x["streams"]) for x in lost] == [("behind", ["market"])]
        assert [f.json()["payload"]["id"] for f in events_of(frames)] == [6, 7, 8, 9]
        await app.aclose()


def test_ring_bounds_and_lookup() -> None:
    with pytest.raises(ConfigError) as err:
        ReplayRing("x", 0)
    assert err.value.field == "replay"
    ring = ReplayRing("x", 3)
    from tickloop.server.events import _Entry

    for seq in (2, 4, 6, 8):
        ring.append(_Entry(seq, "trade", "t", b""))
    assert [e.seq for e in ring.after(0)] == [4, 6, 8]
    assert [e.seq for e in ring.after(5)] == [6, 8]
    assert ring.after(8) == []
    assert ring.missed(1) and not ring.missed(2) and ring.evicted == 1 and len(ring) == 3


async def test_a_backlog_after_evictions_has_no_lost_notice(bus: Bus) -> None:
    app = await _app(bus, replay=3)
    for n in range(8):
        bus.publish("trade.sim.BTC-USD", trade(n))
    frames = parse_sse((await _get(app, "/api/events/stream?backlog=1&limit=3")).text)
    assert not [f for f in frames if f.event == "lost"]
    assert [f.json()["payload"]["id"] for f in events_of(frames)] == [5, 6, 7]
    await app.aclose()


async def test_streams_beyond_max_clients_are_refused_until_one_closes(bus: Bus) -> None:
    app = await _app(bus, max_clients=1)
    async with stream(app, "/api/events/stream") as first:
        await first.read_until(lambda frames: bool(frames))
        assert app.hub.clients == 1
        refused = await _get(app, "/api/events/stream?limit=1")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert app.hub.clients == 0
    bus.publish("fill.sim", fill(1))
    again = await _get(app, "/api/events/stream?backlog=1&limit=1")
    assert again.status_code == 200 and len(events_of(parse_sse(again.text))) == 1
    assert app.hub.clients == 0  # a stream that ended by its limit freed its slot
    await app.aclose()
