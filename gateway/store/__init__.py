"""The store: users, 2FA factors, tokens, projects and roles, files, claims and size reservations, web sessions,
throttle counters, and the audit trail, behind one facade, `Store`, on SQLite or PostgreSQL.

Callers see only `Store`'s methods, the records of `gateway.store.records` and its two errors: no SQL, no rows, no
backend's exceptions. Each aggregate is one module over the database (`gateway.store.connection`, the only one
that knows the drivers), its tables in `gateway.store.tables`; the schema is Alembic's (`gateway.store.schema`):
an empty database is created at open, one at an older revision is refused until `upload-gateway db upgrade`.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.audit import AuditMirror
from gateway.store.changelog import ChangeLog
from gateway.store.connection import connect, translate_errors
from gateway.store.factors import Factors
from gateway.store.once import OneTimeUse
from gateway.store.projects import CLAIM_LIFETIME, RESERVATION_LIFETIME
from gateway.store.publishers import Publishers
from gateway.store.records import (
    AuditEvent,
    Change,
    PendingPublisher,
    Project,
    ProjectBeingCreated,
    Publisher,
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
from gateway.store.schema import check
from gateway.store.sessions import WebSessions
from gateway.store.settings import Settings
from gateway.store.throttle import Throttle
from gateway.store.tokens import Tokens

__all__ = [
    "CLAIM_LIFETIME",
    "RESERVATION_LIFETIME",
    "AuditEvent",
    "Change",
    "PendingPublisher",
    "Project",
    "ProjectBeingCreated",
    "Publisher",
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
class Store(Tokens, Factors, Publishers, WebSessions, Throttle, ChangeLog, OneTimeUse, Settings):
    """Every aggregate's methods over one database; the one object callers hold."""

    @classmethod
    async def open(cls, url: str, *, audit_file: Path | None = None) -> Store:
        """Open the database of `url` (`store.url`), at this gateway's schema revision (an empty one is created
        at it); `audit_file` also receives every audit event as a JSON line.

        A SQLite database (so its -wal and -shm too) and the audit file are created mode 0600 (`gateway.private`).
        """
        if audit_file is not None:
            AuditMirror.create(audit_file)
        return cls(await connect(url, check), audit_file)
