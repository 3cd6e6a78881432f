"""``tickloop run``'s configuration: the example is the defaults, `init` writes it, `--check`
accepts it, and every bad value is one ConfigError naming the dotted field."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from tickloop.cli import main
from tickloop.examples import MarketMaker, MeanReversion, SmaCross
from tickloop.exceptions import ConfigError
from tickloop.run.config import (
    EXAMPLE_CONFIG,
    RunConfig,
    decode_config,
    load_config,
    validate,
)


def test_the_example_config_is_exactly_the_defaults() -> None:
    assert decode_config(tomllib.loads(EXAMPLE_CONFIG)) == RunConfig()


def test_the_defaults_make_the_three_example_bots_on_the_embedded_exchange() -> None:
    prepared = validate(RunConfig(), environ={})
    assert prepared.embedded
    assert [(type(b), b.id, b.symbols) for b in prepared.bots] == [
        (SmaCross, "sma", ("BTC-USD",)), (MarketMaker, "maker", ("ETH-USD",)),
        (MeanReversion, "meanrev", ("BTC-USD",))]
    assert prepared.bots[0].params.size == Decimal("0.01")
    assert prepared.config.server.host == "127.0.0.1" and prepared.config.server.port is None


def test_init_writes_a_config_that_check_accepts(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tickloop.toml"
    main(["init", str(path)])
    assert path.read_text() == EXAMPLE_CONFIG
    main(["run", "--check", str(path)])
    out = capsys.readouterr().out
    assert f"{path}: ok" in out and "sma (SmaCross)" in out
    # a second init does not overwrite the user's file
    path.write_text("symbols = ['BTC-USD']\n")
    with pytest.raises(SystemExit) as info:
        main(["init", str(path)])
    assert info.value.code == 2
    assert "exists already" in capsys.readouterr().err
    assert path.read_text() == "symbols = ['BTC-USD']\n"


BOT = '[[bots]]\nid = "a"\nclass = "SmaCross"\nsymbols = ["BTC-USD"]\n'


@pytest.mark.parametrize(("toml", "field", "message"), [
    (BOT + '[[bots]]\nid = "b"\nclass = "SmaCross"\nparams = { fast = "x" }\n',
     "bots[1].params.fast", 'bots[1].params.fast: expected int, got "x"'),
    (BOT + "params = { fast = 30 }\n", "bots[0].params",
     "bots[0].params: fast must be >= 1 and below slow"),
    (BOT + "params = { bogus = 1 }\n", "bots[0].params.bogus",
     "bots[0].params.bogus: unknown field (one of fast, slow, size)"),
    ('[[bots]]\nid = "a"\nclass = "Nope"\n', "bots[0].class",
     "bots[0].class: 'Nope' is not a Bot class"),
    ('[[bots]]\nid = "a"\nclass = "no.such.module:Bot"\n', "bots[0].class",
     "bots[0].class: cannot import 'no.such.module'"),
    ('[[bots]]\nclass = "SmaCross"\n', "bots[0].id", "bots[0].id: required"),
    (BOT + BOT, "bots[1].id", "bots[1].id: 'a' is also bots[0]'s id"),
    ('[[bots]]\nid = "a b"\nclass = "SmaCross"\n', "bots[0].id", "bots[0].id: bot id"),
    ('[[bots]]\nid = "a"\nclass = "SmaCross"\nsymbols = ["SOL-USD"]\n', "bots[0].symbols[0]",
     "bots[0].symbols[0]: 'SOL-USD' is not one of the markets (BTC-USD, ETH-USD)"),
    (BOT + "[bots.risk]\nmax_position = \"-1\"\n", "bots[0].risk.max_position",
     "bots[0].risk.max_position: max_position must be >= 0"),
    ('[server]\nportt = 1\n', "server.portt",
     "server.portt: unknown field (one of host, port, token, token_file, replay)"),
    ('[server]\nport = "x"\n', "server.port", 'server.port: expected int | null, got "x"'),
    ('[server]\nport = 70000\n', "server.port", "server.port: must be within 0..65535"),
    ('[server]\nhost = "0.0.0.0"\n', "server.host",
     "server.host: 0.0.0.0 is not a loopback address"),
    ('symbols = ["BTC-USD", 3]\n', "symbols[1]", "symbols[1]: expected str, got 3"),
    ('symbols = []\n', "symbols", "symbols: at least one market is needed"),
    ('symbols = ["btc"]\n', "symbols[0]", "symbols[0]: 'btc' is not BASE-QUOTE"),
    ('colour = "red"\n', "colour", "colour: unknown field (one of symbols, venue,"),
    ('[venue]\nname = "ftx"\n', "venue.name", "venue.name: unknown venue 'ftx'"),
    ('[venue]\nurl = "http://x"\n', "venue.url", "venue.url: 'http://x' is not a ws://"),
    ('[engine]\ncash = "lots"\n', "engine.cash", "engine.cash: "),
    ('[engine]\nbreaker_errors = 0\n', "engine.breaker_errors",
     "engine.breaker_errors: must be >= 1"),
    ('[bus]\nurl = "kafka://x"\n', "bus.url", "bus.url: 'kafka://x' is not a redis://"),
    ('[risk]\nmax_open_orders = -1\n', "risk.max_open_orders", "risk.max_open_orders: "),
])
def test_a_bad_config_is_one_error_naming_the_field(tmp_path: Path, toml: str, field: str,
                                                    message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        validate(load_config(path), environ={})
    assert info.value.field == field
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_a_token_allows_a_non_loopback_host() -> None:
    config = decode_config({"server": {"host": "0.0.0.0", "token": "chosen-one"}})
    assert validate(config, environ={}).config.server.host == "0.0.0.0"
    config = decode_config({"server": {"host": "0.0.0.0"}})
    assert validate(config, environ={"TICKLOOP_TOKEN": "from-env"})


def test_a_file_that_is_not_toml_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("symbols = [\n")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML: "):
        load_config(path)
    with pytest.raises(ConfigError, match=r"missing.toml: no such file \(tickloop init"):
        load_config(tmp_path / "missing.toml")


def test_per_bot_risk_and_custom_classes(tmp_path: Path) -> None:
    module = tmp_path / "mybots.py"
    module.write_text("from tickloop.examples import SmaCross\n\n"
                      "class Mine(SmaCross):\n    pass\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        config = decode_config({"bots": [{"id": "m", "class": "mybots:Mine",
                                          "risk": {"max_position": "0.5"}}]})
        prepared = validate(config, environ={})
    finally:
        sys.path.remove(str(tmp_path))
    assert type(prepared.bots[0]).__name__ == "Mine"
    assert prepared.bot_risk["m"].max_position == Decimal("0.5")
