"""The store: users, 2FA factors, tokens, projects and roles, files, claims and size reservations, web sessions,
throttle counters, and the audit trail, behind one facade, `Store`.

Callers see only `Store`'s methods, the records of `gateway.store.records` and its two errors: no SQL, no rows, no
SQLite exceptions. Each aggregate is one module over the shared connection (`gateway.store.connection`, the
only one that knows SQLite's library); the schema is versioned and migrated at open (`gateway.store.schema`).
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.audit import AuditMirror
from gateway.store.connection import connect, translate_errors
from gateway.store.factors import Factors
from gateway.store.projects import CLAIM_LIFETIME, RESERVATION_LIFETIME, Projects
from gateway.store.records import (
    AuditEvent,
    Project,
    RemovedUser,
    StoredFile,
    StoreError,
    StoreFailure,
    TokenRow,
    UploadState,
    User,
    UserSummary,
    WebAuthnCredential,
)
from gateway.store.schema import MIGRATIONS
from gateway.store.sessions import WebSessions
from gateway.store.throttle import Throttle
from gateway.store.tokens import Tokens

__all__ = [
    "CLAIM_LIFETIME",
    "MIGRATIONS",
    "RESERVATION_LIFETIME",
    "AuditEvent",
    "Project",
    "RemovedUser",
    "Store",
    "StoreError",
    "StoreFailure",
    "StoredFile",
    "TokenRow",
    "UploadState",
    "User",
    "UserSummary",
    "WebAuthnCredential",
]


@translate_errors
class Store(Tokens, Factors, Projects, WebSessions, Throttle):
    """Every aggregate's methods on one connection; the one object callers hold."""

    @classmethod
    async def open(cls, path: Path, *, audit_file: Path | None = None) -> Store:
        """Open (and migrate) the database; `audit_file` also receives every audit event as a JSON line.

        The database (so its -wal and -shm too) and the audit file are created mode 0600 (`gateway.private`).
        """
        if audit_file is not None:
            AuditMirror.create(audit_file)
        return cls(await connect(path), audit_file)
