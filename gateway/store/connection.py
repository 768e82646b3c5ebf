"""The SQLite connection (aiosqlite), and the only module that knows SQLite's library: opening the file (0600,
WAL, `busy_timeout`, `secure_delete`), the migrations, transactions on the one shared connection, and the
translation of its errors into `StoreFailure` at the store's boundary.

WAL mode and a busy timeout let the CLI write (add a user, revoke a token) while `serve` runs. The files are
created mode 0600 and deleted rows are zeroed (`secure_delete`): see "Secrets at rest" in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway import private
from gateway.store.records import StoreError, StoreFailure
from gateway.store.schema import MIGRATIONS

# What the aggregate modules hold, read rows as and catch, named here so that none of them imports SQLite's library.
Database = aiosqlite.Connection
Row = aiosqlite.Row
IntegrityError = aiosqlite.IntegrityError

T = TypeVar("T")


def os_error(exc: OSError, path: Path) -> str:
    """`strerror`, and the file it is about when that is not `path` (a parent directory that is a file)."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename and Path(exc.filename) != path else reason


async def connect(path: Path) -> aiosqlite.Connection:
    """Open (and migrate) the database; one that cannot be opened is a one-line `StoreError`.

    The database (so its -wal and -shm too) is created mode 0600 (`gateway.private`).
    """
    try:
        return await _connect(path)
    except (OSError, sqlite3.Error) as exc:
        detail = os_error(exc, path) if isinstance(exc, OSError) else str(exc)
        raise StoreError(f"store.url: cannot open the database {path}: {detail}") from None


async def _connect(path: Path) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    private.create(path)
    for companion in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        private.tighten(companion)
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA busy_timeout = 5000")
        # Deleted rows (ended sessions, removed factors, used codes) are overwritten with zeros, not left in
        # free pages.
        await db.execute("PRAGMA secure_delete = ON")
        await db.execute("PRAGMA journal_mode = WAL")
        # WAL with synchronous=NORMAL: no fsync per commit, never corrupt; a power cut may lose the last writes.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await _migrate(db)
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection) -> None:
    row = next(iter(await db.execute_fetchall("PRAGMA user_version")), None)
    version = int(row[0]) if row else 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")


def translate_errors(cls: type[T]) -> type[T]:
    """Every public coroutine method of `cls`, its own and inherited, raises `StoreFailure` where SQLite raised:
    callers never catch (or see) the backend's exceptions."""
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
        except sqlite3.Error as exc:
            raise StoreFailure(str(exc)) from exc

    return call


class Connection:
    """The shared connection, and the ways the aggregates use it."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._connection: aiosqlite.Connection | None = db
        self._transaction_lock = asyncio.Lock()

    @property
    def _db(self) -> aiosqlite.Connection:
        """The connection, while the store is open: a closed store's methods raise `StoreFailure`, not the
        backend's own error."""
        if self._connection is None:
            raise StoreFailure("the store is closed")
        return self._connection

    async def close(self) -> None:
        """Close the connection (a second close does nothing)."""
        db, self._connection = self._connection, None
        if db is not None:
            await db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """A multi-statement change, one at a time.

        NOTE: the connection is shared by every coroutine; the lock keeps two transactions apart, and the
        upload path opens one only to record an accepted upload (`record_upload`). A statement another coroutine
        issues meanwhile joins the transaction, which is harmless unless it rolls back, on an error; the throttle's
        statements and the audit's, which must not be lost so, wait for the lock instead (`_outside`).
        """
        async with self._transaction_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _in_one_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Statements that change the store together, run as one transaction in one call to the database's thread
        (a round trip per statement was most of what recording a small upload cost). Nothing another coroutine
        issues can run between them; the lock keeps them out of any other coroutine's open transaction."""

        def run(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for sql, parameters in statements:
                    connection.execute(sql, parameters)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

        async with self._transaction_lock:
            await self._on_thread(run)

    async def _on_thread(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """`work` on the connection, on aiosqlite's thread. NOTE: aiosqlite has no public call for this; its
        private `_execute` is the queue every one of its own calls goes through."""
        db = self._db
        await db._execute(lambda: work(db._conn))  # type: ignore[no-untyped-call]

    async def _row(self, sql: str, parameters: Mapping[str, Any] | Sequence[Any] = ()) -> aiosqlite.Row | None:
        """A query's first row, read in one call to the database's thread (a cursor's execute, fetch and close
        are three, each a hop to that thread and back: most of what a small upload spent in the store)."""
        rows = await self._db.execute_fetchall(sql, parameters)
        return next(iter(rows), None)

    async def _returning(self, sql: str, parameters: Mapping[str, Any] | tuple[Any, ...]) -> list[aiosqlite.Row]:
        """A write with RETURNING, run and read to its end in one call: a statement left half-read is still
        in progress, and would make another coroutine's COMMIT on the shared connection fail."""
        return list(await self._db.execute_fetchall(sql, parameters))

    async def ping(self) -> None:
        await self._row("SELECT 1")
