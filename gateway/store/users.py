"""Users, and their administration (issue #16): who acts is `by`, the user concerned is the event's user.
`remove_user`, `set_password` and `disable_2fa` also end the user's web sessions. Names are unique in any letter
case and looked up so (`lower(name)`, the unique index of `gateway.store.tables`, against the name typed folded by
Python)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Text, bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from gateway.store import tables
from gateway.store.audit import AuditLog
from gateway.store.records import RemovedUser, StoreError, User, UserSummary

users = tables.users


class Users(AuditLog):
    async def add_user(self, name: str, password_hash: str) -> User:
        user = User(id=str(uuid.uuid4()), name=name, password_hash=password_hash, created=int(time.time()))
        try:
            async with self._transaction():
                await self._execute(
                    insert(users).values(
                        id=user.id, name=user.name, password_hash=user.password_hash, created=user.created
                    )
                )
                await self.audit("user.added", user_name=name)
        except IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None
        return user

    async def get_user(self, name: str) -> User | None:
        """The user of `name` in any letter case. The name typed is folded here, by Python, never by the database:
        PostgreSQL's `lower` follows its locale (under UTF-8 it makes "alİce" "alice"), and a spelling the store
        took for an account must fold to that account's name wherever else names are folded (the throttle's
        counters, `gateway.throttle.Keys`)."""
        row = await self._row(_BY_NAME, {"name": name.lower()})
        return _user(row) if row else None

    async def get_user_by_id(self, user_id: str) -> User | None:
        row = await self._row(_BY_ID, {"id": user_id})
        return _user(row) if row else None

    async def require_user(self, name: str) -> User:
        user = await self.get_user(name)
        if user is None:
            raise StoreError(f"no user named {name[:60]!r}")
        return user

    async def list_users(self) -> list[User]:
        return _by_name([_user(row) for row in await self._rows(_PEOPLE)])

    # --- Administration (issue #16): who acts is `by`, the user concerned is the event's user ---
    async def user_summaries(self, now: float) -> list[UserSummary]:
        """Every user with their tokens (all, and those neither revoked nor expired), last token use and unused
        recovery codes, by name."""
        rows = await self._rows(
            text(
                "SELECT users.*, "
                "(SELECT COUNT(*) FROM webauthn_credentials w WHERE w.user_id = users.id) AS webauthn_count, "
                "(SELECT COUNT(*) FROM tokens t WHERE t.user_id = users.id) AS tokens, "
                "(SELECT COUNT(*) FROM tokens t WHERE t.user_id = users.id AND t.revoked IS NULL "
                "AND (t.expires IS NULL OR t.expires > :now)) AS active_tokens, "
                "(SELECT MAX(t.last_used) FROM tokens t WHERE t.user_id = users.id) AS last_token_use, "
                "(SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = users.id AND r.used_at IS NULL) "
                "AS recovery_codes FROM users WHERE kind = 'person'"
            ),
            {"now": now},
        )
        summaries = [
            UserSummary(_user(row), row["tokens"], row["active_tokens"], row["last_token_use"], row["recovery_codes"])
            for row in rows
        ]
        return sorted(summaries, key=lambda summary: _name_order(summary.user))

    async def remove_user(self, user: User, *, by: str) -> RemovedUser:
        """Delete a user with everything that lets them act: tokens, factors, roles, claims (cascades) and account
        sessions. Their files' records and the audit trail keep the name. A running gateway refuses their tokens at
        once: an upload re-reads the user before its last bytes (`Store.upload_state`)."""
        async with self._transaction():
            orphaned = [
                str(row["project"])
                for row in await self._rows(
                    text(
                        "SELECT project FROM roles WHERE user_id = :user AND NOT EXISTS "
                        "(SELECT 1 FROM roles r WHERE r.project = roles.project AND r.user_id <> roles.user_id) "
                        "ORDER BY project"
                    ),
                    {"user": user.id},
                )
            ]
            counted = select(func.count().label("n")).where(tables.tokens.c.user_id == user.id)
            count = int((await self._rows(counted))[0]["n"])
            await self._end_web_sessions(user.id)
            await self._execute(delete(users).where(users.c.id == user.id))
            await self.audit("user.removed", user_name=user.name, by=by, tokens=count, orphaned=orphaned)
        return RemovedUser(tokens=count, orphaned=tuple(orphaned))

    async def set_password(self, user: User, password_hash: str, *, by: str) -> None:
        """A new password; the user's account sessions end (whoever had the old one is signed out)."""
        async with self._transaction():
            await self._execute(update(users).where(users.c.id == user.id).values(password_hash=password_hash))
            await self._end_web_sessions(user.id)
            await self.audit("user.password_changed", user_name=user.name, by=by)

    async def disable_2fa(self, user: User, *, by: str) -> None:
        """An administrator's reset of a lost second factor: TOTP, security keys and recovery codes go, and the
        user's account sessions end."""
        async with self._transaction():
            await self._execute(
                update(users).where(users.c.id == user.id).values(totp_secret=None, totp_last_step=None)
            )
            webauthn, codes = tables.webauthn_credentials, tables.recovery_codes
            await self._execute(delete(webauthn).where(webauthn.c.user_id == user.id))
            await self._execute(delete(codes).where(codes.c.user_id == user.id))
            await self._end_web_sessions(user.id)
            await self.audit(
                "user.2fa.disabled", user_name=user.name, by=by, totp=user.has_totp, security_keys=user.webauthn_count
            )

    async def _end_web_sessions(self, user_id: str) -> None:
        """The user's account-page sessions (signed in, or waiting for a second factor), in aiohttp-session's
        format: {"created": …, "session": {"uid": …}} (`gateway.web.sessions.USER_ID`), or {"session": {"pending":
        {"uid": …}}} (`gateway.web.views.PENDING`)."""
        sessions = tables.web_sessions
        data = sessions.c.data
        await self._execute(delete(sessions).where((SessionUser(data) == user_id) | (PendingUser(data) == user_id)))

    # --- end of administration


