"""Commands that talk to a running ``tickloop run`` over its API: ``bots``, ``pause``,
``resume``, ``tail``, and ``book`` (which can also read a venue directly).

The instance is ``--server URL``, else the address the run wrote to
:func:`~tickloop.run.platform.instance_file`, else ``http://127.0.0.1:8000``. The control
token is ``$TICKLOOP_TOKEN``, else the file the run wrote it to. Every request has a timeout;
an instance that cannot be reached, a refused token or an unknown bot is one
:class:`~tickloop.exceptions.TickloopError` line (aiohttp's errors never get through).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..exceptions import AuthError, ConfigError, InvalidRequest, NetworkError, TickloopError
from ..models import BookLevel
from ..server.auth import TOKEN_ENV, default_token_file
from .platform import DEFAULT_PORT, instance_file

__all__ = ["book_command", "bots_command", "control_command", "resolve_server",
           "resolve_token_for", "tail_command"]

TIMEOUT = 10.0  # seconds for one request (a stream: to connect and for its first bytes)


def _instance() -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(instance_file().read_text())
        if isinstance(data, dict):
            return data
    return {}


def resolve_server(server: str | None) -> str:
    """``server``, else the running instance's address, else the default one."""
    if server:
        if not server.startswith(("http://", "https://")):
            raise ConfigError(f"--server: {server!r} is not an http:// address",
                              field="--server")
        return server.rstrip("/")
    url = _instance().get("url")
    return str(url) if url else f"http://127.0.0.1:{DEFAULT_PORT}"


