"""Things used once only, across every process and replica: a WebAuthn challenge answered, an OIDC token's `jti`
exchanged (#19). One statement decides, so of two replicas using the same thing at once exactly one wins."""

from __future__ import annotations

import time

from sqlalchemy import text

from gateway.store.connection import Connection


class OneTimeUse(Connection):
    async def use_once(self, purpose: str, key: str, *, expires: float) -> bool:
        """True the first time `key` is used for `purpose` (or once an earlier use has expired); False after.
        `expires`: until when a second use must be refused (the thing's own expiry)."""
        return await self._execute(_USE, {"purpose": purpose, "key": key, "expires": expires, "now": time.time()}) == 1

    async def purge_used(self, now: float) -> int:
        """Forget uses whose things have expired (they are refused by their own expiry now)."""
        return await self._execute(text("DELETE FROM used_once WHERE expires < :now"), {"now": now})


_USE = text(
    "INSERT INTO used_once (purpose, key, expires) VALUES (:purpose, :key, :expires) "
    "ON CONFLICT (purpose, key) DO UPDATE SET expires = excluded.expires WHERE used_once.expires < :now"
)
