"""What the store's interface speaks: its records (frozen dataclasses) and its errors. No I/O and nothing of
a backend, so SQLite and PostgreSQL return and raise the same."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


class StoreError(Exception):
    """A request the store refuses (duplicate name, unknown user), or a store that cannot be opened; the message is
    user-facing."""


class ProjectBeingCreated(StoreError):
    """Another user's upload holds the name of the project being created (its first file is on its way): a retry
    after it ends may succeed."""


class StoreFailure(Exception):
    """The database failed a request (unreachable, busy past its timeout, full, a constraint the method does not
    expect to break): not the caller's doing, and its message is not for users. The backend's own error is its
    cause. `outage`: the database could not be reached or was busy (a retry may succeed), not a statement's fault."""

    def __init__(self, message: str, *, outage: bool = False) -> None:
        super().__init__(message)
        self.outage = outage


@dataclass(frozen=True)
class User:
    id: str
    name: str
    password_hash: str = field(repr=False)
    created: int
    has_totp: bool = False
    webauthn_count: int = 0
    kind: str = "person"  # or "publisher": a trusted publisher's principal (`gateway.store.publishers`)

    @property
    def has_2fa(self) -> bool:
        return self.has_totp or self.webauthn_count > 0


@dataclass(frozen=True)
class TokenRow:
    """A token as stored: `secret` alone cannot verify or mint it (the server secret is outside the database)."""

    id: str
    user_id: str
    description: str
    secret: bytes = field(repr=False)
    caveats: tuple[str, ...]
    created: float
    last_used: float | None
    expires: float | None
    revoked: float | None
    permissions: tuple[str, ...] = ("upload",)  # sorted: ("upload",), ("read",) or ("read", "upload")
    run: Mapping[str, str] | None = None  # a token minted by trusted publishing: its CI run (ref, sha, repository)


@dataclass(frozen=True)
class UserSummary:
    """What `user list` shows of a user."""

    user: User
    tokens: int
    active_tokens: int  # neither revoked nor expired
    last_token_use: float | None
    recovery_codes: int  # unused


@dataclass(frozen=True)
class RemovedUser:
    tokens: int  # deleted with the user
    orphaned: tuple[str, ...]  # projects the user was the last to have a role on


@dataclass(frozen=True)
class StoredFile:
    filename: str
    project: str
    size: int
    sha256: str
    blake2_256: str
    user: str | None
    token_id: str | None


@dataclass(frozen=True)
class UploadState:
    """An upload's standing, read again right before the index may keep its file."""

    role: str | None
    owned: bool
    claim_holder: str | None
    user_exists: bool
    token_valid: bool  # the token exists and is not revoked (False, too, for a password upload)


@dataclass(frozen=True)
class Project:
    name: str
    id: str
    display_name: str
    created: float


@dataclass(frozen=True)
class Change:
    """An entry of the change log (`gateway.store.changelog`): what changed, under its serial."""

    serial: int
    kind: str
    key: str


@dataclass(frozen=True)
class AuditEvent:
    at: float
    event: str
    user_name: str | None
    token_id: str | None
    project: str | None
    address: str | None
    detail: Mapping[str, Any]

    def to_json(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.at)) + f".{int(self.at % 1 * 1000):03d}Z"
        return json.dumps({**asdict(self), "at": when, "detail": dict(self.detail)}, sort_keys=True)


@dataclass(frozen=True)
class WebAuthnCredential:
    """A security key: `id` is the credential id, base64url as the browser sends it."""

    id: str
    name: str
    public_key: bytes
    sign_count: int
    created: float
    last_used: float | None = None


@dataclass(frozen=True)
class Publisher:
    """A trusted publisher of one project: the configured issuer (by name, and the URL it had when the publisher
    was added: only tokens of that URL match) and the publisher's fields, as `gateway.oidc.claims.publisher_fields`
    gives them. `id` is also its principal's user id."""

    id: str
    project: str
    issuer: str
    issuer_url: str
    kind: str
    fields: dict[str, str]
    added_by: str | None
    created: float


@dataclass(frozen=True)
class PendingPublisher:
    """A publisher for a project that does not exist yet (`project` normalized): its first exchange creates it,
    owned by `added_by` (a user id)."""

    id: str
    project: str
    display_name: str
    issuer: str
    issuer_url: str
    kind: str
    fields: dict[str, str]
    added_by: str
    added_by_name: str
    created: float
    expires: float
