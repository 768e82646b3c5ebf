"""Users, and their administration (issue #16): who acts is `by`, the user concerned is the event's user.
`remove_user`, `set_password` and `disable_2fa` also end the user's web sessions."""

from __future__ import annotations

import time
import uuid

from gateway.store.audit import AuditLog
from gateway.store.connection import IntegrityError, Row
from gateway.store.records import RemovedUser, StoreError, User, UserSummary


class Users(AuditLog):
    async def add_user(self, name: str, password_hash: str) -> User:
        user = User(id=str(uuid.uuid4()), name=name, password_hash=password_hash, created=int(time.time()))
        try:
            await self._db.execute(
                "INSERT INTO users (id, name, password_hash, created) VALUES (?, ?, ?, ?)",
                (user.id, user.name, user.password_hash, user.created),
            )
        except IntegrityError:
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


_USER_SELECT = (
    "SELECT users.*, (SELECT COUNT(*) FROM webauthn_credentials w WHERE w.user_id = users.id) AS webauthn_count "
    "FROM users "
)


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        password_hash=row["password_hash"],
        created=row["created"],
        has_totp=row["totp_secret"] is not None,
        webauthn_count=row["webauthn_count"],
    )
