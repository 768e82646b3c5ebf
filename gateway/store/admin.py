"""What the `db` commands do to a database as a whole: `upgrade` (the migrations, `gateway.store.schema`) and
`copy_store` (every table into another, empty database, in one transaction there, verified by row counts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Connection, TextClause, func, select, text
from sqlalchemy.util import greenlet_spawn

from gateway.store import tables
from gateway.store.connection import Database, connect
from gateway.store.records import StoreError
from gateway.store.schema import check, upgrade

BATCH = 1000  # rows per INSERT while copying


async def upgrade_store(url: str, issuer_urls: Mapping[str, str] | None = None) -> str:
    """Bring `url`'s schema to this gateway's head; what was done, in one line. `issuer_urls`: {configured issuer
    name: URL}, which r0005 binds the publishers of before it to."""
    done: list[str] = []
    database = await connect(url, lambda connection: done.append(upgrade(connection, issuer_urls)))
    await database.dispose()
    return done[0]


async def copy_store(source_url: str, target_url: str) -> dict[str, int]:
    """Copy every table of the store at `source_url` (at head) into `target_url` (empty, or created at head with no
    rows), in one transaction on the target; the rows per table, counted again on the target."""
    source = await connect(source_url, check)
    try:
        target = await connect(target_url, _empty_at_head)
        try:
            return await _copy(source, target)
        finally:
            await target.dispose()
    finally:
        await source.dispose()


def _empty_at_head(connection: Connection) -> None:
    check(connection)
    for table in tables.metadata.sorted_tables:
        if connection.execute(select(func.count()).select_from(table)).scalar():
            raise StoreError(f"--to: the target database is not empty (its {table.name} table has rows)")


async def _copy(source: Database, target: Database) -> dict[str, int]:
    """Read in one snapshot of the source (a SQLite source is held against writers meanwhile: stop `serve`
    first), write in one transaction on the target, committed only once every table's count agrees. A command's
    one call, so it runs as one (on the event loop: nothing else waits for it)."""
    return await greenlet_spawn(_copy_tables, source, target)


def _copy_tables(source: Database, target: Database) -> dict[str, int]:
    counts: dict[str, int] = {}
    with source.writer.connect() as reading, target.writer.begin() as writing:
        if source.dialect == "postgresql":
            reading = reading.execution_options(isolation_level="REPEATABLE READ")
        with reading.begin():
            _empty_at_head(writing)
            for table in tables.metadata.sorted_tables:
                rows = [dict(row) for row in reading.execute(select(table)).mappings()]
                for start in range(0, len(rows), BATCH):
                    writing.execute(table.insert(), rows[start : start + BATCH])
                copied = int(writing.execute(select(func.count()).select_from(table)).scalar_one())
                if copied != len(rows):
                    raise StoreError(f"db copy: {table.name} has {len(rows)} rows but {copied} were copied")
                counts[table.name] = copied
            if target.dialect == "postgresql":
                # Ids and serials were copied as they were: each sequence's next value must come after them (the
                # change log's above all: a follower starts at its newest copied serial and reads only past it).
                for column in _SERIALS:
                    writing.execute(_after_copied(column))
    return counts


# Every column PostgreSQL numbers from a sequence: the audit's ids and the change log's serials.
_SERIALS = [
    column for table in tables.metadata.sorted_tables for column in table.primary_key if column.autoincrement is True
]


def _after_copied(column: Column[Any]) -> TextClause:
    table, name = column.table.name, column.name
    return text(
        f"SELECT setval(pg_get_serial_sequence('{table}', '{name}'), COALESCE(MAX({name}), 0) + 1, false) "  # noqa: S608
        f"FROM {table}"
    )
