"""Second factors: TOTP (its sealed secret and last used step), recovery codes (hashes) and WebAuthn keys."""

from __future__ import annotations

import time
from typing import Any

from gateway.store.audit import AuditLog
from gateway.store.connection import IntegrityError, Row
from gateway.store.records import StoreError, User, WebAuthnCredential


class Factors(AuditLog):
    async def set_totp(
        self,
        user: User,
        sealed_secret: bytes,
        recovery_hashes: list[str] | None = None,
        *,
        last_step: int | None = None,
        by: str | None = None,
        address: str | None = None,
    ) -> None:
        """Enrol TOTP, the one way (`gateway.accounts.enrol_totp`). `last_step`: the step of the code that proved
        the seed, so that code cannot sign in afterwards; `recovery_hashes`, when given, replace the recovery codes
        in the same transaction (an administrator's enrolment)."""
        detail: dict[str, Any] = {"by": by} if by is not None else {}
        async with self._transaction():
            await self._db.execute(
                "UPDATE users SET totp_secret = ?, totp_last_step = ? WHERE id = ?", (sealed_secret, last_step, user.id)
            )
            if recovery_hashes is not None:
                await self._set_recovery_codes(user.id, recovery_hashes)
                detail |= {"recovery_codes": len(recovery_hashes), "replaced": user.has_2fa}
        await self.audit("user.2fa.totp_enabled", user_name=user.name, address=address, **detail)

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
        except IntegrityError:
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

    async def _set_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        await self._db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
        await self._db.executemany(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
            [(user_id, code_hash) for code_hash in code_hashes],
        )


def _webauthn(row: Row) -> WebAuthnCredential:
    return WebAuthnCredential(
        id=row["id"],
        name=row["name"],
        public_key=row["public_key"],
        sign_count=row["sign_count"],
        created=row["created"],
        last_used=row["last_used"],
    )
