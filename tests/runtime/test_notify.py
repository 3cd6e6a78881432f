"""Notifiers against local aiohttp servers: bodies, templates, retries with backoff, and a
blocked endpoint that only ever costs its own dropped notifications."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from tickloop.bus import Bus
from tickloop.exceptions import ConfigError
from tickloop.models import BotError, CircuitBreakerFired, Fill, Liquidity, Side
from tickloop.runtime.notify import TelegramNotifier, WebhookNotifier

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self.statuses: list[int] = []  # answered in order, then 200
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        self.bodies.append(await request.json())
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.json_response({"ok": status == 200}, status=status, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield srv, f"http://127.0.0.1:{port}"
    finally:
        if srv.gate is not None:
            srv.gate.set()
        await runner.cleanup()


def _fill(bot: str = "b1") -> Fill:
    return Fill(venue="sim", symbol="BTC-USD", order_id="o1", trade_id=1, side=Side.BUY,
                price=Decimal("100.5"), size=Decimal("0.1"), liquidity=Liquidity.TAKER, ts=1)


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


async def test_webhook_default_body_and_templates(server: tuple[Server, str]) -> None:
    srv, url = server
    hook = WebhookNotifier(f"{url}/hook", ["fill", "circuit_breaker"],
                           templates={"circuit_breaker": "{bot} paused after {errors}"})
    async with Bus() as bus:
        await hook.start(bus)
        bus.publish("bot.fill.b1", _fill())
        bus.publish("bot.breaker.b1", CircuitBreakerFired(bot="b1", errors=5, window=60.0, ts=2))
        bus.publish("bot.error.b1", BotError(bot="b1", handler="tick", error="x", ts=3))
        await _until(lambda: hook.sent == 2)
        await hook.close()
    assert srv.bodies[0]["type"] == "fill" and srv.bodies[0]["topic"] == "bot.fill.b1"
    assert srv.bodies[0]["payload"]["price"] == "100.5"
    assert srv.bodies[1] == {"text": "b1 paused after 5"}
    assert len(srv.bodies) == 2  # bot_error was not chosen


async def test_telegram_format_and_token_kept_secret(server: tuple[Server, str]) -> None:
    srv, url = server
    tg = TelegramNotifier("123:SECRET", 42, ["fill"], base_url=url)
    assert "SECRET" not in repr(tg)
    async with Bus() as bus:
        await tg.start(bus)
        bus.publish("bot.fill.b1", _fill())
        await _until(lambda: tg.sent == 1)
        await tg.close()
    assert srv.paths == ["/bot123:SECRET/sendMessage"]
    assert srv.bodies == [{"chat_id": 42, "text": "b1: buy 0.1 BTC-USD @ 100.5"}]


async def test_retries_with_backoff_then_gives_up_on_4xx(server: tuple[Server, str]) -> None:
    srv, url = server
    srv.statuses = [503, 429, 200, 400]
    hook = WebhookNotifier(url, ["fill"], base_wait=0.001, max_wait=0.01, retries=3,
                           rng=random.Random(1))
    async with Bus() as bus:
        await hook.start(bus)
        bus.publish("bot.fill.b1", _fill())
        await _until(lambda: hook.sent == 1)
        bus.publish("bot.fill.b2", _fill("b2"))
        await _until(lambda: hook.failed == 1)
        await hook.close()
    assert hook.retried == 2  # 503 and 429 retried; the 400 was not
    assert len(srv.bodies) == 4
    exhausted = WebhookNotifier(url, ["fill"], base_wait=0.001, max_wait=0.002, retries=2)
    srv.statuses = [500, 500, 500]
    async with Bus() as bus:
        await exhausted.start(bus)
        bus.publish("bot.fill.b1", _fill())
        await _until(lambda: exhausted.failed == 1)
        await exhausted.close()
    assert exhausted.retried == 2 and exhausted.sent == 0


async def test_a_blocked_endpoint_drops_its_oldest_and_never_blocks_publish(
        server: tuple[Server, str]) -> None:
    srv, url = server
    srv.gate = asyncio.Event()  # the endpoint hangs until released
    hook = WebhookNotifier(url, ["fill"], maxsize=10, timeout=60.0)
    n = 500
    async with Bus() as bus:
        await hook.start(bus)
        bus.publish("bot.fill.b0", _fill("b0"))
        await srv.arrived.wait()  # the first one is in flight
        for i in range(1, n):
            bus.publish(f"bot.fill.b{i}", _fill(f"b{i}"))  # a plain call: returns at once
        stats = hook.stats()
        assert stats["dropped"] == n - 1 - 10 and stats["pending"] == 10
        srv.gate.set()
        await _until(lambda: hook.sent == 11)
        await hook.close()
    # what was kept is the newest: the first (in flight) and the last ten
    assert [b["topic"] for b in srv.bodies] == ["bot.fill.b0"] + [
        f"bot.fill.b{i}" for i in range(n - 10, n)]


def test_bad_configuration_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        WebhookNotifier("ftp://x", ["fill"])
    assert err.value.field == "url"
    with pytest.raises(ConfigError) as err:
        WebhookNotifier("http://127.0.0.1:1", ["fills"])
    assert err.value.field == "events"
