"""What the database, not the process, keeps consistent: two stores on one database stand for two gateway
processes (or replicas), and their concurrent claims, size reservations and token uses come out as one store's
would, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from gateway.store import Store
from tests.harness import database


@pytest.fixture
async def other(store: Store, store_url: str) -> AsyncIterator[Store]:
    """A second store on the same database: another process."""
    opened = await Store.open(store_url)
    yield opened
    await opened.close()


async def test_concurrent_reservations_never_take_more_than_the_room(store: Store, other: Store) -> None:
    granted = await asyncio.gather(
        *(s.reserve_size(f"u{n}-{i}", "demo", 10, 50) for n in range(20) for i, s in enumerate((store, other)))
    )
    assert sum(granted) == 5


async def test_concurrent_claims_of_a_new_project_by_two_users_give_it_to_one(store: Store, other: Store) -> None:
    alice, bob = await store.add_user("alice", "x"), await store.add_user("bob", "x")
    claims = await asyncio.gather(
        *(s.hold_claim("demo", user.id) for _ in range(10) for s in (store, other) for user in (alice, bob))
    )
    winners = {user for user, held in zip([u for _ in range(20) for u in (alice, bob)], claims, strict=True) if held}
    assert len(winners) == 1


async def test_a_token_use_never_waits_for_a_row_another_transaction_holds(store: Store, store_url: str) -> None:
    """Warehouse's `FOR UPDATE SKIP LOCKED`: on PostgreSQL a use while another transaction holds the token's row
    is skipped, not waited for (SQLite has no row locks: there the update is a plain one)."""
    alice = await store.add_user("alice", "x")
    row = await store.add_token(alice, description="ci", secret=b"s", caveats=[], expires=None)
    if store_url.startswith("postgresql"):
        with psycopg.connect(store_url) as holder:
            holder.execute("SELECT id FROM tokens WHERE id = %s FOR UPDATE", (row.id,))
            async with asyncio.timeout(5):
                await store.touch_token(row.id)
            assert database.rows(store_url, "SELECT last_used FROM tokens") == [(None,)]
    await store.touch_token(row.id)
    touched = await store.get_token(row.id)
    assert touched is not None and touched.last_used is not None
