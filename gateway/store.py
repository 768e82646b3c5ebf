"""SQLite store (aiosqlite): users, 2FA factors, tokens, projects and roles, files, claims and size reservations,
web sessions, throttle counters, and the audit trail.

The schema is versioned and migrated at open.

WAL mode and a busy timeout let the CLI write (add a user, revoke a token) while `serve` runs. The files are
created mode 0600 and deleted rows are zeroed (`secure_delete`): see "Secrets at rest" in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gateway import private
from gateway.throttle import Bucket, Counted, Streak

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
    """
    ALTER TABLE users ADD COLUMN totp_secret BLOB;
    ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
    CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_at REAL,
        PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE webauthn_credentials (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        public_key BLOB NOT NULL,
        sign_count INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_used REAL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        description TEXT NOT NULL,
        secret BLOB NOT NULL,
        caveats TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL,
        expires REAL,
        revoked REAL
    );
    CREATE INDEX tokens_user ON tokens (user_id);
    CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE roles (
        project TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('owner', 'maintainer')),
        created REAL NOT NULL,
        PRIMARY KEY (project, user_id)
    );
    """,
    """
    CREATE TABLE files (
        filename TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        blake2_256 TEXT NOT NULL,
        uploaded REAL NOT NULL,
        user_name TEXT,
        token_id TEXT
    );
    CREATE INDEX files_project ON files (project);
    """,
    """
    CREATE TABLE web_sessions (
        key TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX web_sessions_expires ON web_sessions (expires);
    """,
    """
    CREATE TABLE project_claims (
        project TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        holders INTEGER NOT NULL,
        expires REAL NOT NULL
    );
    """,
    """
    CREATE TABLE size_reservations (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        size INTEGER NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX size_reservations_project ON size_reservations (project);
    CREATE INDEX files_folded ON files (lower(filename));
    """,
    # --- Private reads (issue #14): what each token may do, granted here (caveats only narrow it) ---
    # Existing tokens keep what they could do: upload only.
    """
    ALTER TABLE tokens ADD COLUMN permissions TEXT NOT NULL DEFAULT 'upload'
        CHECK (permissions IN ('upload', 'read', 'read upload'));
    """,
    # Issue #13: throttle counters and second-factor holds; keys are keyed hashes (gateway/throttle.py).
    """
    CREATE TABLE throttle_streaks (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last REAL NOT NULL,
        holder TEXT NOT NULL
    );
    CREATE INDEX throttle_streaks_last ON throttle_streaks (last);
    CREATE TABLE throttle_buckets (
        key TEXT PRIMARY KEY,
        level REAL NOT NULL,
        at REAL NOT NULL,
        holder TEXT NOT NULL
    );
    CREATE INDEX throttle_buckets_at ON throttle_buckets (at);
    CREATE TABLE throttle_holds (
        key TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires REAL NOT NULL
    );
    """,
)
# A file's share of its project's size limit is held from its last checks to its record: the index's answer.
RESERVATION_LIFETIME = 900.0
# A claim of a new project is held while its first upload is under way; one that outlives this was abandoned
# (a gateway that stopped mid-upload) and another user may claim the name.
CLAIM_LIFETIME = 3600.0


class StoreError(Exception):
    """A request the store refuses (duplicate name, unknown user), or a store that cannot be opened; the message is
    user-facing."""


def _os_error(exc: OSError, path: Path) -> str:
    """`strerror`, and the file it is about when that is not `path` (a parent directory that is a file)."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename and Path(exc.filename) != path else reason


@dataclass(frozen=True)
class User:
    id: str
    name: str
    password_hash: str
    created: int
    has_totp: bool = False
    webauthn_count: int = 0

    @property
    def has_2fa(self) -> bool:
        return self.has_totp or self.webauthn_count > 0


@dataclass(frozen=True)
class TokenRow:
    """A token as stored: `secret` alone cannot verify or mint it (the server secret is outside the database)."""

    id: str
    user_id: str
    description: str
    secret: bytes
    caveats: tuple[str, ...]
    created: float
    last_used: float | None
    expires: float | None
    revoked: float | None
    permissions: tuple[str, ...] = ("upload",)  # sorted: ("upload",), ("read",) or ("read", "upload")


@dataclass(frozen=True)
class UserSummary:
    """What `user list` shows of a user."""

    user: User
    tokens: int
    active_tokens: int  # neither revoked nor expired
    last_token_use: float | None
    recovery_codes: int  # unused


@dataclass(frozen=True)
class RemovedUser:
    tokens: int  # deleted with the user
    orphaned: tuple[str, ...]  # projects the user was the last to have a role on


@dataclass(frozen=True)
class StoredFile:
    filename: str
    project: str
    size: int
    sha256: str
    blake2_256: str
    user: str | None
    token_id: str | None


@dataclass(frozen=True)
class UploadState:
    """An upload's standing, read again right before the index may keep its file."""

    role: str | None
    owned: bool
    claim_holder: str | None
    user_exists: bool
    token_valid: bool  # the token exists and is not revoked (False, too, for a password upload)


@dataclass(frozen=True)
class Project:
    name: str
    id: str
    display_name: str
    created: float


@dataclass(frozen=True)
class AuditEvent:
    at: float
    event: str
    user_name: str | None
    token_id: str | None
    project: str | None
    address: str | None
    detail: Mapping[str, Any]

    def to_json(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.at)) + f".{int(self.at % 1 * 1000):03d}Z"
        return json.dumps({**asdict(self), "at": when, "detail": dict(self.detail)}, sort_keys=True)


class Store:
    def __init__(self, db: aiosqlite.Connection, audit_file: Path | None = None) -> None:
        self._db = db
        self._audit_file = audit_file
        self._transaction_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, audit_file: Path | None = None) -> Store:
        """Open (and migrate) the database; `audit_file` also receives every audit event as a JSON line.

        The database (so its -wal and -shm too) and the audit file are created mode 0600 (`gateway.private`).
        """
        if audit_file is not None:
            try:
                audit_file.parent.mkdir(parents=True, exist_ok=True)
                private.create(audit_file)  # now, not at the first event: after a change it could not record
            except OSError as exc:
                reason = _os_error(exc, audit_file)
                raise StoreError(f"logging.audit_file: cannot write {audit_file}: {reason}") from None
        try:
            return await cls._open(path, audit_file)
        except (OSError, sqlite3.Error) as exc:
            detail = _os_error(exc, path) if isinstance(exc, OSError) else str(exc)
            raise StoreError(f"store.url: cannot open the database {path}: {detail}") from None

    @classmethod
    async def _open(cls, path: Path, audit_file: Path | None) -> Store:
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
            store = cls(db, audit_file)
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        row = await self._row("PRAGMA user_version")
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """A multi-statement change, one at a time.

        NOTE: the connection is shared by every coroutine; the lock keeps two transactions apart, and the
        upload path opens one only to record an accepted upload (`record_upload`). A statement another coroutine
        issues meanwhile joins the transaction, which is harmless unless it rolls back, on an error; the throttle's
        statements, whose counts must not be lost so, wait for the lock instead (`_outside`).
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

    async def _set_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        await self._db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
        await self._db.executemany(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
            [(user_id, code_hash) for code_hash in code_hashes],
        )

    async def ping(self) -> None:
        await self._row("SELECT 1")

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
        return await self._one_user("WHERE users.name = ?", name)

    async def get_user_by_id(self, user_id: str) -> User | None:
        return await self._one_user("WHERE users.id = ?", user_id)

    async def require_user(self, name: str) -> User:
        user = await self.get_user(name)
        if user is None:
            raise StoreError(f"no user named {name[:60]!r}")
        return user

    async def _one_user(self, where: str, value: str) -> User | None:
        row = await self._row(_USER_SELECT + where, (value,))
        return _user(row) if row else None

    async def list_users(self) -> list[User]:
        return [_user(row) for row in await self._db.execute_fetchall(_USER_SELECT + "ORDER BY users.name")]

    async def set_totp(self, user: User, sealed_secret: bytes, recovery_hashes: list[str], *, by: str) -> None:
        """Enrol TOTP and replace the recovery codes, in one transaction (an administrator's enrolment)."""
        async with self._transaction():
            await self._db.execute(
                "UPDATE users SET totp_secret = ?, totp_last_step = NULL WHERE id = ?", (sealed_secret, user.id)
            )
            await self._set_recovery_codes(user.id, recovery_hashes)
        await self.audit(
            "user.2fa.totp_enabled",
            user_name=user.name,
            by=by,
            recovery_codes=len(recovery_hashes),
            replaced=user.has_2fa,
        )

    # --- Administration (issue #16): who acts is `by`, the user concerned is the event's user ---
    async def user_summaries(self, now: float) -> list[UserSummary]:
        """Every user with their tokens (all, and those neither revoked nor expired), last token use and unused
        recovery codes, by name."""
        async with self._db.execute(
            "SELECT users.*, "
            "(SELECT COUNT(*) FROM webauthn_credentials w WHERE w.user_id = users.id) AS webauthn_count, "
            "(SELECT COUNT(*) FROM tokens t WHERE t.user_id = users.id) AS tokens, "
            "(SELECT COUNT(*) FROM tokens t WHERE t.user_id = users.id AND t.revoked IS NULL "
            "AND (t.expires IS NULL OR t.expires > ?)) AS active_tokens, "
            "(SELECT MAX(t.last_used) FROM tokens t WHERE t.user_id = users.id) AS last_token_use, "
            "(SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = users.id AND r.used_at IS NULL) "
            "AS recovery_codes FROM users ORDER BY users.name",
            (now,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            UserSummary(_user(row), row["tokens"], row["active_tokens"], row["last_token_use"], row["recovery_codes"])
            for row in rows
        ]

    async def remove_user(self, user: User, *, by: str) -> RemovedUser:
        """Delete a user with everything that lets them act: tokens, factors, roles, claims (cascades) and account
        sessions. Their files' records and the audit trail keep the name. A running gateway refuses their tokens at
        once: an upload re-reads the user before its last bytes (`Store.upload_state`)."""
        async with self._transaction():
            orphaned = [
                str(row[0])
                for row in await self._db.execute_fetchall(
                    "SELECT project FROM roles WHERE user_id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM roles r WHERE r.project = roles.project AND r.user_id <> roles.user_id) "
                    "ORDER BY project",
                    (user.id,),
                )
            ]
            tokens = await self._db.execute_fetchall("SELECT COUNT(*) FROM tokens WHERE user_id = ?", (user.id,))
            await self._end_web_sessions(user.id)
            await self._db.execute("DELETE FROM users WHERE id = ?", (user.id,))
            count = int(next(iter(tokens))[0])
            await self.audit("user.removed", user_name=user.name, by=by, tokens=count, orphaned=orphaned)
        return RemovedUser(tokens=count, orphaned=tuple(orphaned))

    async def set_password(self, user: User, password_hash: str, *, by: str) -> None:
        """A new password; the user's account sessions end (whoever had the old one is signed out)."""
        async with self._transaction():
            await self._db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user.id))
            await self._end_web_sessions(user.id)
            await self.audit("user.password_changed", user_name=user.name, by=by)

    async def disable_2fa(self, user: User, *, by: str) -> None:
        """An administrator's reset of a lost second factor: TOTP, security keys and recovery codes go, and the
        user's account sessions end."""
        async with self._transaction():
            await self._db.execute(
                "UPDATE users SET totp_secret = NULL, totp_last_step = NULL WHERE id = ?", (user.id,)
            )
            await self._db.execute("DELETE FROM webauthn_credentials WHERE user_id = ?", (user.id,))
            await self._db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user.id,))
            await self._end_web_sessions(user.id)
            await self.audit(
                "user.2fa.disabled", user_name=user.name, by=by, totp=user.has_totp, security_keys=user.webauthn_count
            )

    async def _end_web_sessions(self, user_id: str) -> None:
        """The user's account-page sessions (signed in, or waiting for a second factor), in aiohttp-session's
        format: {"created": …, "session": {"uid": …}} (`gateway.web.sessions.USER_ID`)."""
        await self._db.execute("DELETE FROM web_sessions WHERE json_extract(data, '$.session.uid') = ?", (user_id,))

    # --- end of administration

    async def totp_secret(self, user_id: str) -> tuple[bytes | None, int | None]:
        row = await self._row("SELECT totp_secret, totp_last_step FROM users WHERE id = ?", (user_id,))
        return (row[0], row[1]) if row else (None, None)

    async def advance_totp_step(self, user_id: str, step: int) -> bool:
        """Record a used TOTP step; False when it (or a later one) was used already, in any process."""
        cursor = await self._db.execute(
            "UPDATE users SET totp_last_step = ? WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)",
            (step, user_id, step),
        )
        return cursor.rowcount == 1

    async def use_recovery_code(self, user_id: str, code_hash: str) -> bool:
        cursor = await self._db.execute(
            "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
            (time.time(), user_id, code_hash),
        )
        return cursor.rowcount == 1

    async def add_token(
        self,
        user: User,
        *,
        description: str,
        secret: bytes,
        caveats: list[str],
        expires: float | None,
        permissions: tuple[str, ...] = ("upload",),
    ) -> TokenRow:
        token = TokenRow(
            id=str(uuid.uuid4()),
            user_id=user.id,
            description=description,
            secret=secret,
            caveats=tuple(caveats),
            created=time.time(),
            last_used=None,
            expires=expires,
            revoked=None,
            permissions=tuple(sorted(set(permissions))),
        )
        await self._db.execute(
            "INSERT INTO tokens (id, user_id, description, secret, caveats, created, expires, permissions) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (
                token.id,
                user.id,
                description,
                secret,
                json.dumps(caveats),
                token.created,
                expires,
                " ".join(token.permissions),
            ),
        )
        await self.audit(
            "token.created",
            user_name=user.name,
            token_id=token.id,
            caveats=caveats,
            permissions=list(token.permissions),
        )
        return token

    async def get_token(self, token_id: str) -> TokenRow | None:
        row = await self._row("SELECT * FROM tokens WHERE id = ?", (token_id,))
        return _token(row) if row else None

    async def list_tokens(self, user: User | None = None) -> list[tuple[TokenRow, str]]:
        """Tokens with their owner's name, newest first."""
        query = "SELECT tokens.*, users.name AS user_name FROM tokens JOIN users ON users.id = tokens.user_id"
        args: tuple[str, ...] = ()
        if user is not None:
            query, args = query + " WHERE tokens.user_id = ?", (user.id,)
        return [
            (_token(row), row["user_name"])
            for row in await self._db.execute_fetchall(query + " ORDER BY tokens.created DESC", args)
        ]

    async def revoke_token(self, token_id: str, *, by: str) -> TokenRow | None:
        """Revoke one token; the audit event is its owner's, and says who revoked it (`by`)."""
        token = await self.get_token(token_id)
        if token is None or token.revoked is not None:
            return token
        owner = await self.get_user_by_id(token.user_id)
        await self._db.execute("UPDATE tokens SET revoked = ? WHERE id = ?", (time.time(), token_id))
        await self.audit("token.revoked", user_name=owner.name if owner else None, token_id=token_id, by=by)
        return await self.get_token(token_id)

    async def revoke_all_tokens(self, user: User, *, by: str) -> int:
        cursor = await self._db.execute(
            "UPDATE tokens SET revoked = ? WHERE user_id = ? AND revoked IS NULL", (time.time(), user.id)
        )
        await self.audit("token.revoked_all", user_name=user.name, by=by, count=cursor.rowcount)
        return cursor.rowcount

    async def touch_token(self, token_id: str) -> None:
        await self._db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (time.time(), token_id))

    async def project_access(self, name: str, user_id: str) -> tuple[Project | None, str | None, bool]:
        """The project (None if the gateway does not know it), the user's role on it, and whether anyone has one."""
        row = await self._row(
            "SELECT projects.*, roles.role, EXISTS (SELECT 1 FROM roles r WHERE r.project = projects.name) AS owned "
            "FROM projects "
            "LEFT JOIN roles ON roles.project = projects.name AND roles.user_id = ? WHERE projects.name = ?",
            (user_id, name),
        )
        if row is None:
            return None, None, False
        return Project(row["name"], row["id"], row["display_name"], row["created"]), row["role"], bool(row["owned"])

    async def hold_claim(self, project: str, user_id: str) -> bool:
        """Reserve a new project's name for `user_id`'s upload; False while another user's upload holds it.

        One statement, so it is atomic: of two users claiming at once exactly one holds the name. The same user's
        concurrent uploads (a wheel and an sdist) share the claim.
        """
        now = time.time()
        rows = await self._returning(
            "INSERT INTO project_claims (project, user_id, holders, expires) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (project) DO UPDATE SET "
            "holders = CASE WHEN project_claims.user_id = excluded.user_id THEN project_claims.holders + 1 ELSE 1 END, "
            "user_id = excluded.user_id, expires = excluded.expires "
            "WHERE project_claims.user_id = excluded.user_id OR project_claims.expires < ? "
            "RETURNING user_id",
            (project, user_id, now + CLAIM_LIFETIME, now),
        )
        return bool(rows)

    async def upload_state(self, project: str, user_id: str, token_id: str | None) -> UploadState:
        """Everything an upload's last check needs, read afresh in one query."""
        row = await self._row(
            "SELECT (SELECT role FROM roles WHERE project = ? AND user_id = ?) AS role, "
            "EXISTS (SELECT 1 FROM roles WHERE project = ?) AS owned, "
            "(SELECT user_id FROM project_claims WHERE project = ?) AS claim_holder, "
            "EXISTS (SELECT 1 FROM users WHERE id = ?) AS user_exists, "
            "EXISTS (SELECT 1 FROM tokens WHERE id = ? AND revoked IS NULL) AS token_valid",
            (project, user_id, project, project, user_id, token_id),
        )
        assert row is not None
        return UploadState(
            role=row["role"],
            owned=bool(row["owned"]),
            claim_holder=row["claim_holder"],
            user_exists=bool(row["user_exists"]),
            token_valid=bool(row["token_valid"]),
        )

    async def reserve_size(self, upload_id: str, project: str, size: int, limit: int) -> bool:
        """Hold `size` bytes of the project's limit for one upload; False when the files recorded and the
        uploads in flight leave no room. One statement, so two uploads never both take the last room."""
        now = time.time()
        cursor = await self._db.execute(
            "INSERT INTO size_reservations (id, project, size, expires) SELECT ?, ?, ?, ? "
            "WHERE (SELECT COALESCE(SUM(size), 0) FROM files WHERE project = ?) "
            "+ (SELECT COALESCE(SUM(size), 0) FROM size_reservations WHERE project = ? AND expires > ?) + ? <= ?",
            (upload_id, project, size, now + RESERVATION_LIFETIME, project, project, now, size, limit),
        )
        return cursor.rowcount == 1

    async def release_size(self, upload_id: str) -> None:
        await self._db.execute("DELETE FROM size_reservations WHERE id = ? OR expires < ?", (upload_id, time.time()))

    async def release_claim(self, project: str, user_id: str) -> None:
        """An upload that held a claim ended without creating the project."""
        for sql, parameters in _release_claim(project, user_id):
            await self._db.execute(sql, parameters)

    async def _ensure_project(self, name: str, display_name: str) -> bool:
        cursor = await self._db.execute(*_ensure_project(name, display_name))
        return cursor.rowcount == 1

    async def grant(self, name: str, display_name: str, user: User, role: str, *, by: str) -> None:
        await self._ensure_project(name, display_name)
        await self._db.execute(
            "INSERT INTO roles (project, user_id, role, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (project, user_id) DO UPDATE SET role = excluded.role",
            (name, user.id, role, time.time()),
        )
        await self.audit("project.granted", user_name=user.name, project=name, by=by, role=role)

    async def remove_role(self, name: str, user: User, *, by: str) -> bool:
        cursor = await self._db.execute("DELETE FROM roles WHERE project = ? AND user_id = ?", (name, user.id))
        if cursor.rowcount:
            await self.audit("project.role_removed", user_name=user.name, project=name, by=by)
        return cursor.rowcount == 1

    async def all_projects(self) -> list[Project]:
        """Every project the gateway knows (private reads: what a token scoped by project id alone may list)."""
        return [
            Project(r["name"], r["id"], r["display_name"], r["created"])
            for r in await self._db.execute_fetchall("SELECT * FROM projects ORDER BY name")
        ]

    async def projects_of(self, user: User) -> list[tuple[Project, str]]:
        rows = await self._db.execute_fetchall(
            "SELECT projects.*, roles.role FROM roles JOIN projects ON projects.name = roles.project "
            "WHERE roles.user_id = ? ORDER BY projects.name",
            (user.id,),
        )
        return [(Project(r["name"], r["id"], r["display_name"], r["created"]), r["role"]) for r in rows]

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
        await self._db.execute(*_audit_row(entry))
        self._audit_line(entry)

    def _audit_line(self, entry: AuditEvent) -> None:
        if self._audit_file is not None:
            private.append_line(self._audit_file, entry.to_json())

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

    async def record_upload(
        self,
        file: StoredFile,
        *,
        display_name: str,
        claim: User | None,
        upload_id: str,
        audit: Mapping[str, Any],
    ) -> None:
        """A file the index accepted through the gateway, in one transaction with what it changes.

        Its digests answer duplicates later and sizes add up per project. `claim`: the upload created the project,
        and its uploader (who held the claim) becomes the owner, so a refused or failed upload never owns anything.
        """
        now = time.time()
        statements: list[tuple[str, Sequence[Any]]] = []
        entries: list[AuditEvent] = []
        if claim is not None:
            statements.append(_ensure_project(file.project, display_name))
            statements.append(
                (
                    "INSERT INTO roles (project, user_id, role, created) SELECT ?, ?, 'owner', ? "
                    "WHERE NOT EXISTS (SELECT 1 FROM roles WHERE project = ?)",
                    (file.project, claim.id, now, file.project),
                )
            )
            statements += _release_claim(file.project, claim.id)
            entries.append(AuditEvent(now, "project.claimed", claim.name, None, file.project, None, {}))
        if file.sha256:
            statements.append(
                (
                    "INSERT INTO files "
                    "(filename, project, size, sha256, blake2_256, uploaded, user_name, token_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        file.filename,
                        file.project,
                        file.size,
                        file.sha256,
                        file.blake2_256,
                        now,
                        file.user,
                        file.token_id,
                    ),
                )
            )
            statements.append(("DELETE FROM size_reservations WHERE id = ?", (upload_id,)))
        fields = dict(audit)
        entries.append(
            AuditEvent(
                now,
                "upload.accepted",
                fields.pop("user_name", None),
                fields.pop("token_id", None),
                fields.pop("project", None),
                fields.pop("address", None),
                fields,
            )
        )
        await self._in_one_transaction(statements + [_audit_row(entry) for entry in entries])
        for entry in entries:
            self._audit_line(entry)

    async def import_projects(self, projects: list[tuple[str, str]], owner: User | None, *, by: str) -> int:
        """Record projects the index already has (normalized name, display name): unowned, or owned by `owner`.

        Projects the gateway knows already are left as they are. Returns how many were new to it.
        """
        added = 0
        async with self._transaction():
            for name, display_name in projects:
                if not await self._ensure_project(name, display_name):
                    continue
                added += 1
                if owner is not None:
                    await self._db.execute(
                        "INSERT INTO roles (project, user_id, role, created) VALUES (?, ?, 'owner', ?)",
                        (name, owner.id, time.time()),
                    )
            await self.audit("project.imported", user_name=owner.name if owner else None, by=by, count=added)
        return added

    async def file_sha256(self, filename: str) -> str | None:
        """The sha256 of a file the gateway delivered under this name, in any letter case."""
        row = await self._row("SELECT sha256 FROM files WHERE lower(filename) = lower(?)", (filename,))
        return str(row[0]) if row else None

    # --- Reads (issue #14): what the JSON simple pages say of files the gateway delivered ---
    async def delivered_files(self, project: str) -> dict[str, tuple[int, float]]:
        """{lower-case filename: (size, upload time)} of the project's files recorded here."""
        rows = await self._db.execute_fetchall(
            "SELECT filename, size, uploaded FROM files WHERE project = ?", (project,)
        )
        return {str(row[0]).lower(): (int(row[1]), float(row[2])) for row in rows}

    # --- end of reads ---

    async def enable_totp(self, user: User, sealed_secret: bytes, step: int, *, address: str | None = None) -> None:
        """Enrol TOTP with the step of the code that proved it, so that code cannot sign in afterwards."""
        await self._db.execute(
            "UPDATE users SET totp_secret = ?, totp_last_step = ? WHERE id = ?", (sealed_secret, step, user.id)
        )
        await self.audit("user.2fa.totp_enabled", user_name=user.name, address=address)

    async def delete_totp(self, user: User, *, address: str | None = None) -> None:
        await self._db.execute("UPDATE users SET totp_secret = NULL, totp_last_step = NULL WHERE id = ?", (user.id,))
        await self.audit("user.2fa.totp_removed", user_name=user.name, address=address)

    async def count_recovery_codes(self, user_id: str) -> int:
        """Unused recovery codes."""
        row = await self._row("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL", (user_id,))
        return int(row[0]) if row else 0

    async def replace_recovery_codes(self, user: User, code_hashes: list[str], *, address: str | None = None) -> None:
        async with self._transaction():
            await self._set_recovery_codes(user.id, code_hashes)
        await self.audit(
            "user.2fa.recovery_codes_replaced", user_name=user.name, address=address, count=len(code_hashes)
        )

    async def add_webauthn_credential(
        self, user: User, credential: WebAuthnCredential, *, address: str | None = None
    ) -> None:
        try:
            await self._db.execute(
                "INSERT INTO webauthn_credentials (id, user_id, name, public_key, sign_count, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    credential.id,
                    user.id,
                    credential.name,
                    credential.public_key,
                    credential.sign_count,
                    credential.created,
                ),
            )
        except aiosqlite.IntegrityError:
            raise StoreError("this security key is registered already") from None
        await self.audit("user.2fa.webauthn_added", user_name=user.name, address=address, key=credential.name)

    async def webauthn_credentials(self, user_id: str) -> list[WebAuthnCredential]:
        return [
            _webauthn(row)
            for row in await self._db.execute_fetchall(
                "SELECT * FROM webauthn_credentials WHERE user_id = ? ORDER BY created", (user_id,)
            )
        ]

    async def remove_webauthn_credential(self, user: User, credential_id: str, *, address: str | None = None) -> bool:
        cursor = await self._db.execute(
            "DELETE FROM webauthn_credentials WHERE id = ? AND user_id = ?", (credential_id, user.id)
        )
        if cursor.rowcount:
            await self.audit("user.2fa.webauthn_removed", user_name=user.name, address=address)
        return cursor.rowcount == 1

    async def use_webauthn_credential(self, credential_id: str, sign_count: int) -> None:
        await self._db.execute(
            "UPDATE webauthn_credentials SET sign_count = ?, last_used = ? WHERE id = ?",
            (sign_count, time.time(), credential_id),
        )

    async def save_web_session(self, key: str, data: str, expires: float) -> None:
        """Insert or replace a web UI session; `key` is a keyed hash of the cookie, never the cookie itself."""
        await self._db.execute(
            "INSERT INTO web_sessions (key, data, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires = excluded.expires",
            (key, data, expires),
        )

    async def web_session(self, key: str, now: float) -> str | None:
        row = await self._row("SELECT data FROM web_sessions WHERE key = ? AND expires > ?", (key, now))
        return str(row[0]) if row else None

    async def delete_web_session(self, key: str) -> None:
        await self._db.execute("DELETE FROM web_sessions WHERE key = ?", (key,))

    async def purge_web_sessions(self, now: float, *, limit: int) -> int:
        """Delete up to `limit` expired sessions, oldest first, and say how many went: a backlog is worked off in
        short statements, never one that holds the database while uploads wait."""
        cursor = await self._db.execute(
            "DELETE FROM web_sessions WHERE key IN "
            "(SELECT key FROM web_sessions WHERE expires <= ? ORDER BY expires LIMIT ?)",
            (now, limit),
        )
        return cursor.rowcount

    # ---- Throttle counters and holds (issue #13) ------------------------------------------------------------
    # The rules are gateway/throttle.py's. Each reservation is one statement: concurrent attempts, in any process,
    # are counted one after the other, and each learns whether it was counted before anything is checked. Each
    # waits for any transaction of another coroutine to end (`_outside`): on the shared connection it would join
    # that transaction, and a rollback would take the count with it.

    def _outside(self) -> asyncio.Lock:
        """Held while no other coroutine's transaction is open (the lock `_transaction` holds)."""
        return self._transaction_lock

    async def reserve_streak(self, key: str, rule: Streak, now: float, holder: str) -> Counted:
        """Count one more failure in a row, unless the streak is locked (then nothing changes)."""
        params = {"key": key, "now": now, "holder": holder, "forget": rule.forget, **_streak_params(rule)}
        async with self._outside():
            (row,) = await self._returning(_RESERVE_STREAK, params)
        return Counted(bool(row[0]), float(row[1]), float(row[2]))

    async def refund_streak(self, key: str, rule: Streak, now: float) -> None:
        """Take back one counted attempt (it succeeded, or was never checked); its lock, if it set one, ends now."""
        async with self._outside():
            await self._db.execute(_REFUND_STREAK, {"key": key, "now": now, **_streak_params(rule)})

    async def clear_streak(self, key: str) -> None:
        async with self._outside():
            await self._db.execute("DELETE FROM throttle_streaks WHERE key = ?", (key,))

    async def reserve_bucket(self, key: str, rule: Bucket, now: float, holder: str) -> Counted:
        """Add one attempt to a leaky bucket, unless it would overflow (then nothing changes)."""
        params = {"key": key, "now": now, "holder": holder, "rate": rule.rate, "limit": rule.limit}
        async with self._outside():
            (row,) = await self._returning(_RESERVE_BUCKET, params)
        return Counted(bool(row[0]), float(row[1]), float(row[2]))

    async def refund_bucket(self, key: str) -> None:
        async with self._outside():
            await self._db.execute(
                "UPDATE throttle_buckets SET level = CASE WHEN level > 1 THEN level - 1 ELSE 0 END WHERE key = ?",
                (key,),
            )

    async def take_hold(self, key: str, holder: str, now: float, lifetime: float) -> bool:
        """A mutex across processes; one left by a process that died lapses after `lifetime`."""
        async with self._outside():
            rows = await self._returning(
                "INSERT INTO throttle_holds (key, holder, expires) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "holder = excluded.holder, expires = excluded.expires WHERE throttle_holds.expires <= ? "
                "RETURNING holder",
                (key, holder, now + lifetime, now),
            )
        return bool(rows) and rows[0][0] == holder

    async def release_hold(self, key: str, holder: str) -> None:
        async with self._outside():
            await self._db.execute("DELETE FROM throttle_holds WHERE key = ? AND holder = ?", (key, holder))

    async def purge_throttle(self, now: float, *, streaks_before: float, buckets_before: float) -> None:
        """Drop counters that no longer hold anything back (each is as good as absent), and lapsed holds."""
        async with self._outside():
            await self._db.execute("DELETE FROM throttle_streaks WHERE last < ?", (streaks_before,))
            await self._db.execute("DELETE FROM throttle_buckets WHERE at < ?", (buckets_before,))
            await self._db.execute("DELETE FROM throttle_holds WHERE expires < ?", (now,))


