"""The store's interface holds nothing of SQLite, so a second backend is an implementation of it and not a
rewrite of its callers: its methods take and return the project's records or plain values, raise `StoreError`
or `StoreFailure` (never sqlite3's errors), and only `gateway/store/connection.py` imports SQLite's library."""

from __future__ import annotations

import inspect
import re
import sqlite3
from pathlib import Path

import pytest

from gateway.store import Store, StoreFailure

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
SQLITE_IMPORT = re.compile(r"^\s*(import|from)\s+(sqlite3|aiosqlite)\b", re.MULTILINE)


def public_methods() -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }


def test_only_the_connection_module_imports_sqlite() -> None:
    importers = {
        str(path.relative_to(GATEWAY)) for path in GATEWAY.rglob("*.py") if SQLITE_IMPORT.search(path.read_text())
    }
    assert importers == {"store/connection.py"}


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


async def test_a_database_error_reaches_callers_as_a_store_failure(store: Store) -> None:
    alice = await store.add_user("alice", "x")
    await store._db.execute("CREATE TRIGGER no_tokens BEFORE INSERT ON tokens BEGIN SELECT RAISE(ABORT, 'full'); END")
    with pytest.raises(StoreFailure, match="full") as failure:
        await store.add_token(alice, description="ci", secret=b"s", caveats=[], expires=None)
    assert isinstance(failure.value.__cause__, sqlite3.Error)


async def test_a_closed_stores_methods_raise_a_store_failure(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "gateway.db", audit_file=tmp_path / "audit.jsonl")
    await store.close()
    for call in (lambda: store.audit("test.event"), lambda: store.ping(), lambda: store.add_user("bob", "x")):
        with pytest.raises(StoreFailure, match=r"^the store is closed$"):
            await call()
    await store.close()
