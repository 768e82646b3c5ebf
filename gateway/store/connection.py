"""The database under the store, SQLite or PostgreSQL through one code path (SQLAlchemy 2 Core, async): the engines,
their connection settings, transactions, and the translation of every error the backend raises into `StoreFailure`
at the store's boundary. The only module that knows the drivers (aiosqlite, psycopg 3).

Each multi-statement change is one transaction on a pooled connection of its own (`Connection._transaction`); a
statement a method issues inside it joins it (a context variable, so only the coroutine that opened it does).
Concurrency is the database's to make safe: unique constraints, `INSERT … ON CONFLICT`, conditional updates, row
and advisory locks. Reads go through a second engine in autocommit, so a read is one round trip.

SQLite: the file and its -wal/-shm are 0600 (`gateway.private`), WAL, `busy_timeout`, `secure_delete` (deleted rows
zeroed), foreign keys; write transactions are `BEGIN IMMEDIATE` (SQLAlchemy's pysqlite recipe: the driver's own
BEGIN is off, the engine's `begin` event sends ours), so two writers never deadlock upgrading a read lock. The
writer engine has one connection: this process's writers queue for it in order instead of polling SQLite's busy
lock; other processes (the CLI beside `serve`) wait on `busy_timeout`. PostgreSQL: `connect_timeout` and a pool
timeout, so an unreachable database is a `StoreFailure` within seconds, never a hang.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import URL, CursorResult, RowMapping, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Executable

from gateway import private
from gateway.config import redact_url
from gateway.store.records import AuditEvent, StoreError, StoreFailure

T = TypeVar("T")
Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None

BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT = 5  # seconds to reach PostgreSQL
POOL_TIMEOUT = 30.0  # seconds to wait for a pooled connection (SQLite's writer: the writers queued before)


def os_error(exc: OSError, path: Path) -> str:
    """`strerror`, and the file it is about when that is not `path` (a parent directory that is a file)."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename and Path(exc.filename) != path else reason


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL; None for any other."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def _driver_url(url: str) -> URL:
    """SQLAlchemy's URL with the driver the store uses: aiosqlite, or psycopg 3 for `postgresql://`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    return parsed.set(drivername="postgresql+psycopg")


@dataclass
class Database:
    """The two engines over one database: `writer` (transactions) and `reader` (autocommit reads)."""

    writer: AsyncEngine
    reader: AsyncEngine
    shown: str  # the URL with its password as ***, or the SQLite file's path

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.writer.dialect.name

    def libpq_url(self) -> str:
        """The database's URL for a connection of psycopg's own, outside the pools (the change listener)."""
        url = self.writer.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def dispose(self) -> None:
        await self.writer.dispose()
        await self.reader.dispose()


def open_engines(url: str) -> Database:
    """The engines of `url`; nothing is connected yet (`connect` checks the schema, so it connects)."""
    path = sqlite_path(url)
    driver_url = _driver_url(url)
    # No SQL parameter (a token's secret, a TOTP seed) in an error's text: StoreFailure carries the driver's.
    # `preserve_rowcount`: an INSERT's rowcount too (psycopg's is gone once SQLAlchemy closes the cursor), which
    # `INSERT … ON CONFLICT DO NOTHING` callers read.
    common: dict[str, Any] = {
        "hide_parameters": True,
        "pool_timeout": POOL_TIMEOUT,
        "execution_options": {"preserve_rowcount": True},
    }
    if path is not None:
        writer = create_async_engine(driver_url, pool_size=1, max_overflow=0, **common)
        reader = create_async_engine(driver_url, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, **common)
        for engine in (writer, reader):
            event.listen(engine.sync_engine, "connect", _sqlite_settings)
        event.listen(writer.sync_engine, "begin", _begin_immediate)
        return Database(writer, reader, str(path))
    common["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    writer = create_async_engine(driver_url, pool_size=5, max_overflow=10, **common)
    reader = create_async_engine(
        driver_url, pool_size=5, max_overflow=10, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, **common
    )
    return Database(writer, reader, redact_url(url))


def _sqlite_settings(connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # The driver must not BEGIN by itself: the writer's `begin` event does, IMMEDIATE (`_begin_immediate`).
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Deleted rows (ended sessions, removed factors, used codes) are overwritten with zeros, not left in free pages.
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    # WAL with synchronous=NORMAL: no fsync per commit, never corrupt; a power cut may lose the last writes.
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def prepare_file(path: Path) -> None:
    """The SQLite file and its directory, the file (so its -wal and -shm too) created 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private.create(path)
    for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        private.tighten(companion)


