"""Notifiers: chosen bus events sent to a webhook or a Telegram chat, never in trading's way.

A notifier subscribes to the event types it was given with a bounded ``drop_oldest``
subscription and sends from its own task, one request at a time, in order. Publishing never
waits for it: a slow or failing endpoint only makes its own buffer fill, and then it loses its
oldest pending notifications, each one counted (``stats()["dropped"]``, and the bus announces
them as :class:`~tickloop.models.BusDropped` on ``bus.dropped.<name>``). Each request has a
timeout; a failed one (a network error, a timeout, a 429 or a 5xx answer) is retried with
exponential backoff and full jitter (:class:`tickloop.client.backoff.Backoff`, on the
notifier's clock) up to ``retries`` times, honouring a 429's ``Retry-After``; other 4xx answers
are not retried. A notification that still fails is counted in ``failed`` and logged.

Event types are the bus's type names (``"fill"``, ``"order"``, ``"circuit_breaker"``,
``"bot_error"``, ``"risk_rejected"``, ``"loop_blocked"``, ``"equity"``, ``"signal"``,
``"bus_dropped"``), mapped to the runtime's topics (:data:`TOPICS`), or topic patterns
(anything with a dot or a ``*``).

Bodies: :class:`WebhookNotifier` POSTs JSON, by default ``{"type", "topic", "ts", "payload"}``
(the payload as JSON-able builtins); a per-type template replaces it, either a format string
(the payload's fields, plus ``type``, ``topic`` and ``bot``, filled in; sent as
``{"text": ...}``) or a function of the Event returning the JSON body.
:class:`TelegramNotifier` sends what the Telegram Bot API's ``sendMessage`` takes
(``{"chat_id", "text"}``, POST ``<base_url>/bot<token>/sendMessage``), with text templates the
same way. The token is a secret: it is in no repr, log line or error message.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
import msgspec

from ..bus import Bus, Event, Subscription
from ..client.backoff import Backoff
from ..exceptions import ConfigError
from .clock import Clock, LoopClock

__all__ = [
    "TELEGRAM_TEXTS",
    "TOPICS",
    "Notifier",
    "TelegramNotifier",
    "WebhookNotifier",
    "render_text",
]

log = logging.getLogger("tickloop.runtime.notify")

#: Event type -> the runtime's topic pattern for it.
TOPICS: dict[str, str] = {
    "fill": "bot.fill.*",
    "order": "bot.order.*",
    "position": "bot.position.*",
    "equity": "bot.equity.*",
    "signal": "bot.signal.*",
    "bot_error": "bot.error.*",
    "circuit_breaker": "bot.breaker.*",
    "risk_rejected": "risk.rejected.*",
    "loop_blocked": "loop.blocked",
    "bus_dropped": "bus.dropped.*",
}

Template = str | Callable[[Event], Any]


class _Fields(dict[str, Any]):
    """Format-string fields: a missing one prints as ``{name}`` rather than raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render_text(template: str, event: Event) -> str:
    """``template`` with the payload's fields and ``type``, ``topic``, ``bot`` filled in."""
    fields = _Fields()
    payload = msgspec.to_builtins(event.payload)
    if isinstance(payload, dict):
        fields.update(payload)
    fields.setdefault("bot", event.topic.rpartition(".")[2])
    fields["type"] = event.type
    fields["topic"] = event.topic
    return template.format_map(fields)


