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

from gateway import private
from gateway.store.connection import Connection, Database, os_error
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
        if self._path is None:
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
    recorded in a transaction gets its line when the transaction commits and none if it rolls back, and any other
    event waits for another coroutine's open transaction to end (on the shared connection it would join it)."""

    def __init__(self, db: Database, audit_file: Path | None = None) -> None:
        super().__init__(db)
        self._mirror = AuditMirror(audit_file)
        self._open: tuple[asyncio.Task[Any] | None, list[AuditEvent]] | None = None

    async def close(self) -> None:
        await super().close()
        await self._mirror.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        entries: list[AuditEvent] = []
        async with super()._transaction():
            self._open = (asyncio.current_task(), entries)
            try:
                yield
            finally:
                self._open = None
        # Handed over before anything else runs (the write is queued as it is called): no transaction that
        # commits after this one can queue its lines first.
        await self._mirror.write(*entries)

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
        entry = AuditEvent(time.time(), event, user_name, token_id, project, address, detail)
        if self._open is not None and self._open[0] is asyncio.current_task():
            await self._db.execute(*audit_row(entry))
            self._open[1].append(entry)
            return
        async with self._transaction_lock:
            await self._db.execute(*audit_row(entry))
        await self._mirror.write(entry)

    async def audit_events(self, *, since: float = 0.0, user_name: str | None = None) -> list[AuditEvent]:
        args: list[Any]
        query, args = "SELECT * FROM audit WHERE at >= ?", [since]
        if user_name is not None:
            query += " AND user_name = ?"
            args.append(user_name)
        rows = await self._db.execute_fetchall(query + " ORDER BY id", args)
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
            for row in rows
        ]


def audit_row(entry: AuditEvent) -> tuple[str, Sequence[Any]]:
    return (
        "INSERT INTO audit (at, event, user_name, token_id, project, address, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            entry.at,
            entry.event,
            entry.user_name,
            entry.token_id,
            entry.project,
            entry.address,
            json.dumps(entry.detail, sort_keys=True),
        ),
    )