class SessionUser(FunctionElement[str]):
    """The `session.uid` of a web session's JSON text: `json_extract` on SQLite, `#>>` on PostgreSQL."""

    type = Text()
    inherit_cache = True
    path: tuple[str, ...] = ("session", "uid")


class PendingUser(SessionUser):
    """The `session.pending.uid` of a web session's JSON text: a sign-in waiting for its second factor."""

    inherit_cache = True
    path = ("session", "pending", "uid")


@compiles(SessionUser, "sqlite")
def _session_user_sqlite(element: SessionUser, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.{'.'.join(element.path)}')"


@compiles(SessionUser, "postgresql")
def _session_user_postgresql(element: SessionUser, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(CAST({compiler.process(element.clauses, **kw)} AS jsonb) #>> '{{{','.join(element.path)}}}')"


_WEBAUTHN_COUNT = (
    select(func.count())
    .where(tables.webauthn_credentials.c.user_id == users.c.id)
    .scalar_subquery()
    .label("webauthn_count")
)
_USER_SELECT = select(users, _WEBAUTHN_COUNT)
# Built once (the upload path reads users on every upload): a statement built per call costs more than its read.
# A name is a person's: publishers' principals are found by id only (their tokens), never by a name typed.
_PEOPLE = _USER_SELECT.where(users.c.kind == "person")
_BY_NAME = _PEOPLE.where(func.lower(users.c.name) == bindparam("name"))
_BY_ID = _USER_SELECT.where(users.c.id == bindparam("id"))


def _name_order(user: User) -> tuple[str, str]:
    """By name in any letter case, the same on every backend (whatever the database's collation)."""
    return user.name.lower(), user.name


def _by_name(found: list[User]) -> list[User]:
    return sorted(found, key=_name_order)


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        password_hash=row["password_hash"],
        created=row["created"],
        has_totp=row["totp_secret"] is not None,
        webauthn_count=row["webauthn_count"],
        kind=row["kind"],
    )
