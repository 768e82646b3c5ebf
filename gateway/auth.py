"""Who is uploading (authentication, on headers alone) and whether they may upload this (authorization).

Credentials are checked before a byte of the body is read; token caveats and project rights once the form
has named the project. Policy itself is pure (`gateway.policy`); this module feeds it from the store.
Password hashes are checked on their own bounded pool (`gateway.password_checks`), never on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import LRUCache, TTLCache

from gateway import policy, tokens
from gateway.config import PolicyConfig
from gateway.errors import GatewayError
from gateway.store import Project, Store, TokenRow, User

if TYPE_CHECKING:  # annotations only: `token list` and the other store commands need none of them
    from gateway.metrics import Metrics
    from gateway.password_checks import PasswordChecks
    from gateway.validation import Upload

TOKEN_USERNAME = "__token__"  # noqa: S105 - the username twine sends with a token, not a secret
# One of OWASP's equivalent argon2id settings (12 MiB, 3 passes): ~40 ms here, and a small transient
# allocation per check, so concurrent password uploads do not balloon memory.
_HASHER = PasswordHasher(memory_cost=12288, time_cost=3, parallelism=1)
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password: the same
# hasher, so the same parameters (tests/test_password_checks.py checks), on the same pool.
_DUMMY_HASH = _HASHER.hash("not a real password")
# NOTE: revocation must hold within 5 s in every process: rows are re-read after at most this long.
ROW_TTL = 2.0
VERIFIED_TTL = 60.0
TOUCH_INTERVAL = 60.0


@dataclass(frozen=True)
class PasswordCredentials:
    username: str
    password: str


@dataclass(frozen=True)
class TokenCredentials:
    token: str


Credentials = PasswordCredentials | TokenCredentials


@dataclass(frozen=True)
class TokenSettings:
    prefix: str
    location: str
    server_secret: bytes


@dataclass(frozen=True)
class Identity:
    """An authenticated uploader; `token` is None when the password was used."""

    user: User
    token: TokenRow | None = None
    parsed: tokens.ParsedToken | None = None
    token_hash: str = ""

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


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def challenge(message: str, reason: str) -> GatewayError:
    return GatewayError(401, message, reason, headers={"WWW-Authenticate": 'Basic realm="upload-gateway"'})


def parse_authorization(header: str | None) -> Credentials:
    """Basic `user:password` or `__token__:<token>` (twine), or `token <t>` / `Bearer <t>`."""
    if not header or not header.strip():
        raise challenge(
            "Authentication required: upload with an API token (username __token__) or your username and password",
            "no_credentials",
        )
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme in ("token", "bearer") and value:
        return TokenCredentials(value)
    if scheme != "basic":
        raise challenge(f"Unsupported authorization scheme {scheme[:20]!r}: use HTTP Basic", "bad_credentials")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise challenge("Malformed Basic credentials: send base64 of 'username:password'", "bad_credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise challenge("Malformed Basic credentials: send base64 of 'username:password'", "bad_credentials")
    if username == TOKEN_USERNAME:
        return TokenCredentials(password.strip())
    return PasswordCredentials(username, password)


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
        self._rows: TTLCache[str, tuple[TokenRow, User] | None] = TTLCache(maxsize=8192, ttl=ROW_TTL)
        self._verified: TTLCache[tuple[str, str | None, str | None, str, bool], float] = TTLCache(
            maxsize=8192, ttl=VERIFIED_TTL
        )
        # Parsing is pure (the string decides it), so a parsed token is kept as long as it is in use.
        self._parsed: LRUCache[str, tokens.ParsedToken] = LRUCache(maxsize=8192)
        # So is a signature, for the token's secret: a token whose signature matched once is not re-hashed.
        self._signed: LRUCache[tuple[str, bytes], bool] = LRUCache(maxsize=8192)

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
        digest = hashlib.sha256(token.encode()).hexdigest()
        parsed = self._parsed.get(digest) or self._parse(token)
        self._parsed[digest] = parsed
        found = await self._row(parsed.token_id)
        if found is None:
            self._fail("unknown")
            raise invalid_token("deleted or nonexistent macaroon")
        row, user = found
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
        return Identity(user=user, token=row, parsed=parsed, token_hash=digest)

    def _parse(self, token: str) -> tokens.ParsedToken:
        try:
            return tokens.parse(token, prefix=self._settings.prefix)
        except tokens.InvalidTokenError as exc:
            self._fail("malformed")
            hint = f" (tokens for this index start with '{self._settings.prefix}-')"
            raise invalid_token(f"{exc}{hint if not token.startswith(self._settings.prefix + '-') else ''}") from None

    async def _row(self, token_id: str) -> tuple[TokenRow, User] | None:
        if token_id in self._rows:
            return self._rows[token_id]
        row = await self._store.get_token(token_id)
        user = await self._store.get_user_by_id(row.user_id) if row else None
        found = (row, user) if row and user else None
        self._rows[token_id] = found
        return found

    async def owner_of(self, credentials: TokenCredentials) -> tuple[str | None, str | None]:
        """For the audit trail of a refused token: its id, if it can be read, and its owner's name, if the id is
        one of ours (the row as `authenticate` read it: no further lookup within its 2 s)."""
        digest = hashlib.sha256(credentials.token.encode()).hexdigest()
        parsed = self._parsed.get(digest)
        if parsed is None:
            try:
                parsed = tokens.parse(credentials.token, prefix=self._settings.prefix)
            except tokens.InvalidTokenError:
                return None, None
        found = await self._row(parsed.token_id)
        return parsed.token_id, found[1].name if found else None

    def forget(self, token_id: str) -> None:
        """Drop a cached row at once (a revocation in this process)."""
        self._rows.pop(token_id, None)

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
            user_id=user.id, project=project, project_id=project_id, now=int(now), action=action, listing=listing
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


def project_scoped(identity: Identity) -> bool:
    return any(isinstance(c, tokens.ProjectName | tokens.ProjectID) for c in identity.caveats)


class Authorizer:
    """May this identity upload this file? The password policy (on the headers), token caveats, then project
    roles."""

    def __init__(self, store: Store, authenticator: Authenticator, settings: PolicyConfig, *, public_url: str) -> None:
        self._store = store
        self._authenticator = authenticator
        self._settings = settings
        self._public_url = public_url
        self._help_url = f"{public_url}/account/projects"
        self._touched: TTLCache[str, bool] = TTLCache(maxsize=8192, ttl=TOUCH_INTERVAL)

    async def authorize_upload(self, identity: Identity, upload: Upload) -> policy.Allowed:
        """The decision, or the refusal raised; nothing is written (a claim is recorded only with its file)."""
        project, role, owned = await self._credentials(identity, upload.project)
        decision = policy.project_upload(
            _access(project, role, upload.name, owned),
            user_name=identity.user.name,
            new_projects=self._settings.new_projects,
            help_url=self._help_url,
            token_project_scoped=project_scoped(identity),
        )
        raise_if_denied(decision)
        assert isinstance(decision, policy.Allowed)
        return decision

    async def authorize_action(self, identity: Identity, action: str, project_name: str, display_name: str) -> None:
        """`remove_pkg`, `doc_upload`… on an existing project, when `policy.allowed_actions` lets them through."""
        project, role, owned = await self._credentials(identity, project_name)
        raise_if_denied(
            policy.project_action(
                _access(project, role, display_name, owned),
                action=action,
                user_name=identity.user.name,
                help_url=self._help_url,
            )
        )

    async def confirm_upload(self, identity: Identity, upload: Upload, *, claim: bool) -> None:
        """Is the upload still allowed, now that its file is in? Read afresh: a revoked token, a removed user or
        role, or a new project's claim lost to another user since the upload began, all stop it."""
        state = await self._store.upload_state(upload.project, identity.user.id, identity.token_id)
        if not state.user_exists:
            raise invalid_auth()
        if identity.token is not None and not state.token_valid:
            self._authenticator.forget(identity.token.id)
            raise invalid_token("token has been revoked; create a new one", "revoked_token")
        if state.role is not None:
            return
        if claim and not state.owned:
            if state.claim_holder == identity.user.id:
                return
            raise_if_denied(policy.claim_in_progress(upload.name))
        raise_if_denied(
            policy.project_upload(
                policy.ProjectAccess(exists=True, role=None, display_name=upload.name, owned=state.owned),
                user_name=identity.user.name,
                new_projects=self._settings.new_projects,
                help_url=self._help_url,
                token_project_scoped=project_scoped(identity),
            )
        )

    async def _credentials(self, identity: Identity, project_name: str) -> tuple[Project | None, str | None, bool]:
        """Token caveats for this project (the password policy was applied on the headers); the project (if it
        exists), the role, and whether anyone has a role on it."""
        project, role, owned = await self._store.project_access(project_name, identity.user.id)
        if identity.token is not None:
            if tokens.UPLOAD not in identity.token.permissions:
                raise invalid_token("this token may only read: upload with a token that may upload", "read_only_token")
            if project is None and project_scoped(identity):
                # Refused for certain by the caller's policy (no role on a project that does not exist), in words
                # that say what to do ("isn't allowed to create project … use an account-wide token"); its
                # caveats would only say "not valid for project". The signature was checked on the headers.
                return project, role, owned
            self._authenticator.check_token(identity, project_name, project.id if project else None, time.time())
        return project, role, owned

    def allow_password(self, user: User | None) -> None:
        """`policy.password_uploads`, decided on the headers (does the user exist and have 2FA?) before the
        password is looked at, so the answer never tells a right password from a wrong one."""
        raise_if_denied(
            policy.password_upload(
                self._settings.password_uploads,
                has_2fa=user is not None and user.has_2fa,
                tokens_url=f"{self._public_url}/account/tokens",
            )
        )

    async def touch(self, identity: Identity) -> None:
        """Keep `last_used` after an accepted upload (to the minute: one write per token per minute, not per upload).

        Each use is in the audit trail anyway: every upload event carries its token id.
        """
        if identity.token is not None and identity.token.id not in self._touched:
            self._touched[identity.token.id] = True
            await self._store.touch_token(identity.token.id)


def _access(project: Project | None, role: str | None, display_name: str, owned: bool) -> policy.ProjectAccess:
    return policy.ProjectAccess(
        exists=project is not None,
        role=policy.Role(role) if role else None,
        display_name=project.display_name if project else display_name,
        owned=owned,
    )


def raise_if_denied(decision: policy.Decision) -> None:
    if isinstance(decision, policy.Denied):
        raise GatewayError(decision.status, decision.message, decision.reason)
