"""API tokens as stored: their secret, caveats and permissions, use and revocation (verifying and minting them is
`gateway.tokens`', `gateway.authentication`'s and `gateway.accounts`')."""

from __future__ import annotations

import json
import time
import uuid

from gateway.store.connection import Row
from gateway.store.records import TokenRow, User
from gateway.store.users import Users


class Tokens(Users):
    """Tokens are their owners': revoking one audits it under its owner's name."""

    async def add_token(
        self,
        user: User,
        *,
        description: str,
        secret: bytes,
        caveats: list[str],
        expires: float | None,
        permissions: tuple[str, ...] = ("upload",),
    ) -> TokenRow:
        token = TokenRow(
            id=str(uuid.uuid4()),
            user_id=user.id,
            description=description,
            secret=secret,
            caveats=tuple(caveats),
            created=time.time(),
            last_used=None,
            expires=expires,
            revoked=None,
            permissions=tuple(sorted(set(permissions))),
        )
        await self._db.execute(
            "INSERT INTO tokens (id, user_id, description, secret, caveats, created, expires, permissions) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (
                token.id,
                user.id,
                description,
                secret,
                json.dumps(caveats),
                token.created,
                expires,
                " ".join(token.permissions),
            ),
        )
        await self.audit(
            "token.created",
            user_name=user.name,
            token_id=token.id,
            caveats=caveats,
            permissions=list(token.permissions),
        )
        return token

    async def get_token(self, token_id: str) -> TokenRow | None:
        row = await self._row("SELECT * FROM tokens WHERE id = ?", (token_id,))
        return _token(row) if row else None

    async def list_tokens(self, user: User | None = None) -> list[tuple[TokenRow, str]]:
        """Tokens with their owner's name, newest first."""
        query = "SELECT tokens.*, users.name AS user_name FROM tokens JOIN users ON users.id = tokens.user_id"
        args: tuple[str, ...] = ()
        if user is not None:
            query, args = query + " WHERE tokens.user_id = ?", (user.id,)
        return [
            (_token(row), row["user_name"])
            for row in await self._db.execute_fetchall(query + " ORDER BY tokens.created DESC", args)
        ]

    async def revoke_token(self, token_id: str, *, by: str) -> TokenRow | None:
        """Revoke one token; the audit event is its owner's, and says who revoked it (`by`)."""
        token = await self.get_token(token_id)
        if token is None or token.revoked is not None:
            return token
        owner = await self.get_user_by_id(token.user_id)
        await self._db.execute("UPDATE tokens SET revoked = ? WHERE id = ?", (time.time(), token_id))
        await self.audit("token.revoked", user_name=owner.name if owner else None, token_id=token_id, by=by)
        return await self.get_token(token_id)

    async def revoke_all_tokens(self, user: User, *, by: str) -> int:
        cursor = await self._db.execute(
            "UPDATE tokens SET revoked = ? WHERE user_id = ? AND revoked IS NULL", (time.time(), user.id)
        )
        await self.audit("token.revoked_all", user_name=user.name, by=by, count=cursor.rowcount)
        return cursor.rowcount

    async def touch_token(self, token_id: str) -> None:
        await self._db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (time.time(), token_id))


def _token(row: Row) -> TokenRow:
    return TokenRow(
        id=row["id"],
        user_id=row["user_id"],
        description=row["description"],
        secret=row["secret"],
        caveats=tuple(json.loads(row["caveats"])),
        created=row["created"],
        last_used=row["last_used"],
        expires=row["expires"],
        revoked=row["revoked"],
        permissions=tuple(row["permissions"].split()),
    )
