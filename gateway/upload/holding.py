"""What one upload holds in the store while it runs (`context.Holds`): the claim of a new project, so two users
can never both upload its first files, and a share of its project's size limit, so concurrent uploads cannot
exceed it. Taken before the index's answer and released whatever the outcome, unless the record of a stored file
takes them over (by `upload_id`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

from gateway import policy
from gateway.authorization import raise_if_denied
from gateway.errors import GatewayError
from gateway.store import CLAIM_LIFETIME, User
from gateway.upload.context import Holds
from gateway.validation import Upload

# Past the longest upload the limits allow: the form's fields before the file, validation, the record.
CLAIM_MARGIN = 300.0


def claim_lifetime(*, upload_deadline: float, upstream_timeout: float) -> float:
    """How long an upload's claim of a new project lasts: past the longest upload the limits allow (its body
    within `limits.upload_deadline`, then the index's answer within `upstream.timeout`). A claim that expired
    between the upload's last check and the index's answer would let another user take the name, own the
    project, and find this upload's file in it."""
    return max(CLAIM_LIFETIME, upload_deadline + upstream_timeout + CLAIM_MARGIN)


class Holding:
    """One upload's holds, and their release."""

    def __init__(self, holds: Holds, user: User, *, help_url: str, claim_lifetime: float) -> None:
        self._holds = holds
        self._user = user
        self._help_url = help_url
        self._claim_lifetime = claim_lifetime
        self.upload_id = str(uuid.uuid4())  # names the size reservation the record takes over
        self._claimed: str | None = None
        self._reserved = False
        self._taking: asyncio.Future[bool] | None = None

    async def claim(self, upload: Upload) -> None:
        """Claim the new project for this user; refused while another user's upload holds it."""
        if not await self._take(self._claim(upload.project)):
            raise_if_denied(policy.claim_in_progress(upload.name))

    async def _claim(self, project: str) -> bool:
        held = await self._holds.hold_claim(project, self._user.id, self._claim_lifetime)
        if held:
            self._claimed = project
        return held

    @property
    def reservation(self) -> str | None:
        """The size reservation this upload holds, by the id the record takes it over with; None when none."""
        return self.upload_id if self._reserved else None

    async def reserve(self, upload: Upload, size: int, limit: int) -> None:
        """Hold `size` bytes of the project's `limit`, counting the files recorded and the uploads in flight."""
        if not await self._take(self._reserve(upload.project, size, limit)):
            raise GatewayError(
                400,
                f"Project size too large. Limit for project '{upload.name}' total size is "
                f"{limit / 2**30:g} GiB. See {self._help_url}",
                "project_too_large",
            )

    async def _reserve(self, project: str, size: int, limit: int) -> bool:
        self._reserved = await self._holds.reserve_size(self.upload_id, project, size, limit)
        return self._reserved

    async def _take(self, hold: Coroutine[Any, Any, bool]) -> bool:
        """A hold seen through to its answer even when the upload is cancelled meanwhile (the store takes it all
        the same), so that `release` knows of it."""
        self._taking = asyncio.ensure_future(hold)
        return await asyncio.shield(self._taking)

    async def release(self) -> None:
        """Give back what is held, once a hold under way has its answer (shielded as a whole: a cancelled upload,
        or one cancelled while it releases, releases all the same)."""
        await asyncio.shield(self._release())

    async def _release(self) -> None:
        if self._taking is not None:
            await asyncio.wait([self._taking])
            if not self._taking.cancelled():
                self._taking.exception()  # retrieved here; raised where the hold was awaited
        try:
            if self._claimed is not None:
                claimed, self._claimed = self._claimed, None
                await self._holds.release_claim(claimed, self._user.id)
        finally:  # the store failing the one release does not keep the other hold
            if self._reserved:
                self._reserved = False
                await self._holds.release_size(self.upload_id)
