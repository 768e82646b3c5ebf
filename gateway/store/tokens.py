"""API tokens as stored: their secret, caveats and permissions, use and revocation (verifying and minting them is
`gateway.tokens`', `gateway.authentication`'s and `gateway.accounts`')."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import RowMapping

from gateway.store import tables
from gateway.store.records import TokenRow, User
from gateway.store.users import Users

tokens = tables.tokens


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
        run: Mapping[str, str] | None = None,
        audit: Mapping[str, Any] | None = None,
    ) -> TokenRow:
        """A new token of `user`'s; `run` and `audit` are a minted token's (its CI run, what its audit adds)."""
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
            run=dict(run) if run else None,
        )
        async with self._transaction():
            await self._execute(
                insert(tokens).values(
                    id=token.id,
                    user_id=user.id,
                    description=description,
                    secret=secret,
                    caveats=json.dumps(caveats),
                    created=token.created,
                    expires=expires,
                    permissions=" ".join(token.permissions),
                    run=json.dumps(dict(run), sort_keys=True) if run else None,
                )
            )
            await self.audit(
                "token.created",
                user_name=user.name,
                token_id=token.id,
                caveats=caveats,
                permissions=list(token.permissions),
                **dict(audit or {}),
            )
        return token

    async def get_token(self, token_id: str) -> TokenRow | None:
        row = await self._row(_GET_TOKEN, {"id": token_id})
        return _token(row) if row else None

    async def list_tokens(self, user: User | None = None) -> list[tuple[TokenRow, str]]:
        """Tokens with their owner's name, newest first."""
        query = (
            select(tokens, tables.users.c.name.label("user_name"))
            .join(tables.users, tables.users.c.id == tokens.c.user_id)
            .order_by(tokens.c.created.desc())
        )
        if user is not None:
            query = query.where(tokens.c.user_id == user.id)
        return [(_token(row), row["user_name"]) for row in await self._rows(query)]

    async def revoke_token(self, token_id: str, *, by: str) -> TokenRow | None:
        """Revoke one token; the audit event is its owner's, and says who revoked it (`by`)."""
        async with self._transaction():
            revoked = await self._execute(
                update(tokens).where(tokens.c.id == token_id, tokens.c.revoked.is_(None)).values(revoked=time.time())
            )
            token = await self.get_token(token_id)
            if revoked and token is not None:
                owner = await self.get_user_by_id(token.user_id)
                await self.audit("token.revoked", user_name=owner.name if owner else None, token_id=token_id, by=by)
        return token

    async def revoke_all_tokens(self, user: User, *, by: str) -> int:
        async with self._transaction():
            count = await self._execute(
                update(tokens)
                .where(tokens.c.user_id == user.id, tokens.c.revoked.is_(None))
                .values(revoked=time.time())
            )
            await self.audit("token.revoked_all", user_name=user.name, by=by, count=count)
        return count

    async def touch_token(self, token_id: str) -> None:
        """Record a use. NOTE: as Warehouse does, the row is updated only if no other transaction holds it
        (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has no row locks and one writer): concurrent uploads with
        one token never wait on each other, nor deadlock, for a timestamp that is at most a minute stale anyway."""
        unlocked = select(tokens.c.id).where(tokens.c.id == token_id).with_for_update(skip_locked=True)
        await self._execute(update(tokens).where(tokens.c.id.in_(unlocked)).values(last_used=time.time()))


_GET_TOKEN = select(tokens).where(tokens.c.id == bindparam("id"))


def _token(row: RowMapping) -> TokenRow:
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
        run=json.loads(row["run"]) if row["run"] else None,
    )
