"""Account-page sessions (aiohttp-session's storage, `gateway.web.sessions`), keyed by a keyed hash of the cookie."""

from __future__ import annotations

from sqlalchemy import delete, select, text, update

from gateway.store import tables
from gateway.store.connection import Connection

sessions = tables.web_sessions


class WebSessions(Connection):
    async def save_web_session(self, key: str, data: str, expires: float) -> None:
        """Insert or replace a web UI session; `key` is a keyed hash of the cookie, never the cookie itself."""
        await self._execute(
            text(
                "INSERT INTO web_sessions (key, data, expires) VALUES (:key, :data, :expires) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires = excluded.expires"
            ),
            {"key": key, "data": data, "expires": expires},
        )

    async def update_web_session(self, key: str, data: str, expires: float) -> bool:
        """Change a session that is still there; False when it was ended meanwhile (signed out, the password reset),
        which a request that read it before must not undo by saving it again."""
        changed = update(sessions).where(sessions.c.key == key).values(data=data, expires=expires)
        return await self._execute(changed) == 1

    async def web_session(self, key: str, now: float) -> str | None:
        row = await self._row(select(sessions.c.data).where(sessions.c.key == key, sessions.c.expires > now))
        return str(row["data"]) if row else None

    async def delete_web_session(self, key: str) -> None:
        await self._execute(delete(sessions).where(sessions.c.key == key))

    async def purge_web_sessions(self, now: float, *, limit: int) -> int:
        """Delete up to `limit` expired sessions, oldest first, and say how many went: a backlog is worked off in
        short statements, never one that holds the database while uploads wait."""
        oldest = select(sessions.c.key).where(sessions.c.expires <= now).order_by(sessions.c.expires).limit(limit)
        return await self._execute(delete(sessions).where(sessions.c.key.in_(oldest)))
