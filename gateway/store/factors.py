"""Second factors: TOTP (its sealed secret and last used step), recovery codes (hashes) and WebAuthn keys."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from gateway.store import tables
from gateway.store.audit import AuditLog
from gateway.store.records import StoreError, User, WebAuthnCredential

users, codes, keys = tables.users, tables.recovery_codes, tables.webauthn_credentials


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
            await self._execute(
                update(users).where(users.c.id == user.id).values(totp_secret=sealed_secret, totp_last_step=last_step)
            )
            if recovery_hashes is not None:
                await self._set_recovery_codes(user.id, recovery_hashes)
                detail |= {"recovery_codes": len(recovery_hashes), "replaced": user.has_2fa}
            await self.audit("user.2fa.totp_enabled", user_name=user.name, address=address, **detail)

    async def totp_secret(self, user_id: str) -> tuple[bytes | None, int | None]:
        row = await self._row(select(users.c.totp_secret, users.c.totp_last_step).where(users.c.id == user_id))
        return (row["totp_secret"], row["totp_last_step"]) if row else (None, None)

    async def advance_totp_step(self, user_id: str, step: int) -> bool:
        """Record a used TOTP step; False when it (or a later one) was used already, in any process (the update's
        condition is re-checked on the row it locks)."""
        last = users.c.totp_last_step
        changed = await self._execute(
            update(users).where(users.c.id == user_id, last.is_(None) | (last < step)).values(totp_last_step=step)
        )
        return changed == 1

    async def use_recovery_code(self, user_id: str, code_hash: str) -> bool:
        changed = await self._execute(
            update(codes)
            .where(codes.c.user_id == user_id, codes.c.code_hash == code_hash, codes.c.used_at.is_(None))
            .values(used_at=time.time())
        )
        return changed == 1

    async def delete_totp(self, user: User, *, address: str | None = None) -> None:
        async with self._transaction():
            await self._execute(
                update(users).where(users.c.id == user.id).values(totp_secret=None, totp_last_step=None)
            )
            await self.audit("user.2fa.totp_removed", user_name=user.name, address=address)

    async def count_recovery_codes(self, user_id: str) -> int:
        """Unused recovery codes."""
        row = await self._row(
            select(func.count().label("n")).where(codes.c.user_id == user_id, codes.c.used_at.is_(None))
        )
        return int(row["n"]) if row else 0

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
            async with self._transaction():
                await self._execute(
                    insert(keys).values(
                        id=credential.id,
                        user_id=user.id,
                        name=credential.name,
                        public_key=credential.public_key,
                        sign_count=credential.sign_count,
                        created=credential.created,
                    )
                )
                await self.audit("user.2fa.webauthn_added", user_name=user.name, address=address, key=credential.name)
        except IntegrityError:
            raise StoreError("this security key is registered already") from None

    async def webauthn_credentials(self, user_id: str) -> list[WebAuthnCredential]:
        query = select(keys).where(keys.c.user_id == user_id).order_by(keys.c.created)
        return [_webauthn(row) for row in await self._rows(query)]

    async def remove_webauthn_credential(self, user: User, credential_id: str, *, address: str | None = None) -> bool:
        async with self._transaction():
            removed = await self._execute(delete(keys).where(keys.c.id == credential_id, keys.c.user_id == user.id))
            if removed:
                await self.audit("user.2fa.webauthn_removed", user_name=user.name, address=address)
        return removed == 1

    async def use_webauthn_credential(self, credential_id: str, sign_count: int) -> None:
        await self._execute(
            update(keys).where(keys.c.id == credential_id).values(sign_count=sign_count, last_used=time.time())
        )

    async def _set_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        await self._execute(delete(codes).where(codes.c.user_id == user_id))
        if code_hashes:
            await self._execute(insert(codes), [{"user_id": user_id, "code_hash": code} for code in code_hashes])


def _webauthn(row: RowMapping) -> WebAuthnCredential:
    return WebAuthnCredential(
        id=row["id"],
        name=row["name"],
        public_key=row["public_key"],
        sign_count=row["sign_count"],
        created=row["created"],
        last_used=row["last_used"],
    )
