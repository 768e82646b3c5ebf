"""Shared fixtures: a real pypiserver, a recording relay in front of it, and the real gateway, on free ports."""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from passlib.apache import HtpasswdFile

from gateway.store import Store
from tests.harness import free_port, postgresql, stop, wait_http
from tests.harness.config import write_config
from tests.harness.database import BACKENDS
from tests.harness.devpi import Devpi, start_devpi
from tests.harness.tls import PKI
from tests.harness.tls import pki as pki
from tests.logcheck import problems

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Index:
    """A pypiserver that takes uploads only with its own service credential, like a real deployment."""

    url: str
    packages: Path
    username: str
    password: str
    process: subprocess.Popen[bytes]
    log: Path

    def files(self) -> list[str]:
        return sorted(p.name for p in self.packages.iterdir() if p.is_file())


def start_index(directory: Path, *, gunicorn_args: str = "", authenticate: str = "update") -> Index:
    """pypiserver under gunicorn: one sync worker with a 30 s worker timeout (gunicorn's defaults) unless
    `gunicorn_args` (gunicorn's command-line options, which pypiserver takes from GUNICORN_CMD_ARGS) say otherwise.
    `authenticate` is pypiserver's `-a`: "download,list,update" makes a private index (reads need the credential)."""
    packages = directory / "packages"
    packages.mkdir(parents=True)
    username, password = "index-service", secrets.token_urlsafe(16)
    htpasswd = directory / "htpasswd"
    passwords = HtpasswdFile(str(htpasswd), new=True, default_scheme="apr_md5_crypt")
    passwords.set_password(username, password)
    passwords.save()
    port = free_port()
    log = directory / "pypiserver.log"
    process = subprocess.Popen(
        [PYTHON, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port), "-P", str(htpasswd)]
        + ["-a", authenticate, "--disable-fallback", "--server", "gunicorn", str(packages)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "XDG_RUNTIME_DIR": str(directory), "GUNICORN_CMD_ARGS": gunicorn_args},
    )
    url = f"http://127.0.0.1:{port}/"
    wait_http(url + "health", process)
    return Index(url, packages, username, password, process, log)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty store: a SQLite file in `tmp_path`, or a fresh database on the test process's
    PostgreSQL. Every test that takes it (or `store`, or the in-process app) runs once on each."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    server: postgresql.Server = request.getfixturevalue("postgresql_server")
    return server.create()


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A real store on `store_url`, its audit mirror at `tmp_path / "audit.jsonl"` (the unit tests of the store,
    the accounts and the throttle share it)."""
    opened = await Store.open(store_url, audit_file=tmp_path / "audit.jsonl")
    yield opened
    await opened.close()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[postgresql.Server]:
    """One real PostgreSQL server per test process, started on first use; `create()` gives a test its database."""
    server = postgresql.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    idx = start_index(tmp_path_factory.mktemp("index"))
    yield idx
    stop(idx.process)


@dataclass(frozen=True)
class RecordedRequest:
    """One complete HTTP/1.1 request as it crossed a relay."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


def complete_requests(raw: bytes) -> list[RecordedRequest]:
    """The complete requests (with Content-Length bodies) in the bytes a client sent over one connection."""
    found: list[RecordedRequest] = []
    while (end := raw.find(b"\r\n\r\n")) != -1:
        head, rest = raw[:end].decode("latin-1").split("\r\n"), raw[end + 4 :]
        method, path, _ = head[0].split(" ", 2)
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])}
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            break
        found.append(RecordedRequest(method, path, headers, rest[:length]))
        raw = rest[length:]
    return found


class Relay:
    """A TCP relay that records what crossed it towards its target (what the index received).

    `received` holds the first bytes of every connection, `connections` each connection's bytes (up to FULL).
    """

    KEEP = 64 * 1024
    FULL = 16 * 1024 * 1024

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.received = bytearray()
        self.connections: list[bytearray] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        pipes = [
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True),
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True),
        ]
        for pipe in pipes:
            pipe.start()
        for pipe in pipes:
            pipe.join()
        client.close()
        upstream.close()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        """Copy one direction; a clean end is passed on as a FIN, a reset as a reset (as the gateway sent it).

        Sockets are closed only once both directions are done, so no thread ever reads a reused descriptor.
        """
        kept = 0
        whole = bytearray()
        if record:
            with self._lock:
                self.connections.append(whole)
        try:
            while data := source.recv(256 * 1024):
                if record and kept < self.KEEP:
                    with self._lock:
                        self.received += data[: self.KEEP - kept]
                if record and kept < self.FULL:
                    whole += data[: self.FULL - kept]
                kept += len(data)
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            try:
                sink.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sink.shutdown(socket.SHUT_RD)  # wakes the other direction without sending anything
            except OSError:
                pass

    def requests(self) -> list[RecordedRequest]:
        """Every complete request that crossed the relay (one cut off by a reset is not complete)."""
        with self._lock:
            return [request for raw in self.connections for request in complete_requests(bytes(raw))]

    def close(self) -> None:
        self._closed = True
        self.server.close()


