"""SQLite store (aiosqlite): users, and the audit trail; the schema is versioned and migrated at open.

WAL mode and a busy timeout let the CLI write (add a user, revoke a token) while `serve` runs.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

# NOTE: migrations are append-only; each runs once, in order, and bumps PRAGMA user_version.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        event TEXT NOT NULL,
        user_name TEXT,
        token_id TEXT,
        project TEXT,
        address TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_at ON audit (at);
    """,
)


class StoreError(Exception):
    """A request the store refuses (duplicate name, unknown user); the message is user-facing."""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    password_hash: str
    created: int


@dataclass(frozen=True)
class AuditEvent:
    at: float
    event: str
    user_name: str | None
    token_id: str | None
    project: str | None
    address: str | None
    detail: Mapping[str, Any]


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA busy_timeout = 5000")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA foreign_keys = ON")
        store = cls(db)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def ping(self) -> None:
        async with self._db.execute("SELECT 1") as cursor:
            await cursor.fetchone()

    async def add_user(self, name: str, password_hash: str) -> User:
        user = User(id=str(uuid.uuid4()), name=name, password_hash=password_hash, created=int(time.time()))
        try:
            await self._db.execute(
                "INSERT INTO users (id, name, password_hash, created) VALUES (?, ?, ?, ?)",
                (user.id, user.name, user.password_hash, user.created),
            )
        except aiosqlite.IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None
        await self.audit("user.added", user_name=name)
        return user

    async def get_user(self, name: str) -> User | None:
        async with self._db.execute("SELECT * FROM users WHERE name = ?", (name,)) as cursor:
            row = await cursor.fetchone()
        return _user(row) if row else None

    async def list_users(self) -> list[User]:
        async with self._db.execute("SELECT * FROM users ORDER BY name") as cursor:
            return [_user(row) for row in await cursor.fetchall()]

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
        await self._db.execute(
            "INSERT INTO audit (at, event, user_name, token_id, project, address, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), event, user_name, token_id, project, address, json.dumps(detail, sort_keys=True)),
        )

    async def audit_events(self, *, since: float = 0.0, user_name: str | None = None) -> list[AuditEvent]:
        query, args = "SELECT * FROM audit WHERE at >= ?", [str(since)]
        if user_name is not None:
            query += " AND user_name = ?"
            args.append(user_name)
        async with self._db.execute(query + " ORDER BY id", args) as cursor:
            rows = await cursor.fetchall()
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


def _user(row: aiosqlite.Row) -> User:
    return User(id=row["id"], name=row["name"], password_hash=row["password_hash"], created=row["created"])
