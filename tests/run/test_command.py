"""``tickloop run`` as a user runs it, in a subprocess: it serves the dashboard and the API,
the commands over its API work (bots, pause, resume, tail, book), SIGTERM stops it cleanly
within 5 s (exit 0, the store sound, the port closed), Ctrl-C exits 130, and every user error
is one line on stderr with a non-zero exit and no traceback."""

from __future__ import annotations

import gc
import importlib.util
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from tickloop.sim import SimExchange

from .helpers import Running, assert_one_line_error, tickloop

pytestmark = pytest.mark.timeout(180)


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_run_serves_answers_the_commands_and_stops_on_sigterm(tmp_path: Path) -> None:
    run = Running(tmp_path, "--port", "0", "--rate", "40")
    try:
        url = run.wait_for("dashboard: ").split()[-1]
        port = int(url.rsplit(":", 1)[1])
        token = (tmp_path / "state" / "tickloop" / "token").read_text().strip()
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
            assert "<title>tickloop</title>" in http.get("/").text
            bots = http.get("/api/bots").json()
            assert [(b["id"], b["status"]) for b in bots] == [
                ("sma", "running"), ("maker", "running"), ("meanrev", "running")]
            assert "tickloop_bot_errors_total" in http.get("/metrics").text

            listed = tickloop(tmp_path, "bots")  # finds the instance by the file it wrote
            assert listed.returncode == 0 and "meanrev" in listed.stdout, listed.stderr
            paused = tickloop(tmp_path, "pause", "sma")
            assert paused.returncode == 0 and paused.stdout.strip() == "sma: paused"
            assert http.get("/api/bots/sma").json()["status"] == "paused"
            refused = tickloop(tmp_path, "resume", "sma", TICKLOOP_TOKEN="wrong")
            assert_one_line_error(refused, "refused the control token (401)")
            assert http.get("/api/bots/sma").json()["status"] == "paused"
            resumed = tickloop(tmp_path, "resume", "sma", TICKLOOP_TOKEN=token)
            assert resumed.stdout.strip() == "sma: running"
            assert_one_line_error(tickloop(tmp_path, "pause", "nope"), "no bot 'nope'")
            tail = tickloop(tmp_path, "tail", "--type", "trade", "--limit", "3")
            lines = tail.stdout.strip().splitlines()
            assert tail.returncode == 0 and len(lines) == 3, tail.stderr
            assert all(" trade " in line and "trade.sim." in line for line in lines)
            book = tickloop(tmp_path, "book", "BTC-USD", "--server", url, "--duration", "0.5")
            assert book.returncode == 0 and "BTC-USD depth" in book.stdout, book.stderr
            no_book = tickloop(tmp_path, "book", "DOGE-USD", "--server", url)
            assert_one_line_error(no_book, "book DOGE-USD")
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(timeout=5)  # the bound: stopped within 5 s
    finally:
        run.kill()
    code, out, err = run.finish(timeout=10)
    assert code == 0, err
    assert "Traceback" not in err
    assert "stopping (SIGTERM)" in out and out.rstrip().endswith("stopped")
    db = tmp_path / "data" / "tickloop" / "tickloop.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT COUNT(*) FROM bot_state").fetchone()[0] == 3
    assert _port_closed(port)
    assert not (tmp_path / "state" / "tickloop" / "instance.json").exists()


def test_ctrl_c_stops_it_with_status_130(tmp_path: Path) -> None:
    run = Running(tmp_path, "--port", "0", TICKLOOP_TOKEN="env-token")
    try:
        url = run.wait_for("dashboard: ").split()[-1]
        assert run.wait_for("control token: ") == "control token: from TICKLOOP_TOKEN"
        with httpx.Client(base_url=url, timeout=10) as http:  # the environment's token
            assert http.post("/api/bots/maker/pause").status_code == 401
            ok = http.post("/api/bots/maker/pause",
                           headers={"Authorization": "Bearer env-token"})
            assert ok.status_code == 200 and ok.json()["status"] == "paused"
        assert not (tmp_path / "state" / "tickloop" / "token").exists()
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(timeout=5)
    finally:
        run.kill()
    code, out, err = run.finish(timeout=10)
    assert code == 130 and "Traceback" not in err, err
    assert "stopping (interrupt)" in out