@dataclass
class GatewayProcess:
    url: str
    config: Path
    log: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)
    # The passwords and tokens tests gave it: none may reach its log or audit file, in any encoding.
    secrets: list[str] = field(default_factory=list)

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, "-m", "gateway", "--config", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"CLI {args} failed ({result.returncode}): {result.stderr}")
        if args[:2] == ("token", "create") and result.returncode == 0 and result.stdout.strip():
            self.secrets.append(result.stdout.strip())
        return result

    def add_user(self, name: str, password: str) -> None:
        self.secrets.append(password)
        self.cli("user", "add", name, "--password-stdin", stdin=password + "\n")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def leaks(self) -> list[str]:
        """What its log and audit file hold that they must not: raw control characters, credentials in any
        encoding, the index's service password and the passwords and tokens tests gave it (see
        tests/logcheck.py)."""
        settings = tomllib.loads(self.config.read_text()) if self.config.exists() else {}  # a test may remove it
        password_file = settings.get("upstream", {}).get("password_file")
        if password_file and Path(password_file).exists():
            secrets = (*self.secrets, Path(password_file).read_text().strip())
        else:
            secrets = tuple(self.secrets)
        found = (
            [f"log: {problem}" for problem in problems(self.log_text(), secrets=secrets)] if self.log.exists() else []
        )
        audit_file = settings.get("logging", {}).get("audit_file")
        if audit_file and Path(audit_file).exists():
            found += [f"audit file: {problem}" for problem in problems(Path(audit_file).read_text(), secrets=secrets)]
        return found


def start_gateway(
    directory: Path,
    upstream: dict[str, object],
    *,
    ready: bool = True,
    preexec_fn: Callable[[], None] | None = None,
    tls: PKI | None = None,
    **overrides: dict[str, object],
) -> GatewayProcess:
    """The gateway as a subprocess with `upstream` and `overrides`, ready; `tls`: serving https with its server
    certificate (and waited for trusting its CA alone)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    sections: dict[str, dict[str, object]] = {
        "server": {"listen": f"127.0.0.1:{port}", "public_url": url, **(tls.server() if tls else {})},
        "upstream": upstream,
        "store": {"url": f"sqlite:///{directory / 'gateway.db'}"},
        "tokens": {"secret_file": str(directory / "secret.key")},
        "logging": {"level": "debug"},
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    config = directory / "gateway.toml"
    write_config(config, sections)
    log = directory / "gateway.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    process = subprocess.Popen(
        [PYTHON, "-m", "gateway", "--config", str(config), "serve"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
        preexec_fn=preexec_fn,
    )
    gateway = GatewayProcess(url, config, log, process, env)
    STARTED.append(gateway)
    wait_http(url + ("/-/ready" if ready else "/-/healthy"), process, context=tls.client_context() if tls else None)
    return gateway


# Every gateway started and not yet checked; `logs_hold_no_secret` checks each once it has stopped.
STARTED: list[GatewayProcess] = []


def _check_logs(*, stopped_only: bool) -> None:
    checked = [gateway for gateway in STARTED if not stopped_only or gateway.process.poll() is not None]
    STARTED[:] = [gateway for gateway in STARTED if all(gateway is not done for done in checked)]
    found = [f"{gateway.log.parent.name}: {problem}" for gateway in checked for problem in gateway.leaks()]
    if found:
        pytest.fail("gateway output holds what it must not:\n" + "\n".join(found[:20]))


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_secret_at_the_end() -> Iterator[None]:
    """The gateways still running when the last module ends (a session-wide one) are checked last."""
    yield
    _check_logs(stopped_only=False)


@pytest.fixture(scope="module", autouse=True)
def logs_hold_no_secret(logs_hold_no_secret_at_the_end: None) -> Iterator[None]:
    """Issue #13: log and audit output over the whole e2e run holds no raw control character and no credential
    in any encoding. Each gateway is checked once, after the module that stopped it (this fixture is set up
    before the module's own fixtures, so it ends after them), which the failure then names."""
    yield
    _check_logs(stopped_only=True)


def index_upstream(idx: Index, directory: Path) -> dict[str, object]:
    password_file = directory / "index-password"
    directory.mkdir(parents=True, exist_ok=True)
    password_file.write_text(idx.password)
    return {"url": idx.url, "username": idx.username, "password_file": str(password_file)}


@pytest.fixture(scope="session")
def devpi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devpi]:
    """A devpi-server whose non-volatile index only its service user may upload to (about 2 s to start)."""
    with start_devpi(tmp_path_factory.mktemp("devpi")) as server:
        yield server


def devpi_upstream(server: Devpi, directory: Path) -> dict[str, object]:
    """The gateway's [upstream] for `server`: uploads and simple pages on its index, the rest under its base."""
    password_file = directory / "devpi-password"
    directory.mkdir(parents=True, exist_ok=True)
    password_file.write_text(server.password)
    return {
        "url": server.url,
        "upload_url": server.upload_url,
        "simple_url": server.simple_url,
        "username": server.username,
        "password_file": str(password_file),
    }


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_factory(tmp_path: Path, index: Index) -> Iterator[GatewayFactory]:
    """Start a gateway in front of the shared index, with config overrides per test."""
    started: list[GatewayProcess] = []

    def factory(**overrides: dict[str, object]) -> GatewayProcess:
        directory = tmp_path / f"gateway{len(started)}"
        gw = start_gateway(directory, index_upstream(index, directory), **overrides)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        stop(gw.process)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, index: Index) -> Iterator[GatewayProcess]:
    """One gateway in front of the shared index for a whole test module."""
    directory = tmp_path_factory.mktemp("gateway")
    gw = start_gateway(directory, index_upstream(index, directory))
    yield gw
    stop(gw.process)


def twine(
    url: str, username: str, password: str, *files: Path, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "twine", "upload", "--repository-url", f"{url}/legacy/", "-u", username, "-p", password]
        + ["--non-interactive", "--disable-progress-bar", *extra, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "COLUMNS": "500",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        },
    )


def pip_download(index_url: str, requirement: str, target: Path) -> subprocess.CompletedProcess[str]:
    """`pip download` of one wheel, no dependencies, no cache: what an install fetches through `index_url`."""
    return subprocess.run(
        [PYTHON, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:"]
        + ["--disable-pip-version-check", "--index-url", index_url, "-d", str(target), requirement],
        capture_output=True,
        text=True,
        timeout=120,
    )
