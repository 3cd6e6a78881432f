"""``tickloop run``'s configuration: msgspec Structs decoded from TOML, checked before anything
starts.

:func:`load_config` reads a file (``tomllib``), decodes it into :class:`RunConfig` (unknown keys
and wrong types refused) and :func:`validate` checks what types cannot say: known venues and
markets, bot classes that import, their parameters, unique ids, bot symbols among the markets,
risk limits, a token for a non-loopback bind. Every problem is one
:class:`~tickloop.exceptions.ConfigError` whose message starts with the dotted field
(``bots[1].params.fast: expected int, got "x"``) and whose ``field`` is that path, so the CLI
prints it as one line. :data:`EXAMPLE_CONFIG` is what ``tickloop init`` writes: it decodes to
exactly the defaults (tested), so the commented file documents the no-argument run.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from ..exceptions import ConfigError
from ..runtime.bot import Bot
from ..runtime.risk import RiskLimits
from ..venues import get as get_venue

__all__ = [
    "EXAMPLE_CONFIG",
    "BotConfig",
    "BusConfig",
    "EngineConfig",
    "Prepared",
    "RiskConfig",
    "RunConfig",
    "ServerConfig",
    "StoreConfig",
    "VenueConfig",
    "decode_config",
    "default_store_path",
    "load_config",
    "validate",
]

DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD")  # the same as `tickloop sim`'s, so `run --url` fits


def default_store_path() -> str:
    """``$XDG_DATA_HOME/tickloop/tickloop.db`` (``~/.local/share/tickloop/tickloop.db``)."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data) / "tickloop" / "tickloop.db")


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class VenueConfig(_Section):
    #: sim, binance, coinbase or kraken (validate() also knows plug-in venues, tickloop.venues)
    name: str = "sim"
    #: the venue's WebSocket address; none with ``sim``: the embedded exchange is started
    url: str | None = None
    #: the venue's REST address, for ``/api/markets`` (the embedded exchange's by default)
    rest_url: str | None = None
    #: the embedded exchange's seed (none: a random one) and flow steps per second per symbol
    seed: int | None = None
    rate: float = 20.0
    #: seconds to wait for the venue to answer at start
    connect_timeout: float = 10.0


class StoreConfig(_Section):
    #: the SQLite file; "" means :func:`default_store_path`
    path: str = ""


class BusConfig(_Section):
    #: "" for the in-process bus, or ``redis://host:port/db`` (the Redis Streams backend)
    url: str = ""


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    #: none: 8000, or the next free port when it is taken
    port: int | None = None
    #: the control token; "" means ``$TICKLOOP_TOKEN``, else one generated into ``token_file``
    token: str = ""
    #: where a generated token is written; "" means ``~/.local/state/tickloop/token``
    token_file: str = ""
    #: events each SSE replay ring keeps
    replay: int = 10_000


class EngineConfig(_Section):
    #: each bot's starting paper cash, in the quote asset
    cash: Decimal = Decimal(10_000)
    #: seconds between equity snapshots (the dashboard's equity curve)
    equity_every: float = 5.0
    #: errors within ``breaker_window`` seconds that pause a bot
    breaker_errors: int = 5
    breaker_window: float = 60.0
    #: seconds a venue call (place, cancel) may take
    call_timeout: float = 30.0
    #: seconds over which the bots' first ticks are spread
    stagger: float = 1.0


class RiskConfig(_Section):
    """:class:`~tickloop.runtime.risk.RiskLimits`' fields; absent: not checked."""

    max_position: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_open_orders: int | None = None
    max_orders_per_second: int | None = None
    max_daily_loss: Decimal | None = None
    price_band: Decimal | None = None


class BotConfig(_Section):
    id: str
    #: a class of ``tickloop.examples`` (``SmaCross``) or ``package.module:Class``
    cls: str = msgspec.field(name="class")
    #: what it trades (default: the class's own)
    symbols: list[str] | None = None
    every: float | None = None
    cron: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    risk: RiskConfig | None = None


