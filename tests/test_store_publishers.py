"""Trusted publishers as stored: each one's principal, which nothing finds by name, its role and tokens that go
with it, and pending publishers that create their project once, whoever races for it."""

from __future__ import annotations

import asyncio
import random
import string
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gateway import accounts
from gateway.config import OIDCConfig, OIDCIssuer
from gateway.store import ProjectBeingCreated, Store, StoreError, User
from gateway.store.publishers import principal_name
from tests.harness.database import rows

URL = "https://token.actions.githubusercontent.com"
GITHUB = {
    "repository_owner": "octo",
    "repository_owner_id": "42",
    "repository_name": "demo",
    "workflow_filename": "release.yml",
}


async def owner_of(store: Store, project: str) -> User:
    alice = await store.add_user("alice", "x")
    await store.grant(project, project, alice, "owner", by="test")
    return alice


async def test_a_publisher_s_principal_holds_its_role_and_is_found_by_id_only(store: Store, store_url: str) -> None:
    await owner_of(store, "demo")
    added = await store.add_publisher("demo", "github", "github", GITHUB, issuer_url=URL, by="alice")

    principal = await store.get_user_by_id(added.id)
    assert principal is not None and principal.kind == "publisher" and principal.name == principal_name(added.id)
    assert await store.get_user(principal.name) is None, "a name lookup (sign-in, password, grant) finds it"
    assert principal.name not in [u.name for u in await store.list_users()]
    assert (await store.project_access("demo", added.id))[1] == "maintainer"
    assert [p.fields for p in await store.publishers_of(project="demo")] == [GITHUB]
    with pytest.raises(StoreError, match="has that publisher already"):
        await store.add_publisher("demo", "github", "github", GITHUB, issuer_url=URL, by="alice")
    with pytest.raises(StoreError, match="no project named"):
        await store.add_publisher("other", "github", "github", GITHUB, issuer_url=URL, by="alice")
    assert rows(store_url, "SELECT event FROM audit WHERE event LIKE 'publisher.%'") == [("publisher.added",)]


async def test_removing_a_publisher_takes_its_role_and_tokens_and_logs_a_change(store: Store, store_url: str) -> None:
    await owner_of(store, "demo")
    added = await store.add_publisher("demo", "github", "github", GITHUB, issuer_url=URL, by="alice")
    principal = await store.get_user_by_id(added.id)
    assert principal is not None
    token = await store.add_token(principal, description="minted", secret=b"s", caveats=[], expires=None)
    before = await store.last_change()

    removed = await store.remove_publisher(added.id, by="alice")

    assert removed is not None and removed.project == "demo"
    assert await store.get_token(token.id) is None
    assert await store.get_user_by_id(added.id) is None
    assert (await store.project_access("demo", added.id))[1] is None
    changes = await store.changes_after(before, 10)
    assert [(c.kind, c.key) for c in changes] == [("user", principal.name)]
    assert await store.remove_publisher(added.id, by="alice") is None


async def test_a_pending_publisher_creates_its_project_owned_by_its_registrant_once(
    store: Store, store_url: str
) -> None:
    alice = await store.add_user("alice", "x")
    waiting = await store.add_pending_publisher(
        "demo", "Demo", "github", "github", GITHUB, issuer_url=URL, user=alice, expires=time.time() + 60
    )
    assert [p.id for p in await store.pending_publishers_of(time.time())] == [waiting.id]

    reified = await asyncio.gather(*(store.reify_pending(waiting) for _ in range(5)))

    [publisher] = [r for r in reified if r is not None]
    assert (await store.project_access("demo", alice.id))[1] == "owner"
    assert (await store.project_access("demo", publisher.id))[1] == "maintainer"
    assert await store.pending_publishers_of(time.time()) == []
    assert rows(store_url, "SELECT display_name FROM projects") == [("Demo",)]


async def test_a_pending_publisher_for_a_project_that_exists_meanwhile_is_refused_and_gone(store: Store) -> None:
    alice = await store.add_user("alice", "x")
    waiting = await store.add_pending_publisher(
        "demo", "Demo", "github", "github", GITHUB, issuer_url=URL, user=alice, expires=time.time() + 60
    )
    bob = await store.add_user("bob", "x")
    await store.grant("demo", "demo", bob, "owner", by="test")

    assert await store.reify_pending(waiting) is None
    assert await store.pending_publishers_of(time.time()) == []
    assert (await store.project_access("demo", alice.id))[1] is None


async def test_expired_pending_publishers_are_not_offered_and_are_purged(store: Store) -> None:
    alice = await store.add_user("alice", "x")
    await store.add_pending_publisher(
        "demo", "Demo", "github", "github", GITHUB, issuer_url=URL, user=alice, expires=time.time() - 1
    )
    assert await store.pending_publishers_of(time.time()) == []
    assert await store.purge_pending_publishers(time.time()) == 1


async def test_a_pending_publisher_waits_while_another_user_s_upload_is_creating_its_project(store: Store) -> None:
    """An upload of a new project's first file holds the name (`project_claims`) until it is recorded: a pending
    publisher's first exchange meanwhile must not make the project its registrant's under that upload."""
    alice, bob = await store.add_user("alice", "x"), await store.add_user("bob", "x")
    waiting = await store.add_pending_publisher(
        "demo", "Demo", "github", "github", GITHUB, issuer_url=URL, user=alice, expires=time.time() + 60
    )
    assert await store.hold_claim("demo", bob.id)

    with pytest.raises(ProjectBeingCreated):
        await store.reify_pending(waiting)
    assert [p.id for p in await store.pending_publishers_of(time.time())] == [waiting.id], "kept for a retry"
    assert await store.project_access("demo", alice.id) == (None, None, False)

    await store.release_claim("demo", bob.id)
    assert await store.reify_pending(waiting) is not None
    assert (await store.project_access("demo", alice.id))[1] == "owner"


