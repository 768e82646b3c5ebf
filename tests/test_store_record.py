"""Recording an accepted upload in a real store (SQLite and PostgreSQL): everything it changes lands in one
transaction, or nothing does (the database and the audit file alike)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from gateway.store import Store, StoredFile, StoreFailure
from tests.harness import database

AUDIT = {"user_name": "alice", "token_id": None, "project": "demo", "address": "203.0.113.9", "reason": "ok"}


def stored(filename: str) -> StoredFile:
    return StoredFile(
        filename=filename, project="demo", size=10, sha256="a" * 64, blake2_256="b" * 64, user="alice", token_id=None
    )


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    return database.rows(url, sql)


def audit_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "audit.jsonl"
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()] if path.exists() else []
    return [event for event in events if event != "user.added"]


async def test_a_first_upload_creates_its_project_with_its_owner_file_and_audit(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    alice = await store.add_user("alice", "x")
    assert await store.hold_claim("demo", alice.id)
    assert await store.reserve_size("u1", "demo", 10, 100)
    await store.record_upload(
        stored("demo-1.0.tar.gz"), display_name="Demo", claim=alice, reservation="u1", audit=AUDIT
    )
    assert rows(store_url, "SELECT name, display_name FROM projects") == [("demo", "Demo")]
    assert rows(store_url, "SELECT project, user_id, role FROM roles") == [("demo", alice.id, "owner")]
    assert rows(store_url, "SELECT filename, size FROM files") == [("demo-1.0.tar.gz", 10)]
    assert rows(store_url, "SELECT * FROM project_claims") == []
    assert rows(store_url, "SELECT * FROM size_reservations") == []
    assert rows(
        store_url,
        "SELECT event, user_name, project, address, detail FROM audit WHERE event != 'user.added' ORDER BY id",
    ) == [
        ("project.claimed", "alice", "demo", None, "{}"),
        ("upload.accepted", "alice", "demo", "203.0.113.9", '{"reason": "ok"}'),
    ]
    assert audit_lines(tmp_path) == ["project.claimed", "upload.accepted"]


async def test_a_record_that_fails_part_way_changes_nothing(store: Store, store_url: str, tmp_path: Path) -> None:
    """The file's row fails (its name is taken) after the project, the role and the claim's release: all of them
    are rolled back, and the audit file does not tell of a claim the store never granted."""
    alice = await store.add_user("alice", "x")
    await store.record_upload(stored("demo-1.0.tar.gz"), display_name="Demo", claim=None, reservation=None, audit=AUDIT)
    before = audit_lines(tmp_path)
    assert await store.hold_claim("demo", alice.id)
    assert await store.reserve_size("u2", "demo", 10, 100)
    with pytest.raises(StoreFailure) as failure:
        await store.record_upload(
            stored("demo-1.0.tar.gz"), display_name="Demo", claim=alice, reservation="u2", audit=AUDIT
        )
    assert isinstance(failure.value.__cause__, sqlite3.IntegrityError | psycopg.IntegrityError)
    assert rows(store_url, "SELECT * FROM projects") == []
    assert rows(store_url, "SELECT * FROM roles") == []
    assert rows(store_url, "SELECT project, user_id, holders FROM project_claims") == [("demo", alice.id, 1)]
    assert rows(store_url, "SELECT id FROM size_reservations") == [("u2",)]
    assert rows(store_url, "SELECT event FROM audit WHERE event != 'user.added'") == [("upload.accepted",)]
    assert audit_lines(tmp_path) == before
    await store.record_upload(
        stored("demo-1.1.tar.gz"), display_name="Demo", claim=alice, reservation="u2", audit=AUDIT
    )
    assert rows(store_url, "SELECT role FROM roles") == [("owner",)], "the store is usable after the rollback"
