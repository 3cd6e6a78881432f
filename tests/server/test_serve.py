"""serve(): uvicorn as a task of the test's own loop on a free loopback port, a live SSE stream
over a real socket that is dropped and resumed, the bind checks, and a shutdown that ends open
streams."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tickloop.bus import Bus
from tickloop.exceptions import ConfigError
from tickloop.server import Platform, create_app, serve

from .helpers import events_of, fill, parse_sse, trade


async def _read_events(chunks: AsyncIterator[str], count: int,
                       text: str = "") -> tuple[str, list[dict[str, object]]]:
    async with asyncio.timeout(10):
        while len(events_of(parse_sse(text))) < count:
            text += await anext(chunks)
    frames = events_of(parse_sse(text))
    last = frames[-1].id
    assert last is not None
    return last, [f.json() for f in frames]


async def test_a_real_socket_stream_dropped_and_resumed() -> None:
    async with Bus(name="serve") as bus:
        app = create_app(Platform(bus), token="t0ken")
        before = signal.getsignal(signal.SIGINT)
        async with serve(app, "127.0.0.1", 0) as served, httpx.AsyncClient(
                base_url=served.url, timeout=10) as http:
            assert served.port > 0 and served.url == f"http://127.0.0.1:{served.port}"
            assert signal.getsignal(signal.SIGINT) is before  # uvicorn's handlers stay out
            assert (await http.get("/healthz")).status_code == 200
            published: list[int] = []
            async with http.stream("GET", "/api/events/stream") as response:
                assert response.status_code == 200
                chunks = response.aiter_text()
                hello = await anext(chunks)  # the first chunk: the stream is live
                published += [bus.publish("trade.sim.BTC-USD", trade(n)).id for n in range(5)]
                published.append(bus.publish("fill.sim", fill(5)).id)
                last_id, first = await _read_events(chunks, 6, hello)
            published += [bus.publish("trade.sim.BTC-USD", trade(n)).id for n in range(6, 12)]
            async with http.stream("GET", "/api/events/stream",
                                   headers={"Last-Event-ID": last_id}) as response:
                _, rest = await _read_events(response.aiter_text(), 6)
            assert [e["id"] for e in first + rest] == published


async def test_leaving_serve_ends_open_streams_and_frees_the_port() -> None:
    async with Bus(name="serve") as bus:
        app = create_app(Platform(bus), token="t0ken")
        async with serve(app, "127.0.0.1", 0) as served:
            http = httpx.AsyncClient(base_url=served.url, timeout=10)
            request = http.build_request("GET", "/api/events/stream")
            response = await http.send(request, stream=True)
            assert response.status_code == 200
        async with asyncio.timeout(10):  # the server ended the body: the read finishes
            body = (await response.aread()).decode()
        assert body.startswith("retry: 1000")
        await http.aclose()
        assert not app.running
        with socket.create_server(("127.0.0.1", served.port)):
            pass  # free again


async def test_a_non_loopback_host_without_a_chosen_token_does_not_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKLOOP_TOKEN", raising=False)
    async with Bus() as bus:
        app = create_app(Platform(bus), token_file=tmp_path / "token")
        with pytest.raises(ConfigError) as err:
            async with serve(app, "0.0.0.0", 0):
                pytest.fail("started")
        assert err.value.field == "--host"
        assert not app.running and not [i for i in bus.subscriptions]


async def test_a_port_in_use_names_the_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        async with Bus() as bus:
            app = create_app(Platform(bus), token="t")
            with pytest.raises(ConfigError) as err:
                async with serve(app, "127.0.0.1", port):
                    pytest.fail("started")
            assert err.value.field == "--port" and str(port) in str(err.value)
