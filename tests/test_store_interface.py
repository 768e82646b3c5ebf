"""The store's interface holds nothing of a backend, so SQLite and PostgreSQL are one implementation of it and
its callers never know which: its methods take and return the project's records or plain values, raise
`StoreError` or `StoreFailure` (never SQLAlchemy's or a driver's errors), only `gateway/store/connection.py` (and the
change listener) imports the drivers, and nothing outside `gateway/store/` imports
SQLAlchemy or Alembic."""

from __future__ import annotations

import inspect
import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from gateway.store import Store, StoreFailure
from tests.harness import database

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
DRIVER_IMPORT = re.compile(r"^\s*(import|from)\s+(sqlite3|aiosqlite|psycopg|asyncpg)\b", re.MULTILINE)
SQLALCHEMY_IMPORT = re.compile(r"^\s*(import|from)\s+(sqlalchemy|alembic)\b", re.MULTILINE)


def public_methods() -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }


def test_only_the_connection_modules_and_the_listener_import_a_driver() -> None:
    """(The change listener is a connection of psycopg's own: SQLAlchemy has no LISTEN.)"""
    importers = {
        str(path.relative_to(GATEWAY)) for path in GATEWAY.rglob("*.py") if DRIVER_IMPORT.search(path.read_text())
    }
    assert importers == {"store/connection.py", "store/listener.py"}


def test_only_the_store_imports_sqlalchemy() -> None:
    importers = {
        str(path.relative_to(GATEWAY)) for path in GATEWAY.rglob("*.py") if SQLALCHEMY_IMPORT.search(path.read_text())
    }
    assert importers and all(name.startswith("store/") for name in importers), importers


def test_no_public_method_takes_or_returns_a_sqlite_type() -> None:
    methods = public_methods()
    assert len(methods) > 40
    for name, method in methods.items():
        annotations = inspect.get_annotations(inspect.unwrap(method))
        for annotation in annotations.values():
            assert not re.search(r"\b(Row|Cursor|Connection)\b|sqlite", str(annotation)), (name, annotation)


def test_every_public_method_translates_the_backends_errors() -> None:
    """(`open` makes any failure a one-line `StoreError` itself.)"""
    for name, method in public_methods().items():
        assert name == "open" or hasattr(method, "__wrapped__"), name


async def test_a_database_error_reaches_callers_as_a_store_failure(store: Store, store_url: str) -> None:
    alice = await store.add_user("alice", "x")
    if store_url.startswith("sqlite"):
        database.execute(
            store_url, "CREATE TRIGGER no_tokens BEFORE INSERT ON tokens BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
    else:
        database.execute(
            store_url,
            "CREATE FUNCTION full() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'full'; END $$ LANGUAGE plpgsql",
        )
        database.execute(
            store_url, "CREATE TRIGGER no_tokens BEFORE INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION full()"
        )
    with pytest.raises(StoreFailure, match="full") as failure:
        await store.add_token(alice, description="ci", secret=b"a secret parameter", caveats=[], expires=None)
    assert isinstance(failure.value.__cause__, sqlite3.Error | psycopg.Error)
    assert "a secret parameter" not in str(failure.value) and not failure.value.outage


async def test_a_closed_stores_methods_raise_a_store_failure(store_url: str, tmp_path: Path) -> None:
    store = await Store.open(store_url, audit_file=tmp_path / "audit.jsonl")
    await store.close()
    for call in (lambda: store.audit("test.event"), lambda: store.ping(), lambda: store.add_user("bob", "x")):
        with pytest.raises(StoreFailure, match=r"^the store is closed$"):
            await call()
    await store.close()
