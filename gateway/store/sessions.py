"""Account-page sessions (aiohttp-session's storage, `gateway.web.sessions`), keyed by a keyed hash of the cookie."""

from __future__ import annotations

from gateway.store.connection import Connection


class WebSessions(Connection):
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
