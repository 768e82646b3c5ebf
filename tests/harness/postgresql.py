"""A real PostgreSQL server for the tests, started in a temporary directory from Debian's binaries, and a fresh
database per test.

One server per test process (so per pytest-xdist worker), on a free loopback port, trusting local connections:
it lives only as long as the process and holds nothing but test data. Durability is off (`fsync`,
`full_page_writes`, `synchronous_commit`), which makes `CREATE DATABASE` and each commit cheap. PostgreSQL refuses
to run as root (CI runs as root), so as root the server runs as the `postgres` user (`runuser`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

INSTALL_HINT = (
    "the PostgreSQL tests need Debian's postgresql package (initdb, pg_ctl): "
    "sudo apt-get install -y postgresql (or run .ci/run as root, which does)"
)
SERVICE_USER = "postgres"


def binaries() -> Path:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise RuntimeError(INSTALL_HINT)
    return Path(pg_ctl).resolve().parent


def _as_service_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running server: `url(name)` for a database on it, `create()` for a new empty one."""

    directory: Path
    port: int
    bin: Path
    durable: bool = False
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres", *, driver: str = "") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    def create(self) -> str:
        """A new empty database (CREATE DATABASE from template0); its URL."""
        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def create_with_password(self, role: str, password: str) -> str:
        """A new empty database owned by a new `role` that must give `password` (scram-sha-256 over TCP, where
        every other role is trusted); its URL without the password, as an operator writes one for libpq's
        `PGPASSWORD` or `~/.pgpass`."""
        hba = self.directory / "data" / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        name = f"{role}_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}" OWNER "{role}" TEMPLATE template0')
        self.execute("SELECT pg_reload_conf()")
        return f"postgresql://{role}@127.0.0.1:{self.port}/{name}"

    def execute(self, sql: str) -> None:
        """A statement as the superuser on the `postgres` database (e.g. `pg_terminate_backend`)."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql)

    def halt(self) -> None:
        """Kill the server as a crash would (`-m immediate`), keeping its data: `resume` starts it again."""
        _run([str(self.bin / "pg_ctl"), "stop", "-D", str(self.directory / "data"), "-m", "immediate", "-s"])

    def resume(self) -> None:
        _pg_start(self.bin, self.directory, self.port, durable=self.durable)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.directory, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_service_user(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def start(*, durable: bool = False) -> Server:
    """initdb and start a server in a new temporary directory; stop it with `Server.stop`. `durable`: a commit
    survives the server being killed (`halt`), as in production; otherwise the last ones may be lost."""
    bin_dir = binaries()
    directory = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
    data, sockets = directory / "data", directory / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, SERVICE_USER)
        shutil.chown(sockets, SERVICE_USER)
    port = _free_port()
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", SERVICE_USER, "-A", "trust", "-E", "UTF8", "--no-sync"])
    _pg_start(bin_dir, directory, port, durable=durable)
    return Server(directory=directory, port=port, bin=bin_dir, durable=durable)


def _pg_start(bin_dir: Path, directory: Path, port: int, *, durable: bool) -> None:
    # fsync off loses nothing when only the server is killed (the kernel keeps what it wrote); an asynchronous
    # commit may not have written at all.
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory / 'sockets'} "
        "-c fsync=off -c full_page_writes=off -c max_connections=200"
        + ("" if durable else " -c synchronous_commit=off")
    )
    log = directory / "server.log"
    _run([str(bin_dir / "pg_ctl"), "start", "-D", str(directory / "data"), "-w", "-s", "-l", str(log), "-o", options])
