"""The audit trail: events in the database, each filed under the user it concerns (`by` names the actor), and
their JSON-lines mirror `logging.audit_file`, appended off the event loop, of the events the database committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

from gateway import private
from gateway.store import changelog, tables
from gateway.store.connection import Connection, Database, Transaction, os_error
from gateway.store.records import AuditEvent, StoreError, StoreFailure


class AuditMirror:
    """The audit file, appended by one thread of its own: a slow disk never stalls the event loop, and the lines
    land in the order their events were recorded (the thread takes the writes one by one, as they were handed
    over). Each write is awaited, so a committed event's line is on disk when the call that recorded it returns."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._writer = None if path is None else ThreadPoolExecutor(1, thread_name_prefix="audit-file")

    @staticmethod
    def create(path: Path) -> None:
        """Create the file (0600, `gateway.private`) now, not at the first event: after a change it could not
        record."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            private.create(path)
        except OSError as exc:
            raise StoreError(f"logging.audit_file: cannot write {path}: {os_error(exc, path)}") from None

    async def write(self, *entries: AuditEvent) -> None:
        if self._path is None or not entries:
            return
        if self._writer is None:
            raise StoreFailure("the store is closed")
        lines = [entry.to_json() for entry in entries]
        await asyncio.get_running_loop().run_in_executor(self._writer, self._append, self._path, lines)

    @staticmethod
    def _append(path: Path, lines: list[str]) -> None:
        for line in lines:
            private.append_line(path, line)

    async def close(self) -> None:
        """Wait for every line handed over (a write whose caller was cancelled still lands), then end the thread
        (a second close does nothing)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.get_running_loop().run_in_executor(writer, lambda: None)
            writer.shutdown()


class AuditLog(Connection):
    """The mirror holds exactly the events the database committed, in the order of their commits: an event
    recorded in a transaction gets its line once the transaction commits and none if it rolls back; an event
    recorded outside one is a transaction of its own.

    NOTE: on PostgreSQL a transaction takes the audit's advisory lock (`_AUDIT_LOCK`) before its first event, and
    holds it to its commit, so events get their ids, commit and reach the mirror in one order, as SQLite's single
    writer gives by itself. Auditing is the last thing every transaction does, so the lock's holder waits for no
    row another transaction could hold (Warehouse's deadlock of its journal lock with row locks cannot happen).
    """

    def __init__(self, database: Database, audit_file: Path | None = None) -> None:
        super().__init__(database)
        self._mirror = AuditMirror(audit_file)
        # Held by an auditing transaction from its first event until its lines are handed over: commits' answers
        # may reach this process out of order (PostgreSQL's NOTIFY, taken at commit, delays one), lines may not.
        self._in_order = asyncio.Lock()

    async def close(self) -> None:
        await super().close()
        await self._mirror.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        if self._joined() is not None:
            async with super()._transaction() as joined:
                yield joined
            return
        opened: Transaction | None = None
        try:
            async with super()._transaction() as opened:
                yield opened
            # Handed over under `_in_order` (the write is queued as it is called): no transaction that commits
            # after this one can queue its lines first.
            await self._mirror.write(*opened.entries)
        finally:
            if opened is not None and opened.audit_locked:
                self._in_order.release()

    async def audit(
        self,
        event: str,
        *,
        user_name: str | None = None,
        token_id: str | None = None,
        project: str | None = None,
        address: str | None = None,
        **detail: Any,
    ) -> None:
        await self._audit(AuditEvent(time.time(), event, user_name, token_id, project, address, detail))

    async def _audit(self, *entries: AuditEvent) -> None:
        """Record events in the open transaction (or one of their own); their lines follow its commit."""
        async with self._transaction() as open_:
            if not open_.audit_locked:
                await self._in_order.acquire()
                open_.audit_locked = True
                if self._db.dialect == "postgresql":
                    await open_.connection.execute(_AUDIT_LOCK)
            await open_.connection.execute(insert(tables.audit), [_audit_row(entry) for entry in entries])
            await changelog.record(open_.connection, self._db.dialect, entries)
            open_.entries.extend(entries)

    async def audit_events(self, *, since: float = 0.0, user_name: str | None = None) -> list[AuditEvent]:
        query = select(tables.audit).where(tables.audit.c.at >= since).order_by(tables.audit.c.id)
        if user_name is not None:
            query = query.where(tables.audit.c.user_name == user_name)
        return [
            AuditEvent(
                at=row["at"],
                event=row["event"],
                user_name=row["user_name"],
                token_id=row["token_id"],
                project=row["project"],
                address=row["address"],
                detail=json.loads(row["detail"]),
            )
            for row in await self._rows(query)
        ]


# A transaction-scoped advisory lock, (class, object) = ("audi" in ASCII, 0).
_AUDIT_LOCK = text("SELECT pg_advisory_xact_lock(1635083369, 0)")


def _audit_row(entry: AuditEvent) -> dict[str, Any]:
    return {
        "at": entry.at,
        "event": entry.event,
        "user_name": entry.user_name,
        "token_id": entry.token_id,
        "project": entry.project,
        "address": entry.address,
        "detail": json.dumps(entry.detail, sort_keys=True),
    }
