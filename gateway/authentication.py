"""Who is uploading or reading, on the request's headers: a token or a password, verified.

`Authenticator` checks a token's structure, row, revocation and signature before a byte of the body is read, and its
caveats (`check_token`) once the project is known; it checks passwords on their own bounded pool
(`gateway.password_checks`), never on the event loop. Its caches keep that cheap without letting a revocation
lag, and it keeps a token's `last_used`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachetools import LRUCache, TTLCache

from gateway import tokens
from gateway.credentials import TokenCredentials
from gateway.errors import GatewayError
from gateway.passwords import _DUMMY_HASH, verify_password
from gateway.store import Store, TokenRow, User
from gateway.store.publishers import PUBLISHER

if TYPE_CHECKING:  # annotations only: `token list` and the other store commands need neither
    from gateway.metrics import Metrics
    from gateway.password_checks import PasswordChecks

# NOTE: a revocation, or any change to a token's owner, made through any gateway process (a replica, the CLI, the
# pages) reaches this one through the change log within about a second (`gateway.changes`), which drops the row;
# this bound is for the rest (a row changed by hand in the database).
ROW_TTL = 30.0
VERIFIED_TTL = 60.0
TOUCH_INTERVAL = 60.0


@dataclass(frozen=True)
class TokenSettings:
    prefix: str
    location: str
    server_secret: bytes


_Found = tuple[TokenRow, User, tuple[str, ...]]  # a token row, its owner, a publisher's project ids


@dataclass(frozen=True)
class Identity:
    """An authenticated uploader; `token` is None when the password was used."""

    user: User
    token: TokenRow | None = None
    parsed: tokens.ParsedToken | None = None
    token_hash: str = ""
    publisher_projects: tuple[str, ...] = ()  # a trusted publisher's principal: its projects' ids

    @property
    def token_id(self) -> str | None:
        return self.token.id if self.token else None

    @functools.cached_property
    def stored_caveats(self) -> list[tokens.Caveat]:
        """The caveats the store keeps for the token (none for a password)."""
        return [tokens.deserialize(c, user_id=self.user.id) for c in self.token.caveats] if self.token else []

    @functools.cached_property
    def caveats(self) -> list[tokens.Caveat]:
        """Every caveat that binds this token: embedded (ours and its holder's) and stored."""
        embedded = tokens.caveats_of(self.parsed, self.user.id) if self.parsed else []
        return [*embedded, *self.stored_caveats]


def _digest(token: str) -> str:
    """What the caches know a token by. A header's bytes that are not UTF-8 reach us as surrogates (aiohttp
    decodes with surrogateescape): hashed as those bytes, and the token then refused as malformed, not a 500."""
    return hashlib.sha256(token.encode(errors="surrogateescape")).hexdigest()


def invalid_auth() -> GatewayError:
    return GatewayError(
        403,
        "Invalid or non-existent authentication information. Check the username and password, "
        "or upload with an API token and username __token__",
        "invalid_credentials",
    )


def invalid_token(reason: str, code: str = "invalid_token") -> GatewayError:
    return GatewayError(403, f"Invalid API Token: {reason}", code)


class Authenticator:
    def __init__(self, store: Store, settings: TokenSettings, metrics: Metrics, checks: PasswordChecks) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._checks = checks
        self._rows: TTLCache[str, _Found | None] = TTLCache(maxsize=8192, ttl=ROW_TTL)
        # Moved by every drop: a row read before a drop (a revocation applied while the read was under way) is
        # used by its own request but never cached after it.
        self._drops = 0
        self._verified: TTLCache[tuple[str, str | None, str | None, str, bool], float] = TTLCache(
            maxsize=8192, ttl=VERIFIED_TTL
        )
        # Parsing is pure (the string decides it), so a parsed token is kept as long as it is in use.
        self._parsed: LRUCache[str, tokens.ParsedToken] = LRUCache(maxsize=8192)
        # So is a signature, for the token's secret: a token whose signature matched once is not re-hashed.
        self._signed: LRUCache[tuple[str, bytes], bool] = LRUCache(maxsize=8192)
        self._touched: TTLCache[str, bool] = TTLCache(maxsize=8192, ttl=TOUCH_INTERVAL)

    def admit_password(self) -> None:
        """503 at once when the password pool is full: before the throttle counts anything, or the store is read."""
        self._checks.admit()

    async def password_user(self, name: str, password: str) -> User | None:
        """The user when the password is theirs; as slow for an unknown name as for a wrong password."""
        return await self.verify(await self._store.get_user(name), password)

    async def hash_check(self, check: Callable[[], bool]) -> bool:
        """`check` (an argon2 verification) on the bounded password pool. Raises 503 when the pool is full."""
        return await self._checks.run(check)

    async def verify(self, user: User | None, password: str) -> User | None:
        """`user` (None: no such name) when the password is theirs. Raises 503 when the pool is full."""
        password_hash = user.password_hash if user else _DUMMY_HASH
        ok = await self._checks.run(functools.partial(verify_password, password_hash, password))
        if user is None or not ok:
            self._metrics.auth_failures.labels("password").inc()
            return None
        return user

    async def authenticate(self, credentials: TokenCredentials) -> Identity:
        token = credentials.token
        digest = _digest(token)
        parsed = self._parsed.get(digest) or self._parse(token)
        self._parsed[digest] = parsed
        found = await self._row(parsed.token_id)
        if found is None:
            self._fail("unknown")
            raise invalid_token("deleted or nonexistent macaroon")
        row, user, projects = found
        if row.revoked is not None:
            self._fail("revoked")
            raise invalid_token("token has been revoked; create a new one", "revoked_token")
        # The signature needs no form: a forged token is refused on the headers and never invited to send a body.
        # Its caveats (expiry, project, …) wait for the form's project, in check_token.
        if (digest, row.secret) not in self._signed:
            if not tokens.signature_matches(parsed, tokens.root_key(self._settings.server_secret, row.secret)):
                self._fail("invalid")
                raise invalid_token("signatures do not match")
            self._signed[digest, row.secret] = True
        return Identity(user=user, token=row, parsed=parsed, token_hash=digest, publisher_projects=projects)

    def _parse(self, token: str) -> tokens.ParsedToken:
        try:
            return tokens.parse(token, prefix=self._settings.prefix)
        except tokens.InvalidTokenError as exc:
            self._fail("malformed")
            hint = f" (tokens for this index start with '{self._settings.prefix}-')"
            raise invalid_token(f"{exc}{hint if not token.startswith(self._settings.prefix + '-') else ''}") from None

    async def _row(self, token_id: str) -> _Found | None:
        """The token's row and owner, and for a trusted publisher's principal the ids of its projects."""
        if token_id in self._rows:
            return self._rows[token_id]
        drops = self._drops
        row = await self._store.get_token(token_id)
        user = await self._store.get_user_by_id(row.user_id) if row else None
        projects = await self._store.publisher_project_ids(user.id) if user and user.kind == PUBLISHER else ()
        found = (row, user, projects) if row and user else None
        if drops == self._drops:
            self._rows[token_id] = found
        return found

    async def owner_of(self, credentials: TokenCredentials) -> tuple[str | None, str | None]:
        """For the audit trail of a refused token: its id, if it can be read, and its owner's name, if the id is
        one of ours (the row as `authenticate` read it: no further lookup while it is cached)."""
        digest = _digest(credentials.token)
        parsed = self._parsed.get(digest)
        if parsed is None:
            try:
                parsed = tokens.parse(credentials.token, prefix=self._settings.prefix)
            except tokens.InvalidTokenError:
                return None, None
        found = await self._row(parsed.token_id)
        return parsed.token_id, found[1].name if found else None

    def forget(self, token_id: str) -> None:
        """Drop a cached row at once (a revocation, here or in another process: `gateway.changes`)."""
        self._drops += 1
        self._rows.pop(token_id, None)

    def forget_user(self, name: str) -> None:
        """Drop the rows of every token of a user whose account changed (removed, 2FA, password); `name` folded."""
        self._drops += 1
        for token_id, found in list(self._rows.items()):
            if found is not None and found[1].name.lower() == name:
                self._rows.pop(token_id, None)

    def forget_all(self) -> None:
        """Drop every cached row: the change log could not be read for longer than they may be trusted."""
        self._drops += 1
        self._rows.clear()

    async def touch(self, identity: Identity) -> None:
        """Keep `last_used` after an accepted upload (to the minute: one write per token per minute, not per upload).

        Each use is in the audit trail anyway: every upload event carries its token id.
        """
        if identity.token is not None and identity.token.id not in self._touched:
            self._touched[identity.token.id] = True
            await self._store.touch_token(identity.token.id)

    def _fail(self, result: str) -> None:
        self._metrics.token_verifications.labels(result).inc()
        self._metrics.auth_failures.labels("token").inc()

    def check_token(
        self,
        identity: Identity,
        project: str | None,
        project_id: str | None,
        now: float,
        *,
        action: str = tokens.UPLOAD,
        listing: bool = False,
    ) -> None:
        """Signature and every caveat, for this project and action; a success is remembered until it could change.

        Whether the gateway granted `action` at all is the caller's check (`TokenRow.permissions`): caveats only narrow.
        """
        assert identity.token is not None and identity.parsed is not None
        key = (identity.token_hash, project, project_id, action, listing)
        if self._verified.get(key, 0.0) > now:
            self._metrics.token_verifications.labels("valid_cached").inc()
            return
        user = identity.user
        context = tokens.VerifyContext(
            user_id=user.id,
            project=project,
            project_id=project_id,
            now=int(now),
            action=action,
            listing=listing,
            publisher_id=user.id if user.kind == PUBLISHER else None,
            publisher_project_ids=identity.publisher_projects,
        )
        try:
            tokens.verify(
                identity.parsed,
                key=tokens.root_key(self._settings.server_secret, identity.token.secret),
                context=context,
                stored_caveats=identity.stored_caveats,
            )
        except tokens.InvalidTokenError as exc:
            self._fail("invalid")
            raise invalid_token(str(exc)) from None
        self._metrics.token_verifications.labels("valid").inc()
        expiries = [c.expires_at for c in identity.caveats if isinstance(c, tokens.Expiration)]
        self._verified[key] = min([now + VERIFIED_TTL, *expiries])
