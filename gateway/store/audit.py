"""The audit trail: events in the database, each filed under the user it concerns (`by` names the actor), and
their JSON-lines mirror `logging.audit_file`, appended off the event loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway import private
from gateway.store.connection import Connection, Database, os_error
from gateway.store.records import AuditEvent, StoreError, StoreFailure


class AuditMirror:
    """The audit file, appended by one thread of its own: a slow disk never stalls the event loop, and the lines
    land in the order their events were recorded (the thread takes the writes one by one, as they were handed
    over). Each write is awaited, so an event's line is on disk when `audit` returns, as before."""

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
    def __init__(self, db: Database, audit_file: Path | None = None) -> None:
        super().__init__(db)
        self._mirror = AuditMirror(audit_file)

    async def close(self) -> None:
        await super().close()
        await self._mirror.close()

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