def _default_bots() -> list[BotConfig]:
    return [
        BotConfig(id="sma", cls="SmaCross", symbols=["BTC-USD"], every=0.5,
                  params={"fast": 5, "slow": 20, "size": "0.01"}),
        BotConfig(id="maker", cls="MarketMaker", symbols=["ETH-USD"], every=1.0,
                  params={"spread": "0.0005", "size": "0.1", "max_inventory": "0.5"}),
        BotConfig(id="meanrev", cls="MeanReversion", symbols=["BTC-USD"], every=0.5,
                  params={"window": 30, "entry": "1.5", "exit": "0.5", "size": "0.01"}),
    ]


class RunConfig(_Section):
    symbols: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    venue: VenueConfig = msgspec.field(default_factory=VenueConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    #: limits on all bots together
    risk: RiskConfig = msgspec.field(default_factory=RiskConfig)
    bots: list[BotConfig] = msgspec.field(default_factory=_default_bots)


# ------------------------------------------------------------------------------ decoding

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")


def _lookup(raw: Any, path: str) -> Any:
    """The value at a msgspec path (``.bots[1].params.fast``) of the raw document."""
    node = raw
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        try:
            node = node[int(index)] if index else node[name]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


_MISSING = object()


def _show(value: Any) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _dotted(prefix: str, path: str) -> str:
    path = path.lstrip(".")
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + ("" if path.startswith("[") else ".") + path


def _translate(exc: msgspec.ValidationError, raw: Any, prefix: str = "",
               struct: type[msgspec.Struct] | None = None) -> ConfigError:
    """msgspec's ``Expected `int`, got `str` - at `$.a[1].b``` as ``a[1].b: expected int,
    got "x"``."""
    match = _AT.match(str(exc))
    assert match is not None
    message, path = match.group("msg"), match.group("path") or ""
    unknown = _UNKNOWN.match(message)
    if unknown is not None:
        where = _dotted(prefix, _dotted(path, unknown.group("name")))
        known = _fields_at(struct, path) if struct is not None else None
        hint = f" (one of {', '.join(known)})" if known else ""
        return ConfigError(f"{where}: unknown field{hint}", field=where)
    where = _dotted(prefix, path) or "config"
    expected = _EXPECTED.match(message)
    if expected is not None:
        value = _lookup(raw, path)
        got = expected.group("got") if value is _MISSING else _show(value)
        return ConfigError(f"{where}: expected {expected.group('want')}, got {got}",
                           field=where)
    if message.startswith("Object missing required field"):
        name = message.split("`")[1]
        where = _dotted(where if where != "config" else "", name)
        return ConfigError(f"{where}: required", field=where)
    return ConfigError(f"{where}: {message[:1].lower()}{message[1:]}", field=where)


def _fields_at(struct: type[msgspec.Struct], path: str) -> list[str] | None:
    """The TOML names of the fields of the Struct found at ``path`` (for unknown-key hints)."""
    node: Any = struct
    for name, _index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        if not name:
            continue
        if not (isinstance(node, type) and issubclass(node, msgspec.Struct)):
            return None
        info = msgspec.inspect.type_info(node)
        assert isinstance(info, msgspec.inspect.StructType)
        found = next((f for f in info.fields if f.encode_name == name), None)
        if found is None:
            return None
        node = _struct_of(found.type)
    if not (isinstance(node, type) and issubclass(node, msgspec.Struct)):
        return None
    info = msgspec.inspect.type_info(node)
    assert isinstance(info, msgspec.inspect.StructType)
    return [f.encode_name for f in info.fields]


def _struct_of(kind: msgspec.inspect.Type) -> Any:
    if isinstance(kind, msgspec.inspect.StructType):
        return kind.cls
    if isinstance(kind, msgspec.inspect.ListType):
        return _struct_of(kind.item_type)
    if isinstance(kind, msgspec.inspect.UnionType):
        for t in kind.types:
            found = _struct_of(t)
            if found is not None:
                return found
    return None


def decode_config(raw: dict[str, Any]) -> RunConfig:
    """A TOML document (as ``tomllib`` gives it) as a :class:`RunConfig`; types only."""
    try:
        return msgspec.convert(raw, RunConfig, str_keys=True)
    except msgspec.ValidationError as exc:
        raise _translate(exc, raw, struct=RunConfig) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and decode a TOML file (validate it with :func:`validate`)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file (tickloop init {file} writes an example)",
                          field="config") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{file}: cannot read it ({reason})", field="config") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}", field="config") from None
    return decode_config(raw)


