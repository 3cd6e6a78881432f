"""The venue registry: built-ins, venues registered in code, plug-ins by entry point, and the
one-line typed errors for a name found nowhere or a plug-in that does not load."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any, ClassVar

import pytest

import tickloop
from tickloop import AsyncClient, ConfigError, StreamClient, UnknownVenue, VenueLoadError
from tickloop.client.http import HttpSession
from tickloop.exceptions import AuthError, TickloopError
from tickloop.models import BookSnapshot, Instrument, Trade
from tickloop.venues import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    Authorizer,
    Codec,
    Decoded,
    PublicRest,
    RestRequest,
    SigningKey,
    Subscription,
    Venue,
    get,
    names,
    register,
    rest_codec,
    stream_codec,
    unregister,
)
from tickloop.venues.binance import BinanceCodec, BinanceRest
from tickloop.venues.sim import SimCodec
from tickloop.venues.sim_auth import SimAuth
from tickloop.venues.sim_rest import SimRest


class InlineCodec(Codec):
    venue: ClassVar[str] = "inline"
    default_url: ClassVar[str] = "ws://127.0.0.1:1/inline"

    def venue_symbol(self, symbol: str) -> str:
        return symbol

    def symbol(self, venue_symbol: str) -> str:
        return venue_symbol

    def subscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        return []

    def unsubscribe(self, subscriptions: Sequence[Subscription]) -> list[bytes]:
        return []

    def decode(self, frame: bytes | memoryview, recv_ts: int) -> list[Decoded]:
        return []


class InlineRest(PublicRest):
    venue: ClassVar[str] = "inline"
    default_url: ClassVar[str] = "http://127.0.0.1:1/inline"

    def markets_request(self) -> RestRequest:
        return RestRequest("GET", "/markets")

    def parse_markets(self, body: bytes) -> list[Instrument]:
        return []

    def book_request(self, symbol: str, depth: int | None = None) -> RestRequest:
        return RestRequest("GET", "/book")

    def parse_book(self, body: bytes, symbol: str, recv_ts: int = 0) -> BookSnapshot:
        return BookSnapshot(venue="inline", symbol=symbol, bids=(), asks=(), sequence=0, ts=0)

    def trades_request(
        self, symbol: str, since_id: int | None = None, limit: int | None = None
    ) -> RestRequest:
        return RestRequest("GET", "/trades")

    def parse_trades(self, body: bytes, symbol: str, recv_ts: int = 0) -> list[Trade]:
        return []

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> TickloopError:
        return TickloopError(f"HTTP {status}")


class InlineAuth(Authorizer):
    venue: ClassVar[str] = "inline"

    def authorize(
        self, request: RestRequest, target: str, body: bytes, key: SigningKey, token: str | None
    ) -> dict[str, str]:
        return {"X-Key": key.key_id}


@pytest.fixture
def inline() -> Iterator[Venue]:
    venue = register(Venue("inline", stream=InlineCodec, rest=InlineRest, authorizer=InlineAuth))
    yield venue
    unregister("inline")


def _fake_entry_points(
    monkeypatch: pytest.MonkeyPatch, declared: dict[str, str] | list[tuple[str, str]]
) -> None:
    """Entry points of group tickloop.venues as an installed distribution would declare them."""
    pairs = list(declared.items()) if isinstance(declared, dict) else declared
    points = [metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in pairs]
    real = metadata.entry_points

    def entry_points(**selection: Any) -> Any:
        if selection.get("group") == ENTRY_POINT_GROUP:
            return metadata.EntryPoints(points)
        return real(**selection)

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_builtin_venues_are_declared_with_the_public_contract() -> None:
    assert set(BUILTIN) == {"sim", "binance", "coinbase", "kraken"}
    sim = get("sim")
    assert (sim.stream, sim.rest, sim.authorizer) == (SimCodec, SimRest, SimAuth)
    binance = get("binance")
    assert (binance.stream, binance.rest, binance.authorizer) == (BinanceCodec, BinanceRest, None)
    assert stream_codec("kraken").venue == "kraken" and rest_codec("coinbase").venue == "coinbase"
    assert {"sim", "binance", "coinbase", "kraken"} <= set(names())


@pytest.mark.parametrize("make", [StreamClient, AsyncClient, stream_codec, rest_codec, get])
def test_unknown_venue_is_one_typed_line_naming_it(make: Any) -> None:
    with pytest.raises(UnknownVenue) as info:
        make("nosuchvenue")
    text = str(info.value)
    assert "\n" not in text
    assert "'nosuchvenue'" in text and "sim" in text and ENTRY_POINT_GROUP in text
    assert info.value.venue == "nosuchvenue" and info.value.field == "venue"
    assert isinstance(info.value, ConfigError) and tickloop.UnknownVenue is UnknownVenue


def test_a_venue_registered_in_code_serves_every_client(inline: Venue) -> None:
    assert get("inline") is inline
    assert "inline" in names()
    feed = StreamClient("inline")
    assert feed.url == InlineCodec.default_url
    client = AsyncClient("inline")
    assert isinstance(client.codec, InlineRest)
    assert isinstance(client.http.authorizer, InlineAuth)


def test_register_refuses_a_taken_name_unless_replacing(inline: Venue) -> None:
    with pytest.raises(ConfigError, match="'inline' already exists"):
        register(Venue("inline", rest=InlineRest))
    with pytest.raises(ConfigError, match="'sim' already exists"):
        register(Venue("sim", rest=SimRest))
    again = register(Venue("inline", rest=InlineRest), replace=True)
    assert get("inline") is again and again.stream is None
    with pytest.raises(ConfigError, match="has no stream codec"):
        StreamClient("inline")
    with pytest.raises(ConfigError, match=r"takes a tickloop\.venues\.Venue"):
        register("inline")  # type: ignore[arg-type]


def test_unregister_forgets_and_builtins_come_back() -> None:
    register(Venue("sim", stream=SimCodec, rest=SimRest), replace=True)
    assert get("sim").authorizer is None
    unregister("sim")
    assert get("sim").authorizer is SimAuth
    unregister("never-registered")  # ignored


class NotAnAuthorizer:
    venue = "inline"


class Abstract(Codec):
    venue: ClassVar[str] = "inline"


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"name": "Bad Name", "rest": InlineRest}, "name", "lower case"),
        ({"name": "inline"}, "stream", "neither a stream codec nor a REST codec"),
        ({"name": "inline", "stream": InlineRest}, "stream", "subclass of tickloop.venues.Codec"),
        ({"name": "inline", "rest": InlineRest, "authorizer": NotAnAuthorizer}, "authorizer",
         "subclass of tickloop.venues.Authorizer"),
        ({"name": "inline", "stream": Abstract}, "stream", "does not implement decode"),
        ({"name": "other", "rest": InlineRest}, "rest",
         "InlineRest.venue is 'inline', not 'other'"),
    ],
)
def test_a_malformed_venue_names_the_field(kwargs: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Venue(**kwargs)
    assert info.value.field == field
    assert text in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def plugin_module() -> Iterator[types.ModuleType]:
    """An importable module standing in for an installed plug-in package."""
    module = types.ModuleType("tl_fake_plugin")
    codec = type("FakeCodec", (InlineCodec,), {"venue": "fakeplug"})
    module.VENUE = Venue("fakeplug", stream=codec)  # type: ignore[attr-defined]
    module.OTHER = Venue("inline", rest=InlineRest)  # type: ignore[attr-defined]
    module.NOT_A_VENUE = 42  # type: ignore[attr-defined]
    sys.modules["tl_fake_plugin"] = module
    yield module
    del sys.modules["tl_fake_plugin"]
    for name in ("fakeplug", "broken", "notvenue", "wrongname", "twice", "sim"):
        unregister(name)


def test_an_entry_point_plugin_is_found_and_kept(
    monkeypatch: pytest.MonkeyPatch, plugin_module: types.ModuleType
) -> None:
    _fake_entry_points(monkeypatch, {"fakeplug": "tl_fake_plugin:VENUE"})
    assert "fakeplug" in names()
    assert get("fakeplug") is plugin_module.VENUE
    assert StreamClient("fakeplug").venue == "fakeplug"
    _fake_entry_points(monkeypatch, {})  # uninstalled meanwhile: the loaded venue is kept
    assert get("fakeplug") is plugin_module.VENUE


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("broken", "tl_no_such_module:VENUE",
         "venue plug-in 'broken' (entry point tl_no_such_module:VENUE) failed to load: "
         "ModuleNotFoundError: No module named 'tl_no_such_module'"),
        ("broken", "tl_fake_plugin:MISSING",
         "venue plug-in 'broken' (entry point tl_fake_plugin:MISSING) failed to load: "
         "AttributeError:"),
        ("notvenue", "tl_fake_plugin:NOT_A_VENUE",
         "venue plug-in 'notvenue' (entry point tl_fake_plugin:NOT_A_VENUE) is a int, "
         "not a tickloop.venues.Venue"),
        ("wrongname", "tl_fake_plugin:OTHER",
         "venue plug-in 'wrongname' (entry point tl_fake_plugin:OTHER) holds the venue 'inline'"),
    ],
)
def test_a_plugin_that_fails_to_load_is_one_typed_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    plugin_module: types.ModuleType,
    name: str,
    value: str,
    text: str,
) -> None:
    _fake_entry_points(monkeypatch, {name: value})
    for make in (get, StreamClient, AsyncClient):
        with pytest.raises(VenueLoadError) as info:
            make(name)
        assert str(info.value).startswith(text), str(info.value)
        assert "\n" not in str(info.value)
        assert info.value.venue == name and info.value.target == value
        assert isinstance(info.value, ConfigError) and info.value.field == "venue"


def test_two_plugins_declaring_one_name_are_refused(
    monkeypatch: pytest.MonkeyPatch, plugin_module: types.ModuleType
) -> None:
    _fake_entry_points(
        monkeypatch, [("twice", "tl_fake_plugin:VENUE"), ("twice", "tl_fake_plugin:OTHER")]
    )
    with pytest.raises(VenueLoadError, match="'twice' is declared twice"):
        get("twice")


def test_an_entry_point_cannot_shadow_a_builtin(
    monkeypatch: pytest.MonkeyPatch, plugin_module: types.ModuleType
) -> None:
    _fake_entry_points(monkeypatch, {"sim": "tl_no_such_module:VENUE"})
    unregister("sim")
    assert get("sim").stream is SimCodec


async def test_capability_gates_name_the_missing_contract() -> None:
    async with AsyncClient("binance", url="http://127.0.0.1:1") as client:
        with pytest.raises(ConfigError) as info:
            await client.place_order("BTC-USDT", side="buy", type="market", size="1")
        assert str(info.value) == (
            "place_order is not available for venue 'binance': its REST codec BinanceRest does "
            "not implement tickloop.venues.TradingRest (markets, book and trades are available "
            "for every venue)"
        )
        for call, contract in (
            (client.balances(), "AccountRest"),
            (client.candles("BTC-USDT"), "MarketDataRest"),
            (client.market("BTC-USDT"), "FieldSelectionRest"),
        ):
            with pytest.raises(ConfigError, match=rf"tickloop\.venues\.{contract} "):
                await call


async def test_a_private_call_to_a_venue_without_authorizer_says_so() -> None:
    creds = tickloop.Credentials("key-1", "secret-never-shown")
    async with HttpSession("http://127.0.0.1:1", venue="binance", credentials=creds) as http:
        with pytest.raises(AuthError, match="venue 'binance' has no authorizer") as info:
            await http.request(RestRequest("GET", "/account", private=True))
        assert "secret-never-shown" not in str(info.value)


def test_a_run_config_accepts_a_registered_venue(inline: Venue, tmp_path: Any) -> None:
    from tickloop.run.config import RunConfig, load_config, validate

    path = tmp_path / "run.toml"
    path.write_text('[venue]\nname = "inline"\nurl = "ws://127.0.0.1:1/inline"\n')
    config = load_config(path)
    assert isinstance(config, RunConfig)
    validate(config, environ={})
    unregister("inline")
    with pytest.raises(ConfigError) as info:
        validate(config, environ={})
    assert str(info.value).startswith("venue.name: unknown venue 'inline' (known: ")
    assert info.value.field == "venue.name"
