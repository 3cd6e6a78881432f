"""The runtime's store: orders, fills, positions, events, equity and bot state in SQLite.

One file, opened through aiosqlite (sqlite3 in a worker thread, so the event loop never waits on
the disk) in WAL mode with ``synchronous=NORMAL``: a crash, even SIGKILL mid-write, leaves the
database consistent and loses at most the transactions not yet checkpointed, never half of one.

Writes are batched: :meth:`Store.write` takes a list of records and commits them in one
transaction (all or none). :meth:`Store.consume` drains a lossless bus subscription in batches
(every event waiting when a batch starts, up to ``batch`` of them), so the bus buffer is the
store's bounded queue and its backpressure the overflow policy: nothing the store subscribes to
is dropped. ``written`` counts the records committed.

Tables (schema version 3; ``schema_version`` holds the version, and :data:`MIGRATIONS` brings
any older file up to date at open, one transaction per step):

============  ======================================================================
orders        the latest state of each order, keyed by (venue, client_order_id); the live
              executor journals an order here (status ``pending``) before sending it
fills         every fill, unique per (venue, order_id, trade_id): a replay is a no-op
positions     the latest position per (bot, venue, symbol)
events        platform events (bot errors, breaker, risk rejections, loop blocks...) as JSON
equity        equity snapshots
bot_state     each bot's persisted ``state`` as JSON
backtest_*    (version 2) one ``backtest_runs`` row per backtest (bot, class, parameters,
              data span, metrics as JSON, digest) and its ``backtest_orders``,
              ``backtest_fills`` and ``backtest_equity`` rows (:meth:`Store.write_backtest`);
              (version 3) its final ``backtest_positions``
============  ======================================================================

Prices and sizes are stored as text, exactly as the Decimals print. Times are integer
nanoseconds since the epoch. The query methods return :class:`Page` s in insertion order,
filtered by bot, symbol and time, continued with the page's ``next`` cursor (keyset paging: a
page costs the same however deep).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from ..bus.events import Event
from ..bus.subscription import Subscription
from ..exceptions import ConfigError, StoreError
from ..models import Equity, Fill, Liquidity, Order, OrderEvent, Position, Side

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Page", "Record", "Store"]

#: Step ``i`` brings a database from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        bot TEXT NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,
        client_order_id TEXT NOT NULL, order_id TEXT,
        side TEXT NOT NULL, type TEXT NOT NULL, price TEXT, size TEXT NOT NULL,
        filled_size TEXT NOT NULL, avg_price TEXT, status TEXT NOT NULL,
        time_in_force TEXT NOT NULL, post_only INTEGER NOT NULL, reject_reason TEXT,
        created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL,
        UNIQUE (venue, client_order_id)
    );
    CREATE INDEX orders_bot ON orders (bot, id);
    CREATE INDEX orders_symbol ON orders (symbol, id);
    CREATE INDEX orders_status ON orders (status);
    CREATE TABLE fills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        bot TEXT NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,
        order_id TEXT NOT NULL, client_order_id TEXT, trade_id INTEGER NOT NULL,
        side TEXT NOT NULL, price TEXT NOT NULL, size TEXT NOT NULL, fee TEXT NOT NULL,
        fee_asset TEXT, liquidity TEXT NOT NULL, ts INTEGER NOT NULL,
        UNIQUE (venue, order_id, trade_id)
    );
    CREATE INDEX fills_bot ON fills (bot, id);
    CREATE INDEX fills_symbol ON fills (symbol, id);
    CREATE TABLE positions (
        bot TEXT NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL,
        size TEXT NOT NULL, avg_price TEXT, realized_pnl TEXT NOT NULL, ts INTEGER NOT NULL,
        PRIMARY KEY (bot, venue, symbol)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        bot TEXT, type TEXT NOT NULL, topic TEXT NOT NULL, ts INTEGER NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_bot ON events (bot, id);
    CREATE INDEX events_type ON events (type, id);
    CREATE TABLE equity (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        bot TEXT, ts INTEGER NOT NULL, equity TEXT NOT NULL, cash TEXT NOT NULL,
        realized_pnl TEXT NOT NULL, unrealized_pnl TEXT NOT NULL
    );
    CREATE INDEX equity_bot ON equity (bot, id);
    CREATE TABLE bot_state (
        bot TEXT PRIMARY KEY, state TEXT NOT NULL, ts INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE backtest_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        bot TEXT NOT NULL, class TEXT NOT NULL, params TEXT NOT NULL, symbols TEXT NOT NULL,
        bar_seconds INTEGER NOT NULL, start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL,
        candles INTEGER NOT NULL, metrics TEXT NOT NULL, digest TEXT NOT NULL,
        created_ts INTEGER NOT NULL
    );
    CREATE TABLE backtest_orders (
        run INTEGER NOT NULL REFERENCES backtest_runs (id), seq INTEGER NOT NULL,
        order_id TEXT NOT NULL, client_order_id TEXT, symbol TEXT NOT NULL, side TEXT NOT NULL,
        type TEXT NOT NULL, price TEXT, size TEXT NOT NULL, filled_size TEXT NOT NULL,
        avg_price TEXT, status TEXT NOT NULL, reject_reason TEXT,
        created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL,
        PRIMARY KEY (run, seq)
    );
    CREATE TABLE backtest_fills (
        run INTEGER NOT NULL REFERENCES backtest_runs (id), seq INTEGER NOT NULL,
        order_id TEXT NOT NULL, trade_id INTEGER NOT NULL, symbol TEXT NOT NULL,
        side TEXT NOT NULL, price TEXT NOT NULL, size TEXT NOT NULL, fee TEXT NOT NULL,
        fee_asset TEXT, liquidity TEXT NOT NULL, ts INTEGER NOT NULL,
        PRIMARY KEY (run, seq)
    );
    CREATE TABLE backtest_equity (
        run INTEGER NOT NULL REFERENCES backtest_runs (id), seq INTEGER NOT NULL,
        ts INTEGER NOT NULL, equity TEXT NOT NULL, exposed INTEGER NOT NULL,
        PRIMARY KEY (run, seq)
    );
    """,
    """
    CREATE TABLE backtest_positions (
        run INTEGER NOT NULL REFERENCES backtest_runs (id), seq INTEGER NOT NULL,
        symbol TEXT NOT NULL, size TEXT NOT NULL, avg_price TEXT, realized_pnl TEXT NOT NULL,
        PRIMARY KEY (run, seq)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Record:
    """One thing to store for ``bot``: an Order, Fill, Position, Equity, OrderEvent (its order,
    and its fill if any), a platform event (any other model: ``topic`` says where it was
    published) or, with ``state=True``, the bot's state (a JSON-able value)."""

    bot: str | None
    payload: Any
    topic: str = ""
    ts: int = 0
    state: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query: ``items`` as dicts (column -> value), and ``next``, the cursor
    for the following page (None on the last one)."""

    items: list[dict[str, Any]]
    next: int | None


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class Store:
    """The SQLite store (see the module docstring). ``await Store.open(path)`` or
    ``async with Store(path) as store``."""

    def __init__(self, path: str | Path, *, batch: int = 1000) -> None:
        if batch < 1:
            raise ConfigError(f"batch must be >= 1, got {batch!r}", field="batch")
        self.path = Path(path)
        self.batch = batch
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        #: Records committed.
        self.written = 0
        #: Transactions committed.
        self.transactions = 0
        #: True while :meth:`consume` holds a batch it has not committed yet.
        self.consuming = False
        self._batch_done = asyncio.Event()

    @classmethod
    async def open(cls, path: str | Path, *, batch: int = 1000) -> Store:
        store = cls(path, batch=batch)
        await store.start()
        return store

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"store {self.path} is not open")
        return self._db

    async def start(self) -> None:
        if self._db is not None:
            return
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._migrate()
        except sqlite3.Error as exc:
            await self.close()
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        except BaseException:
            await self.close()  # e.g. a schema newer than this tickloop: no thread left behind
            raise

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                await db.close()
            except sqlite3.Error as exc:
                raise StoreError(f"closing store {self.path}: {exc}") from exc

    async def _migrate(self) -> None:
        db = self.db
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with db.execute("SELECT version FROM schema_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row is not None else 0
        if row is None:
            await db.execute("INSERT INTO schema_version (version) VALUES (0)")
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {version}, newer than "
                             f"this tickloop's {SCHEMA_VERSION}")
        for step in range(version, SCHEMA_VERSION):
            script = MIGRATIONS[step]
            # executescript commits first; the BEGIN..COMMIT inside makes each step atomic
            await db.executescript(
                f"BEGIN;\n{script}\nUPDATE schema_version SET version = {step + 1};\nCOMMIT;")

    async def schema_version(self) -> int:
        async with self.db.execute("SELECT version FROM schema_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row is not None else 0

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for a sound database."""
        async with self.db.execute("PRAGMA integrity_check") as cur:
            rows = await cur.fetchall()
        return "; ".join(str(r[0]) for r in rows)

    # ------------------------------------------------------------------ writing

    async def write(self, records: Sequence[Record]) -> int:
        """Commit ``records`` in one transaction; returns how many were written."""
        if not records:
            return 0
        rows = _Rows()
        for record in records:
            rows.add(record)
        async with self._lock:
            db = self.db
            try:
                await db.execute("BEGIN")
                try:
                    await rows.execute(db)
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"writing {len(records)} records to {self.path}: {exc}") \
                    from exc
        self.written += len(records)
        self.transactions += 1
        return len(records)

    async def write_backtest(self, run: dict[str, Any], orders: Sequence[Order],
                             fills: Sequence[Fill], equity: Sequence[tuple[int, Decimal, bool]],
                             positions: Sequence[Position] = ()) -> int:
        """Store one backtest run (``run``: the ``backtest_runs`` columns but ``id``; ``params``
        and ``metrics`` as JSON-able values) with its orders, fills, equity points and final
        positions, in one transaction; returns the run's id."""
        cols = ("bot", "class", "params", "symbols", "bar_seconds", "start_ts", "end_ts",
                "candles", "metrics", "digest", "created_ts")
        values = [(_encoder.encode(run[c]).decode() if c in ("params", "metrics", "symbols")
                   else run[c]) for c in cols]
        async with self._lock:
            db = self.db
            try:
                await db.execute("BEGIN")
                try:
                    cur = await db.execute(
                        f"INSERT INTO backtest_runs ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})", values)
                    run_id = cur.lastrowid
                    assert run_id is not None
                    await db.executemany(
                        "INSERT INTO backtest_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        [(run_id, i, o.id, o.client_order_id, o.symbol, str(o.side),
                          str(o.type), _text(o.price), str(o.size), str(o.filled_size),
                          _text(o.avg_price), str(o.status), o.reject_reason, o.created_ts,
                          o.updated_ts) for i, o in enumerate(orders)])
                    await db.executemany(
                        "INSERT INTO backtest_fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        [(run_id, i, f.order_id, f.trade_id, f.symbol, str(f.side),
                          str(f.price), str(f.size), str(f.fee), f.fee_asset, str(f.liquidity),
                          f.ts) for i, f in enumerate(fills)])
                    await db.executemany(
                        "INSERT INTO backtest_equity VALUES (?,?,?,?,?)",
                        [(run_id, i, ts, str(e), int(x)) for i, (ts, e, x) in enumerate(equity)])
                    await db.executemany(
                        "INSERT INTO backtest_positions VALUES (?,?,?,?,?,?)",
                        [(run_id, i, p.symbol, str(p.size), _text(p.avg_price),
                          str(p.realized_pnl)) for i, p in enumerate(positions)])
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"writing a backtest run to {self.path}: {exc}") from exc
        self.written += 1 + len(orders) + len(fills) + len(equity) + len(positions)
        self.transactions += 1
        return int(run_id)

    async def backtest_runs(self) -> list[dict[str, Any]]:
        """Every stored backtest run, oldest first (``params``, ``metrics`` and ``symbols``
        decoded)."""
        rows = await self._rows("SELECT * FROM backtest_runs ORDER BY id", ())
        for row in rows:
            for c in ("params", "metrics", "symbols"):
                row[c] = _decoder.decode(row[c])
        return rows

    async def backtest_rows(self, table: str, run: int) -> list[dict[str, Any]]:
        """A run's ``orders``, ``fills``, ``equity`` or ``positions`` rows, in order."""
        if table not in ("orders", "fills", "equity", "positions"):
            raise ConfigError(f"no backtest table {table!r} (orders, fills, equity or "
                              "positions)", field="table")
        return await self._rows(f"SELECT * FROM backtest_{table} WHERE run = ? ORDER BY seq",
                                (run,))

    async def record_intent(self, *, bot: str, venue: str, symbol: str, client_order_id: str,
                            side: str, type: str, price: str | None, size: str,
                            time_in_force: str, post_only: bool, created_ts: int) -> None:
        """Journal an order about to be sent (status ``pending``), committed before this
        returns; a client order id already journaled is left as it is."""
        async with self._lock:
            try:
                await self.db.execute(
                    """INSERT INTO orders (bot, venue, symbol, client_order_id, order_id, side,
                           type, price, size, filled_size, avg_price, status, time_in_force,
                           post_only, reject_reason, created_ts, updated_ts)
                       VALUES (?,?,?,?,NULL,?,?,?,?,'0',NULL,'pending',?,?,NULL,?,?)
                       ON CONFLICT (venue, client_order_id) DO NOTHING""",
                    (bot, venue, symbol, client_order_id, side, type, price, size,
                     time_in_force, int(post_only), created_ts, created_ts))
            except sqlite3.Error as exc:
                raise StoreError(f"journaling order {client_order_id}: {exc}") from exc
        self.written += 1

    async def fill_models(self, *, bot: str) -> list[Fill]:
        """Every fill of ``bot`` as :class:`~tickloop.models.Fill` s, oldest first."""
        out: list[Fill] = []
        after = None
        while True:
            page = await self.fills(bot=bot, limit=1000, after=after)
            out.extend(Fill(venue=r["venue"], symbol=r["symbol"], order_id=r["order_id"],
                            client_order_id=r["client_order_id"], trade_id=r["trade_id"],
                            side=Side(r["side"]), price=Decimal(r["price"]),
                            size=Decimal(r["size"]), fee=Decimal(r["fee"]),
                            fee_asset=r["fee_asset"], liquidity=Liquidity(r["liquidity"]),
                            ts=r["ts"]) for r in page.items)
            if page.next is None:
                return out
            after = page.next

    async def save_state(self, bot: str, state: Any, ts: int) -> None:
        await self.write([Record(bot, state, ts=ts, state=True)])

    async def consume(self, subscription: Subscription, *, bot_of: Any = None) -> None:
        """Write every event of ``subscription`` (make it ``policy="lossless"``) until it
        closes, in batches. ``bot_of(event)`` names the bot of an event (default: the last
        dotted part of its topic for ``bot.*``/``risk.*``/``order.*`` topics, else None)."""
        name_of = bot_of if bot_of is not None else default_bot_of
        batch = self.batch
        async for event in subscription:
            self.consuming = True
            try:
                events = [event]
                while len(events) < batch:
                    more = subscription.get_nowait()
                    if more is None:
                        break
                    events.append(more)
                await self.write([Record(name_of(e), e.payload, topic=e.topic, ts=e.ts)
                                  for e in events])
            finally:
                self.consuming = False
                self._batch_done.set()

    async def wait_drained(self, subscription: Subscription) -> None:
        """Return once :meth:`consume` has committed everything ``subscription`` delivered."""
        while len(subscription) or self.consuming:
            self._batch_done.clear()
            await self._batch_done.wait()

    # ------------------------------------------------------------------ reading

    async def load_state(self, bot: str) -> Any:
        async with self.db.execute("SELECT state FROM bot_state WHERE bot = ?", (bot,)) as cur:
            row = await cur.fetchone()
        return None if row is None else _decoder.decode(row[0])

    async def count(self, table: str) -> int:
        if table not in _TABLES:
            raise ConfigError(f"unknown table {table!r}", field="table")
        async with self.db.execute(f"SELECT COUNT(*) FROM {table}") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row is not None else 0

    async def orders(self, *, bot: str | None = None, symbol: str | None = None,
                     status: str | Iterable[str] | None = None, since: int | None = None,
                     until: int | None = None, limit: int = 100,
                     after: int | None = None) -> Page:
        """Orders (latest state), oldest first; ``status`` one or several statuses;
        ``since``/``until`` bound ``updated_ts`` (ns, inclusive/exclusive)."""
        where, args = _filters(bot=bot, symbol=symbol, since=since, until=until,
                               ts="updated_ts")
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        return await self._page("orders", where, args, limit, after)

    async def fills(self, *, bot: str | None = None, symbol: str | None = None,
                    since: int | None = None, until: int | None = None, limit: int = 100,
                    after: int | None = None) -> Page:
        where, args = _filters(bot=bot, symbol=symbol, since=since, until=until)
        return await self._page("fills", where, args, limit, after)

    async def events(self, *, bot: str | None = None, type: str | None = None,
                     since: int | None = None, until: int | None = None, limit: int = 100,
                     after: int | None = None) -> Page:
        """Platform events; each item's ``payload`` is the decoded JSON of the model."""
        where, args = _filters(bot=bot, since=since, until=until)
        if type is not None:
            where.append("type = ?")
            args.append(type)
        page = await self._page("events", where, args, limit, after)
        for item in page.items:
            item["payload"] = _decoder.decode(item["payload"])
        return page

    async def equity(self, *, bot: str | None = None, since: int | None = None,
                     until: int | None = None, limit: int = 100,
                     after: int | None = None) -> Page:
        where, args = _filters(bot=bot, since=since, until=until)
        return await self._page("equity", where, args, limit, after)

    async def positions(self, *, bot: str | None = None) -> list[dict[str, Any]]:
        where, args = _filters(bot=bot)
        sql = "SELECT * FROM positions" + (f" WHERE {' AND '.join(where)}" if where else "")
        return await self._rows(sql + " ORDER BY bot, venue, symbol", args)

    async def _page(self, table: str, where: list[str], args: list[Any], limit: int,
                    after: int | None) -> Page:
        if not 1 <= limit <= 10_000:
            raise ConfigError(f"limit must be within 1..10000, got {limit!r}", field="limit")
        if after is not None:
            where = [*where, "id > ?"]
            args = [*args, after]
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT ?"
        items = await self._rows(sql, [*args, limit + 1])
        more = len(items) > limit
        items = items[:limit]
        return Page(items, items[-1]["id"] if more and items else None)

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            async with self.db.execute(sql, tuple(args)) as cur:
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"query on {self.path}: {exc}") from exc


