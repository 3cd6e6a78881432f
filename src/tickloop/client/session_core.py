"""The sans-I/O core of a WebSocket session: every decision, no socket, no await, no clock.

:class:`SessionCore` is what :class:`~tickloop.client.session.WsSession` runs on a transport,
as websockets' ``Protocol`` is what its connections run. Events and time go in (a subscription
added or removed, a connection made or lost, a control message decoded, a token fetched, a
wake-up at the deadline it asked for); actions come out of :meth:`SessionCore.actions`:
:class:`Connect`, :class:`Send` (a frame), :class:`Close`, :class:`FetchToken`, :class:`Notify`
(a status event for the owner), :class:`Confirmed`, :class:`Lost`, :class:`Refused`,
:class:`Failed`. :meth:`SessionCore.deadline` says when to call :meth:`SessionCore.tick` next.

What it decides:

* **Reconciliation.** It keeps the set of subscriptions the session should carry
  (:attr:`~SessionCore.subscriptions`) apart from what the current connection was asked for
  (``_sent``) and what the venue confirmed (:attr:`~SessionCore.confirmed`); a new connection is
  asked for the whole set, and is announced (``Connected``, then ``Reconnected`` with its
  downtime) once the venue confirmed all of it.
* **Batching by venue limits.** Requests carry at most the codec's ``max_streams_per_message``
  streams and leave at most ``max_messages_per_second`` a second (a paced outbox).
* **Confirmations.** A subscription not confirmed ``heartbeat_timeout`` after the last request
  is asked for again; one not confirmed ``subscribe_timeout`` after it was sent is reported
  (``Unconfirmed``, once per connection). A refusal that names no stream of a multi-stream
  request is narrowed down by asking again one stream per message.
* **Login.** Private channels need a token (:class:`FetchToken`; the shell awaits the owner's
  provider) and the venue's answer within ``connect_timeout``; a refused login refuses the
  private subscriptions and keeps the public ones.
* **Heartbeat and staleness.** A connection silent for ``ping_interval`` is pinged; silent for
  ``heartbeat_timeout``, it is reported ``Stale`` and replaced. Silence while reading is paused
  (flow control) proves nothing.
* **Reconnect.** A lost connection is retried after the :class:`~tickloop.client.backoff.Backoff`
  wait; a venue that breaks a hard limit on ``limits.max_oversized_reconnects`` connections in a
  row, or refuses the credentials at connect, fails the session instead of looping.

Time is the caller's: ``now`` is seconds on a monotonic scale (the event loop's clock), and
status events are stamped with ``clock_ns()`` (Unix nanoseconds; :func:`time.time_ns` unless
injected). Tests drive it with a fake clock and no socket (tests/client/test_session_core.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..exceptions import (
    AuthError,
    ConfigError,
    LimitExceeded,
    NetworkError,
    ProtocolError,
    SubscriptionError,
    TickloopError,
    TimeoutError,
)
from ..limits import DEFAULT_LIMITS, Limits
from ..models import Connected, Disconnected, Malformed, Reconnected, Stale, Unconfirmed
from ..venues.base import Codec, LoggedIn, Subscribed, Subscription, Unsubscribed, VenueError
from .backoff import Backoff

__all__ = [
    "Action",
    "Close",
    "Confirmed",
    "Connect",
    "Failed",
    "FetchToken",
    "Lost",
    "Notify",
    "Refused",
    "Send",
    "SessionCore",
    "SessionState",
    "SessionStats",
    "StatusEvent",
]

StatusEvent = Connected | Disconnected | Reconnected | Stale | Malformed | Unconfirmed


class SessionState(Enum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"
    OPEN = "open"  # connected; subscriptions restored or being restored
    WAITING = "waiting"  # between attempts (backoff)
    CLOSED = "closed"  # closed by its owner
    FAILED = "failed"  # gave up (retries exhausted, or a non-retryable error)


@dataclass
class SessionStats:
    malformed: int = 0  # frames that could not be decoded (counted, skipped)
    connects: int = 0
    reconnects: int = 0
    stale: int = 0  # connections replaced by the watchdog
    venue_errors: int = 0
    subscribe_messages: int = 0
    pauses: int = 0  # times reading was paused for flow control (a consumer's high water mark)
    limit_breaches: int = 0  # messages or frames beyond a bound of tickloop.limits
    unconfirmed: int = 0  # subscriptions not confirmed within subscribe_timeout (per connection)
    dispatch_errors: int = 0  # events whose sink raised (a bug, counted; the frame goes on)


# ------------------------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a new connection; report it with :meth:`SessionCore.connected` (or
    :meth:`SessionCore.connect_failed`)."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frame`` on the current connection; ``ping``: a codec's ping message, or a
    protocol-level ping when ``frame`` is None (a failure to ping is left to the watchdog)."""

    frame: bytes | None
    ping: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    """Close the current connection; report its end with :meth:`SessionCore.closed`."""

    reason: str


