"""An upload's holds (`gateway.upload.holding`) are given back on every exit, cancellation included: a claim or a
size reservation the store took while the upload was cancelled, and both holds when the release itself is
interrupted. A hold left behind would keep a new project's name from every other user for `CLAIM_LIFETIME`, or a
project's room for `RESERVATION_LIFETIME`."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from gateway.store import CLAIM_LIFETIME, Store, StoreFailure, User
from gateway.upload.holding import Holding, claim_lifetime
from gateway.validation import Upload
from tests.harness.database import rows

UPLOAD = cast(Upload, type("FakeUpload", (), {"project": "demo", "name": "Demo"})())
LIMIT = 1000


class SlowAnswers:
    """The store's holds, with the answer to the calls named in `slow` held back after the store acted on them
    (the store's thread runs a statement whose caller was cancelled all the same)."""

    def __init__(self, store: Store, *slow: str) -> None:
        self._store = store
        self._slow = set(slow)
        self.acted = asyncio.Event()
        self.answer = asyncio.Event()

    async def _held_back(self, name: str) -> None:
        if name in self._slow:
            self.acted.set()
            await self.answer.wait()

    async def hold_claim(self, project: str, user_id: str, lifetime: float) -> bool:
        held = await self._store.hold_claim(project, user_id, lifetime)
        await self._held_back("hold_claim")
        return held

    async def release_claim(self, project: str, user_id: str) -> None:
        await self._store.release_claim(project, user_id)
        await self._held_back("release_claim")

    async def reserve_size(self, upload_id: str, project: str, size: int, limit: int) -> bool:
        reserved = await self._store.reserve_size(upload_id, project, size, limit)
        await self._held_back("reserve_size")
        return reserved

    async def release_size(self, upload_id: str) -> None:
        await self._store.release_size(upload_id)
        await self._held_back("release_size")


async def cancelled_while_answered(holds: SlowAnswers, call: asyncio.Task[None]) -> None:
    await holds.acted.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    holds.answer.set()


async def users(store: Store) -> tuple[User, User]:
    return await store.add_user("alice", "x"), await store.add_user("bob", "x")


async def test_a_claim_taken_while_the_upload_was_cancelled_is_released(store: Store) -> None:
    alice, bob = await users(store)
    holds = SlowAnswers(store, "hold_claim")
    holding = Holding(holds, alice, help_url="https://gateway.test/help", claim_lifetime=CLAIM_LIFETIME)
    await cancelled_while_answered(holds, asyncio.create_task(holding.claim(UPLOAD)))
    await holding.release()
    assert await store.hold_claim("demo", bob.id), "alice's claim was left behind"


async def test_a_reservation_taken_while_the_upload_was_cancelled_is_released(store: Store) -> None:
    alice, _ = await users(store)
    holds = SlowAnswers(store, "reserve_size")
    holding = Holding(holds, alice, help_url="https://gateway.test/help", claim_lifetime=CLAIM_LIFETIME)
    await cancelled_while_answered(holds, asyncio.create_task(holding.reserve(UPLOAD, LIMIT, LIMIT)))
    await holding.release()
    assert await store.reserve_size("other", "demo", LIMIT, LIMIT), "the cancelled upload's room was left held"


async def test_a_release_cancelled_while_it_gives_back_the_claim_gives_back_the_reservation_too(store: Store) -> None:
    alice, bob = await users(store)
    holds = SlowAnswers(store, "release_claim")
    holding = Holding(holds, alice, help_url="https://gateway.test/help", claim_lifetime=CLAIM_LIFETIME)
    await holding.claim(UPLOAD)
    await holding.reserve(UPLOAD, LIMIT, LIMIT)
    await cancelled_while_answered(holds, asyncio.create_task(holding.release()))
    await asyncio.sleep(0.2)  # the release goes on, shielded, after its caller is cancelled
    assert await store.hold_claim("demo", bob.id)
    assert await store.reserve_size("other", "demo", LIMIT, LIMIT), "the reservation was left held"


class FailingClaimRelease(SlowAnswers):
    async def release_claim(self, project: str, user_id: str) -> None:
        raise StoreFailure("database is locked")


async def test_a_claim_whose_release_fails_still_gives_back_the_reservation(store: Store) -> None:
    alice, _ = await users(store)
    holding = Holding(
        FailingClaimRelease(store), alice, help_url="https://gateway.test/help", claim_lifetime=CLAIM_LIFETIME
    )
    await holding.claim(UPLOAD)
    await holding.reserve(UPLOAD, LIMIT, LIMIT)
    with pytest.raises(StoreFailure):
        await holding.release()
    assert await store.reserve_size("other", "demo", LIMIT, LIMIT), "the reservation was left held"


async def test_a_claim_outlives_the_longest_upload_the_limits_allow(store: Store, store_url: str) -> None:
    """A claim that expires between an upload's last check and the index's answer lets another user take the name
    and own the project the first upload's file then lands in: it lasts the body's deadline and the index's
    timeout, however long the operator made them."""
    alice, _ = await users(store)
    lifetime = claim_lifetime(upload_deadline=3 * 3600, upstream_timeout=600)
    assert lifetime >= 3 * 3600 + 600
    holding = Holding(store, alice, help_url="https://gateway.test/help", claim_lifetime=lifetime)
    before = time.time()
    await holding.claim(UPLOAD)
    [(expires,)] = rows(store_url, "SELECT expires FROM project_claims")
    assert expires >= before + 3 * 3600 + 600
    assert claim_lifetime(upload_deadline=60, upstream_timeout=30) >= CLAIM_LIFETIME, "never shorter than before"
