"""The soak command's code path for a few seconds (the 30-minute and 2-minute runs are not part
of the suite): it samples RSS, tasks and descriptors, reconnects along the way, reports drift
against a baseline, and leaves nothing behind."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tickloop.cli import app
from tickloop.exceptions import ConfigError
from tickloop.soak import run_soak


async def test_a_short_soak_samples_and_leaves_nothing_behind() -> None:
    report = await run_soak(
        4.0, interval=0.5, warmup=1.0, disconnect_every=2.0, drift_limit_mib=1000.0
    )
    assert len(report.samples) >= 2
    assert all(s.rss_mib > 0 and s.tasks > 0 and s.fds > 0 for s in report.samples)
    assert 0 < report.samples[-1].trades <= report.trades
    assert report.disconnects >= 1  # the exchange (its own process) dropped the connection
    assert report.leaked_tasks == 0 and report.leaked_fds == 0
    assert report.ok and not report.top_growth  # no drift over the limit: nothing to explain


async def test_drift_over_the_limit_reports_tracemalloc_growth() -> None:
    report = await run_soak(2.0, interval=0.5, warmup=0.5, disconnect_every=0, drift_limit_mib=-1)
    assert report.drifted and not report.ok
    assert report.top_growth and ":" in report.top_growth[0]  # file:line: size


async def test_soak_arguments_are_checked() -> None:
    with pytest.raises(ConfigError):
        await run_soak(0)


def test_the_soak_command_is_registered() -> None:
    result = CliRunner().invoke(app, ["soak", "--help"])
    assert result.exit_code == 0 and "--quick" in result.stdout
