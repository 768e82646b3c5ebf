"""SQLAlchemy's aiosqlite adapter with one trip to aiosqlite's thread per statement instead of four.

SQLAlchemy's adapter makes a cursor, executes, fetches and closes it, each a hop to the connection's thread and
back; on a loaded machine a hop costs a few hundred microseconds, and a small upload's dozen statements made its
store time eight times the old shared connection's. Here the whole statement runs in one call on that thread, and
a commit or rollback with no transaction open (the pool's reset of an autocommit read) costs none. The engine
takes this as its DBAPI (`create_async_engine(…, module=DBAPI)`); everything else is SQLAlchemy's dialect.

NOTE: aiosqlite has no public call that runs a function on its thread; its private `_execute` is the queue every
one of its own calls goes through (aiosqlite 0.20 to 0.22).
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Result = tuple[Any, int, int | None, list[Any]]


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Result:
    """On aiosqlite's thread: the statement, its rows and what the cursor says of it."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that holds a statement's results, read in the one call that ran it (no aiosqlite cursor)."""

    __slots__ = ("_done_description", "_done_lastrowid", "_done_rowcount")
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._done_description: Any = None
        self._done_rowcount = -1
        self._done_lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._done_description

    @property
    def rowcount(self) -> int:
        return self._done_rowcount

    @property
    def lastrowid(self) -> Any:
        return self._done_lastrowid

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._one_call(operation, parameters, many=False))
        except Exception as error:  # noqa: BLE001 - translated as SQLAlchemy's adapter does
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        try:
            return await_(self._one_call(operation, seq_of_parameters, many=True))
        except Exception as error:  # noqa: BLE001 - translated as SQLAlchemy's adapter does
            self._adapt_connection._handle_exception(error)

    async def _one_call(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection: Any = self._connection  # an aiosqlite.Connection
        async with self._adapt_connection._execute_mutex:
            result: _Result = await connection._execute(_run, connection._conn, operation, parameters, many)
        self._done_description, self._done_rowcount, self._done_lastrowid, rows = result
        self._rows = collections.deque(rows)


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _Cursor

    def _in_transaction(self) -> bool:
        raw = self._connection._connection
        return raw is not None and raw.in_transaction

    def rollback(self) -> None:
        if self._in_transaction():
            super().rollback()

    def commit(self) -> None:
        if self._in_transaction():
            super().commit()


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # as SQLAlchemy's: a forgotten connection does not hold the process
        return _Connection(self, await_(connection))


DBAPI = _DBAPI(aiosqlite, sqlite3)