# ------------------------------------------------------------------------------ validation


@dataclass
class Prepared:
    """A validated configuration and what it made: the bot instances and the limits."""

    config: RunConfig
    bots: list[Bot]
    risk: RiskLimits
    bot_risk: dict[str, RiskLimits]  # bot id -> its own limits from [bots.risk]
    store_path: Path
    token_file: Path | None  # where a generated control token goes (None: the default)
    embedded: bool  # the embedded exchange is started


def _limits(risk: RiskConfig, where: str) -> RiskLimits:
    try:
        return RiskLimits(**msgspec.structs.asdict(risk))
    except ConfigError as exc:
        name = _dotted(where, exc.field or "")
        raise ConfigError(f"{name}: {exc.message}", field=name) from None


def _bot_class(spec: str, where: str) -> type[Bot]:
    module_name, sep, name = spec.partition(":")
    if not sep:
        module_name, name = "tickloop.examples", spec
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r} ({exc})", field=where) \
            from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Bot)):
        examples = "SmaCross, SmaCandleCross, MarketMaker, MeanReversion"
        hint = f" (tickloop.examples has {examples})" if not sep else ""
        raise ConfigError(f"{where}: {spec!r} is not a Bot class{hint}", field=where)
    return cls


def _make_bot(index: int, spec: BotConfig, symbols: list[str]) -> Bot:
    here = f"bots[{index}]"
    cls = _bot_class(spec.cls, f"{here}.class")
    try:
        msgspec.convert(spec.params, cls.Params, str_keys=True)
    except msgspec.ValidationError as exc:
        raise _translate(exc, spec.params, f"{here}.params", struct=cls.Params) from None
    bot_symbols = spec.symbols
    if bot_symbols is not None:
        bot_symbols = [s.strip().upper() for s in bot_symbols]
    for n, symbol in enumerate(bot_symbols if bot_symbols is not None else cls.symbols):
        if symbol not in symbols:
            where = f"{here}.symbols[{n}]" if bot_symbols is not None else f"{here}.symbols"
            raise ConfigError(f"{where}: {symbol!r} is not one of the markets "
                              f"({', '.join(symbols)}): add it to symbols", field=where)
    try:
        bot = cls(spec.id, symbols=bot_symbols, every=spec.every, cron=spec.cron,
                  **spec.params)
    except ConfigError as exc:
        name = exc.field or "id"
        if name in cls.Params.__struct_fields__:
            name = f"params.{name}"
        where = f"{here}.{name}"
        raise ConfigError(f"{where}: {exc.message}", field=where) from None
    return bot