async def connect(url: str, check: Callable[[Any], None]) -> Database:
    """Open the database of `url` and run `check(sync_connection)` in one write transaction (the schema's check or
    migration); a database that cannot be opened is a one-line `StoreError` naming it (never its password)."""
    path = sqlite_path(url)
    shown = str(path) if path is not None else redact_url(url)
    try:
        if path is not None:
            prepare_file(path)
        database = open_engines(url)
    except OSError as exc:
        raise StoreError(f"store.url: cannot open the database {shown}: {os_error(exc, path or Path())}") from None
    try:
        async with database.writer.begin() as connection:
            await connection.run_sync(check)
    except StoreError:
        await database.dispose()
        raise
    except (SQLAlchemyError, sqlite3.Error, psycopg.Error, OSError) as exc:
        await database.dispose()
        raise StoreError(f"store.url: cannot open the database {shown}: {describe(exc)}") from None
    return database


def describe(exc: BaseException) -> str:
    """The first line of the driver's message (never the statement or its parameters)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(cause, PoolTimeout):
        return "no database connection became free in time"
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def is_outage(exc: BaseException) -> bool:
    """The database cannot be reached or is busy past its timeouts (not a statement's fault): worth a retry."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, psycopg.OperationalError):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def translate_errors(cls: type[T]) -> type[T]:
    """Every public coroutine method of `cls`, its own and inherited, raises `StoreFailure` where the backend
    raised: callers never catch (or see) SQLAlchemy's or a driver's exceptions."""
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            if not name.startswith("_") and inspect.iscoroutinefunction(member):
                setattr(cls, name, _translated(member))
    return cls


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except (SQLAlchemyError, sqlite3.Error, psycopg.Error) as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            raise StoreFailure(describe(exc), outage=is_outage(exc)) from cause

    return call


@dataclass
class Transaction:
    """A transaction in progress: its connection, the audit events it recorded, and whether it holds the audit's
    lock (PostgreSQL)."""

    owner: Connection
    connection: AsyncConnection
    entries: list[AuditEvent] = field(default_factory=list)
    audit_locked: bool = False


_OPEN: ContextVar[Transaction | None] = ContextVar("gateway_store_transaction", default=None)


class Connection:
    """The database, and the ways the aggregates use it."""

    def __init__(self, database: Database) -> None:
        self._database: Database | None = database

    @property
    def _db(self) -> Database:
        """The engines, while the store is open: a closed store's methods raise `StoreFailure`, not the backend's
        own error."""
        if self._database is None:
            raise StoreFailure("the store is closed")
        return self._database

    async def close(self) -> None:
        """Close every pooled connection (a second close does nothing)."""
        database, self._database = self._database, None
        if database is not None:
            await database.dispose()

    def _joined(self) -> Transaction | None:
        open_ = _OPEN.get()
        return open_ if open_ is not None and open_.owner is self else None

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        """A multi-statement change: one transaction on a connection of its own, committed when the block ends and
        rolled back if it raises (or is cancelled). Statements the block issues (`_execute`, `_rows`…) run in it;
        a `_transaction` inside it joins it."""
        joined = self._joined()
        if joined is not None:
            yield joined
            return
        async with self._db.writer.begin() as connection:
            open_ = Transaction(self, connection)
            token = _OPEN.set(open_)
            try:
                yield open_
            finally:
                _OPEN.reset(token)

    async def _execute(self, statement: Executable, parameters: Parameters = None) -> int:
        """A write; how many rows it changed. Outside a transaction it is one of its own."""
        async with self._transaction() as open_:
            result: CursorResult[Any] = await open_.connection.execute(statement, parameters)
            return result.rowcount

    async def _returning(self, statement: Executable, parameters: Parameters = None) -> list[RowMapping]:
        """A write with RETURNING, read to its end before its transaction ends."""
        async with self._transaction() as open_:
            return list((await open_.connection.execute(statement, parameters)).mappings())

    async def _rows(self, statement: Executable, parameters: Parameters = None) -> list[RowMapping]:
        """A read: in the open transaction if there is one, else one autocommit round trip."""
        joined = self._joined()
        if joined is not None:
            return list((await joined.connection.execute(statement, parameters)).mappings())
        async with self._db.reader.connect() as connection:
            return list((await connection.execute(statement, parameters)).mappings())

    async def _row(self, statement: Executable, parameters: Parameters = None) -> RowMapping | None:
        rows = await self._rows(statement, parameters)
        return rows[0] if rows else None

    async def ping(self) -> None:
        await self._rows(_PING)


_PING = text("SELECT 1")
