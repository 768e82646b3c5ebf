"""The change log on both backends: what writes an entry, in the transaction of its event, and the wake-ups."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from gateway.store import Store
from gateway.store.changelog import BY_EVENT, NOT_CHANGES, PROJECT, TOKEN, USER
from tests.harness.postgresql import Server

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
AUDITED = re.compile(r"""(?:audit\(\s*|AuditEvent\([^()]*?,\s*)"([a-z0-9_]+\.[a-z0-9_.]+)\"""")


def test_every_audited_event_is_decided_a_change_or_not() -> None:
    events = {name for path in GATEWAY.rglob("*.py") for name in AUDITED.findall(path.read_text())}
    assert len(events) >= 15, events
    assert events <= set(BY_EVENT) | NOT_CHANGES, events - set(BY_EVENT) - NOT_CHANGES
    assert not set(BY_EVENT) & NOT_CHANGES


async def test_revocations_and_account_changes_are_logged_in_order_and_reads_change_nothing(store: Store) -> None:
    start = await store.last_change()
    alice = await store.add_user("Alice", "$argon2id$not-a-real-hash")
    token = await store.add_token(alice, description="ci", secret=b"s" * 32, caveats=[], expires=None)
    await store.get_token(token.id)
    assert await store.changes_after(start, 10) == []  # a new user and token change nothing cached
    await store.revoke_token(token.id, by="admin")
    await store.set_password(alice, "$argon2id$another", by="admin")
    logged = await store.changes_after(start, 10)
    assert [(c.kind, c.key) for c in logged] == [(TOKEN, token.id), (USER, "alice")]
    assert [c.serial for c in logged] == sorted(c.serial for c in logged) and logged[0].serial > start
    assert await store.last_change() == logged[-1].serial
    assert await store.changes_after(logged[0].serial, 10) == logged[1:]
    assert await store.revoke_token("no-such-token", by="admin") is None
    assert await store.last_change() == logged[-1].serial


async def test_a_role_change_logs_its_project_and_pruning_drops_old_entries(store: Store) -> None:
    bob = await store.add_user("bob", "$argon2id$not-a-real-hash")
    start = await store.last_change()
    await store.grant("demo", "Demo", bob, "owner", by="admin")
    assert [(c.kind, c.key) for c in await store.changes_after(start, 10)] == [(PROJECT, "demo")]
    assert await store.prune_changes(before=0.0) == 0
    assert await store.prune_changes(before=2**40) >= 1
    assert await store.changes_after(start, 10) == []


async def test_on_postgresql_a_committed_change_wakes_a_listener(postgresql_server: Server, tmp_path: Path) -> None:
    store = await Store.open(postgresql_server.create())
    try:
        assert store.listens()
        woken: list[int] = []
        listening = asyncio.create_task(store.listen_for_changes(lambda: woken.append(1)))
        async with asyncio.timeout(10):
            while not woken:  # connected
                await asyncio.sleep(0.01)
        carol = await store.add_user("carol", "$argon2id$not-a-real-hash")
        assert len(woken) == 1  # no change, no notification
        await store.revoke_all_tokens(carol, by="admin")
        async with asyncio.timeout(10):
            while len(woken) < 2:
                await asyncio.sleep(0.01)
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
    finally:
        await store.close()


async def test_sqlite_sends_no_wake_ups(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'gateway.db'}")
    try:
        assert not store.listens()
        assert isinstance(await store.changes_after(0, 1), list)
    finally:
        await store.close()
