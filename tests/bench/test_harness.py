"""The benchmark harness works end to end: the loopback server and the naive contender, over
127.0.0.1, for a small bounded count (no timing is asserted; figures belong in bench/)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level package of the repository, not installed
    sys.path.insert(0, str(ROOT))

from bench.harness.workload import (  # noqa: E402
    DEPTH_BASE,
    TRADE_BASE,
    Ids,
    Renderer,
    depth_snapshot,
    exchange_info,
    stream_kind,
)


def _unframe(data: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(data):
        assert data[i] == 0x81
        n = data[i + 1]
        i += 2
        if n == 126:
            n = int.from_bytes(data[i : i + 2], "big")
            i += 2
        out.append(data[i : i + n])
        i += n
    return out


def test_trade_frames_have_contiguous_ids_and_binance_fields() -> None:
    frames = _unframe(Renderer("aggTrade", combined=True).frames(0, 5000, 1_700_000_000_000))
    events = [json.loads(f) for f in frames]
    assert [e["stream"] for e in events[:2]] == ["btcusdt@aggTrade"] * 2
    ids = [e["data"]["a"] for e in events]
    assert ids == list(range(TRADE_BASE, TRADE_BASE + 5000))
    first = events[0]["data"]
    assert set(first) == {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
    assert first["s"] == "BTCUSDT" and first["E"] == 1_700_000_000_000
    assert len(first["p"].split(".")[1]) == 8


def test_depth_frames_follow_the_binance_sync_rule_from_the_snapshot() -> None:
    snapshot = json.loads(depth_snapshot(1000))
    events = [json.loads(f) for f in _unframe(Renderer("depth", combined=False).frames(0, 5000, 0))]
    last = snapshot["lastUpdateId"]
    assert events[0]["U"] <= last + 1 <= events[0]["u"]
    for prev, cur in itertools.pairwise(events):
        assert cur["U"] == prev["u"] + 1
    assert Ids.depth(10, 100).first_measured == events[10]["u"]
    assert Ids.depth(10, 100).last_measured == events[109]["u"]
    assert events[0]["U"] == DEPTH_BASE
    # the book built from the snapshot and the diffs never crosses
    bids = {p: q for p, q in snapshot["bids"]}
    asks = {p: q for p, q in snapshot["asks"]}
    for e in events:
        for side, levels in ((bids, e["b"]), (asks, e["a"])):
            for p, q in levels:
                if float(q) == 0:
                    side.pop(p, None)
                else:
                    side[p] = q
        assert max(map(float, bids)) < min(map(float, asks))


def test_stream_kinds() -> None:
    assert stream_kind("btcusdt@aggTrade") == "aggTrade"
    assert stream_kind("btcusdt@trade") == "trade"
    assert stream_kind("btcusdt@depth@100ms") == "depth"
    assert stream_kind("btcusdt@depth") == "depth"
    assert stream_kind("btcusdt@depth20") is None
    assert stream_kind("btcusdt@kline_1m") is None
    assert json.loads(exchange_info(0))["symbols"][0]["symbol"] == "BTCUSDT"


@pytest.fixture
def server() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.harness.server", "--frames", "3000", "--no-uvloop"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), (line, proc.stderr.read() if proc.stderr else "")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(10)


def test_server_answers_the_rest_calls_peers_make(server: int) -> None:
    base = f"http://127.0.0.1:{server}/api/v3"
    with urllib.request.urlopen(f"{base}/depth?symbol=BTCUSDT&limit=5", timeout=10) as r:
        depth = json.loads(r.read())
    assert depth["lastUpdateId"] == DEPTH_BASE - 1
    assert len(depth["bids"]) == 5 and len(depth["asks"]) == 5
    with urllib.request.urlopen(f"{base}/exchangeInfo", timeout=10) as r:
        assert json.loads(r.read())["symbols"][0]["status"] == "TRADING"
    with urllib.request.urlopen(f"{base}/ping", timeout=10) as r:
        assert json.loads(r.read()) == {}


@pytest.mark.parametrize("kind", ["trades", "depth"])
def test_naive_contender_counts_every_message_over_loopback(server: int, kind: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.harness.contenders.naive",
            "--port",
            str(server),
            "--kind",
            kind,
            "--warmup",
            "500",
            "--count",
            "2000",
            "--timeout",
            "30",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, proc.stderr[-2000:]
    result = json.loads(lines[-1][7:])
    assert result["ok"], result
    assert result["delivered"] == 2000
    assert result["frames"] == 2000
    assert result["elapsed"] > 0 and result["cpu"] >= 0
    assert result["peak_rss"] > 0
