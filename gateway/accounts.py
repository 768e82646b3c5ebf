"""Account operations, for the CLI and the account pages alike: tokens (scope, expiry, grant, minting, revocation,
how a token reads), second factors (TOTP enrolment and removal, security-key removal, recovery codes) and
password changes. Each rule is written here once.

The rules are pure functions; the operations act on the store passed in, which writes their audit events. A
refusal is an exception carrying the facts (`NoRole`, `TooLong`), not a sentence: the CLI says it in terms of its
flags, a page in terms of its form.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from packaging.utils import canonicalize_name

from gateway import tokens, twofactor
from gateway.authentication import TokenSettings
from gateway.config import OIDCConfig, parse_duration
from gateway.oidc import claims as publisher_claims
from gateway.passwords import hash_password
from gateway.store import (
    PendingPublisher,
    Project,
    Publisher,
    Store,
    StoreError,
    TokenRow,
    User,
    WebAuthnCredential,
)

EXPIRY_CHOICES = (
    ("", "Never"),
    ("1d", "1 day"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("365d", "1 year"),
)


class NoRole(Exception):
    """A token was asked for a project its user has no role on (or that does not exist)."""

    def __init__(self, project: str) -> None:
        super().__init__(project)
        self.project = project


class MissingFields(ValueError):
    """A publisher of `kind` was given without all the fields its kind needs (each caller names them its way)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"a {kind} publisher needs more fields")
        self.kind = kind


class TooLong(Exception):
    """A token was asked to live longer than `tokens.max_lifetime`."""

    def __init__(self, max_lifetime: int) -> None:
        super().__init__(max_lifetime)
        self.max_lifetime = max_lifetime


# --- Tokens ---


def expiry_choices(max_lifetime: int | None) -> list[tuple[str, str]]:
    """The lifetimes offered: without a cap any choice; with one, nothing longer, no 'never', and the cap itself."""
    if max_lifetime is None:
        return list(EXPIRY_CHOICES)
    shorter = [(value, label) for value, label in EXPIRY_CHOICES if value and parse_duration(value) < max_lifetime]
    return [*shorter, (f"{max_lifetime}s", f"The longest allowed ({max_lifetime / 86400:g} days)")]


def token_expiry(given: str | None, max_lifetime: int | None, now: float) -> int | None:
    """When a new token expires (None: never). `given` is a duration (`30d`, `12h`); none given is the longest
    allowed: the cap, or never without one. ValueError when it does not parse; `TooLong` past the cap."""
    lifetime = parse_duration(given) if given else max_lifetime
    if lifetime is not None and max_lifetime is not None and lifetime > max_lifetime:
        raise TooLong(max_lifetime)
    return int(now) + lifetime if lifetime is not None else None


def token_permissions(*, read: bool, upload: bool = True) -> tuple[str, ...]:
    """The gateway's grant to a token: upload (the default), read as well, or read only."""
    return tuple(action for action, wanted in ((tokens.READ, read), (tokens.UPLOAD, upload)) if wanted)


async def token_projects(store: Store, user: User, names: Sequence[str]) -> list[Project]:
    """The projects a token is scoped to, as named (none: every project of the user's). Only projects the user
    has a role on: `NoRole` with the first name that is not one."""
    projects = []
    for given in names:
        project, role, _ = await store.project_access(canonicalize_name(given), user.id)
        if project is None or role is None:
            raise NoRole(given)
        projects.append(project)
    return projects


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
    return await _mint(store, settings, user, caveats, description=description, permissions=permissions)


MINTED_NOT_BEFORE = 30  # seconds: a minted token is valid from this long before it was minted (replicas' clocks)


async def mint_publisher_token(
    store: Store,
    settings: TokenSettings,
    principal: User,
    project: Project,
    *,
    description: str,
    lifetime: int,
    run: Mapping[str, str],
    audit: Mapping[str, Any],
) -> tuple[str, TokenRow]:
    """A trusted publisher's short-lived upload token, with Warehouse's caveats in Warehouse's order: the OIDC
    publisher `[4, id, null]`, its project `[2, [id]]`, and `[0, now + lifetime, now - MINTED_NOT_BEFORE]`.
    Warehouse's `not_before` is `now`, on one clock; the token's first upload follows at once, maybe on another
    replica whose clock is a little behind, which would refuse it as expired."""
    now = int(time.time())
    caveats: list[tokens.Caveat] = [
        tokens.OIDCPublisher(principal.id),
        tokens.ProjectID((project.id,)),
        tokens.Expiration(expires_at=now + lifetime, not_before=now - MINTED_NOT_BEFORE),
    ]
    return await _mint(store, settings, principal, caveats, description=description, run=run, audit=audit)