class Notifier(abc.ABC):
    """Base of the notifiers (module docstring); subclasses say where and what to send."""

    def __init__(
        self,
        events: Iterable[str],
        *,
        name: str | None = None,
        maxsize: int = 1000,
        retries: int = 5,
        base_wait: float = 0.5,
        max_wait: float = 30.0,
        timeout: float = 10.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        types = [events] if isinstance(events, str) else list(events)
        if not types:
            raise ConfigError("a notifier needs at least one event type", field="events")
        patterns: list[str] = []
        for item in types:
            if item in TOPICS:
                patterns.append(TOPICS[item])
            elif "." in item or "*" in item:
                patterns.append(item)
            else:
                raise ConfigError(f"unknown event type {item!r}: one of "
                                  f"{', '.join(sorted(TOPICS))}, or a topic pattern",
                                  field="events")
        if maxsize < 1:
            raise ConfigError(f"maxsize must be >= 1, got {maxsize!r}", field="maxsize")
        if retries < 0:
            raise ConfigError(f"retries must be >= 0, got {retries!r}", field="retries")
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0, got {timeout!r}", field="timeout")
        Backoff(base_wait=base_wait, max_wait=max_wait)  # validates
        self.patterns = tuple(dict.fromkeys(patterns))
        self.name = name or f"notify-{type(self).__name__.lower()}-{id(self) & 0xFFFF:04x}"
        self.maxsize = maxsize
        self.retries = retries
        self.base_wait = base_wait
        self.max_wait = max_wait
        self.timeout = timeout
        self._clock = clock
        self._rng = rng or random.Random()
        self._subscription: Subscription | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.retried = 0

    # ------------------------------------------------------------------ what subclasses give

    @abc.abstractmethod
    def request(self, event: Event) -> tuple[str, Any]:
        """The URL to POST to and the JSON body for ``event``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where it sends, for logs (no secrets)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, bus: Bus) -> None:
        if self._task is not None:
            return
        if self._clock is None:
            self._clock = LoopClock()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._subscription = bus.subscribe(list(self.patterns), maxsize=self.maxsize,
                                           policy="drop_oldest", name=self.name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop taking events, send what is pending for at most ``grace`` seconds, then stop."""
        sub, task = self._subscription, self._task
        self._task = None
        if sub is not None:
            sub.close()
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def stats(self) -> dict[str, int]:
        sub = self._subscription
        return {"sent": self.sent, "failed": self.failed, "retried": self.retried,
                "dropped": sub.dropped if sub is not None else 0,
                "pending": len(sub) if sub is not None else 0}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} -> {self.describe()}>"

    # ------------------------------------------------------------------ sending

    async def _run(self) -> None:
        sub = self._subscription
        assert sub is not None
        async for event in sub:
            await self.deliver(event)

    async def deliver(self, event: Event) -> bool:
        """Send one notification, with the retries; True when the endpoint took it."""
        session, clock = self._session, self._clock
        assert session is not None and clock is not None
        try:
            url, body = self.request(event)
        except Exception:
            log.exception("%s: cannot build the notification of %s", self.name, event.topic)
            self.failed += 1
            return False
        backoff = Backoff(base_wait=self.base_wait, max_wait=self.max_wait,
                          max_retries=self.retries, rng=self._rng)
        while True:
            retry_after: float | None = None
            try:
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    if resp.status < 300:
                        self.sent += 1
                        return True
                    reason = f"HTTP {resp.status}"
                    if resp.status == 429:
                        retry_after = _seconds(resp.headers.get("Retry-After"))
                    elif resp.status < 500:
                        break  # the endpoint refuses this notification: retrying won't help
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            wait = backoff.next_wait()
            if wait is None:
                break
            self.retried += 1
            await clock.sleep(max(wait, retry_after or 0.0))
        self.failed += 1
        log.warning("%s: giving up on a %s notification (%s) after %d attempts", self.name,
                    event.type, reason, backoff.attempts + 1)
        return False


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class WebhookNotifier(Notifier):
    """JSON POSTs to ``url`` (module docstring for the body and templates)."""

    def __init__(self, url: str, events: Iterable[str], *,
                 templates: Mapping[str, Template] | None = None, **options: Any) -> None:
        super().__init__(events, **options)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"url must be http(s)://..., got {url!r}", field="url")
        self.url = url
        self.templates = dict(templates or {})

    def describe(self) -> str:
        return self.url.split("?", 1)[0]

    def request(self, event: Event) -> tuple[str, Any]:
        template = self.templates.get(event.type)
        if template is None:
            body: Any = {"type": event.type, "topic": event.topic, "ts": event.ts,
                         "payload": msgspec.to_builtins(event.payload)}
        elif isinstance(template, str):
            body = {"text": render_text(template, event)}
        else:
            body = template(event)
        return self.url, body


#: Texts of the Telegram notifier when no template is given for a type.
TELEGRAM_TEXTS: dict[str, str] = {
    "fill": "{bot}: {side} {size} {symbol} @ {price}",
    "circuit_breaker": "{bot}: circuit breaker fired ({errors} errors in {window} s), paused",
    "bot_error": "{bot}: {handler} raised {error}",
    "risk_rejected": "{bot}: order refused by {check}: {reason}",
    "loop_blocked": "event loop blocked for {duration} s by {bot}",
}


class TelegramNotifier(Notifier):
    """Telegram Bot API ``sendMessage`` calls for ``chat_id`` (module docstring)."""

    def __init__(self, token: str, chat_id: int | str, events: Iterable[str], *,
                 base_url: str = "https://api.telegram.org",
                 templates: Mapping[str, str] | None = None, **options: Any) -> None:
        super().__init__(events, **options)
        if not isinstance(token, str) or not token:
            raise ConfigError("token must be the bot's token", field="token")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be http(s)://..., got {base_url!r}",
                              field="base_url")
        self._token = token
        self.chat_id = chat_id
        self.base_url = base_url.rstrip("/")
        self.templates = {**TELEGRAM_TEXTS, **(templates or {})}

    def describe(self) -> str:
        return f"{self.base_url}/bot***/sendMessage chat {self.chat_id}"

    def request(self, event: Event) -> tuple[str, Any]:
        template = self.templates.get(event.type, "{type} on {topic}")
        return (f"{self.base_url}/bot{self._token}/sendMessage",
                {"chat_id": self.chat_id, "text": render_text(template, event)})