_TABLES = frozenset({"orders", "fills", "positions", "events", "equity", "bot_state"})


def default_bot_of(event: Event) -> str | None:
    """The bot an event concerns, from its payload's ``bot`` field, else None."""
    bot = getattr(event.payload, "bot", None)
    return bot if isinstance(bot, str) else None


def _filters(*, bot: str | None = None, symbol: str | None = None, since: int | None = None,
             until: int | None = None, ts: str = "ts") -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if bot is not None:
        where.append("bot = ?")
        args.append(bot)
    if symbol is not None:
        where.append("symbol = ?")
        args.append(symbol)
    if since is not None:
        where.append(f"{ts} >= ?")
        args.append(since)
    if until is not None:
        where.append(f"{ts} < ?")
        args.append(until)
    return where, args


class _Rows:
    """Records of one batch, grouped by table (one executemany per table and statement)."""

    __slots__ = ("equity", "events", "fills", "orders", "positions", "states")

    def __init__(self) -> None:
        self.orders: list[tuple[Any, ...]] = []
        self.fills: list[tuple[Any, ...]] = []
        self.positions: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.equity: list[tuple[Any, ...]] = []
        self.states: list[tuple[Any, ...]] = []

    def add(self, record: Record) -> None:
        payload = record.payload
        bot = record.bot or ""
        if record.state:
            self.states.append((bot, _encoder.encode(payload).decode(), record.ts))
            return
        match payload:
            case OrderEvent():
                self._order(bot, payload.order)
                if payload.fill is not None:
                    self._fill(bot, payload.fill)
            case Order():
                self._order(bot, payload)
            case Fill():
                self._fill(bot, payload)
            case Position():
                self.positions.append((bot, payload.venue, payload.symbol, str(payload.size),
                                       _text(payload.avg_price), str(payload.realized_pnl),
                                       record.ts))
            case Equity():
                self.equity.append((payload.bot, payload.ts, str(payload.equity),
                                    str(payload.cash), str(payload.realized_pnl),
                                    str(payload.unrealized_pnl)))
            case msgspec.Struct():
                tag = type(payload).__struct_config__.tag
                self.events.append((record.bot, str(tag or type(payload).__name__),
                                    record.topic, record.ts or getattr(payload, "ts", 0),
                                    _encoder.encode(payload).decode()))
            case _:
                raise ConfigError(f"cannot store a {type(payload).__name__}", field="payload")

    def _order(self, bot: str, o: Order) -> None:
        self.orders.append((bot, o.venue, o.symbol, o.client_order_id or o.id, o.id,
                            str(o.side), str(o.type), _text(o.price), str(o.size),
                            str(o.filled_size), _text(o.avg_price), str(o.status),
                            str(o.time_in_force), int(o.post_only), o.reject_reason,
                            o.created_ts, o.updated_ts))

    def _fill(self, bot: str, f: Fill) -> None:
        self.fills.append((bot, f.venue, f.symbol, f.order_id, f.client_order_id, f.trade_id,
                           str(f.side), str(f.price), str(f.size), str(f.fee), f.fee_asset,
                           str(f.liquidity), f.ts))

    async def execute(self, db: aiosqlite.Connection) -> None:
        if self.orders:
            # an update never moves an order back from a final state or loses its venue id
            await db.executemany(
                """INSERT INTO orders (bot, venue, symbol, client_order_id, order_id, side,
                       type, price, size, filled_size, avg_price, status, time_in_force,
                       post_only, reject_reason, created_ts, updated_ts)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (venue, client_order_id) DO UPDATE SET
                       order_id = COALESCE(excluded.order_id, orders.order_id),
                       filled_size = excluded.filled_size, avg_price = excluded.avg_price,
                       status = excluded.status, reject_reason = excluded.reject_reason,
                       updated_ts = excluded.updated_ts
                   WHERE orders.status NOT IN ('filled', 'canceled', 'rejected', 'expired')
                      OR excluded.status = orders.status""",
                self.orders)
        if self.fills:
            await db.executemany(
                """INSERT OR IGNORE INTO fills (bot, venue, symbol, order_id, client_order_id,
                       trade_id, side, price, size, fee, fee_asset, liquidity, ts)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)""", self.fills)
        if self.positions:
            await db.executemany(
                """INSERT INTO positions (bot, venue, symbol, size, avg_price, realized_pnl, ts)
                   VALUES (?,?,?,?,?,?,?)
                   ON CONFLICT (bot, venue, symbol) DO UPDATE SET size = excluded.size,
                       avg_price = excluded.avg_price, realized_pnl = excluded.realized_pnl,
                       ts = excluded.ts""", self.positions)
        if self.events:
            await db.executemany(
                "INSERT INTO events (bot, type, topic, ts, payload) VALUES (?,?,?,?,?)",
                self.events)
        if self.equity:
            await db.executemany(
                """INSERT INTO equity (bot, ts, equity, cash, realized_pnl, unrealized_pnl)
                   VALUES (?,?,?,?,?,?)""", self.equity)
        if self.states:
            await db.executemany(
                """INSERT INTO bot_state (bot, state, ts) VALUES (?,?,?)
                   ON CONFLICT (bot) DO UPDATE SET state = excluded.state, ts = excluded.ts""",
                self.states)
