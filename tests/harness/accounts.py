"""Users, roles and tokens written straight into an in-process app's store, as the CLI writes them."""

from __future__ import annotations

from collections.abc import Sequence

from packaging.utils import canonicalize_name

from gateway.accounts import create_token
from gateway.authentication import TokenSettings
from gateway.config import Config, token_location
from gateway.crypto import server_secret
from gateway.passwords import hash_password
from gateway.store import Store, User


async def add_user(config: Config, name: str, password: str, *, owns: Sequence[str] = ()) -> User:
    """A user with `password`, owner of the projects `owns` (display names)."""
    store = await Store.open(config.store.url)
    try:
        user = await store.add_user(name, hash_password(password))
        for project in owns:
            await store.grant(canonicalize_name(project), project, user, "owner", by="tests")
        return user
    finally:
        await store.close()


async def add_token(
    config: Config,
    user_name: str,
    *,
    projects: Sequence[str] = (),
    permissions: tuple[str, ...] = ("upload",),
    expires_at: int | None = None,
) -> str:
    """A token of `user_name`'s, account-wide or for `projects` (which the user must have a role on)."""
    store = await Store.open(config.store.url)
    try:
        user = await store.require_user(user_name)
        scoped = []
        for given in projects:
            project, _, _ = await store.project_access(canonicalize_name(given), user.id)
            assert project is not None, f"{user_name} has no role on {given}"
            scoped.append(project)
        settings = TokenSettings(config.tokens.prefix, token_location(config), server_secret(config))
        token, _ = await create_token(
            store,
            settings,
            user,
            description="tests",
            projects=scoped,
            expires_at=expires_at,
            permissions=permissions,
        )
        return token
    finally:
        await store.close()