def test_duration_ends_the_run_with_status_0(tmp_path: Path) -> None:
    proc = tickloop(tmp_path, "run", "--port", "0", "--duration", "3", "--store",
                    str(tmp_path / "short.db"))
    assert proc.returncode == 0, proc.stderr
    assert "stopping (duration)" in proc.stdout
    assert "dashboard: http://127.0.0.1:" in proc.stdout
    assert (tmp_path / "short.db").exists()


def test_sim_then_run_url_works_with_the_defaults(tmp_path: Path) -> None:
    # the first case: `tickloop sim` then `tickloop run --url <its ws url>`
    with SimExchange(seed=1) as ex:  # the sim's default markets, on a thread of its own
        proc = tickloop(tmp_path, "run", "--url", ex.ws_url, "--port", "0", "--duration", "3")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "stopping (duration)" in proc.stdout
        other = tickloop(tmp_path, "run", "--url", ex.ws_url, "--symbols", "BTC-USD,SOL-USD",
                         "--port", "0", "--duration", "10")
    assert_one_line_error(other, f"venue sim at {ex.ws_url} refused", "unknown symbol 'SOL-USD'")


def test_run_url_finds_the_venues_rest_api_beside_its_stream(tmp_path: Path) -> None:
    # `tickloop run --url <sim ws url>` with no rest_url: the REST base comes from the venue's
    # codec (SimCodec.rest_url: ws://h:p/ws -> http://h:p/api/v1), so /api/markets answers
    with SimExchange(seed=1) as ex:
        run = Running(tmp_path, "--url", ex.ws_url, "--port", "0", "--symbols", "BTC-USD")
        try:
            url = run.wait_for("dashboard: ").split()[-1]
            with httpx.Client(base_url=url, timeout=30) as http:
                markets = http.get("/api/markets")
                assert markets.status_code == 200, markets.text
                assert {m["symbol"] for m in markets.json()} == set(ex.symbols)
            run.proc.send_signal(signal.SIGTERM)
            code, _, err = run.finish(timeout=30)
            assert code == 0, err
        finally:
            run.kill()


def test_an_unreachable_venue_is_one_line_within_the_duration(tmp_path: Path) -> None:
    # the second case: it used to wait 11 s and print three chained tracebacks
    proc = tickloop(tmp_path, "run", "--url", "ws://127.0.0.1:1/ws", "--duration", "2",
                    "--port", "0")
    assert_one_line_error(proc, "--duration 2 s ended before the platform had started",
                          "ws://127.0.0.1:1/ws")
    config = tmp_path / "unreachable.toml"
    config.write_text('[venue]\nurl = "ws://127.0.0.1:1/ws"\nconnect_timeout = 1.0\n')
    proc = tickloop(tmp_path, "run", str(config), "--port", "0")
    assert_one_line_error(proc, "cannot reach venue sim at ws://127.0.0.1:1/ws: no answer "
                          "within 1 s")


def test_book_shows_the_embedded_exchange_s_book(tmp_path: Path) -> None:
    proc = tickloop(tmp_path, "book", "ETH-USD", "--duration", "3", "--depth", "5")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "ETH-USD depth (seq " in proc.stdout