def validate(config: RunConfig, *, environ: dict[str, str] | None = None) -> Prepared:
    """Check ``config`` beyond its types and make its bots (no I/O): one ConfigError naming
    the field for the first problem."""
    from ..server.auth import TOKEN_ENV, is_loopback

    env = os.environ if environ is None else environ
    venue = config.venue
    try:  # built in, registered in code, or an installed plug-in (tickloop.venues)
        get_venue(venue.name)
    except ConfigError as exc:  # UnknownVenue, VenueLoadError: one line naming the venue
        raise ConfigError(f"venue.name: {exc.message}", field="venue.name") from None
    embedded = venue.name == "sim" and not venue.url
    if venue.url is not None and not re.match(r"^wss?://[^/\s]+", venue.url):
        raise ConfigError(f"venue.url: {venue.url!r} is not a ws:// or wss:// address",
                          field="venue.url")
    if venue.rest_url is not None and not re.match(r"^https?://[^/\s]+", venue.rest_url):
        raise ConfigError(f"venue.rest_url: {venue.rest_url!r} is not an http(s):// address",
                          field="venue.rest_url")
    if not venue.rate >= 0:
        raise ConfigError(f"venue.rate: must be >= 0, got {venue.rate}", field="venue.rate")
    if not venue.connect_timeout > 0:
        raise ConfigError(f"venue.connect_timeout: must be > 0, got {venue.connect_timeout}",
                          field="venue.connect_timeout")
    if not config.symbols:
        raise ConfigError("symbols: at least one market is needed", field="symbols")
    symbols = [s.strip().upper() for s in config.symbols]
    for n, symbol in enumerate(symbols):
        if not re.fullmatch(r"[A-Z0-9]+-[A-Z0-9]+", symbol):
            raise ConfigError(f"symbols[{n}]: {config.symbols[n]!r} is not BASE-QUOTE "
                              "(e.g. BTC-USD)", field=f"symbols[{n}]")
        if symbol in symbols[:n]:
            raise ConfigError(f"symbols[{n}]: {symbol!r} is listed twice",
                              field=f"symbols[{n}]")
    config.symbols = symbols
    server = config.server
    if server.port is not None and not 0 <= server.port <= 65535:
        raise ConfigError(f"server.port: must be within 0..65535, got {server.port}",
                          field="server.port")
    if server.replay < 1:
        raise ConfigError(f"server.replay: must be >= 1, got {server.replay}",
                          field="server.replay")
    if not is_loopback(server.host) and not (server.token or env.get(TOKEN_ENV)):
        raise ConfigError(f"server.host: {server.host} is not a loopback address: set "
                          f"server.token or {TOKEN_ENV} first", field="server.host")
    if server.token and server.token != server.token.strip():
        raise ConfigError("server.token: must not have surrounding blanks",
                          field="server.token")
    engine = config.engine
    for name in ("equity_every", "stagger"):
        if not getattr(engine, name) >= 0:
            raise ConfigError(f"engine.{name}: must be >= 0, got {getattr(engine, name)}",
                              field=f"engine.{name}")
    for name in ("breaker_window", "call_timeout"):
        if not getattr(engine, name) > 0:
            raise ConfigError(f"engine.{name}: must be > 0, got {getattr(engine, name)}",
                              field=f"engine.{name}")
    if engine.breaker_errors < 1:
        raise ConfigError(f"engine.breaker_errors: must be >= 1, got {engine.breaker_errors}",
                          field="engine.breaker_errors")
    if not (engine.cash.is_finite() and engine.cash >= 0):
        raise ConfigError(f"engine.cash: must be >= 0, got {engine.cash}", field="engine.cash")
    if config.bus.url and not re.match(r"^(redis|rediss|unix)://", config.bus.url):
        raise ConfigError(f"bus.url: {config.bus.url!r} is not a redis:// address "
                          "(leave it empty for the in-process bus)", field="bus.url")
    if config.bus.url:
        from ..bus import Bus

        try:  # only made, not started: says whether the backend is installed
            Bus(config.bus.url)
        except ConfigError as exc:
            raise ConfigError(f"bus.url: {exc.message}", field="bus.url") from None
    risk = _limits(config.risk, "risk")
    bots: list[Bot] = []
    bot_risk: dict[str, RiskLimits] = {}
    seen: dict[str, int] = {}
    for n, spec in enumerate(config.bots):
        if spec.id in seen:
            raise ConfigError(f"bots[{n}].id: {spec.id!r} is also bots[{seen[spec.id]}]'s id",
                              field=f"bots[{n}].id")
        seen[spec.id] = n
        bots.append(_make_bot(n, spec, symbols))
        if spec.risk is not None:
            bot_risk[spec.id] = _limits(spec.risk, f"bots[{n}].risk")
    store = Path(config.store.path or default_store_path()).expanduser()
    if store.exists() and not store.is_file():
        raise ConfigError(f"store.path: {store} is not a file", field="store.path")
    token_file = Path(server.token_file).expanduser() if server.token_file else None
    return Prepared(config=config, bots=bots, risk=risk, bot_risk=bot_risk, store_path=store,
                    token_file=token_file, embedded=embedded)


