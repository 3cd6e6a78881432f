"""``tickloop chaos`` in the suite: a short run (a few faults of every kind) whose figures must
all be zero where they must: no trade lost or duplicated, books equal to the exchange's, every
fault seen as exactly one status event, no false alarm, nothing leaked."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tickloop.chaos import ChaosConfig, ChaosReport, run_chaos
from tickloop.cli import app
from tickloop.exceptions import ConfigError


async def test_a_short_chaos_run_keeps_every_promise() -> None:
    config = ChaosConfig(
        # hostile=7: every kind of the sim's hostile frames once (sim.faults.HOSTILE_KINDS)
        disconnects=3, stalls=1, skips=2, malformed=2, hostile=7, storms=1, latency_spikes=1
    )
    report = await run_chaos(config)
    figures = report.figures()
    assert {name: figures[name] for name in ChaosReport.MUST_BE_ZERO} == dict.fromkeys(
        ChaosReport.MUST_BE_ZERO, 0
    ), figures
    assert report.ok
    assert report.faults == {
        "disconnect": 3,
        "stall": 1,
        "skip": 2,
        "malformed": 2,
        "hostile": 7,
        "storm": 1,
        "latency": 1,
        "slow_consumer": 1,
        "bot_raises": 1,
        "bot_blocks": 1,
    }
    assert report.trades_checked > 0 and report.book_checks == 2
    assert report.rate_limited > 0  # the storm met the backfill
    events = report.status_events
    assert events["Disconnected"] == 3 + 1 + 1  # disconnects, the storm's, the stall's
    assert events["Reconnected"] == events["Disconnected"]  # every outage said it was over
    assert events["Stale"] == 1 and events["ConsumerDetached"] == 1
    assert events["Malformed"] == 2 + 7
    assert events["BotError"] == 1 and events["LoopBlocked"] == 1  # each naming its bot
    assert report.bots_disturbed == 0  # the steady bot ran on and saw trades


def test_chaos_config_is_validated_and_the_command_is_registered() -> None:
    with pytest.raises(ConfigError, match="disconnects"):
        ChaosConfig(disconnects=-1)
    result = CliRunner().invoke(app, ["chaos", "--help"])
    assert result.exit_code == 0
    assert "--disconnects" in result.stdout and "--quick" in result.stdout
