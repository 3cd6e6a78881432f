"""Bad input against bugs: an undecodable message, a codec that fails, a sink that fails and a
consumer's handler that raises are four different things, counted apart; none ends a stream."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from msgspec.structs import replace

from tickloop.client.session import WsSession, _Sampler
from tickloop.client.stream import StreamClient
from tickloop.client.transport import MemoryTransport
from tickloop.models import ConsumerFailed, Malformed, Trade
from tickloop.venues.base import Channel, Subscription
from tickloop.venues.sim import SimCodec

from .helpers import until
from .test_session import Owner
from .test_transport import confirm, session_on, trade

BTC = Subscription(Channel.TRADES, "BTC-USD")


async def connected(transport: MemoryTransport, session: WsSession) -> Any:
    await session.add([BTC])
    conn = await transport.next_connection()
    await session.wait_confirmed([BTC], 5.0)
    return conn


def test_the_log_sampler_logs_the_first_at_once_then_one_line_per_interval() -> None:
    sampler = _Sampler(10.0)
    assert sampler.due(0.0) == 0
    assert [sampler.due(t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert sampler.due(10.0) == 3  # three were not logged since
    assert sampler.due(10.5) is None
    assert sampler.due(25.0) == 1


async def test_undecodable_messages_are_counted_each_and_logged_as_a_sample_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MemoryTransport(on_send=confirm)
    owner = Owner()
    session = session_on(transport, owner)
    conn = await connected(transport, session)
    with caplog.at_level(logging.WARNING, logger="tickloop.client.session"):
        for _ in range(5):
            conn.push(b'{"type": "trade", "symbol": "BTC-USD", "id": "x"}')
        conn.push(trade(1))
    assert session.stats.malformed == 5
    assert [t.id for t in owner.trades] == [1]  # the stream went on
    malformed = [e for e in owner.status if isinstance(e, Malformed)]
    assert [e.count for e in malformed] == [1, 2, 3, 4, 5]  # each one is a status event
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 1  # within LOG_EVERY seconds: one line
    assert lines[0].exc_info is not None  # ...with the traceback of what went wrong
    await session.close()


class BuggyCodec(SimCodec):
    """A codec with a bug: a KeyError on one kind of message."""

    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Any]:
        if bytes(frame).startswith(b'{"type": "ticker"'):
            return {}["missing"]  # type: ignore[no-any-return]
        return super().decode(frame, recv_ts)


async def test_a_codec_bug_is_skipped_like_bad_input_and_its_traceback_names_the_codec(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MemoryTransport(on_send=confirm)
    owner = Owner()
    session = WsSession(
        BuggyCodec,
        "ws://venue.invalid/ws",
        owner=owner,
        sinks={Trade: owner.trades.append},
        transport=transport,
    )
    conn = await connected(transport, session)
    with caplog.at_level(logging.WARNING, logger="tickloop.client.session"):
        conn.push(b'{"type": "ticker", "symbol": "BTC-USD"}')
        conn.push(trade(1))
    assert session.stats.malformed == 1 and len(owner.trades) == 1
    [line] = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert line.exc_info is not None and line.exc_info[0] is KeyError
    assert "BuggyCodec" in "".join(
        f"{frame.f_code.co_qualname}" for frame, _ in _walk(line.exc_info[2])
    )
    await session.close()


def _walk(tb: Any) -> list[tuple[Any, int]]:
    out = []
    while tb is not None:
        out.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    return out


class PairCodec(SimCodec):
    """Every trade message carries a second trade (id + 100): two events in one frame."""

    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Any]:
        events = super().decode(frame, recv_ts)
        return [*events, *(replace(e, id=e.id + 100) for e in events if isinstance(e, Trade))]


async def test_a_failing_sink_is_counted_apart_and_the_frames_other_events_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MemoryTransport(on_send=confirm)
    owner = Owner()
    got: list[int | None] = []

    def sink(t: Trade) -> None:
        if t.id == 1:
            raise RuntimeError("a bug in a sink")
        got.append(t.id)

    session = WsSession(
        PairCodec,
        "ws://venue.invalid/ws",
        owner=owner,
        sinks={Trade: sink},
        transport=transport,
    )
    conn = await connected(transport, session)
    with caplog.at_level(logging.ERROR, logger="tickloop.client.session"):
        conn.push(trade(1))
        conn.push(trade(2))
    assert got == [101, 2, 102]  # the event after the failing one, and the next frame
    assert session.stats.dispatch_errors == 1
    assert session.stats.malformed == 0  # not bad input
    [line] = [r for r in caplog.records if "could not be delivered" in r.getMessage()]
    assert line.exc_info is not None and line.exc_info[0] is RuntimeError
    await session.close()


async def test_a_raising_handler_is_a_consumer_failed_status_event_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MemoryTransport(on_send=confirm)
    good: list[Trade] = []
    status: list[Any] = []

    def bad(t: Trade) -> None:
        raise ValueError(f"cannot handle {t.id}")

    async with StreamClient(
        "sim", url="ws://venue.invalid/ws", transport=transport, backfill=False
    ) as feed:
        await feed.subscribe_status(status.append)
        await feed.subscribe_trades("BTC-USD", handler=bad)
        await feed.subscribe_trades("BTC-USD", handler=good.append)
        conn = transport.connections[0]
        with caplog.at_level(logging.ERROR, logger="tickloop.client.consumers"):
            for n in range(1, 6):
                conn.push(trade(n))
            await until(lambda: len(good) == 5, "the other consumer gets every trade")
            await until(
                lambda: len([e for e in status if isinstance(e, ConsumerFailed)]) == 3,
                "status events",
            )
        failed = [e for e in status if isinstance(e, ConsumerFailed)]
        assert [e.count for e in failed] == [1, 2, 4]  # sampled: 1st, 2nd, 4th...
        assert failed[0].error == "ValueError: cannot handle 1"
        assert failed[0].channel == "trades" and failed[0].symbols == ("BTC-USD",)
        stats = feed.stats()
        assert stats["handler_errors"] == 5  # every one counted
        assert stats["malformed"] == 0  # and not as bad input
        assert not [e for e in status if isinstance(e, Malformed)]
        assert sum(1 for r in caplog.records if r.exc_info) >= 1
