"""The envelope's contract: types derive from payloads, user types register once, patterns glob."""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickloop import models
from tickloop.bus import EventType, event_type_of, payload_class, register_event_type
from tickloop.bus.events import topic_matcher
from tickloop.exceptions import ConfigError


def _trade() -> models.Trade:
    return models.Trade(venue="sim", symbol="BTC-USD", id=1, price=Decimal("1.5"),
                        size=Decimal("2"), side=models.Side.BUY, ts=1)


def test_every_model_payload_has_one_builtin_type() -> None:
    assert event_type_of(_trade()) == EventType.TRADE
    assert event_type_of(models.Gap(venue="sim", symbol="X", channel="trades", recovered=True,
                                    ts=0)) == EventType.STATUS
    assert event_type_of(models.LoopBlocked(duration=0.2, bot="b1", handler="tick",
                                            ts=0)) == EventType.LOOP_BLOCKED


def test_unregistered_payload_is_a_config_error_naming_the_way_out() -> None:
    class Mine(msgspec.Struct):
        x: int

    with pytest.raises(ConfigError, match="register_event_type"):
        event_type_of(Mine(1))
    with pytest.raises(ConfigError):
        event_type_of({"x": 1})


def test_user_types_register_once() -> None:
    class Alert(msgspec.Struct, frozen=True):
        text: str

    class Other(msgspec.Struct, frozen=True):
        text: str

    assert register_event_type("test.alert", Alert) == "test.alert"
    assert register_event_type("test.alert", Alert) == "test.alert"  # idempotent
    assert event_type_of(Alert("hi")) == "test.alert"
    assert payload_class("test.alert") is Alert
    assert payload_class("trade") is None
    with pytest.raises(ConfigError, match="registered"):
        register_event_type("test.alert", Other)
    with pytest.raises(ConfigError, match="built in"):
        register_event_type("trade", Other)
    with pytest.raises(ConfigError, match="registered as"):
        register_event_type("test.alert2", Alert)
    with pytest.raises(ConfigError):
        register_event_type("Bad Name", Other)
    with pytest.raises(ConfigError):
        register_event_type("ok", dict)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("*", "trade.sim.BTC-USD", True),
        ("*", "", True),
        ("trade.*.BTC-USD", "trade.sim.BTC-USD", True),
        ("trade.*.BTC-USD", "trade.sim.ETH-USD", False),
        ("order.*", "order.bot-7", True),
        ("order.*", "orders.bot-7", False),
        ("trade.sim.BTC-USD", "trade.sim.BTC-USD", True),
        ("trade.sim.BTC-USD", "trade.sim.BTC-USDT", False),
        ("bot.?", "bot.1", True),
        ("bot.?", "bot.12", False),
        ("a+b.*", "a+b.c", True),  # regex characters match themselves
        ("a+b.*", "aab.c", False),
    ],
)
def test_topic_patterns_glob_the_whole_name(pattern: str, topic: str, matches: bool) -> None:
    assert topic_matcher(pattern)(topic) is matches


_TOPIC_CHARS = st.sampled_from(list("ab.*?+x"))


@given(st.text(_TOPIC_CHARS, min_size=1, max_size=8), st.text(st.sampled_from(list("ab.+x\n")),
                                                                max_size=10))
def test_every_pattern_matches_as_the_glob_regex_says(pattern: str, topic: str) -> None:
    """The matcher's shortcuts (exact names, a trailing ``*``) agree with the definition: the
    whole topic against the pattern with ``*`` as ``.*`` and ``?`` as ``.``."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    expected = re.fullmatch(regex, topic, re.S) is not None
    assert topic_matcher(pattern)(topic) is expected

