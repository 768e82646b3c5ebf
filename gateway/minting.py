"""API tokens minted for a user, and how a token's scope and grant read to people."""

from __future__ import annotations

import time

from gateway import tokens
from gateway.authentication import TokenSettings
from gateway.store import Project, Store, TokenRow, User


async def create_token(
    store: Store,
    settings: TokenSettings,
    user: User,
    *,
    description: str,
    projects: list[Project],
    expires_at: int | None,
    permissions: tuple[str, ...] = (tokens.UPLOAD,),
) -> tuple[str, TokenRow]:
    """Mint a token for `user`, for every project of theirs or for `projects` only; the string is shown once.

    Caveats follow PyPI: account-wide `[3, user_id]`, project-scoped `[1, names]` + `[2, ids]`, plus an
    expiry `[0, expires_at, created]`. They are embedded in the token and kept in the store, and both are checked.
    `permissions` (upload, read, or both) is the gateway's grant, kept in the store only: no caveat can widen it.
    """
    if not permissions or not set(permissions) <= set(tokens.ACTIONS):
        raise ValueError(f"permissions must be some of {tokens.ACTIONS}, not {permissions!r}")
    caveats: list[tokens.Caveat]
    if projects:
        caveats = [
            tokens.ProjectName(tuple(p.name for p in projects)),
            tokens.ProjectID(tuple(p.id for p in projects)),
        ]
    else:
        caveats = [tokens.RequestUser(user.id)]
    if expires_at is not None:
        caveats.append(tokens.Expiration(expires_at=expires_at, not_before=int(time.time()) - 1))
    secret = tokens.new_token_secret()
    row = await store.add_token(
        user,
        description=description,
        secret=secret,
        caveats=[tokens.serialize(c).decode() for c in caveats],
        expires=float(expires_at) if expires_at is not None else None,
        permissions=permissions,
    )
    key = tokens.root_key(settings.server_secret, secret)
    token = tokens.mint(prefix=settings.prefix, location=settings.location, token_id=row.id, key=key, caveats=caveats)
    return token, row


def scope_of(row: TokenRow, user_id: str) -> str:
    """How a token's stored caveats read to a person."""
    parts: list[str] = []
    for caveat in (tokens.deserialize(c, user_id=user_id) for c in row.caveats):
        if isinstance(caveat, tokens.ProjectName):
            parts.append("projects: " + ", ".join(caveat.normalized_names))
    scope = "; ".join(parts) or "all projects"
    return scope if row.permissions == (tokens.UPLOAD,) else f"{scope}; {permissions_of(row)}"


def permissions_of(row: TokenRow) -> str:
    """What the gateway granted the token, in words: "upload only", "read and upload" or "read only"."""
    if tokens.READ not in row.permissions:
        return "upload only"
    return "read and upload" if tokens.UPLOAD in row.permissions else "read only"
