"""The store's own facts: the fingerprint of the server secret its tokens and sealed seeds were made with, so
that a gateway started with another secret (a replica given a fresh file) refuses to start instead of refusing
every token."""

from __future__ import annotations

import hmac

from sqlalchemy import text

from gateway.store.connection import Connection

SECRET_FINGERPRINT = "secret_fingerprint"  # noqa: S105 - the setting's name, not a secret


class Settings(Connection):
    async def bind_secret(self, fingerprint: str) -> bool:
        """Whether `fingerprint` is the store's secret's; the first gateway to start records its own."""
        await self._execute(_RECORD, {"name": SECRET_FINGERPRINT, "value": fingerprint})
        row = await self._row(text("SELECT value FROM settings WHERE name = :name"), {"name": SECRET_FINGERPRINT})
        return row is not None and hmac.compare_digest(str(row["value"]), fingerprint)


_RECORD = text("INSERT INTO settings (name, value) VALUES (:name, :value) ON CONFLICT (name) DO NOTHING")