@dataclass(frozen=True, slots=True)
class FetchToken:
    """Get a login token; report it with :meth:`SessionCore.token` or
    :meth:`SessionCore.token_failed`."""


@dataclass(frozen=True, slots=True)
class Notify:
    """A status event for the owner."""

    event: StatusEvent


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The venue confirmed these subscriptions on the current connection."""

    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class Lost:
    """The connection carrying these subscriptions is gone (``ts``: Unix ns)."""

    subscriptions: tuple[Subscription, ...]
    ts: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The venue refused ``subscription`` for good; the session no longer carries it."""

    subscription: Subscription
    error: SubscriptionError


@dataclass(frozen=True, slots=True)
class Failed:
    """The session gave up; every subscription it carried ends with ``error``."""

    error: TickloopError


Action = Connect | Send | Close | FetchToken | Notify | Confirmed | Lost | Refused | Failed


class _Login(Enum):
    NONE = "none"  # not logged in on this connection
    FETCHING = "fetching"  # FetchToken asked
    WAITING = "waiting"  # login frame sent, answer awaited until _login_deadline
    DONE = "done"


def _sort_key(sub: Subscription) -> tuple[str, str, str]:
    return (sub.channel.value, sub.symbol or "", sub.interval or "")


class SessionCore:
    """The decisions of one logical WebSocket connection (module docstring)."""

    def __init__(
        self,
        codec_cls: type[Codec],
        *,
        url: str,
        index: int = 0,
        backoff: Backoff | None = None,
        heartbeat_timeout: float = 10.0,
        ping_interval: float | None = None,
        connect_timeout: float = 10.0,
        subscribe_timeout: float = 10.0,
        limits: Limits = DEFAULT_LIMITS,
        can_login: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.venue = codec_cls.venue
        self.url = url
        self.index = index
        self.backoff = backoff if backoff is not None else Backoff()
        self.heartbeat_timeout = heartbeat_timeout
        self.ping_interval = ping_interval if ping_interval is not None else heartbeat_timeout / 3
        self.connect_timeout = connect_timeout
        self.subscribe_timeout = subscribe_timeout
        self.limits = limits
        self.can_login = can_login
        self.clock_ns = clock_ns
        self._per_message = max(1, codec_cls.max_streams_per_message)
        #: Market streams one connection may carry (the codec's ``max_streams_per_connection``;
        #: private channels are per account, not counted): the owner shards beyond it.
        self.max_streams = codec_cls.max_streams_per_connection
        self._interval = 1.0 / codec_cls.max_messages_per_second
        #: How often the watchdog looks (seconds).
        self.check_every = max(0.01, min(heartbeat_timeout / 4, self.ping_interval / 2))
        self.state = SessionState.IDLE
        self.stats = SessionStats()
        #: What this session should carry, whatever the connection's state.
        self.subscriptions: set[Subscription] = set()
        self.error: TickloopError | None = None
        self._actions: list[Action] = []
        # Per session:
        self._attempts = 0
        self._ever_connected = False
        self._lost_at: float | None = None
        self._retry_at: float | None = None
        self._limit_failures = 0  # connections in a row ended by a venue breaking a limit
        self._paused = False
        self._next_send_at = 0.0
        # Per connection:
        self._codec: Codec | None = None
        self._closing = False  # Close asked; its end not reported yet
        self._close_reason = ""
        self._announced = False  # Connected/Reconnected said for this connection
        self._up_at = 0.0
        self._sent: set[Subscription] = set()
        self._confirmed: set[Subscription] = set()
        self._restoring: set[Subscription] = set()
        #: When each subscription was sent on this connection (monotonic), until confirmed.
        self._sent_since: dict[Subscription, float] = {}
        self._outbox: deque[bytes] = deque()
        self._sent_at = 0.0
        self._login = _Login.NONE
        self._login_deadline = 0.0
        self._after_login: list[Subscription] = []
        self._next_check = 0.0
        self._rx_seen = -1
        self._last_rx_at = 0.0
        self._ping_sent = False
        self._malformed_here = 0

    def __repr__(self) -> str:
        return (
            f"<SessionCore {self.venue}#{self.index} {self.state.value} "
            f"streams={len(self.subscriptions)} confirmed={len(self._confirmed)}>"
        )

    # ------------------------------------------------------------------------------ outputs
    def actions(self) -> list[Action]:
        """The actions decided since the last call, in order (and forgets them)."""
        actions, self._actions = self._actions, []
        return actions

    def deadline(self) -> float | None:
        """When :meth:`tick` must be called next (monotonic seconds), or None."""
        when: float | None = None
        if self._codec is not None and not self._closing:
            when = self._next_check
            if self._outbox:
                when = min(when, self._next_send_at)
            if self._login is _Login.WAITING:
                when = min(when, self._login_deadline)
        elif self.state is SessionState.WAITING and self._retry_at is not None:
            when = self._retry_at
        return when

    @property
    def connected(self) -> bool:
        return self._codec is not None

    @property
    def confirmed(self) -> frozenset[Subscription]:
        return frozenset(self._confirmed)

    @property
    def room(self) -> int:
        """How many more market streams this connection may carry."""
        return self.max_streams - sum(1 for s in self.subscriptions if not s.channel.private)

    @property
    def malformed_here(self) -> int:
        """Messages skipped on the current connection."""
        return self._malformed_here

    # ------------------------------------------------------------------------ inputs: owner
    def start(self, now: float) -> None:
        if self.state is SessionState.IDLE:
            self._connect()

    def add(self, subscriptions: Iterable[Subscription], now: float) -> None:
        """Carry ``subscriptions`` from now on (asked for at once when connected). Raises
        LimitExceeded, adding none, when they would pass the codec's streams-per-connection
        limit (:attr:`room`)."""
        new = list(dict.fromkeys(s for s in subscriptions if s not in self.subscriptions))
        if not new:
            return
        market = sum(1 for s in new if not s.channel.private)
        if market > self.room:
            raise ConfigError(
                f"{market} more streams do not fit on one connection "
                f"({self.max_streams - self.room} of max_streams_per_connection="
                f"{self.max_streams} carried): shard them over more sessions",
                field="max_streams_per_connection",
                venue=self.venue,
            )
        self.subscriptions.update(new)
        if self.state is SessionState.IDLE:
            self._connect()
            return
        if self._codec is not None and self.state is SessionState.OPEN and not self._closing:
            if self._login in (_Login.FETCHING, _Login.WAITING):
                self._after_login.extend(new)
            elif any(s.channel.private for s in new) and self._login is not _Login.DONE:
                self._begin_login(new, now)
            else:
                self._subscribe(new, now)

    def remove(self, subscriptions: Iterable[Subscription], now: float) -> list[Subscription]:
        """Stop carrying ``subscriptions`` (unsubscribed at once when connected); returns the
        ones it carried."""
        gone = [s for s in subscriptions if s in self.subscriptions]
        if not gone:
            return gone
        self.subscriptions.difference_update(gone)
        sent = [s for s in gone if s in self._sent]
        self._sent.difference_update(gone)
        self._confirmed.difference_update(gone)
        for sub in gone:
            self._sent_since.pop(sub, None)
        if self._after_login:
            self._after_login = [s for s in self._after_login if s in self.subscriptions]
        restoring = bool(self._restoring)
        self._restoring.difference_update(gone)
        if restoring and not self._restoring and self._codec is not None:
            # The last stream still being restored was removed (a book resubscribing while the
            # connection was being restored): the connection is restored all the same, and
            # saying so must not wait for a confirmation that will never come.
            self._restored(now)
        if sent and self._codec is not None and not self._closing:
            self._enqueue(sent, self._codec.unsubscribe, now)
        return gone

    def close(self, now: float) -> None:
        """The owner closes the session: close the connection, never reconnect."""
        if self.state is not SessionState.FAILED:
            self.state = SessionState.CLOSED
        self._retry_at = None
        self._disconnect("closed by the client")

    def set_paused(self, paused: bool, now: float) -> None:
        """Reading is paused (flow control) or resumed: silence while paused proves nothing."""
        if paused and not self._paused:
            self.stats.pauses += 1
        elif not paused and self._paused:
            self._last_rx_at = now
            self._ping_sent = False
        self._paused = paused

    # -------------------------------------------------------------------- inputs: transport
    def connected_with(self, codec: Codec, now: float) -> None:
        """A connection is open (the shell made it after :class:`Connect`), speaking ``codec``."""
        if self.state is not SessionState.CONNECTING:
            self._actions.append(Close("the session no longer wants it"))
            return
        self._codec = codec
        self._closing = False
        self._close_reason = ""
        self._announced = False
        self._sent.clear()
        self._confirmed.clear()
        self._login = _Login.NONE
        self._after_login = []
        self._malformed_here = 0
        self.stats.connects += 1
        self.state = SessionState.OPEN
        self._up_at = now
        self._rx_seen = -1
        self._last_rx_at = now
        self._ping_sent = False
        self._next_check = now + self.check_every
        wanted = sorted(self.subscriptions, key=_sort_key)
        self._restoring = set(wanted)
        if any(s.channel.private for s in wanted):
            self._begin_login(wanted, now)
        elif wanted:
            self._subscribe(wanted, now)
        if not self._restoring:
            self._restored(now)

    def connect_failed(self, error: TickloopError, now: float) -> None:
        """The connection asked for could not be made."""
        if self.state is not SessionState.CONNECTING:
            return
        if isinstance(error, AuthError):
            self._fail(error)
        elif self._may_retry(error):
            self._schedule_retry(now)

    def closed(self, reason: str, limit: str | None, now: float) -> None:
        """The current connection is over (``limit``: the bound of tickloop.limits the venue
        broke to end it, if any)."""
        if self._codec is None:
            return
        if limit is not None:
            self._close_reason = reason
            self.stats.limit_breaches += 1
            self.stats.malformed += 1
            self._notify(
                Malformed(
                    venue=self.venue,
                    connection=self.index,
                    reason=reason,
                    limit=limit,
                    count=self.stats.malformed,
                    ts=self.clock_ns(),
                )
            )
        else:
            self._close_reason = self._close_reason or reason
        lost = tuple(s for s in self.subscriptions if s in self._sent or s in self._confirmed)
        self._codec = None
        self._closing = False
        self._sent_since.clear()
        self._sent.clear()
        self._confirmed.clear()
        self._restoring.clear()
        self._outbox.clear()
        self._login = _Login.NONE
        self._after_login = []
        self._lost_at = now
        if self.state in (SessionState.CLOSED, SessionState.FAILED):
            return
        ts = self.clock_ns()
        self._actions.append(Lost(lost, ts))
        self._notify(
            Disconnected(
                venue=self.venue,
                url=self.url,
                connection=self.index,
                reason=self._close_reason or "connection closed",
                ts=ts,
            )
        )
        if limit is not None:
            self._limit_failures += 1
            if self._limit_failures >= self.limits.max_oversized_reconnects:
                self._fail(
                    LimitExceeded(
                        f"the venue broke limits.{limit} on {self._limit_failures} "
                        f"connections in a row: {self._close_reason}",
                        limit=limit,
                        venue=self.venue,
                    )
                )
                return
        else:
            self._limit_failures = 0
        self.backoff.succeeded(lasted=now - self._up_at)
        if self._may_retry(NetworkError(self._close_reason, venue=self.venue)):
            self._schedule_retry(now)

    def send_failed(self, error: Exception, now: float) -> None:
        """A :class:`Send` could not be done: the connection is replaced."""
        self._disconnect(f"send failed: {error}")

    def malformed(self, error: Exception, size: int, now: float) -> None:
        """A message that could not be decoded (or was dropped for a bound: a LimitExceeded):
        counted, reported (a Malformed status event: the owner invalidates the book it belonged
        to). A connection that sends more than ``limits.max_malformed_per_connection`` is
        replaced."""
        self.stats.malformed += 1
        self._malformed_here += 1
        reason = str(error)
        if len(reason) > 200:
            reason = reason[:200] + "..."
        symbol = channel = limit = None
        if isinstance(error, ProtocolError):
            # a message over a bound of Limits (levels, digits) names the bound
            symbol, channel, limit = error.symbol, error.channel, error.limit
        elif isinstance(error, LimitExceeded):
            limit = error.limit
        if limit is not None:
            self.stats.limit_breaches += 1
        self._notify(
            Malformed(
                venue=self.venue,
                connection=self.index,
                reason=reason,
                limit=limit,
                symbol=symbol,
                channel=channel,
                count=self._malformed_here,
                ts=self.clock_ns(),
            )
        )
        if self._malformed_here >= self.limits.max_malformed_per_connection:
            self._disconnect(
                f"{self._malformed_here} malformed messages (limits.max_malformed_per_connection)"
            )

    # ---------------------------------------------------------------------- inputs: venue
    def control(self, message: Any, now: float) -> None:
        """A decoded control message of the current connection."""
        if self._codec is None:
            return
        match message:
            case Subscribed():
                self._on_subscribed(message, now)
            case LoggedIn():
                if self._login is _Login.WAITING:
                    self._logged_in(now)
            case VenueError():
                self._on_venue_error(message, now)
            case Unsubscribed():
                pass
            case _:
                pass

    def token(self, token: str, now: float) -> None:
        """The token asked for with :class:`FetchToken`."""
        if self._login is not _Login.FETCHING or self._codec is None or self._closing:
            return
        frame = self._codec.login(token)
        if frame is None:  # the venue takes the token with the connection, not in a message
            self._logged_in(now)
            return
        self._login = _Login.WAITING
        self._login_deadline = now + self.connect_timeout
        self._actions.append(Send(frame))

    def token_failed(self, error: Exception, now: float) -> None:
        """The token could not be had: refused credentials refuse the private subscriptions;
        anything else is retried on a new connection."""
        if self._login is not _Login.FETCHING or self._codec is None:
            return
        if isinstance(error, AuthError):
            self._login_refused(error, now)
            return
        message = error.message if isinstance(error, TickloopError) else repr(error)
        if isinstance(error, NetworkError):
            self._disconnect(str(error))
        else:
            self._disconnect(str(NetworkError(f"login failed: {message}", venue=self.venue)))

    # --------------------------------------------------------------------------- input: time
    def tick(self, now: float, received: int) -> None:
        """Time passed (called at :meth:`deadline`, or any time); ``received``: frames the
        current connection has received so far, control frames included."""
        if self.state is SessionState.WAITING:
            if self._retry_at is not None and now >= self._retry_at:
                self._retry_at = None
                self._connect()
            return
        if self._codec is None or self._closing:
            return
        if self._login is _Login.WAITING and now >= self._login_deadline:
            self._disconnect(str(TimeoutError("login not answered", venue=self.venue)))
            return
        self._flush(now)
        if now >= self._next_check:
            self._next_check = now + self.check_every
            self._check_alive(now, received)

    # -------------------------------------------------------------------------- internals
    def _notify(self, event: StatusEvent) -> None:
        self._actions.append(Notify(event))

    def _connect(self) -> None:
        self.state = SessionState.CONNECTING
        self._attempts += 1
        self._actions.append(Connect())

    def _disconnect(self, reason: str) -> None:
        if self._codec is not None and not self._closing:
            self._closing = True
            self._close_reason = self._close_reason or reason
            self._outbox.clear()
            self._actions.append(Close(reason))

    def _may_retry(self, error: TickloopError) -> bool:
        if self.backoff.exhausted:
            self._fail(
                NetworkError(
                    f"gave up after {self._attempts} attempts: {error.message}", venue=self.venue
                )
            )
            return False
        return True

    def _schedule_retry(self, now: float) -> None:
        wait = self.backoff.next_wait()
        if wait is None:
            self._fail(NetworkError("connection retries exhausted", venue=self.venue))
            return
        self.state = SessionState.WAITING
        self._retry_at = now + wait

    def _fail(self, error: TickloopError) -> None:
        self.state = SessionState.FAILED
        self.error = error
        self._retry_at = None
        self._disconnect(str(error))
        self._actions.append(Failed(error))

    def _restored(self, now: float) -> None:
        if self._announced:
            return
        self._announced = True
        ts = self.clock_ns()
        if not self._ever_connected:
            self._ever_connected = True
            self._notify(Connected(venue=self.venue, url=self.url, connection=self.index, ts=ts))
        else:
            self.stats.reconnects += 1
            downtime = now - self._lost_at if self._lost_at is not None else 0.0
            self._notify(
                Reconnected(
                    venue=self.venue,
                    url=self.url,
                    connection=self.index,
                    downtime=downtime,
                    attempts=self._attempts,
                    ts=ts,
                )
            )
        self._attempts = 0

    # -- sending
    def _subscribe(self, subs: list[Subscription], now: float) -> None:
        todo = [s for s in subs if s not in self._sent and s in self.subscriptions]
        if not todo:
            return
        self._sent.update(todo)
        for sub in todo:
            self._sent_since.setdefault(sub, now)
        assert self._codec is not None
        self._enqueue(todo, self._codec.subscribe, now)

    def _enqueue(
        self,
        subs: list[Subscription],
        encode: Callable[[list[Subscription]], list[bytes]],
        now: float,
    ) -> None:
        """Requests for ``subs`` in chunks of the codec's streams-per-message limit, sent at
        its messages-per-second pace (:meth:`_flush`)."""
        per = self._per_message
        for start in range(0, len(subs), per):
            self._outbox.extend(encode(subs[start : start + per]))
        self._flush(now)

    def _flush(self, now: float) -> None:
        outbox = self._outbox
        while outbox and self._next_send_at <= now and not self._closing:
            self._actions.append(Send(outbox.popleft()))
            self.stats.subscribe_messages += 1
            self._sent_at = now
            self._next_send_at = max(now, self._next_send_at) + self._interval

    # -- login
    def _begin_login(self, subs: list[Subscription], now: float) -> None:
        self._after_login = list(subs)
        if not self.can_login:
            self._login_refused(
                AuthError("private channels need credentials", venue=self.venue), now
            )
            return
        self._login = _Login.FETCHING
        self._actions.append(FetchToken())

    def _logged_in(self, now: float) -> None:
        self._login = _Login.DONE
        subs, self._after_login = self._after_login, []
        self._subscribe(subs, now)
        if not self._restoring:
            self._restored(now)

    def _login_refused(self, error: TickloopError, now: float) -> None:
        self._login = _Login.NONE
        for sub in [s for s in self.subscriptions if s.channel.private]:
            self._refuse(
                sub,
                SubscriptionError(str(error.message), channel=sub.channel.value, venue=self.venue),
            )
        subs, self._after_login = self._after_login, []
        self._subscribe([s for s in subs if not s.channel.private], now)
        if not self._restoring:
            self._restored(now)

    # -- control messages
    def _on_subscribed(self, msg: Subscribed, now: float) -> None:
        confirmed: list[Subscription] = []
        for sub in msg.subscriptions:
            matches = [sub] if sub in self.subscriptions else self._matching(sub)
            for match in matches:
                self._confirmed.add(match)
                self._sent.add(match)
                self._sent_since.pop(match, None)
                confirmed.append(match)
        if not confirmed:
            return
        # Connected/Reconnected first, then what the owner reports about the confirmed streams
        # (a Gap for what the outage may have cost), so status reads in the order things happened.
        if self._restoring:
            self._restoring.difference_update(confirmed)
            if not self._restoring:
                self._restored(now)
        self._actions.append(Confirmed(tuple(confirmed)))

    def _matching(self, sub: Subscription) -> list[Subscription]:
        # A venue may answer without the interval or depth the request carried.
        return [
            s
            for s in self.subscriptions
            if s.channel is sub.channel
            and s.symbol == sub.symbol
            and (sub.interval is None or s.interval == sub.interval)
        ]

    def _on_venue_error(self, error: VenueError, now: float) -> None:
        self.stats.venue_errors += 1
        if self._login is _Login.WAITING and error.code.startswith("auth"):
            self._login_refused(AuthError(f"login refused: {error.message}", venue=self.venue), now)
            return
        if not error.fatal:
            return  # the shell logs it (a warning), nothing is refused
        channel = error.channel
        refused = sorted(
            (
                s
                for s in self.subscriptions
                if (channel is None or s.channel is channel)
                and (error.symbol is None or s.symbol == error.symbol)
                and s not in self._confirmed
                and s in self._sent
            ),
            key=_sort_key,
        )
        if error.symbol is not None or (channel is not None and channel.private):
            for sub in refused:
                self._refuse(sub, _subscription_error(error, sub, self.venue))
            return
        if len(refused) == 1:
            self._refuse(refused[0], _subscription_error(error, refused[0], self.venue))
        elif refused:
            # One request named several streams and the venue did not say which one it refused:
            # ask again one stream per message to find it (bounded: each round refuses one).
            self._sent.difference_update(refused)
            assert self._codec is not None
            for sub in refused:
                self._sent.add(sub)
                self._outbox.extend(self._codec.subscribe([sub]))
            self._flush(now)

    def _refuse(self, sub: Subscription, error: SubscriptionError) -> None:
        self._sent_since.pop(sub, None)
        self.subscriptions.discard(sub)
        self._sent.discard(sub)
        self._confirmed.discard(sub)
        self._restoring.discard(sub)
        if sub in self._after_login:
            self._after_login.remove(sub)
        self._actions.append(Refused(sub, error))

    # -- watchdog
    def _check_alive(self, now: float, rx: int) -> None:
        if self._paused:
            # Reading is paused on purpose (flow control): silence proves nothing.
            self._rx_seen = rx
            self._last_rx_at = now
        elif rx != self._rx_seen:
            self._rx_seen = rx
            self._last_rx_at = now
            self._ping_sent = False
        else:
            silent = now - self._last_rx_at
            if silent >= self.heartbeat_timeout:
                self.stats.stale += 1
                self._notify(
                    Stale(
                        venue=self.venue,
                        connection=self.index,
                        silent_for=silent,
                        ts=self.clock_ns(),
                    )
                )
                self._disconnect(f"stale: nothing received for {silent:.2f}s")
                return
            if silent >= self.ping_interval and not self._ping_sent and self._codec is not None:
                self._ping_sent = True
                self._actions.append(Send(self._codec.ping(), ping=True))
        if (
            now - self._sent_at >= self.heartbeat_timeout
            and not self._outbox
            and len(self._confirmed) < len(self._sent)
        ):
            # A subscribe answer that never came (lost, or the venue ignored it): ask again;
            # subscribing twice is harmless.
            unconfirmed = sorted((s for s in self._sent if s not in self._confirmed), key=_sort_key)
            self._sent.difference_update(unconfirmed)
            self._subscribe(unconfirmed, now)
        if self._sent_since:
            self._check_unconfirmed(now)

    def _check_unconfirmed(self, now: float) -> None:
        """Report each subscription still unconfirmed ``subscribe_timeout`` after it was sent
        (once per connection): a venue that answers only heartbeats is not silent to us."""
        for sub, since in list(self._sent_since.items()):
            if sub in self._confirmed or sub not in self.subscriptions:
                del self._sent_since[sub]
            elif now - since >= self.subscribe_timeout:
                del self._sent_since[sub]
                self.stats.unconfirmed += 1
                self._notify(
                    Unconfirmed(
                        venue=self.venue,
                        connection=self.index,
                        channel=sub.channel.value,
                        symbol=sub.symbol,
                        waited=now - since,
                        ts=self.clock_ns(),
                    )
                )


def _subscription_error(error: VenueError, sub: Subscription, venue: str) -> SubscriptionError:
    return SubscriptionError(
        f"{sub.channel.value} {sub.symbol or ''} refused: {error.code}: {error.message}".replace(
            "  ", " "
        ),
        channel=sub.channel.value,
        symbol=sub.symbol,
        venue=venue,
    )