def _audit_row(entry: AuditEvent) -> tuple[str, Sequence[Any]]:
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


def _ensure_project(name: str, display_name: str) -> tuple[str, Sequence[Any]]:
    return (
        "INSERT OR IGNORE INTO projects (name, id, display_name, created) VALUES (?, ?, ?, ?)",
        (name, str(uuid.uuid4()), display_name, time.time()),
    )


def _release_claim(project: str, user_id: str) -> list[tuple[str, Sequence[Any]]]:
    return [
        ("UPDATE project_claims SET holders = holders - 1 WHERE project = ? AND user_id = ?", (project, user_id)),
        ("DELETE FROM project_claims WHERE project = ? AND holders <= 0", (project,)),
    ]


def _streak_delay(failures: str) -> str:
    """`Streak.delay` in SQL, of the column or expression `failures` (integers only: no overflow, any engine)."""
    return (
        f"(CASE WHEN {failures} < :limit THEN 0 WHEN {failures} >= :cap THEN :max_lock "
        f"ELSE :lock << ({failures} - :limit) END)"
    )


def _streak_params(rule: Streak) -> dict[str, int]:
    return {"limit": rule.limit, "cap": rule.cap, "lock": rule.lock, "max_lock": rule.max_lock}


# The statements are put together from the fixed fragments above only; every value is a bound parameter.
_DELAY = _streak_delay("throttle_streaks.failures")
_UNLOCKED = f":now >= throttle_streaks.last + {_DELAY}"
_RESERVE_STREAK = (
    "INSERT INTO throttle_streaks (key, failures, last, holder) VALUES (:key, 1, :now, :holder) "  # noqa: S608
    "ON CONFLICT (key) DO UPDATE SET "
    f"failures = CASE WHEN NOT ({_UNLOCKED}) THEN throttle_streaks.failures "
    f"WHEN :now >= throttle_streaks.last + {_DELAY} + :forget THEN 1 "
    "WHEN throttle_streaks.failures < :cap THEN throttle_streaks.failures + 1 ELSE :cap END, "
    f"last = CASE WHEN {_UNLOCKED} THEN :now ELSE throttle_streaks.last END, "
    f"holder = CASE WHEN {_UNLOCKED} THEN :holder ELSE throttle_streaks.holder END "
    "RETURNING holder = :holder, failures, last"
)
_REFUND_STREAK = (
    "UPDATE throttle_streaks SET failures = failures - 1, "  # noqa: S608
    f"last = :now - {_streak_delay('(failures - 1)')} WHERE key = :key AND failures > 0"
)
_DRAINED = (
    "(CASE WHEN :now <= throttle_buckets.at THEN throttle_buckets.level "
    "WHEN throttle_buckets.level - (:now - throttle_buckets.at) * :rate > 0 "
    "THEN throttle_buckets.level - (:now - throttle_buckets.at) * :rate ELSE 0 END)"
)
_FITS = f"{_DRAINED} + 1 <= :limit"
_RESERVE_BUCKET = (
    "INSERT INTO throttle_buckets (key, level, at, holder) VALUES (:key, 1, :now, :holder) "  # noqa: S608
    "ON CONFLICT (key) DO UPDATE SET "
    f"level = CASE WHEN {_FITS} THEN {_DRAINED} + 1 ELSE throttle_buckets.level END, "
    f"at = CASE WHEN {_FITS} THEN :now ELSE throttle_buckets.at END, "
    f"holder = CASE WHEN {_FITS} THEN :holder ELSE throttle_buckets.holder END "
    "RETURNING holder = :holder, level, at"
)


