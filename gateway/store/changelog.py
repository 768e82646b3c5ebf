"""The change log: each committed event that another gateway process must act on (a revoked token, a changed
account, a changed project), as a kind and a key under a serial that grows in commit order.

The audit writes it (`AuditLog._audited`, with `steps`), in the transaction that records the event and under the
same lock, so a change cannot commit without its entry, and serials commit in order on PostgreSQL as on SQLite's
one writer: a follower that has read serial N has seen every change before it. On PostgreSQL the transaction
also NOTIFYs `gateway.store.listener.CHANNEL`, delivered at commit, as a wake-up only. `gateway.changes`
follows the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, insert, select, text

from gateway.store import tables
from gateway.store.connection import Connection, Step
from gateway.store.listener import CHANNEL, listen
from gateway.store.records import AuditEvent, Change

TOKEN = "token"  # noqa: S105 - a kind of change, not a secret
USER = "user"
PROJECT = "project"
KINDS = (TOKEN, USER, PROJECT)

# What each audited event changes for a process that caches: a token's row, an account (its tokens' rows, its
# factors), a project (its pages). tests/test_store_changes.py holds every event the
# gateway audits to a decision here or in NOT_CHANGES.
BY_EVENT: dict[str, str] = {
    "token.revoked": TOKEN,
    "token.revoked_all": USER,
    "user.removed": USER,
    "user.password_changed": USER,
    "user.2fa.disabled": USER,
    "user.2fa.totp_enabled": USER,
    "user.2fa.totp_removed": USER,
    "user.2fa.webauthn_added": USER,
    "user.2fa.webauthn_removed": USER,
    "user.2fa.recovery_codes_replaced": USER,
    "project.granted": PROJECT,
    "project.role_removed": PROJECT,
    "project.claimed": PROJECT,
    "upload.accepted": PROJECT,
    "publisher.removed": USER,  # its principal: the tokens minted for it
}
# Events nothing cached depends on: a new token or user is read when first used; sign-in events change sessions,
# which are read from the store on every request; imported projects existed on the index already.
NOT_CHANGES = frozenset(
    {"token.created", "user.added", "project.imported", "web.signed_in", "web.signed_out", "web.confirmed"}
    | {"web.attempt_failed"}
    | {"publisher.added", "publisher.pending_added", "publisher.pending_removed", "publisher.pending_refused"}
)


def changes_of(entries: Sequence[AuditEvent]) -> list[tuple[str, str]]:
    """(kind, key) for each entry that changes something; a user's key is the name folded, as names are unique."""
    found: dict[tuple[str, str], None] = {}
    for entry in entries:
        kind = BY_EVENT.get(entry.event)
        key = {TOKEN: entry.token_id, USER: (entry.user_name or "").lower(), PROJECT: entry.project}.get(kind or "")
        if kind is not None and key:
            found[kind, key] = None
    return list(found)


def steps(dialect: str, entries: Sequence[AuditEvent]) -> list[Step]:
    """The statements that log the entries' changes, to run after their audit rows, in their transaction (which
    holds the audit's lock on PostgreSQL, and there also NOTIFYs at its commit)."""
    changes = changes_of(entries)
    if not changes:
        return []
    now = time.time()
    found: list[Step] = [(insert(tables.changes), [{"at": now, "kind": kind, "key": key} for kind, key in changes])]
    if dialect == "postgresql":
        found.append((_NOTIFY, None))
    return found


_NOTIFY = text(f"NOTIFY {CHANNEL}")


class ChangeLog(Connection):
    """Reading the log, and PostgreSQL's wake-ups."""

    async def last_change(self) -> int:
        """The newest serial (0 for an empty log)."""
        row = await self._row(select(func.coalesce(func.max(tables.changes.c.serial), 0).label("serial")))
        return int(row["serial"]) if row else 0

    async def changes_after(self, serial: int, limit: int) -> list[Change]:
        """Up to `limit` changes past `serial`, oldest first."""
        query = (
            select(tables.changes)
            .where(tables.changes.c.serial > serial)
            .order_by(tables.changes.c.serial)
            .limit(limit)
        )
        return [Change(row["serial"], row["kind"], row["key"]) for row in await self._rows(query)]

    async def prune_changes(self, before: float) -> int:
        """Drop the entries older than `before` (every follower read them long ago)."""
        return await self._execute(tables.changes.delete().where(tables.changes.c.at < before))

    def listens(self) -> bool:
        """Whether this backend sends wake-ups (PostgreSQL); without them a follower relies on its timer."""
        return self._db.dialect == "postgresql"

    async def listen_for_changes(self, wake: Callable[[], None], **options: Any) -> None:
        """Until cancelled, call `wake` on each committed change and after every reconnect (PostgreSQL only)."""
        await listen(self._db.libpq_url(), wake, **options)
