"""The database under the store, SQLite or PostgreSQL through one code path (SQLAlchemy 2 Core): the engines,
where their calls run, their connection settings, transactions, and the translation of every error the backend
raises into `StoreFailure` at the store's boundary. The only module that knows the drivers (the standard library's
sqlite3, psycopg 3).

Each multi-statement change is one transaction on a pooled connection of its own (`Connection._transaction`); a
statement a method issues inside it joins it (a context variable, so only the coroutine that opened it does).
Concurrency is the database's to make safe: unique constraints, `INSERT … ON CONFLICT`, conditional updates, row
and advisory locks. Reads go through a second engine in autocommit, so a read is one round trip.

SQLite: calls run on threads of the store's own (`_SQLite`); the file and its -wal/-shm are 0600
(`gateway.private`), WAL, `busy_timeout`, `secure_delete` (deleted rows zeroed), foreign keys; write transactions
are `BEGIN IMMEDIATE` (SQLAlchemy's pysqlite recipe: the driver's own BEGIN is off, the engine's `begin` event
sends ours), so two writers never deadlock upgrading a read lock. PostgreSQL: psycopg's async engines;
`connect_timeout` and a pool timeout, so an unreachable database is a `StoreFailure` within seconds, never a hang.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import inspect
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, RowMapping, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Executable
from sqlalchemy.util import greenlet_spawn

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
    """SQLAlchemy's URL with the driver the store uses: the standard library's sqlite3, or psycopg 3 for
    `postgresql://`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    return parsed.set(drivername="postgresql+psycopg")


