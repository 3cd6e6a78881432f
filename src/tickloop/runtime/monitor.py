"""Loop health: how late the event loop runs, and which bot's handler made it late.

Two parts that meet in one :class:`Running` slot.

* Every bot handler call is made through :meth:`Running.enter` / :meth:`Running.leave` (the
  engine does it; an async handler's every step, not just its first). The slot says which bot
  and handler run now, accounts each call's duration to the bot (count, total, max: see
  :class:`HandlerStats`), and remembers the longest call since the monitor last looked. Cost:
  two ``perf_counter`` reads and a few attribute stores per call.
* :class:`LoopMonitor` is a task that sleeps ``interval`` seconds on the loop's clock and
  measures how late it wakes up (the loop lag). Every lateness is a sample (p50/p99 in
  :meth:`LoopMonitor.percentiles`); one of ``threshold`` seconds or more is a stall, reported
  through ``on_block(duration, bot, handler)`` with the bot whose single handler call was the
  longest since the previous wake-up, if that call took at least half the stall (else the stall
  is not a bot's doing, and ``bot`` is None). ``duration`` is the lateness, or the named call's
  own length when longer (a stall that began during the monitor's sleep shows less lateness
  than it lasted).

Durations are measured with :func:`time.perf_counter`: what a handler costs is real CPU and
wall time whatever clock the engine runs on (in simulated time no handler takes any).
:class:`Running` and :class:`HandlerStats` are defined in :mod:`tickloop.runtime.fanout`, the
engine's compiled market fan-out, which reads and writes them on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from ..exceptions import ConfigError
from .clock import Clock
from .fanout import HandlerStats, Running

__all__ = ["HandlerStats", "LoopMonitor", "Running"]


class LoopMonitor:
    """Measures loop lag every ``interval`` seconds; reports stalls of ``threshold`` or more.

    ``on_block(duration, bot, handler)`` is called inside the monitor's task; ``samples``
    (default 10,000) bounds the lag samples kept for percentiles.
    """

    def __init__(
        self,
        running: Running,
        clock: Clock,
        on_block: Callable[[float, str | None, str | None], None],
        *,
        interval: float = 0.05,
        threshold: float = 0.1,
        samples: int = 10_000,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"interval must be > 0, got {interval!r}", field="interval")
        if not threshold > 0:
            raise ConfigError(f"threshold must be > 0, got {threshold!r}", field="threshold")
        self.running = running
        self.clock = clock
        self.on_block = on_block
        self.interval = interval
        self.threshold = threshold
        self.lags: deque[float] = deque(maxlen=samples)
        #: Stalls reported.
        self.blocked = 0
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="tickloop-loop-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def reset(self) -> None:
        """Forget the lag samples (e.g. after a warm-up)."""
        self.lags.clear()
        self.max_lag = 0.0

    def percentiles(self, *qs: float) -> list[float]:
        """Lag percentiles (``qs`` in 0..100) of the samples kept, in seconds."""
        data = sorted(self.lags)
        if not data:
            return [0.0 for _ in qs]
        return [data[min(len(data) - 1, int(q / 100 * len(data)))] for q in qs]

    async def _run(self) -> None:
        clock = self.clock
        running = self.running
        interval = self.interval
        while True:
            expected = clock.monotonic() + interval
            running.take_longest()
            await clock.sleep(interval)
            lag = max(0.0, clock.monotonic() - expected)
            self.lags.append(lag)
            if lag > self.max_lag:
                self.max_lag = lag
            if lag >= self.threshold:
                longest, bot, handler = running.take_longest()
                if longest < lag / 2:
                    bot = handler = None
                    duration = lag
                else:
                    # the stall may have begun before this sleep did: the call's own length
                    # is the better measure
                    duration = max(lag, longest)
                self.blocked += 1
                self.on_block(duration, bot, handler)
