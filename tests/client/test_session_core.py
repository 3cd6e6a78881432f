"""SessionCore, the sans-I/O session (tickloop.client.session_core): events and a fake clock
in, actions out. No event loop, no socket."""

from __future__ import annotations

import json
import random
from typing import Any, ClassVar

import pytest

from tickloop.client.backoff import Backoff
from tickloop.client.session_core import (
    Close,
    Confirmed,
    Connect,
    Failed,
    FetchToken,
    Lost,
    Notify,
    Refused,
    Send,
    SessionCore,
    SessionState,
)
from tickloop.exceptions import AuthError, ConfigError, LimitExceeded, NetworkError, ProtocolError
from tickloop.models import Connected, Disconnected, Malformed, Reconnected, Stale, Unconfirmed
from tickloop.venues.base import Channel, LoggedIn, Subscribed, Subscription, VenueError
from tickloop.venues.sim import SimCodec

BTC = Subscription(Channel.TRADES, "BTC-USD")
ETH = Subscription(Channel.TRADES, "ETH-USD")
ORDERS = Subscription(Channel.ORDERS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def ns(self) -> int:
        return int(self.now * 1e9)


class Run:
    """Drives a core the way the shell does, keeping every action for the test to read."""

    def __init__(self, codec_cls: type[SimCodec] = SimCodec, **kw: Any) -> None:
        self.clock = Clock()
        kw.setdefault("backoff", Backoff(base_wait=1.0, max_wait=8.0, jitter=False))
        self.codec_cls = codec_cls
        self.core = SessionCore(codec_cls, url="ws://sim/ws", clock_ns=self.clock.ns, **kw)
        self.log: list[Any] = []
        self.received = 0

    @property
    def now(self) -> float:
        return self.clock.now

    def take(self) -> list[Any]:
        actions = self.core.actions()
        self.log.extend(actions)
        return actions

    def connect(self) -> SimCodec:
        """Answer the pending Connect with a new connection."""
        codec = self.codec_cls()
        self.core.connected_with(codec, self.now)
        return codec

    def sent(self, actions: list[Any]) -> list[dict[str, Any]]:
        return [json.loads(a.frame) for a in actions if isinstance(a, Send) and a.frame]

    def confirm(self, *subs: Subscription) -> list[Any]:
        self.core.control(Subscribed(tuple(subs)), self.now)
        return self.take()

    def advance(self, seconds: float, *, frames: int = 0) -> list[Any]:
        """Let time pass, waking the core at each deadline it asked for on the way."""
        end = self.clock.now + seconds
        self.received += frames
        out: list[Any] = []
        while True:
            when = self.core.deadline()
            if when is None or when > end:
                break
            self.clock.now = max(self.clock.now, when)
            self.core.tick(self.now, self.received)
            out += self.take()
        self.clock.now = end
        self.core.tick(self.now, self.received)
        return out + self.take()


def events(actions: list[Any], kind: type) -> list[Any]:
    return [a.event for a in actions if isinstance(a, Notify) and isinstance(a.event, kind)]


def test_reconnect_after_backoff_and_resubscribe_everything() -> None:
    run = Run()
    run.core.add([BTC, ETH], run.now)
    assert run.take() == [Connect()]
    assert run.core.state is SessionState.CONNECTING
    run.connect()
    first = run.sent(run.take())
    assert first == [
        {"op": "subscribe", "channel": "trades", "id": 1, "symbols": ["BTC-USD", "ETH-USD"]}
    ]
    connected = run.confirm(BTC, ETH)
    assert events(connected, Connected) and Confirmed((BTC, ETH)) in connected
    assert run.core.confirmed == {BTC, ETH}

    run.clock.now += 5.0
    run.core.closed("the venue went away", None, run.now)
    lost = run.take()
    assert [(set(a.subscriptions), a.ts) for a in lost if isinstance(a, Lost)] == [
        ({BTC, ETH}, run.clock.ns())
    ]
    assert [e.reason for e in events(lost, Disconnected)] == ["the venue went away"]
    assert run.core.state is SessionState.WAITING
    assert run.core.deadline() == run.now + 1.0  # base_wait, no jitter
    assert run.advance(0.5) == []  # not yet
    assert run.advance(0.5) == [Connect()]
    run.clock.now += 0.25
    run.connect()
    again = run.sent(run.take())
    # Every subscription is asked for again on the new connection, without the owner asking.
    assert [m["symbols"] for m in again] == [["BTC-USD", "ETH-USD"]]
    restored = run.confirm(BTC, ETH)
    [reconnected] = events(restored, Reconnected)
    assert reconnected.downtime == pytest.approx(1.25)
    assert reconnected.attempts == 1
    assert run.core.stats.reconnects == 1 and run.core.stats.connects == 2


def test_backoff_grows_while_connects_fail_and_a_budget_ends_the_session() -> None:
    run = Run(backoff=Backoff(base_wait=1.0, max_wait=8.0, max_retries=3, jitter=False))
    run.core.add([BTC], run.now)
    run.take()
    waits = []
    for _ in range(3):
        run.core.connect_failed(NetworkError("refused"), run.now)
        assert run.take() == []
        deadline = run.core.deadline()
        assert deadline is not None
        waits.append(deadline - run.now)
        run.clock.now = deadline
        run.core.tick(run.now, 0)
        assert run.take() == [Connect()]
    assert waits == [1.0, 2.0, 4.0]
    run.core.connect_failed(NetworkError("refused"), run.now)
    [failed] = run.take()
    assert isinstance(failed, Failed) and "gave up after 4 attempts" in str(failed.error)
    assert run.core.state is SessionState.FAILED


def test_refused_credentials_at_connect_fail_at_once() -> None:
    run = Run()
    run.core.add([BTC], run.now)
    run.take()
    run.core.connect_failed(AuthError("401", venue="sim"), run.now)
    [failed] = run.take()
    assert isinstance(failed, Failed) and isinstance(failed.error, AuthError)


class Narrow(SimCodec):
    max_streams_per_message: ClassVar[int] = 2
    max_messages_per_second: ClassVar[float] = 4.0
    max_streams_per_connection: ClassVar[int] = 5


def test_requests_are_batched_by_streams_per_message_and_paced_by_messages_per_second() -> None:
    run = Run(Narrow)
    subs = [Subscription(Channel.TRADES, f"S{i}-USD") for i in range(5)]
    run.core.add(subs, run.now)
    run.take()
    run.connect()
    start = run.now
    at_once = run.sent(run.take())
    assert [m["symbols"] for m in at_once] == [["S0-USD", "S1-USD"]]  # one now, the rest paced
    times, batches = [], []
    while len(batches) < 2:
        when = run.core.deadline()
        assert when is not None
        run.clock.now = when
        run.core.tick(run.now, 0)
        sent = run.sent(run.take())
        if sent:
            times.append(run.now - start)
            batches += [m["symbols"] for m in sent]
    assert batches == [["S2-USD", "S3-USD"], ["S4-USD"]]
    assert times == [0.25, 0.5]  # 4 messages a second
    assert run.core.stats.subscribe_messages == 3


def test_a_connection_carries_no_more_market_streams_than_the_codec_allows() -> None:
    run = Run(Narrow)
    run.core.add([Subscription(Channel.TRADES, f"S{i}-USD") for i in range(4)], run.now)
    assert run.core.room == 1
    with pytest.raises(ConfigError) as info:
        run.core.add([BTC, ETH], run.now)
    assert info.value.field == "max_streams_per_connection"
    assert BTC not in run.core.subscriptions  # all or nothing
    run.core.add([BTC, ORDERS], run.now)  # private channels are per account, not counted
    assert run.core.room == 0


def test_a_silent_connection_is_pinged_then_replaced_as_stale() -> None:
    run = Run(heartbeat_timeout=4.0, ping_interval=1.0)
    run.core.add([BTC], run.now)
    run.take()
    run.connect()
    run.take()
    run.confirm(BTC)
    assert run.advance(0.9, frames=3) == []  # traffic: nothing to do
    pings = run.advance(1.5)
    assert [a for a in pings if isinstance(a, Send)] == [Send(b'{"op":"ping"}', ping=True)]
    stale = run.advance(3.0)
    [event] = events(stale, Stale)
    assert event.silent_for >= 4.0
    assert [a.reason for a in stale if isinstance(a, Close)] == [
        f"stale: nothing received for {event.silent_for:.2f}s"
    ]
    assert run.core.stats.stale == 1
    run.core.closed("closed by the client", None, run.now)
    [disconnected] = events(run.take(), Disconnected)
    assert disconnected.reason.startswith("stale: nothing received")


def test_silence_while_reading_is_paused_is_not_staleness() -> None:
    run = Run(heartbeat_timeout=2.0, ping_interval=1.0)
    run.core.add([BTC], run.now)
    run.take()
    run.connect()
    run.take()
    run.confirm(BTC)
    run.core.set_paused(True, run.now)
    assert run.advance(10.0) == []
    run.core.set_paused(False, run.now)
    assert events(run.advance(1.9), Stale) == []  # the watchdog starts afresh on resume
    assert events(run.advance(0.5), Stale)


def test_an_unconfirmed_subscription_is_reported_then_asked_for_again() -> None:
    run = Run(heartbeat_timeout=30.0, subscribe_timeout=5.0)
    run.core.add([BTC], run.now)
    run.take()
    run.connect()
    run.take()
    # The venue answers heartbeats (frames arrive) but never confirms.
    out = []
    for _ in range(6):
        out += run.advance(1.0, frames=1)
    [unconfirmed] = events(out, Unconfirmed)
    assert (unconfirmed.channel, unconfirmed.symbol) == ("trades", "BTC-USD")
    assert unconfirmed.waited >= 5.0
    assert run.core.stats.unconfirmed == 1
    assert not events(run.advance(5.0, frames=1), Unconfirmed)  # once per connection
    again = []
    for _ in range(30):
        again += run.advance(1.0, frames=1)
    assert [m["symbols"] for m in run.sent(again)] == [["BTC-USD"]]  # heartbeat_timeout later


def test_login_before_private_subscriptions() -> None:
    run = Run(can_login=True)
    run.core.add([ORDERS, BTC], run.now)
    run.take()
    run.connect()
    assert run.take() == [FetchToken()]  # nothing is subscribed before the login
    run.core.add([ETH], run.now)  # added meanwhile: waits for the login too
    assert run.take() == []
    run.core.token("tok", run.now)
    login = run.sent(run.take())
    assert [(m["op"], m["token"]) for m in login] == [("login", "tok")]
    run.core.control(LoggedIn(), run.now)
    subscribed = run.sent(run.take() + run.advance(0.1))  # one message per channel, paced
    assert sorted(m["channel"] for m in subscribed) == ["orders", "trades"]
    assert sorted(s for m in subscribed for s in m.get("symbols", [])) == ["BTC-USD", "ETH-USD"]


def test_a_refused_login_refuses_the_private_streams_and_keeps_the_public_ones() -> None:
    run = Run(can_login=True)
    run.core.add([ORDERS, BTC], run.now)
    run.take()
    run.connect()
    run.take()
    run.core.token("bad", run.now)
    run.take()
    run.core.control(VenueError("auth_failed", "bad signature"), run.now)
    out = run.take()
    [refused] = [a for a in out if isinstance(a, Refused)]
    assert refused.subscription == ORDERS and "bad signature" in str(refused.error)
    assert [m["symbols"] for m in run.sent(out)] == [["BTC-USD"]]
    assert run.core.subscriptions == {BTC}
    assert events(run.confirm(BTC), Connected)


def test_an_unanswered_login_replaces_the_connection() -> None:
    run = Run(can_login=True, connect_timeout=3.0)
    run.core.add([ORDERS], run.now)
    run.take()
    run.connect()
    run.take()
    run.core.token("tok", run.now)
    run.take()
    out = run.advance(3.0, frames=1)
    assert [a.reason for a in out if isinstance(a, Close)] == ["[sim] login not answered"]


def test_private_streams_without_credentials_are_refused() -> None:
    run = Run(can_login=False)
    run.core.add([ORDERS, BTC], run.now)
    run.take()
    run.connect()
    out = run.take()
    assert [a.subscription for a in out if isinstance(a, Refused)] == [ORDERS]
    assert "need credentials" in str(next(a for a in out if isinstance(a, Refused)).error)
    assert [m["symbols"] for m in run.sent(out)] == [["BTC-USD"]]


def test_an_unnamed_refusal_of_a_multi_stream_request_is_narrowed_down() -> None:
    run = Run()
    run.core.add([BTC, ETH], run.now)
    run.take()
    run.connect()
    run.take()
    run.core.control(VenueError("bad_request", "no such market", fatal=True), run.now)
    retry = run.sent(run.advance(1.0))
    assert [m["symbols"] for m in retry] == [["BTC-USD"], ["ETH-USD"]]  # one stream a message
    run.confirm(BTC)
    run.core.control(VenueError("bad_request", "no such market", fatal=True), run.now)
    [refused] = [a for a in run.take() if isinstance(a, Refused)]
    assert refused.subscription == ETH


def test_a_venue_breaking_a_hard_limit_on_every_connection_fails_the_session() -> None:
    run = Run(backoff=Backoff(base_wait=0.0, max_wait=0.0, jitter=False))
    run.core.add([BTC], run.now)
    run.take()
    out: list[Any] = []
    for _ in range(3):  # limits.max_oversized_reconnects
        run.connect()
        run.take()
        run.core.closed("frame too big", "max_frame_size", run.now)
        out += run.take()
        out += run.advance(0.0)
    assert [e.limit for e in events(out, Malformed)] == ["max_frame_size"] * 3
    [failed] = [a for a in out if isinstance(a, Failed)]
    assert isinstance(failed.error, LimitExceeded) and failed.error.limit == "max_frame_size"


def test_malformed_messages_are_reported_and_too_many_replace_the_connection() -> None:
    from tickloop.limits import Limits

    run = Run(limits=Limits(max_malformed_per_connection=3))
    run.core.add([BTC], run.now)
    run.take()
    run.connect()
    run.take()
    for _ in range(3):
        run.core.malformed(ProtocolError("bad json", symbol="BTC-USD"), 10, run.now)
    out = run.take()
    assert [e.count for e in events(out, Malformed)] == [1, 2, 3]
    assert events(out, Malformed)[0].symbol == "BTC-USD"
    assert [a.reason for a in out if isinstance(a, Close)] == [
        "3 malformed messages (limits.max_malformed_per_connection)"
    ]


def test_closing_the_session_stops_reconnecting() -> None:
    run = Run()
    run.core.add([BTC], run.now)
    run.take()
    run.connect()
    run.take()
    run.core.close(run.now)
    assert run.take() == [Close("closed by the client")]
    run.core.closed("closed by the client", None, run.now)
    assert run.take() == []  # no Lost, no Disconnected, no retry
    assert run.core.state is SessionState.CLOSED and run.core.deadline() is None


def test_jittered_waits_stay_within_the_cap() -> None:
    run = Run(backoff=Backoff(base_wait=1.0, max_wait=2.0, rng=random.Random(7)))
    run.core.add([BTC], run.now)
    run.take()
    for _ in range(5):
        run.core.connect_failed(NetworkError("refused"), run.now)
        deadline = run.core.deadline()
        assert deadline is not None and 0.0 <= deadline - run.now <= 2.0
        run.clock.now = deadline
        run.core.tick(run.now, 0)
        assert run.take() == [Connect()]