def resolve_token_for(server: str) -> str:
    """``$TICKLOOP_TOKEN``, else the token file of the instance at ``server`` (or the
    default file)."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token.strip()
    info = _instance()
    path = Path(info["token_file"]) if info.get("url") == server and info.get("token_file") \
        else default_token_file()
    try:
        return path.read_text().strip()
    except OSError:
        raise AuthError(f"no control token: set {TOKEN_ENV} (the run's token was not "
                        f"written to {path})") from None


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=None, connect=TIMEOUT, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


def _unreachable(server: str, exc: BaseException) -> NetworkError:
    reason = "no answer" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
    return NetworkError(f"cannot reach tickloop at {server} ({reason}): is `tickloop run` "
                        "running there? (--server URL)")


async def _check(resp: aiohttp.ClientResponse, server: str, what: str) -> None:
    if resp.status < 400:
        return
    try:
        detail = (await resp.json()).get("detail")
    except (aiohttp.ContentTypeError, ValueError, AttributeError):
        detail = None
    if resp.status == 401:
        raise AuthError(f"{server} refused the control token (401): set {TOKEN_ENV} to the "
                        "token of that run")
    if resp.status == 404:
        raise InvalidRequest(f"{what}: {detail or 'not found'} at {server}")
    raise NetworkError(f"{what}: {server} answered {resp.status}"
                       + (f" ({detail})" if detail else ""))


async def _request(method: str, server: str, path: str, *, token: str | None = None,
                   what: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        async with (
            _session() as session,
            asyncio.timeout(TIMEOUT),
            session.request(method, server + path, headers=headers) as resp,
        ):
            await _check(resp, server, what)
            return await resp.json()
    except TickloopError:
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise _unreachable(server, exc) from None


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------------- bots


def bots_table(bots: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="bots")
    for name in ("bot", "class", "status", "pnl", "positions", "open orders", "errors",
                 "last error"):
        table.add_column(name, justify="right" if name in ("pnl", "open orders", "errors")
                         else "left")
    for bot in bots:
        held = ", ".join(f"{s} {v}" for s, v in bot.get("positions", {}).items()) or "flat"
        status = bot["status"] + (" (killed)" if bot.get("killed") else "")
        table.add_row(bot["id"], bot.get("class", ""), status,
                      f"{Decimal(str(bot.get('pnl', 0))):.2f}", held,
                      str(bot.get("open_orders", 0)), str(bot.get("errors", 0)),
                      (bot.get("last_error") or "")[:60])
    return table


def bots_command(server: str | None) -> None:
    url = resolve_server(server)
    bots = _run(_request("GET", url, "/api/bots", what="bots"))
    Console().print(bots_table(bots))


def control_command(server: str | None, bot: str, action: str) -> None:
    url = resolve_server(server)
    token = resolve_token_for(url)
    info = _run(_request("POST", url, f"/api/bots/{bot}/{action}", token=token,
                         what=f"{action} {bot}"))
    print(f"{info['id']}: {info['status']}")


# --------------------------------------------------------------------------------- tail


def _summary(event: dict[str, Any]) -> str:
    p = event.get("payload") or {}
    kind = event.get("type")
    if kind == "trade":
        return f"{p.get('symbol')} {p.get('side') or ''} {p.get('size')} @ {p.get('price')}"
    if kind == "fill":
        return f"{p.get('symbol')} {p.get('side')} {p.get('size')} @ {p.get('price')}"
    if kind == "order":
        order = p.get("order") or {}
        return f"{p.get('kind')} {order.get('symbol')} {order.get('side')} " \
               f"{order.get('size')} {order.get('status')}"
    if kind == "book":
        bids, asks = p.get("bids") or [], p.get("asks") or []
        return f"{p.get('symbol')} bid {bids[0][0] if bids else '-'} " \
               f"ask {asks[0][0] if asks else '-'}"
    if kind == "bot_error":
        return f"{p.get('bot')} {p.get('handler')}: {p.get('error')}"
    if kind == "equity":
        return f"{p.get('bot')} equity {p.get('equity')}"
    return json.dumps(p, separators=(",", ":"))[:160]


def format_event(event: dict[str, Any]) -> str:
    """One line for one event of the stream."""
    ts = event.get("ts") or time.time_ns()
    stamp = time.strftime("%H:%M:%S", time.localtime(ts / 1e9)) + f".{ts // 1_000_000 % 1000:03d}"
    return f"{stamp} {event.get('type', '?'):<14} {event.get('topic', '')} {_summary(event)}"


async def _tail(server: str, query: dict[str, str]) -> int:
    count = 0
    try:
        async with _session() as session:
            async with asyncio.timeout(TIMEOUT):  # to connect and get the headers only
                resp = await session.get(server + "/api/events/stream", params=query)
            async with resp:
                await _check(resp, server, "tail")
                kind = ""
                async for raw in resp.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:])
                        if kind == "lost":
                            print(f"-- lost events ({data.get('reason')})", flush=True)
                        else:
                            print(format_event(data), flush=True)
                            count += 1
                    elif not line:
                        kind = ""
    except TickloopError:
        raise
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise _unreachable(server, exc) from None
    return count


def tail_command(server: str | None, *, types: Sequence[str], topics: Sequence[str],
                 limit: int | None) -> None:
    url = resolve_server(server)
    query: dict[str, str] = {}
    names = [t.strip() for spec in types for t in spec.split(",") if t.strip()]
    if names:
        query["types"] = ",".join(names)
    patterns = [t.strip() for spec in topics for t in spec.split(",") if t.strip()]
    if patterns:
        query["topics"] = ",".join(patterns)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit: must be >= 1, got {limit}", field="--limit")
        query["limit"] = str(limit)
    _run(_tail(url, query))


# --------------------------------------------------------------------------------- book


def _levels(rows: Sequence[Any]) -> list[BookLevel]:
    return [BookLevel(Decimal(str(p)), Decimal(str(s))) for p, s in rows]


async def _book_from_server(server: str, symbol: str, depth: int, duration: float | None,
                            console: Console) -> None:
    from ..live import LiveView

    view = LiveView([symbol], venue="server", url=server)
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    path = f"/api/book/{symbol}?depth={depth}"
    book = await _request("GET", server, path, what=f"book {symbol}")
    with Live(view.render_ladder(), console=console, refresh_per_second=4) as live:
        while True:
            view.ladder = (_levels(book["bids"]), _levels(book["asks"]))
            view.book_sequence = book.get("sequence")
            view.book_valid = True
            live.update(view.render_ladder())
            if deadline is not None and loop.time() >= deadline:
                return
            await asyncio.sleep(0.5)
            book = await _request("GET", server, path, what=f"book {symbol}")


async def _book_from_venue(symbol: str, venue: str, url: str | None, depth: int,
                           duration: float | None, console: Console) -> None:
    from ..client.stream import StreamClient
    from ..live import LiveView

    async with contextlib.AsyncExitStack() as stack:
        ws_url = url
        if ws_url is None and venue == "sim":
            from ..sim import SimExchange

            ex = await stack.enter_async_context(SimExchange(symbols=[symbol]))
            ws_url = ex.ws_url
        feed = StreamClient(venue, url=ws_url)
        await stack.enter_async_context(feed)
        view = LiveView([symbol], venue=venue, url=feed.url)
        try:
            await feed.subscribe_books(symbol, view.on_book, depth=depth, conflate=250)
        except TickloopError as exc:
            if isinstance(exc, NetworkError):
                raise NetworkError(f"cannot reach venue {venue} at {feed.url}: "
                                   f"{exc.message}") from None
            raise type(exc)(f"venue {venue} at {feed.url}: {exc.message}") from None
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        with Live(view.render_ladder(), console=console, refresh_per_second=4) as live:
            while deadline is None or loop.time() < deadline:
                await asyncio.sleep(0.25)
                live.update(view.render_ladder())


def book_command(symbol: str, *, server: str | None, venue: str, url: str | None, depth: int,
                 duration: float | None) -> None:
    name = symbol.strip().upper()
    if not 1 <= depth <= 100:
        raise ConfigError(f"--depth: must be within 1..100, got {depth}", field="--depth")
    console = Console()
    if server is not None:
        _run(_book_from_server(resolve_server(server), name, depth, duration, console))
    else:
        try:
            _run(_book_from_venue(name, venue, url, depth, duration, console))
        except ConfigError as exc:
            if exc.field == "symbols":
                raise ConfigError(f"SYMBOL: {exc.message}", field="SYMBOL") from None
            raise
