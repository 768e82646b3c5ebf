"""The real `serve` on either store: on PostgreSQL a real twine upload and pip install go through it, with the
database password in store.url never shown; a schema out of date (a legacy SQLite database) and an unreachable
PostgreSQL stop `serve` with one line; `db upgrade` and `db copy` as subprocesses."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from gateway.store import tables
from gateway.store.legacy import LEGACY_MIGRATIONS
from gateway.store.schema import HEAD
from tests.conftest import PYTHON, ROOT, Index, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel
from tests.e2e.test_cli import cli_in, one_line
from tests.harness import free_port
from tests.harness.config import write_config
from tests.harness.postgresql import Server

PASSWORD = "correct horse battery"
DB_PASSWORD = "db-pass-7Hq2vX"  # the harness trusts local connections: given, never needed, never shown


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)


def test_serve_on_postgresql_takes_a_twine_upload_and_a_pip_install(
    tmp_path: Path, index: Index, postgresql_server: Server
) -> None:
    store_url = with_password(postgresql_server.create())
    gw = start_gateway(tmp_path / "gw", index_upstream(index, tmp_path / "gw"), store={"url": store_url})
    gw.secrets.append(DB_PASSWORD)
    try:
        gw.add_user("alice", PASSWORD)
        token = gw.cli("token", "create", "alice").stdout.strip()
        wheel = make_wheel(tmp_path, "pg-demo", "1.0")
        result = twine(gw.url, "__token__", token, wheel)
        assert result.returncode == 0, result.stdout + result.stderr
        assert wheel.name in index.files()
        target = tmp_path / "installed"
        pip = subprocess.run(
            [PYTHON, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check"]
            + ["--target", str(target), "--index-url", f"{gw.url}/simple/", "pg-demo==1.0"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pip.returncode == 0, pip.stdout + pip.stderr
        assert (target / "pg_demo-1.0.dist-info").is_dir()
        listing = gw.cli("user", "list", "--json")
        assert '"alice"' in listing.stdout and DB_PASSWORD not in listing.stdout + listing.stderr
    finally:
        stop(gw.process)
    assert DB_PASSWORD not in gw.log_text() and gw.leaks() == []


def test_an_unreachable_postgresql_stops_serve_with_one_line_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "gateway.toml"
    write_config(
        config,
        {
            "server": {"listen": f"127.0.0.1:{free_port()}"},
            "upstream": {"url": "embedded"},
            "store": {"url": f"postgresql://gateway:{DB_PASSWORD}@127.0.0.1:{port}/gateway"},
            "tokens": {"secret_file": "secret.key"},
        },
    )
    for command in (("serve",), ("user", "list"), ("db", "upgrade")):
        result = cli_in(ROOT, "--config", str(config), *command)
        line = one_line(result, "store.url: cannot open the database", f"postgresql://gateway:***@127.0.0.1:{port}")
        assert DB_PASSWORD not in result.stdout + result.stderr, line


def legacy_store(path: Path) -> None:
    """A SQLite database as the gateway before the migrations left it (the last legacy version)."""
    with sqlite3.connect(path) as db:
        for number, script in enumerate(LEGACY_MIGRATIONS, start=1):
            db.executescript(f"{script}\nPRAGMA user_version = {number};")
        db.execute("INSERT INTO users (id, name, password_hash, created) VALUES ('u1', 'old', 'x', 0)")
    db.close()


def test_serve_refuses_an_old_schema_until_db_upgrade_then_copy_moves_it_to_postgresql(
    tmp_path: Path, index: Index, postgresql_server: Server
) -> None:
    directory = tmp_path / "gw"
    directory.mkdir()
    legacy_store(directory / "gateway.db")
    config = directory / "gateway.toml"
    write_config(
        config,
        {
            "server": {"listen": f"127.0.0.1:{free_port()}"},
            "upstream": index_upstream(index, directory),
            "store": {"url": "sqlite:///gateway.db"},
            "tokens": {"secret_file": "secret.key"},
        },
    )
    refused = cli_in(ROOT, "--config", str(config), "serve")
    one_line(refused, "legacy SQLite version 8", f"this gateway needs revision {HEAD}", "run upload-gateway db upgrade")

    upgraded = cli_in(ROOT, "--config", str(config), "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (
        upgraded.stdout
        == f"sqlite:///{directory / 'gateway.db'}: adopted the database at legacy SQLite version 8 "
        + (f"(before migrations) and upgraded it to revision {HEAD}\n")
    )
    assert "old" in cli_in(ROOT, "--config", str(config), "user", "list").stdout

    target = with_password(postgresql_server.create())
    copied = cli_in(ROOT, "--config", str(config), "db", "copy", "--to", target)
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.splitlines()[-1].startswith(
        f"copied 1 rows in {len(tables.metadata.tables)} tables to postgresql://postgres:***@"
    )
    assert "users                  1" in copied.stdout and DB_PASSWORD not in copied.stdout + copied.stderr
    again = cli_in(ROOT, "--config", str(config), "db", "copy", "--to", target)
    one_line(again, "--to: the target database is not empty")
