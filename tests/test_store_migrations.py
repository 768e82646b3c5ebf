"""The store's schema on both backends: Alembic's migrations build exactly the tables the queries name; an empty
database is created at head when the store opens, any other schema but head is refused with one line until
`db upgrade`; a SQLite database of the gateway before Alembic is adopted (its missing legacy scripts run first)
with its users and tokens; and `copy_store` moves a store into another database, its tokens still verifying."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from gateway.accounts import create_token
from gateway.authentication import Authenticator, TokenSettings
from gateway.credentials import TokenCredentials
from gateway.metrics import Metrics
from gateway.password_checks import PasswordChecks
from gateway.store import Store, StoreError
from gateway.store.admin import copy_store, upgrade_store
from gateway.store.legacy import LEGACY_MIGRATIONS
from gateway.store.schema import HEAD, MIGRATIONS_DIR
from gateway.store.tables import metadata
from tests.harness import database
from tests.harness.postgresql import Server

SETTINGS = TokenSettings(prefix="pypi", location="gateway.test", server_secret=b"k" * 32)


def test_the_head_written_in_the_code_is_alembics() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping")
async def test_the_migrations_build_exactly_the_tables_the_store_queries(store: Store, store_url: str) -> None:
    """Alembic's comparison, and the expression indexes by name (SQLite's are not reflected)."""
    engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    expression_indexes = {"users_name_folded", "files_folded"}
    assert [d for d in differences if not (d[0] == "add_index" and d[1].name in expression_indexes)] == []
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if store_url.startswith("sqlite")
        else "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
    )
    assert expression_indexes <= {name for (name,) in database.rows(store_url, query)}


def legacy_database(path: Path, version: int) -> str:
    """A SQLite database as the gateway before Alembic left it at `version`, with a user and a token."""
    with sqlite3.connect(path) as db:
        for number, script in enumerate(LEGACY_MIGRATIONS[:version], start=1):
            db.executescript(f"{script}\nPRAGMA user_version = {number};")
        db.execute("INSERT INTO users (id, name, password_hash, created) VALUES ('u1', 'Old', 'x', 0)")
        db.execute(
            "INSERT INTO tokens (id, user_id, description, secret, caveats, created) "
            "VALUES ('t1', 'u1', 'old token', x'00', '[]', 0)"
        )
    db.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("version", [len(LEGACY_MIGRATIONS), len(LEGACY_MIGRATIONS) - 1])
async def test_a_legacy_sqlite_database_is_refused_then_adopted_with_its_users_and_tokens(
    tmp_path: Path, version: int
) -> None:
    url = legacy_database(tmp_path / "old.db", version)
    with pytest.raises(StoreError) as refused:
        await Store.open(url)
    assert str(refused.value) == (
        f"store.url: the database schema is at legacy SQLite version {version} (before migrations), "
        f"this gateway needs revision {HEAD}: run upload-gateway db upgrade"
    )
    assert await upgrade_store(url) == (
        f"adopted the database at legacy SQLite version {version} (before migrations) "
        f"and upgraded it to revision {HEAD}"
    )
    assert await upgrade_store(url) == f"the database schema is at revision {HEAD} already"
    store = await Store.open(url)
    try:
        user = await store.require_user("old")
        token = await store.get_token("t1")
        assert token is not None and token.user_id == user.id and token.permissions == ("upload",)
        with pytest.raises(StoreError, match="already exists"):
            await store.add_user("OLD", "y")
        made = await store.add_token(
            user, description="new", secret=b"s", caveats=[], expires=None, permissions=("upload", "read")
        )
        again = await store.get_token(made.id)
        assert again is not None and again.permissions == ("read", "upload")
    finally:
        await store.close()


async def test_a_database_at_an_older_revision_is_refused_until_upgraded(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.add_user("alice", "x")
    await store.close()
    for table in ("publishers", "pending_publishers"):  # r0004's
        database.execute(store_url, f"DROP TABLE {table}")
    database.execute(store_url, "ALTER TABLE users DROP COLUMN kind")
    database.execute(store_url, "ALTER TABLE tokens DROP COLUMN run")
    for table in ("changes", "used_once", "settings"):  # r0003's
        database.execute(store_url, f"DROP TABLE {table}")
    database.execute(store_url, "DROP INDEX users_name_folded")  # r0002's
    database.execute(store_url, "UPDATE alembic_version SET version_num = 'r0001'")
    with pytest.raises(StoreError) as refused:
        await Store.open(store_url)
    assert str(refused.value) == (
        f"store.url: the database schema is at revision r0001, this gateway needs revision {HEAD}: "
        "run upload-gateway db upgrade"
    )
    assert await upgrade_store(store_url) == f"upgraded the database schema from revision r0001 to revision {HEAD}"
    store = await Store.open(store_url)
    try:
        assert (await store.require_user("ALICE")).name == "alice"
    finally:
        await store.close()


async def test_a_database_of_something_else_or_of_a_newer_gateway_is_refused(store_url: str) -> None:
    store = await Store.open(store_url)
    await store.close()
    database.execute(store_url, "UPDATE alembic_version SET version_num = 'r9999'")
    with pytest.raises(StoreError, match=r"at revision r9999, this gateway needs revision .*: it cannot be upgraded"):
        await Store.open(store_url)
    with pytest.raises(StoreError, match="this gateway cannot upgrade it"):
        await upgrade_store(store_url)
    database.execute(store_url, "DROP TABLE alembic_version")
    with pytest.raises(StoreError, match="schema is at unknown: its tables are not the gateway's"):
        await Store.open(store_url)


async def test_a_copy_into_postgresql_keeps_every_row_and_its_tokens_verify(
    tmp_path: Path, postgresql_server: Server
) -> None:
    source_url, target_url = f"sqlite:///{tmp_path / 'gateway.db'}", postgresql_server.create()
    source = await Store.open(source_url)
    try:
        alice = await source.add_user("alice", "x")
        await source.grant("demo", "Demo", alice, "owner", by="test")
        token, _ = await create_token(source, SETTINGS, alice, description="ci", projects=[], expires_at=None)
        await source.set_totp(alice, b"sealed", ["code-hash"], by="test")
    finally:
        await source.close()
    counts = await copy_store(source_url, target_url)
    assert set(counts) == {table.name for table in metadata.sorted_tables}
    for table, rows in counts.items():
        assert database.rows(source_url, f"SELECT COUNT(*) FROM {table}") == [(rows,)]  # noqa: S608
    assert (counts["users"], counts["tokens"], counts["roles"], counts["recovery_codes"]) == (1, 1, 1, 1)
    with pytest.raises(StoreError, match="the target database is not empty"):
        await copy_store(source_url, target_url)

    target = await Store.open(target_url)
    checks = PasswordChecks(workers=1, queue=1, metrics=Metrics())
    try:
        identity = await Authenticator(target, SETTINGS, Metrics(), checks).authenticate(TokenCredentials(token))
        assert identity.user.name == "alice"
        await target.audit("after.copy")  # the copied audit ids do not collide with the next one
        assert [event.event for event in await target.audit_events()][-1] == "after.copy"
        assert await target.totp_secret(alice.id) == (b"sealed", None)
    finally:
        checks.close()
        await target.close()


async def test_after_a_copy_into_postgresql_the_change_log_grows_past_the_copied_serials(
    tmp_path: Path, postgresql_server: Server
) -> None:
    """A replica on the copy starts following at the newest copied serial: a revocation made there must come
    after it, or no replica ever applies it (and one that took a copied serial would not commit at all)."""
    source_url, target_url = f"sqlite:///{tmp_path / 'gateway.db'}", postgresql_server.create()
    source = await Store.open(source_url)
    try:
        alice = await source.add_user("alice", "x")
        _, row = await create_token(source, SETTINGS, alice, description="ci", projects=[], expires_at=None)
        for project in ("one", "two", "three"):
            await source.grant(project, project, alice, "owner", by="test")
        await source.prune_changes(before=2**40)  # the oldest serials are gone, as after a day
        await source.set_password(alice, "y", by="test")
        copied = await source.last_change()
    finally:
        await source.close()
    await copy_store(source_url, target_url)
    target = await Store.open(target_url)
    try:
        assert await target.last_change() == copied
        await target.revoke_token(row.id, by="test")
        assert [(change.kind, change.key) for change in await target.changes_after(copied, 10)] == [("token", row.id)]
    finally:
        await target.close()


async def test_r0005_binds_the_publishers_before_it_to_the_url_their_issuer_has_in_the_upgrade_s_configuration(
    store_url: str,
) -> None:
    """r0004's publishers were trusted for whatever URL their issuer's name had; the upgrade binds them to the URL
    it has now. One of an issuer that configuration lacks is bound to nothing, so no token matches it."""
    engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = connection
            command.upgrade(config, "r0004")
    finally:
        engine.dispose()
    database.execute(
        store_url, "INSERT INTO projects (name, id, display_name, created) VALUES ('demo', 'd', 'demo', 0)"
    )
    for user, issuer in (("p1", "github"), ("p2", "gone")):
        database.execute(
            store_url,
            "INSERT INTO users (id, name, password_hash, created, kind) VALUES (:id, :name, '!', 0, 'publisher')",
            id=user,
            name=f"publisher:{user}",
        )
        database.execute(
            store_url,
            "INSERT INTO publishers (id, project, issuer, kind, fields, created) "
            "VALUES (:id, 'demo', :issuer, 'github', '{}', 0)",
            id=user,
            issuer=issuer,
        )
    url = "https://token.actions.githubusercontent.com"

    # Said, so that an operator who had pointed the name elsewhere already sees which host the rows now trust.
    assert await upgrade_store(store_url, {"github": url, "other": "https://other.example"}) == (
        f"upgraded the database schema from revision r0004 to revision {HEAD}; trusted publishers bound to their "
        f"issuer's URL: 1 of 'github' to {url}, 1 of an issuer not configured to none (refused until added again)"
    )

    assert database.rows(store_url, "SELECT id, issuer_url FROM publishers ORDER BY id") == [("p1", url), ("p2", "")]
