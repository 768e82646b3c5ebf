"""SQLite's one writer connection, on the store's own thread: a caller cancelled at any point of its change leaves
it free for the next writer, and the change is either whole or not there."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.store import Store, User
from tests.harness import database


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's connection, which takes SQLite's write lock when told to."""
    connection = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    yield connection
    connection.close()


async def cancelled_while_waiting_for_the_lock(
    holder: sqlite3.Connection, change: asyncio.Task[None], *, waiting: float = 0.3
) -> None:
    """`change` waits on SQLite's write lock (`BEGIN IMMEDIATE` on the store's thread), is cancelled, and then the
    lock is let go."""
    await asyncio.sleep(waiting)
    assert not change.done(), "the change did not wait for the lock"
    change.cancel()
    with pytest.raises(asyncio.CancelledError):
        await change
    holder.execute("ROLLBACK")


async def test_a_transaction_cancelled_while_it_begins_leaves_the_writer_free(
    store: Store, lock_holder: sqlite3.Connection, tmp_path: Path
) -> None:
    alice = await store.add_user("alice", "x")
    lock_holder.execute("BEGIN IMMEDIATE")
    granting = asyncio.create_task(store.grant("demo", "Demo", alice, "owner", by="admin"))

    await cancelled_while_waiting_for_the_lock(lock_holder, granting)

    async with asyncio.timeout(10):  # a leaked transaction would hold the one connection for the pool's 30 s
        await store.grant("other", "Other", alice, "owner", by="admin")
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    assert database.rows(url, "SELECT project FROM roles ORDER BY project") == [("other",)]


async def test_a_write_cancelled_while_it_waits_runs_before_the_next_writer(
    store: Store, lock_holder: sqlite3.Connection, tmp_path: Path
) -> None:
    """A statement handed to the store's thread runs all the same (as a database would run one sent to it): the
    next writer's change comes after it, never interleaved with it."""
    alice: User = await store.add_user("alice", "x")
    lock_holder.execute("BEGIN IMMEDIATE")
    claiming = asyncio.create_task(store.hold_claim("demo", alice.id))

    await cancelled_while_waiting_for_the_lock(lock_holder, claiming)

    bob = await store.add_user("bob", "x")
    async with asyncio.timeout(10):
        assert not await store.hold_claim("demo", bob.id), "alice's claim, made before bob's, holds the name"
