"""Where a database's schema stands, and bringing it to this gateway's head revision (Alembic, as a library).

`check` is what opening the store runs: an empty database (no tables at all) is created at head, one at head is
used, anything else is refused with one line that says to run `upload-gateway db upgrade`. `upgrade` is that
command: it applies the revisions a database lacks, and adopts a SQLite database of the gateway before Alembic
(`PRAGMA user_version` > 0, no `alembic_version`) by running the legacy scripts it lacks
(`gateway.store.legacy`), stamping the baseline revision, and upgrading from there. Both run in the one
transaction `gateway.store.connection.connect` holds, so a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from gateway.store.legacy import LEGACY_MIGRATIONS
from gateway.store.records import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BASELINE = "r0001"
# This gateway's newest revision, written here so that opening a store at it needs no Alembic (a second's import
# for every CLI command); tests/test_store_migrations.py checks it is Alembic's head.
HEAD = "r0005"
UPGRADE_HINT = "run upload-gateway db upgrade"


def _config(
    connection: Connection | None = None,
    issuer_urls: Mapping[str, str] | None = None,
    notes: list[str] | None = None,
) -> Config:
    """Alembic's configuration; `issuer_urls` ({configured issuer name: URL}) is what r0005 binds the publishers
    registered before it to, and `notes` gets a line from each migration with something to tell the operator."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    config.attributes["issuer_urls"] = dict(issuer_urls or {})
    config.attributes["notes"] = notes if notes is not None else []
    return config


def _upgrade_to_head(connection: Connection, issuer_urls: Mapping[str, str] | None = None) -> str:
    """The migrations' notes, each after a "; " (empty when none has any)."""
    from alembic import command

    notes: list[str] = []
    command.upgrade(_config(connection, issuer_urls, notes), "head")
    return "".join(f"; {note}" for note in notes)


@dataclass(frozen=True)
class Schema:
    """What a database holds: a revision, a legacy SQLite version, nothing at all, or tables of something else."""

    revision: str | None
    legacy: int | None
    empty: bool

    def describe(self) -> str:
        if self.revision is not None:
            return f"revision {self.revision}"
        if self.legacy is not None:
            return f"legacy SQLite version {self.legacy} (before migrations)"
        return "empty" if self.empty else "unknown: its tables are not the gateway's"


def schema_of(connection: Connection) -> Schema:
    names = set(inspect(connection).get_table_names())
    if "alembic_version" in names:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return Schema(revision, None, False)
    if connection.dialect.name == "sqlite":
        version = int(connection.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        if version and "users" in names:
            return Schema(None, version, False)
    return Schema(None, None, not names)


def check(connection: Connection) -> None:
    """The store opens only at head; an empty database is brought there first."""
    schema = schema_of(connection)
    if schema.empty:
        _upgrade_to_head(connection)
        return
    if schema.revision != HEAD:
        raise StoreError(
            f"store.url: the database schema is at {schema.describe()}, this gateway needs revision {HEAD}: "
            + (UPGRADE_HINT if _known(schema) else "it cannot be upgraded by this gateway")
        )


def _known(schema: Schema) -> bool:
    if schema.legacy is not None:
        return schema.legacy <= len(LEGACY_MIGRATIONS)
    if schema.revision is None:
        return schema.empty
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(_config()).get_revision(schema.revision) is not None
    except CommandError:
        return False


def upgrade(connection: Connection, issuer_urls: Mapping[str, str] | None = None) -> str:
    """Bring the database to head; what was done, in one line. `issuer_urls`: as `_config`'s."""
    from alembic import command

    schema = schema_of(connection)
    if schema.revision == HEAD:
        return f"the database schema is at revision {HEAD} already"
    if not _known(schema):
        raise StoreError(f"store.url: the database schema is {schema.describe()}: this gateway cannot upgrade it")
    if schema.legacy is not None:
        _run_legacy(connection, schema.legacy)
        command.stamp(_config(connection), BASELINE)
        notes = _upgrade_to_head(connection, issuer_urls)
        return f"adopted the database at {schema.describe()} and upgraded it to revision {HEAD}{notes}"
    notes = _upgrade_to_head(connection, issuer_urls)
    if schema.empty:
        return f"created the database schema at revision {HEAD}{notes}"
    return f"upgraded the database schema from {schema.describe()} to revision {HEAD}{notes}"


def _run_legacy(connection: Connection, version: int) -> None:
    """The legacy scripts a database at `version` lacks, each statement in turn (none holds a `;` of its own)."""
    for number, script in enumerate(LEGACY_MIGRATIONS[version:], start=version + 1):
        for statement in script.split(";"):
            if statement.strip():
                connection.exec_driver_sql(statement)
        connection.exec_driver_sql(f"PRAGMA user_version = {number}")
