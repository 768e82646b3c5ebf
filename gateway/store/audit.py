"""The audit trail: events in the database, each filed under the user it concerns (`by` names the actor), and
their JSON-lines mirror `logging.audit_file`, appended off the event loop, of the events the database committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

from gateway import private
from gateway.store import changelog, tables
from gateway.store.connection import Connection, Database, Outcome, Step, Transaction, os_error
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

    NOTE: on SQLite one writer at a time gives that order by itself. On PostgreSQL a transaction takes the audit's
    advisory lock (`_AUDIT_LOCK`) before its first event and holds it to its commit, so the events' ids are in
    the order of their commits, across processes; in this process, a transaction that committed writes its lines
    only once every local transaction with smaller audit ids has committed (and written) or rolled back
    (`_in_flight`): their commits' answers may reach this process in another order. Auditing is the last thing
    every transaction does, so the lock's holder waits for no row another transaction could hold (Warehouse's
    deadlock of its journal lock with row locks cannot happen).
    """

    def __init__(self, database: Database, audit_file: Path | None = None) -> None:
        super().__init__(database)
        self._mirror = AuditMirror(audit_file)
        # PostgreSQL: this process's audited transactions, by their first audit id, settled when they end.
        self._in_flight: dict[int, asyncio.Event] = {}

    async def close(self) -> None:
        await super().close()
        await self._mirror.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        if self._joined() is not None:
            async with super()._transaction() as joined:
                yield joined
            return
        open_: Transaction | None = None
        try:
            async with super()._transaction() as open_:
                yield open_
            if open_.audit_id is not None:
                for earlier, settled in list(self._in_flight.items()):
                    if earlier < open_.audit_id:
                        await settled.wait()
            # Handed over before anything else runs (the write is queued as it is called).
            await self._mirror.write(*open_.entries)
        finally:
            if open_ is not None and open_.audit_id is not None:
                self._in_flight.pop(open_.audit_id).set()

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
        await self._audited([], [AuditEvent(time.time(), event, user_name, token_id, project, address, detail)])

    async def _audited(self, steps: Sequence[Step], entries: Sequence[AuditEvent]) -> list[Outcome]:
        """`steps` and then the rows of `entries`, in one call and one transaction (the open one, or their own);
        the events' lines follow its commit. What `steps` did."""
        rows = [_audit_row(entry) for entry in entries]
        joined = self._joined()
        # The events' entries in the change log go with them, under the same lock (`gateway.store.changelog`).
        changes = changelog.steps(self._db.dialect, entries)
        if self._db.dialect != "postgresql" or not entries:
            audit_steps: list[Step] = [(insert(tables.audit), rows), *changes] if entries else []
            outcomes = await self._steps([*steps, *audit_steps])
            if joined is not None:
                joined.entries.extend(entries)
            else:
                await self._mirror.write(*entries)
            return outcomes[: len(steps)]
        if joined is None:
            async with self._transaction():
                return await self._audited(steps, entries)
        locking = joined.audit_id is None
        audit_steps = [(_AUDIT_LOCK, None)] if locking else []
        audit_steps.append((insert(tables.audit).returning(tables.audit.c.id), rows))
        inserted = len(steps) + len(audit_steps) - 1
        outcomes = await self._steps([*steps, *audit_steps, *changes])
        joined.entries.extend(entries)
        if locking:
            joined.audit_id = min(int(row["id"]) for row in outcomes[inserted].rows)
            self._in_flight[joined.audit_id] = asyncio.Event()
        return outcomes[: len(steps)]

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
