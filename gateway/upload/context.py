"""What an upload flow is given and what it gives back: `UploadContext` (the index, who decides, what the store
holds for an upload in flight, the limits), built once per app, and `Outcome`, what the index was given and kept."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from gateway import policy
from gateway.authentication import Identity
from gateway.config import LimitsConfig
from gateway.existing import ExistingFiles
from gateway.platform_tags import PlatformPolicy
from gateway.proxy import Upstream
from gateway.validation import Upload


class Authorizer(Protocol):
    async def authorize_upload(self, identity: Identity, upload: Upload) -> policy.Allowed: ...

    async def authorize_action(self, identity: Identity, action: str, project: str, display_name: str) -> None: ...

    async def confirm_upload(self, identity: Identity, upload: Upload, *, claim: bool) -> None: ...


class Holds(Protocol):
    """What an upload holds in the store while it runs: the claim of a new project (so two users can never both
    upload its first files) and a share of its project's size limit (so concurrent uploads cannot exceed it); and
    whether a claimed project was recorded meanwhile, by another upload sharing the claim."""

    async def is_owner(self, project: str, user_id: str) -> bool: ...

    async def hold_claim(self, project: str, user_id: str, lifetime: float) -> bool: ...

    async def release_claim(self, project: str, user_id: str) -> None: ...

    async def reserve_size(self, upload_id: str, project: str, size: int, limit: int) -> bool: ...

    async def release_size(self, upload_id: str) -> None: ...


@dataclass(frozen=True)
class UploadContext:
    """What every upload needs, built once per app."""

    upstream: Upstream
    authorizer: Authorizer
    holds: Holds
    existing: ExistingFiles
    limits: LimitsConfig
    allowed_actions: frozenset[str]
    platform_tags: PlatformPolicy
    help_url: str
    pumps: Executor | None  # threads that move large files (`pump`); None keeps every upload on the loop
    upstream_timeout: float  # how long the index may take no bytes of an upload


@dataclass(frozen=True)
class Outcome:
    """What the index was given and kept: `reason` is `ok`, `already_present` or the action passed on.

    `claim`: the upload created a new project, which the handler records as the uploader's in the same
    transaction as the file.
    """

    upload: Upload
    size: int
    digests: Mapping[str, str]
    reason: str
    claim: bool = False
    reservation: str | None = None  # the project-size reservation the record takes over, if the upload has one
