"""``/metrics``: the platform's counters in Prometheus' text format, read when scraped.

Nothing is counted twice: :class:`PlatformCollector` reads the counters the bus, the stream
clients and the event hub already keep (``bus.stats()``, ``feed.stats()``, ``hub.stats()``) at
each scrape, plus the event loop's lag from a :class:`LoopLagMonitor`, and yields metric
families into the app's own :class:`~prometheus_client.CollectorRegistry` (never the global one,
so two apps in one process, or two tests, do not share series).

Names follow Prometheus' conventions: base units, ``_total`` for counters, labels with bounded
values only (venue, symbol, subscription name, ring name).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..bus import Bus
    from ..client.rest import AsyncClient
    from ..client.stream import StreamClient
    from .events import EventHub

__all__ = ["LoopLagMonitor", "PlatformCollector", "make_registry"]


class LoopLagMonitor:
    """How late the event loop runs a timer: sleeps ``interval`` seconds of ``clock`` (the
    loop's by default) and records how much longer than that it took. ``last`` is the latest
    sample, ``max`` the largest of the last ``window`` samples."""

    def __init__(
        self,
        *,
        interval: float = 0.25,
        window: int = 40,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"lag interval must be > 0, got {interval!r}",
                              field="lag_interval")
        self.interval = float(interval)
        self._clock = clock
        self._samples: deque[float] = deque(maxlen=max(1, window))
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def last(self) -> float:
        return self._samples[-1] if self._samples else 0.0

    @property
    def max(self) -> float:
        return max(self._samples, default=0.0)

    def record(self, lag: float) -> None:
        self._samples.append(max(0.0, lag))
        self.samples += 1

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            if self._clock is None:
                self._clock = loop.time
            self._task = loop.create_task(self._run(), name="tickloop-loop-lag")

    async def _run(self) -> None:
        clock = self._clock
        assert clock is not None
        while True:
            started = clock()
            await asyncio.sleep(self.interval)
            self.record(clock() - started - self.interval)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class PlatformCollector(Collector):
    """Metric families from the bus, the stream clients, the event hub and the lag monitor."""

    def __init__(
        self,
        bus: Bus,
        feeds: Sequence[StreamClient],
        hub: EventHub,
        lag: LoopLagMonitor,
        rest: Sequence[AsyncClient] = (),
    ) -> None:
        self.bus = bus
        self.feeds = feeds
        self.hub = hub
        self.lag = lag
        self.rest = rest

    def collect(self) -> Iterable[Metric]:
        yield from self._bus()
        yield from self._feeds()
        yield from self._rest()
        yield from self._hub()
        lag = GaugeMetricFamily("tickloop_loop_lag_seconds",
                                "How late the event loop ran the lag monitor's last timer.")
        lag.add_metric([], self.lag.last)
        yield lag
        worst = GaugeMetricFamily("tickloop_loop_lag_max_seconds",
                                  "The largest loop lag among the monitor's recent samples.")
        worst.add_metric([], self.lag.max)
        yield worst

    def _bus(self) -> Iterable[Metric]:
        stats = self.bus.stats()
        published = CounterMetricFamily("tickloop_bus_published",
                                        "Events published on this bus.")
        published.add_metric([], stats["published"])
        yield published
        notices = CounterMetricFamily("tickloop_bus_drop_notices",
                                      "BusDropped notices the bus published.")
        notices.add_metric([], stats["notices"])
        yield notices
        writable = GaugeMetricFamily("tickloop_bus_writable",
                                     "1 unless a lossless subscription holds backpressure.")
        writable.add_metric([], 1.0 if stats["writable"] else 0.0)
        yield writable
        labels = ["subscription", "policy"]
        families: dict[str, Any] = {
            "delivered": CounterMetricFamily(
                "tickloop_bus_delivered", "Events handed to the subscriber.", labels=labels),
            "dropped": CounterMetricFamily(
                "tickloop_bus_dropped", "Events a subscription dropped.", labels=labels),
            "conflated": CounterMetricFamily(
                "tickloop_bus_conflated", "Events replaced by a newer one of the same key.",
                labels=labels),
            "handler_errors": CounterMetricFamily(
                "tickloop_bus_handler_errors", "Times a subscription's handler raised.",
                labels=labels),
            "backlog": GaugeMetricFamily(
                "tickloop_bus_backlog", "Events waiting in a subscription's buffer.",
                labels=labels),
        }
        for sub in stats["subscriptions"]:
            values = [sub["name"], sub["policy"]]
            for key, family in families.items():
                family.add_metric(values, sub[key])
        yield from families.values()

    def _feeds(self) -> Iterable[Metric]:
        counters = {
            "frames": ("tickloop_stream_frames", "WebSocket frames received."),
            "events": ("tickloop_stream_messages", "Messages decoded from the frames."),
            "malformed": ("tickloop_stream_malformed", "Frames that could not be decoded."),
            "reconnects": ("tickloop_stream_reconnects", "Connections re-established."),
            "stale": ("tickloop_stream_stale", "Connections replaced after going silent."),
            "gaps": ("tickloop_stream_gaps", "Trade sequence gaps detected."),
            "gaps_recovered": ("tickloop_stream_gaps_recovered",
                               "Gaps filled by a backfill."),
            "book_invalid": ("tickloop_book_invalidations",
                             "Times a local book became invalid."),
            # One counter per status event kind (models.py: "a counter on /metrics").
            "connected": ("tickloop_stream_connects", "Connections established."),
            "disconnected": ("tickloop_stream_disconnects", "Connections lost."),
            "unconfirmed": ("tickloop_stream_unconfirmed",
                            "Subscriptions the venue did not confirm in time."),
            "consumers_detached": ("tickloop_stream_consumers_detached",
                                   "Consumers detached for falling behind."),
            "handler_errors": ("tickloop_stream_handler_errors",
                               "Times a consumer's handler raised (ConsumerFailed)."),
            "book_valid": ("tickloop_book_validations",
                           "Times a local book became valid (again)."),
        }
        families = {key: CounterMetricFamily(name, doc, labels=["venue"])
                    for key, (name, doc) in counters.items()}
        open_ = GaugeMetricFamily("tickloop_stream_connections_open",
                                  "Connections open now.", labels=["venue"])
        conns = GaugeMetricFamily("tickloop_stream_connections",
                                  "Connections the client keeps.", labels=["venue"])
        resyncs = CounterMetricFamily("tickloop_book_resyncs",
                                      "Local book rebuilds from a fresh snapshot.",
                                      labels=["venue", "symbol"])
        valid = GaugeMetricFamily("tickloop_book_valid",
                                  "1 while the local book is synchronised.",
                                  labels=["venue", "symbol"])
        book = ["venue", "symbol"]
        applied = CounterMetricFamily("tickloop_book_deltas_applied",
                                      "Deltas applied to the local book.", labels=book)
        stale = CounterMetricFamily("tickloop_book_deltas_stale",
                                    "Deltas dropped as already in the snapshot.", labels=book)
        overflowed = CounterMetricFamily(
            "tickloop_book_deltas_overflowed",
            "Deltas lost because the resync buffer was full.", labels=book)
        buffered = GaugeMetricFamily("tickloop_book_deltas_buffered",
                                     "Deltas held while a snapshot is awaited.", labels=book)
        reasons = CounterMetricFamily("tickloop_book_invalidations_by_reason",
                                      "Times the local book became invalid, by reason.",
                                      labels=[*book, "reason"])
        for feed in self.feeds:
            stats = feed.stats()
            venue = str(stats["venue"])
            for key, family in families.items():
                family.add_metric([venue], stats.get(key, 0))
            open_.add_metric([venue], stats["connections_open"])
            conns.add_metric([venue], stats["connections"])
            for symbol, book in stats["books"].items():
                resyncs.add_metric([venue, symbol], book["resyncs"])
                valid.add_metric([venue, symbol], 1.0 if book["valid"] else 0.0)
                applied.add_metric([venue, symbol], book["applied"])
                stale.add_metric([venue, symbol], book["stale"])
                overflowed.add_metric([venue, symbol], book["overflowed"])
                buffered.add_metric([venue, symbol], book["buffered"])
                for reason, count in book["invalidations"].items():
                    reasons.add_metric([venue, symbol, str(reason)], count)
        yield from families.values()
        yield from (open_, conns, resyncs, valid, applied, stale, overflowed, buffered, reasons)

    def _rest(self) -> Iterable[Metric]:
        """Each REST client's HttpStats (client/http.py), labelled by venue."""
        counters = {
            "requests": ("tickloop_rest_requests", "REST calls made."),
            "attempts": ("tickloop_rest_attempts", "HTTP exchanges tried (retries included)."),
            "retries": ("tickloop_rest_retries", "HTTP exchanges tried again."),
            "rate_limited": ("tickloop_rest_rate_limited", "429 answers."),
            "network_errors": ("tickloop_rest_network_errors", "Exchanges that failed to connect "
                               "or were cut."),
            "timeouts": ("tickloop_rest_timeouts", "Exchanges that timed out."),
        }
        families = {key: CounterMetricFamily(name, doc, labels=["venue"])
                    for key, (name, doc) in counters.items()}
        in_flight = GaugeMetricFamily("tickloop_rest_in_flight", "HTTP exchanges under way now.",
                                      labels=["venue"])
        for client in self.rest:
            stats = client.stats
            for key, family in families.items():
                family.add_metric([client.venue], getattr(stats, key))
            in_flight.add_metric([client.venue], stats.in_flight)
        yield from families.values()
        yield in_flight

    def _hub(self) -> Iterable[Metric]:
        stats = self.hub.stats()
        clients = GaugeMetricFamily("tickloop_sse_clients", "Event stream clients connected.")
        clients.add_metric([], stats["clients"])
        yield clients
        sent = CounterMetricFamily("tickloop_sse_events_sent",
                                   "Events sent to event stream clients.")
        sent.add_metric([], stats["frames_sent"])
        yield sent
        lost = CounterMetricFamily("tickloop_sse_lost_notices",
                                   "'lost' frames sent (resume or reader behind the ring).")
        lost.add_metric([], stats["lost_notices"])
        yield lost
        appended = CounterMetricFamily("tickloop_sse_replay_appended",
                                       "Events put into a replay ring.", labels=["ring"])
        evicted = CounterMetricFamily("tickloop_sse_replay_evicted",
                                      "Events evicted from a replay ring.", labels=["ring"])
        retained = GaugeMetricFamily("tickloop_sse_replay_retained",
                                     "Events a replay ring holds now.", labels=["ring"])
        for name, ring in stats["rings"].items():
            appended.add_metric([name], ring["appended"])
            evicted.add_metric([name], ring["evicted"])
            retained.add_metric([name], ring["retained"])
        yield from (appended, evicted, retained)


def make_registry(collector: PlatformCollector) -> CollectorRegistry:
    """A registry of its own holding ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