class Database(abc.ABC):
    """The two engines over one database, SQLAlchemy's synchronous ones: `writer` (transactions) and `reader`
    (autocommit reads); and where their calls run (`on_writer`, `on_reader`), each store call one trip from the
    event loop."""

    def __init__(self, writer: Engine, reader: Engine) -> None:
        self.writer = writer
        self.reader = reader

    @property
    def dialect(self) -> str:
        """The backend's name: sqlite or postgresql."""
        return self.writer.dialect.name

    @property
    def single(self) -> Engine:
        """Where a write that is one statement runs, atomic by itself without BEGIN and COMMIT around it: SQLite's
        writer (a write statement takes SQLite's write lock as it starts, so it never upgrades a read lock),
        PostgreSQL's autocommit reader."""
        if self.dialect == "sqlite":
            return self.writer.execution_options(**{_ONE_STATEMENT: True})
        return self.reader

    def writing(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The right to write, held for a change's whole transaction: a turn at SQLite's one writer connection;
        PostgreSQL's pool is the limit."""
        return contextlib.nullcontext()

    async def on_writer(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` with the writer's connections (inside `writing`)."""
        return await greenlet_spawn(call, *args)

    async def on_reader(self, call: Callable[..., T], *args: Any) -> T:
        return await greenlet_spawn(call, *args)

    async def begin(self) -> SyncConnection:
        """A connection of the writer's in a transaction (inside `writing`)."""
        return await self.on_writer(_begin, self.writer)

    def libpq_url(self) -> str:
        """The database's URL for a connection of psycopg's own, outside the pools (the change listener)."""
        url = self.writer.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    @abc.abstractmethod
    async def dispose(self) -> None:
        """Close every pooled connection."""


class _PostgreSQL(Database):
    """psycopg 3's async engines, their synchronous faces driven in one greenlet per call on the event loop
    (`greenlet_spawn`, what every AsyncConnection method does once per call)."""

    def __init__(self, writer: AsyncEngine, reader: AsyncEngine) -> None:
        super().__init__(writer.sync_engine, reader.sync_engine)
        self._engines = (writer, reader)

    async def dispose(self) -> None:
        for engine in self._engines:
            await engine.dispose()


class _SQLite(Database):
    """pysqlite's engines, their calls on threads of the store's own: the writer's on one thread, in the order
    they were made, reads on a few others. A statement of SQLite's takes microseconds and a trip to a thread and
    back hundreds on a loaded machine, so a store call is one trip, whatever it runs (not one per statement).

    The writer has one connection, taken in turn (`writing`) for a transaction's several calls; this process's
    writers queue for it in order instead of polling SQLite's busy lock (other processes, the CLI beside `serve`,
    wait on `busy_timeout`). A writer's call runs to its end once made, its caller cancelled or not, so the
    rollback a cancelled transaction queues runs after it, on the same thread, before any other writer's call.
    """

    READERS = 4

    def __init__(self, writer: Engine, reader: Engine) -> None:
        super().__init__(writer, reader)
        self._turn = asyncio.Semaphore(1)
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader_threads = ThreadPoolExecutor(self.READERS, thread_name_prefix="store-reader")

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(POOL_TIMEOUT):
                await self._turn.acquire()
        except TimeoutError:
            raise StoreFailure("no database connection became free in time", outage=True) from None
        try:
            yield
        finally:
            self._turn.release()

    async def on_writer(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.shield(asyncio.wrap_future(self._writer_thread.submit(call, *args)))

    async def on_reader(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._reader_threads.submit(call, *args))

    async def begin(self) -> SyncConnection:
        begun = self._writer_thread.submit(_begin, self.writer)
        try:
            return await asyncio.shield(asyncio.wrap_future(begun))
        except asyncio.CancelledError:
            # Queued now, before the turn is given up: nothing else runs on the connection until it is ended.
            self._writer_thread.submit(_end_begun, begun)
            raise

    async def dispose(self) -> None:
        await self.on_writer(self.writer.dispose)
        await self.on_reader(self.reader.dispose)
        self._writer_thread.shutdown(wait=False)
        self._reader_threads.shutdown(wait=False)


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
        # Connections move between the store's threads (a reader's pool), one thread at a time.
        common["connect_args"] = {"check_same_thread": False}
        writer = create_engine(driver_url, pool_size=1, max_overflow=0, **common)
        reader = create_engine(
            driver_url,
            pool_size=_SQLite.READERS,
            max_overflow=0,
            isolation_level="AUTOCOMMIT",
            skip_autocommit_rollback=True,
            **common,
        )
        for engine in (writer, reader):
            event.listen(engine, "connect", _sqlite_settings)
        event.listen(writer, "begin", _begin_immediate)
        return _SQLite(writer, reader)
    common["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    # A connection the server dropped (a restart) is found at checkout: the writer's (pinged; a write costs three
    # round trips anyway) before a write can fail on it, the reader's by the read that fails on it, which
    # invalidates the reader's whole pool. So once the database is back, nothing fails on the outage's leftovers.
    async_writer = create_async_engine(driver_url, pool_size=5, max_overflow=10, pool_pre_ping=True, **common)
    async_reader = create_async_engine(
        driver_url, pool_size=5, max_overflow=10, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, **common
    )
    return _PostgreSQL(async_writer, async_reader)


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


_ONE_STATEMENT = "gateway_one_statement"


def _begin_immediate(connection: Any) -> None:
    if not connection.get_execution_options().get(_ONE_STATEMENT):
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
        await database.on_writer(_checked, database.writer, check)
    except StoreError:
        await database.dispose()
        raise
    except (SQLAlchemyError, sqlite3.Error, psycopg.Error, OSError) as exc:
        await database.dispose()
        raise StoreError(f"store.url: cannot open the database {shown}: {describe(exc)}") from None
    return database


def _checked(engine: Engine, check: Callable[[SyncConnection], None]) -> None:
    with engine.begin() as connection:
        check(connection)


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
    """A transaction in progress: its connection, the audit events it recorded, and on PostgreSQL the first one's
    id once it holds the audit's lock (`gateway.store.audit`)."""

    owner: Connection
    connection: SyncConnection
    entries: list[AuditEvent] = field(default_factory=list)
    audit_id: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What one statement did: the rows it changed, and the rows it returned (read to their end)."""

    rowcount: int
    rows: list[RowMapping]


Step = tuple[Executable, Parameters]

_OPEN: ContextVar[Transaction | None] = ContextVar("gateway_store_transaction", default=None)


# A read is one call, a transaction's statements one call together where the method knows them all (`_steps`),
# not a call per connect, begin, execute, commit and close.
def _run(connection: SyncConnection, steps: Sequence[Step]) -> list[Outcome]:
    outcomes = []
    for statement, parameters in steps:
        result = connection.execute(statement, parameters)
        outcomes.append(Outcome(result.rowcount, list(result.mappings()) if result.returns_rows else []))
    return outcomes


def _run_alone(engine: Engine, steps: Sequence[Step]) -> list[Outcome]:
    with engine.begin() as connection:
        return _run(connection, steps)


def _run_single(engine: Engine, step: Step) -> Outcome:
    with engine.connect() as connection:
        (outcome,) = _run(connection, [step])
        connection.commit()
        return outcome


def _read(engine: Engine, step: Step) -> list[RowMapping]:
    with engine.connect() as connection:
        return _run(connection, [step])[0].rows


def _begin(engine: Engine) -> SyncConnection:
    connection = engine.connect()
    try:
        connection.begin()
    except BaseException:
        connection.close()
        raise
    return connection


def _end_begun(begun: Future[SyncConnection]) -> None:
    """On the writer's thread, after `begun` ran there: end the transaction it began, whose caller left."""
    if begun.exception() is None:
        _end(begun.result(), commit=False)


def _end(connection: SyncConnection, *, commit: bool) -> None:
    try:
        if commit:
            connection.commit()
        else:
            connection.rollback()
    finally:
        connection.close()


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
        database = self._db
        async with database.writing():
            connection = await database.begin()
            open_ = Transaction(self, connection)
            token = _OPEN.set(open_)
            try:
                yield open_
            except BaseException:
                _OPEN.reset(token)
                await database.on_writer(functools.partial(_end, connection, commit=False))
                raise
            _OPEN.reset(token)
            await database.on_writer(functools.partial(_end, connection, commit=True))

    async def _steps(self, steps: Sequence[Step]) -> list[Outcome]:
        """Statements that change the store together, in one call: in the open transaction, or as one of their
        own."""
        joined = self._joined()
        database = self._db
        if joined is not None:
            return await database.on_writer(_run, joined.connection, steps)
        async with database.writing():
            if len(steps) == 1:
                return [await database.on_writer(_run_single, database.single, steps[0])]
            return await database.on_writer(_run_alone, database.writer, steps)

    async def _execute(self, statement: Executable, parameters: Parameters = None) -> int:
        """A write; how many rows it changed. Outside a transaction it is one of its own."""
        return (await self._steps([(statement, parameters)]))[0].rowcount

    async def _returning(self, statement: Executable, parameters: Parameters = None) -> list[RowMapping]:
        """A write with RETURNING, read to its end before its transaction ends."""
        return (await self._steps([(statement, parameters)]))[0].rows

    async def _rows(self, statement: Executable, parameters: Parameters = None) -> list[RowMapping]:
        """A read: in the open transaction if there is one, else one autocommit round trip."""
        joined = self._joined()
        if joined is not None:
            return (await self._db.on_writer(_run, joined.connection, [(statement, parameters)]))[0].rows
        return await self._db.on_reader(_read, self._db.reader, (statement, parameters))

    async def _row(self, statement: Executable, parameters: Parameters = None) -> RowMapping | None:
        rows = await self._rows(statement, parameters)
        return rows[0] if rows else None

    async def ping(self) -> None:
        await self._rows(_PING)


_PING = text("SELECT 1")
