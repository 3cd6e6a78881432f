"""The fuzzing boundary with a small, fixed budget: every venue codec, every REST codec, every
book synchroniser, the sim's request parsers and its WebSocket handler, on hostile input drawn
by fuzz.strategies. Derandomized and without an example database, so a run is the same on every
machine; ``python -m fuzz.run`` runs the same targets for longer (docs/reliability.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `fuzz` is a top-level package of the repository, not installed
    sys.path.insert(0, str(ROOT))

from fuzz.run import main  # noqa: E402

from fuzz import strategies, targets  # noqa: E402

BUDGET = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("venue", sorted(targets.CODECS))
def test_codecs_raise_only_protocol_errors_and_return_bounded_numbers(venue: str) -> None:
    target = targets.codec_target(venue)

    @BUDGET
    @given(strategies.frames(venue))
    def check(frame: bytes) -> None:
        target(frame)

    check()


@pytest.mark.parametrize("venue", sorted(targets.REST))
def test_rest_codecs_raise_only_protocol_errors(venue: str) -> None:
    target = targets.rest_target(venue)

    @BUDGET
    @given(strategies.frames("sim"))
    def check(body: bytes) -> None:
        target(body)

    check()


@pytest.mark.parametrize("venue", ["binance", "coinbase", "kraken", "sim"])
def test_book_synchronisers_never_call_a_crossed_book_valid(venue: str) -> None:
    target = targets.book_target(venue)

    @BUDGET
    @given(strategies.book_messages(venue))
    def check(messages: list[Any]) -> None:
        target(messages)

    check()


@BUDGET
@given(strategies.requests())
def test_sim_request_parsers_raise_only_their_documented_errors(data: bytes) -> None:
    targets.sim_parsers_target(data)


def test_sim_websocket_handler_answers_every_frame_and_counts_refusals() -> None:
    target = targets.sim_ws_target()

    @BUDGET
    @given(strategies.requests())
    def check(frame: bytes) -> None:
        target(frame)

    check()


def test_the_fuzz_command_runs_a_target_and_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert "codec:binance" in listed and "book:sim" in listed and "sim:ws" in listed
    assert main(["--target", "codec:sim", "--examples", "20"]) == 0
    assert "no finding" in capsys.readouterr().out
    assert main(["--target", "nope"]) == 2