# ---- end of the throttle's part of the store


_USER_SELECT = (
    "SELECT users.*, (SELECT COUNT(*) FROM webauthn_credentials w WHERE w.user_id = users.id) AS webauthn_count "
    "FROM users "
)


def _user(row: aiosqlite.Row) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        password_hash=row["password_hash"],
        created=row["created"],
        has_totp=row["totp_secret"] is not None,
        webauthn_count=row["webauthn_count"],
    )


def _token(row: aiosqlite.Row) -> TokenRow:
    return TokenRow(
        id=row["id"],
        user_id=row["user_id"],
        description=row["description"],
        secret=row["secret"],
        caveats=tuple(json.loads(row["caveats"])),
        created=row["created"],
        last_used=row["last_used"],
        expires=row["expires"],
        revoked=row["revoked"],
        permissions=tuple(row["permissions"].split()),
    )


@dataclass(frozen=True)
class WebAuthnCredential:
    """A security key: `id` is the credential id, base64url as the browser sends it."""

    id: str
    name: str
    public_key: bytes
    sign_count: int
    created: float
    last_used: float | None = None


def _webauthn(row: aiosqlite.Row) -> WebAuthnCredential:
    return WebAuthnCredential(
        id=row["id"],
        name=row["name"],
        public_key=row["public_key"],
        sign_count=row["sign_count"],
        created=row["created"],
        last_used=row["last_used"],
    )
