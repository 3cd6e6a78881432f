"""The sync twin: generated from AsyncClient, never stale, with exactly the same surface."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from tickloop import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[2]


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member, eval_str=False)
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(member)
    }


def test_generated_module_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_sync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_same_operations_and_signatures() -> None:
    async_methods = public_methods(AsyncClient)
    async_methods.pop("aclose")  # the sync twin closes with close(), as sync objects do
    sync_methods = public_methods(Client)
    assert set(async_methods) == set(sync_methods)
    assert len(async_methods) >= 18
    for name, signature in async_methods.items():
        assert sync_methods[name] == signature, name  # parameters, defaults, annotations, return
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
        assert not inspect.iscoroutinefunction(getattr(Client, name))
        assert inspect.getdoc(getattr(Client, name)), name


def test_same_constructor_and_properties() -> None:
    assert inspect.signature(Client.__init__, eval_str=False) == inspect.signature(
        AsyncClient.__init__, eval_str=False
    )
    for name in ("venue", "credentials", "stats"):
        assert isinstance(inspect.getattr_static(Client, name), property)
    assert hasattr(Client, "__enter__") and hasattr(Client, "__exit__")
    assert hasattr(AsyncClient, "__aenter__") and hasattr(AsyncClient, "__aexit__")


def test_contract_used_by_trade_backfill() -> None:
    signature = inspect.signature(AsyncClient.trades, eval_str=True)
    params = signature.parameters
    assert list(params) == ["self", "symbol", "since_id", "limit"]
    assert params["since_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["since_id"].default is None and params["limit"].default is None
    assert str(signature.return_annotation) == "list[tickloop.models.Trade]"


def test_check_mode_detects_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_sync
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    stale = tmp_path / "sync.py"
    stale.write_text(gen_sync.TARGET.read_text().replace("def book(", "def book_renamed(", 1))
    monkeypatch.setattr(gen_sync, "TARGET", stale)
    assert gen_sync.main(["--check"]) == 1
    assert gen_sync.main([]) == 0  # regenerates
    assert gen_sync.main(["--check"]) == 0
    assert stale.read_text() == gen_sync.generate()


def test_sync_client_refuses_to_run_in_its_own_loop_thread() -> None:
    with Client("sim", url="http://127.0.0.1:9/api/v1") as client:
        loop = client._runner.loop

        async def inside() -> None:
            assert client.venue == "sim"  # properties are fine
            client.server_time()

        import asyncio

        with pytest.raises(RuntimeError, match="own event loop"):
            asyncio.run_coroutine_threadsafe(inside(), loop).result(10)