async def test_a_pending_publisher_s_registrant_s_own_upload_does_not_stop_it(store: Store) -> None:
    alice = await store.add_user("alice", "x")
    waiting = await store.add_pending_publisher(
        "demo", "Demo", "github", "github", GITHUB, issuer_url=URL, user=alice, expires=time.time() + 60
    )
    assert await store.hold_claim("demo", alice.id)
    assert await store.reify_pending(waiting) is not None
    assert (await store.upload_state("demo", alice.id, None)).claim_holder == alice.id, "her upload's claim is kept"


async def test_removing_a_pending_publisher_its_first_exchange_reifies_meanwhile_does_not_say_it_is_removed(
    store: Store, store_url: str
) -> None:
    """`publisher remove` (or the pending page's button) and the pending publisher's first exchange at once: on
    PostgreSQL the removal reads the pending row, then its DELETE waits on the exchange's and removes nothing once
    the exchange commits. Saying "removed" then would be false: the publisher it became publishes the project.
    The exchange is held here after its DELETE by an uncommitted claim of another user's, rolled back once the
    removal waits too."""
    alice, bob = await store.add_user("alice", "x"), await store.add_user("bob", "x")
    waiting = await store.add_pending_publisher(
        "demo", "Demo", "github", "github", GITHUB, issuer_url=URL, user=alice, expires=time.time() + 60
    )
    engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool)
    try:
        with engine.connect() as held:
            if held.dialect.name == "sqlite":
                held.exec_driver_sql("BEGIN IMMEDIATE")
            held.execute(
                text("INSERT INTO project_claims (project, user_id, holders, expires) VALUES ('demo', :u, 1, :e)"),
                {"u": bob.id, "e": time.time() + 600},
            )
            reifying = asyncio.ensure_future(store.reify_pending(waiting))
            await _blocked(store_url, 1)
            removing = asyncio.ensure_future(store.remove_publisher(waiting.id, by="admin"))
            await _blocked(store_url, 2)
            held.rollback()
        reified, removed = await asyncio.gather(reifying, removing)
    finally:
        engine.dispose()

    publishing = await store.publishers_of(project="demo")
    assert reified is not None and publishing == [reified], "the exchange ran first (it held the pending row)"
    assert removed is None, f"said removed ({removed}) while {reified.id} publishes demo"


async def _blocked(store_url: str, sessions: int) -> None:
    """Until `sessions` of the store's connections wait on a lock (PostgreSQL), or a moment (SQLite, whose
    writers queue on the store's one writer connection in the order they came)."""
    for _ in range(200):
        await asyncio.sleep(0.025)
        if store_url.startswith("sqlite"):
            if _ >= 8:
                return
            continue
        waiting = rows(
            store_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        if waiting[0][0] >= sessions:
            return
    raise AssertionError(f"{sessions} sessions never waited on a lock")


def _noise(length: int, *, seed: int, ascii_only: bool = True) -> str:
    """Printable text that does not compress (PostgreSQL compresses a long index entry first)."""
    chosen = random.Random(seed)
    letters = [chr(c) for c in range(0x100, 0x600) if chr(c).isalpha()]
    alphabet = string.ascii_letters + string.digits if ascii_only else "".join(letters)
    return "".join(chosen.choice(alphabet) for _ in range(length))


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        (
            "generic",
            {
                "subject": _noise(1024, seed=0),
                "claims": [f"{name}={_noise(1024, seed=index)}" for index, name in enumerate("abc", 1)],
            },
        ),
        ("generic", {"subject": _noise(1024, seed=4, ascii_only=False)}),
        ("generic", {"subject": _noise(1024, seed=9), "claims": [f"a={_noise(990, seed=10)}"]}),  # kept: 2044
        (
            "github",
            {
                "repository": f"o{_noise(254, seed=5)}/{_noise(255, seed=6)}",
                "owner_id": "9" * 20,
                "workflow": _noise(250, seed=7) + ".yml",
                "environment": _noise(255, seed=8, ascii_only=False),
            },
        ),
    ],
)
async def test_a_publisher_the_cli_and_pages_accept_is_one_the_store_keeps_on_both_backends(
    store: Store, kind: str, given: dict[str, Any]
) -> None:
    """PostgreSQL's unique index of a publisher (project, issuer, its URL, kind, fields) takes at most 2704 bytes a
    row: a longer publisher was accepted and then failed as a database fault (a 500 on the pages and the CLI), where
    SQLite kept it. What `publisher_fields_of` accepts, both keep; the longest is refused up front, in words."""
    url = "https://ci.example/" + "u" * 200
    oidc = OIDCConfig(issuers=(OIDCIssuer(name="ci-" + "n" * 60, url=url, kind=kind),))
    await owner_of(store, "demo-" + "p" * 95)
    try:
        fields = accounts.publisher_fields_of(oidc, oidc.issuers[0].name, **given)
    except ValueError as refused:
        assert "at most 2048" in str(refused)
        return
    await store.add_publisher("demo-" + "p" * 95, oidc.issuers[0].name, kind, fields, issuer_url=url, by="alice")
    assert [p.fields for p in await store.publishers_of()] == [fields]
