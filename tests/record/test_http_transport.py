"""HttpSession's transport seam: an injected HttpTransport replaces aiohttp and nothing else
(deadline, retries, error mapping stay the session's); a recorder wraps it and keeps each
exchange."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tickloop.client.http import HttpSession
from tickloop.exceptions import ExchangeError
from tickloop.record import Recorder, RecordKind, RestExchange, open_recording
from tickloop.venues.base import RestRequest

pytestmark = pytest.mark.timeout(30)


class Scripted:
    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, bytes | None]] = []

    async def __call__(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        self.calls.append((method, url, body))
        status, answer = self.answers.pop(0)
        return status, answer, {"X-Test": "1"}


async def test_an_injected_transport_does_the_exchange_with_the_sessions_retries() -> None:
    fake = Scripted([(503, b"busy"), (200, b'{"ok":1}')])
    async with HttpSession("http://venue.invalid/api", transport=fake, backoff_base=0.001) as http:
        resp = await http.request(RestRequest("GET", "/x", (("b", "2"), ("a", "1"))))
        assert resp.status == 200 and resp.body == b'{"ok":1}' and resp.attempts == 2
        assert fake.calls == [("GET", "http://venue.invalid/api/x?b=2&a=1", None)] * 2
        assert http.stats.retries == 1
        assert http._session is None  # no aiohttp session was ever made
        fake.answers.append((400, b"bad"))
        with pytest.raises(ExchangeError, match="HTTP 400"):
            await http.request(RestRequest("GET", "/y"))


async def test_the_recorder_keeps_each_exchange(tmp_path: Path) -> None:
    fake = Scripted([(200, b"[1]"), (404, b"no")])
    with Recorder(tmp_path / "rec") as recorder:
        async with HttpSession("http://venue.invalid", transport=fake) as http:
            recorder.attach_http(http)
            await http.request(RestRequest("GET", "/depth", (("symbol", "BTC"),)))
            with pytest.raises(ExchangeError):
                await http.request(RestRequest("GET", "/nothing"))
    import msgspec

    rest = [
        msgspec.msgpack.decode(r.data, type=RestExchange)
        for r in open_recording(tmp_path / "rec").records()
        if r.kind is RecordKind.REST
    ]
    assert [(x.method, x.target, x.status, x.body) for x in rest] == [
        ("GET", "/depth?symbol=BTC", 200, b"[1]"),
        ("GET", "/nothing", 404, b"no"),
    ]
    assert rest[0].headers == {"X-Test": "1"} and rest[0].sent_wall_ns > 0


async def test_credentials_never_reach_the_recording(tmp_path: Path) -> None:
    from tickloop.client.transport import MemoryTransport
    from tickloop.limits import DEFAULT_LIMITS

    class NullSink:
        def on_frame(self, data: object, now_ns: int) -> None: ...
        def on_oversized(self, limit: str, size: int, now_ns: int) -> None: ...
        def on_closed(self, reason: str, now_ns: int, limit: str | None) -> None: ...

    fake = Scripted([(200, b'{"token":"tok-SECRET-1","expires_in":300}')])
    with Recorder(tmp_path / "rec") as recorder:
        conn = await recorder.transport(MemoryTransport()).connect(
            "ws://x", {}, NullSink(), timeout=1.0, limits=DEFAULT_LIMITS
        )
        conn.send('{"op":"login","token":"tok-SECRET-2","id":1}')
        conn.send('{"op":"subscribe","channel":"trades","id":2}')
        async with HttpSession("http://venue.invalid", transport=fake) as http:
            recorder.attach_http(http)
            await http.request(RestRequest("GET", "/x", (("a", "1"), ("signature", "SIG-SECRET"))))
    raw = b"".join(r.data for r in open_recording(tmp_path / "rec").records())
    assert b"SECRET" not in raw
    sent = [r.data for r in open_recording(tmp_path / "rec").records() if r.kind is RecordKind.SENT]
    assert sent[0] == b'{"op":"login","token":"***","id":1}'
    assert sent[1] == b'{"op":"subscribe","channel":"trades","id":2}'  # untouched, byte for byte
    assert b"signature=***" in raw and b'"token":"***"' in raw