async def _mint(
    store: Store,
    settings: TokenSettings,
    user: User,
    caveats: list[tokens.Caveat],
    *,
    description: str,
    permissions: tuple[str, ...] = (tokens.UPLOAD,),
    run: Mapping[str, str] | None = None,
    audit: Mapping[str, Any] | None = None,
) -> tuple[str, TokenRow]:
    """The token string (shown once) and its row: its caveats embedded and kept in the store."""
    expiries = [c.expires_at for c in caveats if isinstance(c, tokens.Expiration)]
    secret = tokens.new_token_secret()
    row = await store.add_token(
        user,
        description=description,
        secret=secret,
        caveats=[tokens.serialize(c).decode() for c in caveats],
        expires=float(min(expiries)) if expiries else None,
        permissions=permissions,
        run=run,
        audit=audit,
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


async def own_token(store: Store, user: User, token_id: str) -> TokenRow | None:
    """The user's token with this id; None for another user's, as for none at all."""
    row = await store.get_token(token_id)
    return row if row is not None and row.user_id == user.id else None


async def revoke_token(store: Store, token_id: str, *, by: str, owner: User | None = None) -> TokenRow | None:
    """Revoke a token (one revoked already stays as it was); None when there is no such token or, with `owner`,
    when it is not theirs (an account page revokes its own tokens only). `by` is who revoked it."""
    if owner is not None and await own_token(store, owner, token_id) is None:
        return None
    return await store.revoke_token(token_id, by=by)


# --- Second factors ---


def totp_uri(settings: TokenSettings, user_name: str, seed: str) -> str:
    """The otpauth:// URI an authenticator app takes, issued as `upload-gateway HOST`."""
    return twofactor.provisioning_uri(seed, account=user_name, issuer=f"upload-gateway {settings.location}")


async def enrol_totp(
    store: Store,
    settings: TokenSettings,
    user: User,
    seed: str,
    *,
    last_step: int | None = None,
    recovery_codes: list[str] | None = None,
    by: str | None = None,
    address: str | None = None,
) -> None:
    """Make `seed` the user's TOTP seed, sealed and bound to them. `last_step`: the step of the code that proved
    it (the pages ask for one), so that code cannot sign in afterwards; `recovery_codes`, when given, replace the
    user's in the same transaction (the CLI's enrolment)."""
    hashes = None if recovery_codes is None else _hashes(settings, recovery_codes)
    sealed = twofactor.seal_totp(settings.server_secret, user.id, seed)
    await store.set_totp(user, sealed, hashes, last_step=last_step, by=by, address=address)


async def totp_matches(store: Store, settings: TokenSettings, user: User, code: str, *, now: float) -> bool:
    """A current code from the user's app, each accepted once only (also across processes)."""
    sealed, last_step = await store.totp_secret(user.id)
    if sealed is None:
        return False
    seed = twofactor.unseal_totp(settings.server_secret, user.id, sealed)
    step = twofactor.verify_totp(seed, code, now=now, last_step=last_step)
    return step is not None and await store.advance_totp_step(user.id, step)


async def remove_totp(store: Store, user: User, *, address: str | None = None) -> None:
    await store.delete_totp(user, address=address)
    await _drop_orphaned_codes(store, user, address)


async def add_security_key(store: Store, user: User, key: WebAuthnCredential, *, address: str | None = None) -> None:
    """A verified security key (`gateway.web.webauthn_flow`); StoreError when it is registered already."""
    await store.add_webauthn_credential(user, key, address=address)


async def remove_security_key(store: Store, user: User, key_id: str, *, address: str | None = None) -> bool:
    """False when the user has no such key."""
    removed = await store.remove_webauthn_credential(user, key_id, address=address)
    await _drop_orphaned_codes(store, user, address)
    return removed


async def _drop_orphaned_codes(store: Store, user: User, address: str | None) -> None:
    """When the last factor goes, its recovery codes go too: they must not outlive what they recover."""
    current = await store.get_user_by_id(user.id)
    if current is not None and not current.has_2fa:
        await store.replace_recovery_codes(current, [], address=address)


async def new_recovery_codes(
    store: Store, settings: TokenSettings, user: User, *, address: str | None = None
) -> list[str]:
    """Fresh recovery codes in place of the user's old ones: the caller shows them once; the store keeps keyed
    hashes only."""
    codes = twofactor.new_recovery_codes()
    await store.replace_recovery_codes(user, _hashes(settings, codes), address=address)
    return codes


async def use_recovery_code(store: Store, settings: TokenSettings, user: User, code: str) -> bool:
    """Whether `code` is one of the user's unused recovery codes; if so it is used up."""
    if not code:
        return False
    return await store.use_recovery_code(user.id, twofactor.recovery_code_hash(settings.server_secret, code))


def _hashes(settings: TokenSettings, codes: list[str]) -> list[str]:
    return [twofactor.recovery_code_hash(settings.server_secret, code) for code in codes]


# --- Passwords ---


async def change_password(store: Store, user: User, password: str, *, by: str) -> None:
    """A new password (hashed off the event loop); the user's account-page sessions end."""
    await store.set_password(user, await asyncio.to_thread(hash_password, password), by=by)


# --- Trusted publishers (issue #19): what `publisher add/list/remove` and the publishers pages share ---
PENDING_LIFETIME = 30 * 86400.0  # PyPI's: a pending publisher expires 30 days after it was added
# A publisher's fields as stored (JSON): PostgreSQL's unique index of publishers holds at most 2704 bytes a row, with
# the project, the issuer's name and URL beside them (SQLite has no such limit; both must keep what is accepted).
MAX_STORED_FIELDS = 2048


def publisher_fields_of(
    oidc: OIDCConfig,
    issuer: str,
    *,
    repository: str | None = None,
    owner_id: str | None = None,
    workflow: str | None = None,
    namespace: str | None = None,
    project_path: str | None = None,
    ci_config: str | None = None,
    subject: str | None = None,
    claims: Sequence[str] = (),
    environment: str = "",
) -> dict[str, str]:
    """The publisher's fields for the configured `issuer`'s kind, validated (ValueError: one line to show;
    `MissingFields` when a field the kind needs is empty)."""
    configured = oidc.issuer_named(issuer)
    if configured is None:
        known = ", ".join(i.name for i in oidc.issuers) or "none: configure [[oidc.issuers]]"
        raise ValueError(f"{issuer[:60]!r} is not a configured issuer (configured: {known})")
    kind = configured.kind
    given: dict[str, str]
    if kind in ("github", "forgejo"):
        owner, _, name = (repository or "").partition("/")
        if not (owner and name and owner_id and workflow):
            raise MissingFields(kind)
        given = {
            "repository_owner": owner,
            "repository_owner_id": owner_id,
            "repository_name": name,
            "workflow_filename": workflow,
        }
    elif kind == "gitlab":
        if not (namespace and project_path and ci_config):
            raise MissingFields(kind)
        given = {"namespace": namespace, "project": project_path, "workflow_filepath": ci_config}
    else:
        if not subject:
            raise MissingFields(kind)
        pairs = [claim.partition("=") for claim in claims]
        if any(not name or not sep for name, sep, _ in pairs):
            raise ValueError("each claim is NAME=VALUE")
        given = {"subject": subject, **{f"claim.{name}": value for name, _, value in pairs}}
    if environment:
        given["environment"] = environment
    parsed = publisher_claims.parse_publisher(kind, given)
    fields = publisher_claims.publisher_fields(parsed)
    stored = len(json.dumps(fields, sort_keys=True))  # as the store keeps it (ASCII: other characters escaped)
    if stored > MAX_STORED_FIELDS:
        raise ValueError(
            f"The publisher's fields come to {stored} characters as stored, at most {MAX_STORED_FIELDS}: "
            "shorten them (a character other than ASCII is stored as 6)"
        )
    return fields


def describe_publisher(kind: str, fields: Mapping[str, str]) -> str:
    parsed = publisher_claims.parse_publisher(cast(publisher_claims.Kind, kind), fields)
    return publisher_claims.describe(cast(publisher_claims.Kind, kind), parsed)


async def add_publisher(
    store: Store, oidc: OIDCConfig, project: str, issuer: str, fields: Mapping[str, str], *, by: str
) -> Publisher:
    configured = oidc.issuer_named(issuer)
    assert configured is not None  # `publisher_fields_of` checked it
    return await store.add_publisher(project, issuer, configured.kind, fields, issuer_url=configured.url, by=by)


async def add_pending_publisher(
    store: Store,
    oidc: OIDCConfig,
    project: str,
    display_name: str,
    issuer: str,
    fields: Mapping[str, str],
    owner: User,
) -> PendingPublisher:
    """A publisher whose first publish creates `project` (normalized), owned by `owner`; refused for a project
    the gateway knows (add a publisher to it instead)."""
    configured = oidc.issuer_named(issuer)
    assert configured is not None
    known, _, _ = await store.project_access(project, owner.id)
    if known is not None:
        raise StoreError(f"{project} exists: a pending publisher is for a project to come; its owners add publishers")
    expires = time.time() + PENDING_LIFETIME
    return await store.add_pending_publisher(
        project,
        display_name,
        issuer,
        configured.kind,
        fields,
        issuer_url=configured.url,
        user=owner,
        expires=expires,
    )


async def list_publishers(store: Store, project: str | None, oidc: OIDCConfig) -> list[dict[str, Any]]:
    """Publishers and pending publishers, as `publisher list` and the project pages show them; `refused` says
    why the configuration no longer lets one publish (None while it may)."""
    active = [
        {**_publisher_row(p, oidc), "pending": False, "added_by": p.added_by}
        for p in await store.publishers_of(project=project)
    ]
    waiting = [
        {**_publisher_row(p, oidc), "pending": True, "owner": p.added_by_name, "expires": p.expires}
        for p in await store.pending_publishers_of(time.time(), project=project)
    ]
    return active + waiting


def publisher_refused(oidc: OIDCConfig, publisher: Publisher | PendingPublisher) -> str | None:
    """Why no token can match `publisher` under this configuration: its issuer's name is gone, or now names
    another URL or kind than the publisher was added for (a publisher trusts the issuer it was added for, never
    whatever the name is pointed at later). None while tokens of its issuer may match it."""
    configured = oidc.issuer_named(publisher.issuer)
    again = "remove it and add it again to trust"
    if configured is None:
        return f"issuer {publisher.issuer!r} is not configured"
    if not publisher.issuer_url:
        return f"added before publishers were bound to their issuer's URL, and not bound then: {again} {configured.url}"
    if publisher.issuer_url != configured.url:
        return (
            f"issuer {publisher.issuer!r} is now {configured.url}, it was added for {publisher.issuer_url}: {again} it"
        )
    if publisher.kind != configured.kind:
        return (
            f"issuer {publisher.issuer!r} is now of kind {configured.kind}, it was added as {publisher.kind}: "
            f"{again} it"
        )
    return None


async def refused_publishers(store: Store, oidc: OIDCConfig) -> list[tuple[Publisher | PendingPublisher, str]]:
    """The publishers and pending ones that `publisher_refused` refuses, with why (what `serve` warns of)."""
    found: list[Publisher | PendingPublisher] = [
        *await store.publishers_of(),
        *await store.pending_publishers_of(time.time()),
    ]
    return [(p, why) for p in found if (why := publisher_refused(oidc, p)) is not None]


def _publisher_row(publisher: Publisher | PendingPublisher, oidc: OIDCConfig) -> dict[str, Any]:
    """What a publisher and a pending one show alike."""
    return {
        "id": publisher.id,
        "project": publisher.project,
        "issuer": publisher.issuer,
        "issuer_url": publisher.issuer_url,
        "kind": publisher.kind,
        "description": describe_publisher(publisher.kind, publisher.fields),
        "created": publisher.created,
        "refused": publisher_refused(oidc, publisher),
    }
