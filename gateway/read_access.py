"""Who may read the index through the gateway (`reads.access`), decided before anything is fetched or served.

With `access = "public"` everyone may read. With `"authenticated"`, every read carries HTTP Basic credentials, as
pip, uv, poetry and pdm send them (URL credentials, netrc, keyring): a user's password (not for accounts with 2FA,
as for uploads under the default `policy.password_uploads`) or an API token the gateway granted reading (`token
create NAME --read`). A project-scoped token reads only its projects' pages and files; every other page or file is
"not found" to it, and the index root lists only its projects. A caveat can narrow what a token may read, never
widen it: the grant is the store's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from html import escape
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from cachetools import TTLCache

from gateway import tokens
from gateway.authentication import Authenticator, Identity
from gateway.credentials import PasswordCredentials, TokenCredentials, challenge, parse_authorization
from gateway.errors import GatewayError
from gateway.guard import Guard
from gateway.logs import FIELDS, client_of
from gateway.metrics import Metrics
from gateway.passwords import _DUMMY_HASH, verify_password
from gateway.store import Store, User
from gateway.throttle import network_of

# A verified password is remembered this long (per process), so the dozens of requests of one `pip install` cost
# one argon2 check. The key includes the stored hash: a changed password or a removed user misses at once.
PASSWORD_TTL = 300.0
PASSWORD_CACHE_SIZE = 1024


@dataclass(frozen=True)
class ReadTarget:
    """What a read asks for: the index root, a project's page, a distribution file, or anything else.

    `project` is the PEP 503 name for a page or a file; None for the root and for paths that name no project.
    """

    kind: Literal["root", "project", "file", "other"]
    project: str | None = None


ROOT = ReadTarget("root")
OTHER = ReadTarget("other")


@dataclass(frozen=True)
class ReadGrant:
    """What the reader may see: every project (`projects` None) or only these PEP 503 names.

    `authenticated` answers must not be kept by shared caches (`Cache-Control: private`): `cache_control()`.
    """

    projects: frozenset[str] | None = None
    authenticated: bool = False

    def may_see(self, project: str) -> bool:
        """Filter the index root (HTML or JSON) with this: a scoped token lists only its own projects."""
        return self.projects is None or project in self.projects

    def cache_control(self, public_value: str) -> str:
        """The Cache-Control for an answer that would be `public_value` on a public index."""
        return f"private, {public_value.removeprefix('public, ')}" if self.authenticated else public_value


EVERYTHING = ReadGrant()


def root_page(names: list[tuple[str, str]], grant: ReadGrant) -> str:
    """A PEP 503 root listing only what `grant` may see; `names` are (PEP 503 name, name as listed)."""
    links = "".join(
        f'    <a href="/simple/{quote(name)}/">{escape(listed)}</a><br>\n'
        for name, listed in names
        if grant.may_see(name)
    )
    return f"<!DOCTYPE html>\n<html>\n  <head><title>Simple index</title></head>\n  <body>\n{links}  </body>\n</html>\n"


def _refusal(metrics: Metrics, status: int, message: str, reason: str) -> GatewayError:
    metrics.reads_refused.labels(reason).inc()
    if status == 401:
        return challenge(message, reason)
    return GatewayError(status, message, reason)


class ReadGuard:
    """The access decision for reads: `authorize_target(request, target)` before a page or a file is fetched or
    served, for the target the allowlist (`gateway.reads.paths`) made of the request."""

    def __init__(
        self,
        access: Literal["public", "authenticated"],
        store: Store,
        authenticator: Authenticator,
        metrics: Metrics,
        *,
        guard: Guard,
        public_url: str,
    ) -> None:
        """`guard`: the throttle of every password check (`gateway.guard`), which password reads go through too."""
        self.access = access
        self._store = store
        self._authenticator = authenticator
        self._metrics = metrics
        self._guard = guard
        self._tokens_url = f"{public_url}/account/tokens"
        # Keyed by an HMAC (a per-process random key) of the user id, the stored hash, the password and the client's
        # address: neither the password nor anything an offline attack could use stays in memory after the request,
        # and a guess from another address never skips the throttle by matching a password the owner just used.
        self._key = secrets.token_bytes(32)
        self._passwords: TTLCache[bytes, bool] = TTLCache(maxsize=PASSWORD_CACHE_SIZE, ttl=PASSWORD_TTL)
        self._checking: dict[bytes, asyncio.Future[bool]] = {}

    async def authorize_target(self, request: web.Request, target: ReadTarget) -> ReadGrant:
        """The reader's grant, or the refusal raised (401, 403, or 404 outside a token's scope); a refusal's reason
        goes on the access log line."""
        if self.access == "public":
            return EVERYTHING
        fields = request.get(FIELDS)
        try:
            return await self._decide(request, target, fields)
        except GatewayError as exc:
            if fields is not None:
                fields.update(reason=exc.reason)
            raise

    async def _decide(self, request: web.Request, target: ReadTarget, fields: dict[str, Any] | None) -> ReadGrant:
        header = request.headers.get("Authorization")
        if not header or not header.strip():
            raise _refusal(
                self._metrics,
                401,
                "Authentication required: this index is private; send your user name and password, or __token__ "
                "and an API token that may read",
                "read_credentials_required",
            )
        try:
            credentials = parse_authorization(header)
        except GatewayError as exc:
            raise _refusal(self._metrics, 401, exc.message, exc.reason) from None
        if isinstance(credentials, PasswordCredentials):
            try:
                user = await self._password_user(request, credentials)
            except GatewayError as exc:
                if exc.reason in ("throttled", "password_checks_busy"):
                    self._metrics.reads_refused.labels(exc.reason).inc()
                raise
            if fields is not None:
                fields.update(user=user.name)
            return ReadGrant(authenticated=True)
        identity = await self._token_identity(credentials)
        if fields is not None:
            fields.update(user=identity.user.name, token_id=identity.token_id)
        return await self._token_grant(identity, target)

    async def _password_user(self, request: web.Request, credentials: PasswordCredentials) -> User:
        """The user whose password this is. 2FA is decided on the name alone, before the password is looked at, so
        the answer never tells a right password from a wrong one; the check itself goes through the throttle (429
        past its limits) on the bounded password pool (503 when full), once per PASSWORD_TTL and client."""
        user = await self._store.get_user(credentials.username)
        if user is not None and user.has_2fa:
            raise _refusal(
                self._metrics,
                403,
                "Username/Password authentication is no longer supported for accounts with two-factor authentication. "
                f"Read with an API token that may read (user name __token__): {self._tokens_url}",
                "password_with_2fa",
            )
        stored = user.password_hash if user else _DUMMY_HASH
        parts = (user.id if user else "", stored, credentials.password, network_of(client_of(request)))
        key = hmac.digest(self._key, "\0".join(parts).encode(), hashlib.sha256)
        if user is not None and self._passwords.get(key):
            return user
        pending = self._checking.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._checked(request, credentials.username, stored, credentials.password))
            self._checking[key] = pending
            pending.add_done_callback(lambda _: self._checking.pop(key, None))
        ok = await asyncio.shield(pending)
        if user is None or not ok:
            raise _refusal(
                self._metrics,
                401,
                "Invalid or non-existent authentication information. Check the user name and password, or read with "
                "an API token and user name __token__",
                "invalid_credentials",
            )
        self._passwords[key] = True
        return user

    async def _checked(self, request: web.Request, name: str, stored: str, password: str) -> bool:
        """One argon2 check under the throttle; concurrent requests with the same credentials share it."""
        self._authenticator.admit_password()

        async def check() -> bool:
            ok = await self._authenticator.hash_check(functools.partial(verify_password, stored, password))
            if not ok:
                self._metrics.auth_failures.labels("password").inc()
            return ok

        return await self._guard.attempt(name, client_of(request), check, kind="read", surface="read", final=True)

    async def _token_identity(self, credentials: TokenCredentials) -> Identity:
        """The token's owner, from a fresh read of its row: a revocation (or a removed user) counts at once."""
        try:
            identity = await self._authenticator.authenticate(credentials)
        except GatewayError as exc:
            raise _refusal(self._metrics, 401, exc.message, exc.reason) from None
        assert identity.token is not None
        row = await self._store.get_token(identity.token.id)
        if row is None or row.revoked is not None:
            self._authenticator.forget(identity.token.id)
            raise _refusal(
                self._metrics, 401, "Invalid API Token: token has been revoked; create a new one", "revoked_token"
            )
        if tokens.READ not in row.permissions:
            raise _refusal(
                self._metrics,
                403,
                "Invalid API Token: this token may not read the index (tokens upload only unless created with "
                f"--read or 'may read'): create one that may read at {self._tokens_url}",
                "read_not_granted",
            )
        return dataclasses.replace(identity, token=row)

    async def _token_grant(self, identity: Identity, target: ReadTarget) -> ReadGrant:
        """Every caveat but the project ones, then the project: outside the token's scope is 'not found'."""
        now = time.time()
        self._check(identity, None, None, now, listing=True)
        scoped = any(isinstance(c, tokens.ProjectName | tokens.ProjectID) for c in identity.caveats)
        if not scoped:
            if target.project is not None:  # no project caveat: the project's id cannot matter
                self._check(identity, target.project, None, now, listing=False)
            return ReadGrant(authenticated=True)
        if target.kind == "root":
            return ReadGrant(frozenset(await self._visible(identity, now)), authenticated=True)
        if target.project is not None and await self._in_scope(identity, target.project, now):
            return ReadGrant(frozenset({target.project}), authenticated=True)
        raise _refusal(
            self._metrics,
            404,
            "Not Found: no such project or file for this token (it is scoped to other projects)",
            "read_outside_scope",
        )

    async def _visible(self, identity: Identity, now: float) -> list[str]:
        """The projects a scoped token may read: each candidate checked against every caveat."""
        named = [set(c.normalized_names) for c in identity.caveats if isinstance(c, tokens.ProjectName)]
        ids = [set(c.project_ids) for c in identity.caveats if isinstance(c, tokens.ProjectID)]
        if named:
            candidates = set.intersection(*named)
        else:  # scoped by id alone: only the projects with those ids, not one check per project the store has
            candidates = {p.name for p in await self._store.all_projects() if all(p.id in some for some in ids)}
        return [name for name in sorted(candidates) if await self._in_scope(identity, name, now)]

    async def _in_scope(self, identity: Identity, project: str, now: float) -> bool:
        found, _, _ = await self._store.project_access(project, identity.user.id)
        try:
            self._authenticator.check_token(identity, project, found.id if found else None, now, action=tokens.READ)
        except GatewayError:
            return False
        return True

    def _check(
        self, identity: Identity, project: str | None, project_id: str | None, now: float, *, listing: bool
    ) -> None:
        """Signature and caveats for a read; a failure is the token's (403 `invalid_token`), counted as a refusal."""
        try:
            self._authenticator.check_token(identity, project, project_id, now, action=tokens.READ, listing=listing)
        except GatewayError as exc:
            self._metrics.reads_refused.labels(exc.reason).inc()
            raise