def _redis_helpers() -> Any:
    """tests/bus/redis_server.py (redis-server for tests; a missing one fails under CI)."""
    path = Path(__file__).resolve().parents[1] / "bus" / "redis_server.py"
    spec = importlib.util.spec_from_file_location("tickloop_tests_redis_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_on_a_redis_bus(tmp_path: Path) -> None:
    helpers = _redis_helpers()
    server = helpers.RedisServer(helpers.redis_server_binary(), tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        config = tmp_path / "redis.toml"
        config.write_text(f'[bus]\nurl = "{server.url}"\n')
        run = Running(tmp_path, str(config), "--port", "0")
        try:
            url = run.wait_for("dashboard: ").split()[-1]
            with httpx.Client(base_url=url, timeout=30) as http:
                assert [b["status"] for b in http.get("/api/bots").json()] == ["running"] * 3
                # market data reaches the server's event stream through Redis Streams
                text = http.get("/api/events/stream", params={"types": "trade", "limit": 2}).text
                assert text.count('"type":"trade"') == 2
            run.proc.send_signal(signal.SIGTERM)
            run.proc.wait(timeout=10)
        finally:
            run.kill()
        code, _, err = run.finish(timeout=10)
        assert code == 0 and "Traceback" not in err, err
    finally:
        server.stop()


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = tickloop(tmp_path, "run", "--port", str(port), "--duration", "5")
    assert_one_line_error(proc, f"--port {port}: already in use")
    assert proc.returncode == 2


async def test_the_default_port_taken_moves_to_the_next_free_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from tickloop.run import platform
    from tickloop.run.config import RunConfig, validate

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(platform, "DEFAULT_PORT", taken)
        config = RunConfig()
        config.store.path = str(tmp_path / "fallback.db")
        config.bots = []
        out = io.StringIO()
        frozen: list[int] = []
        freeze = gc.freeze

        def recording_freeze() -> None:
            freeze()
            frozen.append(gc.get_freeze_count())

        monkeypatch.setattr(gc, "freeze", recording_freeze)
        outcome = await platform.run_platform(
            validate(config, environ={}), duration=2, install_signals=False,
            console=Console(file=out, width=200))
    assert outcome.exit_code == 0 and outcome.url is not None
    # once started, what start-up made was moved out of the collector's generations (no full
    # collection walks it during the run), and given back at the end
    assert len(frozen) == 1 and frozen[0] > 0 and gc.get_freeze_count() == 0
    assert not outcome.url.endswith(f":{taken}")
    assert f"port {taken} is taken: serving on {outcome.url.rsplit(':', 1)[1]}" in out.getvalue()


@pytest.mark.parametrize(("args", "needles", "status"), [
    (["run", "bad.toml"], ['bad.toml: bots[0].params.fast: expected int, got "x"'], 2),
    (["run", "--check", "missing.toml"], ["missing.toml: no such file"], 2),
    (["run", "redis.toml"], ["redis at redis://127.0.0.1:1/0 unreachable"], 1),
    (["run", "--duration", "0"], ["--duration: must be > 0"], 2),
    (["run", "--symbols", "BTC-USD,nope"], ["symbols[1]: 'NOPE' is not BASE-QUOTE"], 2),
    (["run", "--host", "0.0.0.0"], ["server.host: 0.0.0.0 is not a loopback address"], 2),
    (["bots", "--server", "http://127.0.0.1:1"], ["cannot reach tickloop at "
                                                   "http://127.0.0.1:1"], 1),
    (["pause", "sma", "--server", "http://127.0.0.1:1"], ["cannot reach tickloop"], 1),
    (["tail", "--server", "http://127.0.0.1:1"], ["cannot reach tickloop"], 1),
    (["book", "BTC"], ["SYMBOL: symbol 'BTC' is not BASE-QUOTE"], 2),
    (["book", "BTC-USD", "--url", "ws://127.0.0.1:1/ws"], ["cannot reach venue sim at "
                                                            "ws://127.0.0.1:1/ws"], 1),
])
def test_user_errors_are_one_line_and_no_traceback(tmp_path: Path, args: list[str],
                                                   needles: list[str], status: int) -> None:
    (tmp_path / "bad.toml").write_text(
        '[[bots]]\nid = "a"\nclass = "SmaCross"\nparams = { fast = "x" }\n')
    (tmp_path / "redis.toml").write_text('[bus]\nurl = "redis://127.0.0.1:1/0"\n')
    (tmp_path / "state" / "tickloop").mkdir(parents=True)
    (tmp_path / "state" / "tickloop" / "token").write_text("some-token\n")
    try:
        proc = tickloop(tmp_path, *args, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{args} did not end") from exc
    assert_one_line_error(proc, *needles)
    assert proc.returncode == status