EXAMPLE_CONFIG = '''\
# tickloop run configuration (`tickloop run THIS_FILE`; `tickloop run --check THIS_FILE`
# only validates it). Every key is optional: an absent key takes the value shown here, which
# is what `tickloop run` does with no file. Prices, sizes and cash are exact decimals: write
# them as strings ("0.01") or integers.

# The markets fed, charted and traded.
symbols = ["BTC-USD", "ETH-USD"]

[venue]
# sim, binance, coinbase or kraken.
name = "sim"
# The venue's WebSocket address. Without one, venue "sim" starts the embedded exchange in
# this process; `tickloop sim` prints the address of one running on its own.
# url = "ws://127.0.0.1:8765/ws"
# The venue's REST address, for the server's /api/markets (the embedded exchange's by default).
# rest_url = "http://127.0.0.1:8765"
# The embedded exchange: seed of its synthetic flow (absent: random), steps/s per market.
# seed = 7
rate = 20.0
# Seconds to wait at start for the venue to answer.
connect_timeout = 10.0

[store]
# The SQLite file of orders, fills, positions, equity and events ("" : the data directory,
# ~/.local/share/tickloop/tickloop.db).
path = ""

[bus]
# "" for the in-process bus, or a Redis URL (redis://127.0.0.1:6379/0): the Redis Streams bus.
url = ""

[server]
host = "127.0.0.1"     # a non-loopback address needs a token you chose
# port = 8000          # absent: 8000, or the next free one when taken (set: exactly this)
# The control token (Authorization: Bearer ...). "" : $TICKLOOP_TOKEN, else a new one written
# to token_file ("" : ~/.local/state/tickloop/token), readable only by you.
token = ""
token_file = ""
replay = 10000         # events each SSE replay ring keeps for resuming clients

[engine]
cash = "10000"         # each bot's starting paper cash, in the quote asset
equity_every = 5.0     # seconds between equity snapshots (the dashboard's equity curve)
breaker_errors = 5     # this many handler errors within breaker_window seconds pause a bot
breaker_window = 60.0
call_timeout = 30.0    # seconds a venue call (place, cancel) may take
stagger = 1.0          # seconds over which the bots' first ticks are spread

# Limits on all bots together (each absent: not checked). A [bots.risk] table sets one bot's.
[risk]
# max_position = "1"           # absolute base size per market
# max_order_notional = "5000"  # quote units per order
# max_open_orders = 20
# max_orders_per_second = 10
# max_daily_loss = "500"       # quote units
# price_band = "0.05"          # a limit price at most 5 % from the mid

# The bots, in paper mode. `class` is a class of tickloop.examples or "package.module:Class"
# (a subclass of tickloop.runtime.Bot); `params` are its Params struct's fields.
[[bots]]
id = "sma"
class = "SmaCross"
symbols = ["BTC-USD"]
every = 0.5
params = { fast = 5, slow = 20, size = "0.01" }

[[bots]]
id = "maker"
class = "MarketMaker"
symbols = ["ETH-USD"]
every = 1.0
params = { spread = "0.0005", size = "0.1", max_inventory = "0.5" }

[[bots]]
id = "meanrev"
class = "MeanReversion"
symbols = ["BTC-USD"]
every = 0.5
params = { window = 30, entry = "1.5", exit = "0.5", size = "0.01" }
# [bots.risk]
# max_position = "0.05"
'''
