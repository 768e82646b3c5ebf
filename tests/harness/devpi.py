"""A real devpi-server for the end-to-end tests: a fresh server directory, a service user and a non-volatile
index that only this user may upload to, served on a free loopback port.

Nothing reaches the network: `devpi-init --no-root-pypi` creates no root/pypi index (the mirror of pypi.org,
the only upstream a fresh devpi has), and `devpi-server --offline-mode` would keep any mirror index from
fetching anyway. A standalone server opens no other outgoing connection (replication needs --primary-url).

devpi-server starts in about 0.5 s instead of 5 s (the whole of start_devpi takes about 2 s): it derives its
login-token key from the server secret with argon2 at 512 MiB and 16 passes (4 s and half a GiB of memory
on a 2-core machine). Its hidden `--argon2-*` options, which devpi's own test suite lowers the same way,
make that milliseconds. That key only signs devpi's login tokens, which the gateway never uses (it sends
Basic credentials).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.harness import free_port, stop, wait_http

PYTHON = sys.executable
INIT = "import sys; from devpi_server.init import init; sys.exit(init())"
# Cheapest argon2 that libargon2 allows (8 KiB per lane): see the module docstring.
FAST_SECRET = ["--argon2-memory-cost", "8", "--argon2-time-cost", "1", "--argon2-parallelism", "1"]


@dataclass
class Devpi:
    """A running devpi-server with one upload index; `url` ends with '/'."""

    url: str
    upload_url: str  # <url><user>/<index>/: where twine-style POSTs go
    simple_url: str  # <upload_url>+simple/
    username: str
    password: str
    server_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    startup_seconds: float = field(default=0.0, compare=False)

    def files(self, project: str) -> dict[str, str]:
        """{filename: sha256 of the bytes devpi stores} of a project on the upload index ({} if it has none).

        The listing comes from devpi's JSON API; the digest is computed from the file in the server directory
        and checked against the one devpi claims, so a test compares what devpi would serve byte for byte.
        """
        result = self._json(self.upload_url + project)
        if result is None:
            return {}
        stored: dict[str, str] = {}
        for version in result.values():
            for link in version.get("+links", []):
                if link.get("rel") != "releasefile":
                    continue
                path = self.server_dir / "+files" / unquote(urlsplit(link["href"]).path).lstrip("/")
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                claimed = link.get("hash_spec", "")
                if claimed.startswith("sha256=") and claimed != f"sha256={digest}":
                    raise AssertionError(f"devpi lists {path.name} as {claimed}, its bytes are sha256={digest}")
                stored[path.name] = digest
        return dict(sorted(stored.items()))

    def projects(self) -> list[str]:
        """The (normalized) project names on the upload index."""
        result = self._json(self.upload_url)
        return sorted(result["projects"]) if result else []

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Every project's files with their sha256: compare two snapshots to see what an upload changed."""
        return {project: self.files(project) for project in self.projects()}

    def stop(self) -> None:
        stop(self.process)

    def __enter__(self) -> Devpi:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _json(self, url: str) -> Any:
        """devpi's `result` for a GET with Accept: application/json, or None on 404."""
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return json.load(resp)["result"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


def start_devpi(directory: Path, *, user: str = "service", index: str = "dev") -> Devpi:
    """Initialise `directory`/server, start devpi-server there, and create `user` and `user/index`.

    Only root (random password) may create users and indexes (`--restrict-modify root`; devpi's default lets
    anyone create them), and only `user` may upload to the index, which is non-volatile like a production
    release index: a file once stored can be neither overwritten nor deleted.
    """
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    server_dir = directory / "server"
    log = directory / "devpi.log"
    root_password, password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEVPI")}
    common = ["--serverdir", str(server_dir)]
    with log.open("ab") as out:
        subprocess.run(
            [PYTHON, "-c", INIT, *common, "--no-root-pypi"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "DEVPISERVER_ROOT_PASSWD": root_password},  # not on the command line, which ps shows
            check=True,
            timeout=60,
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen(
        [PYTHON, "-m", "devpi_server", *common, "--host", "127.0.0.1", "--port", str(port)]
        + ["--offline-mode", "--restrict-modify", "root", *FAST_SECRET],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_http(url + "+api", process)
        root = _basic("root", root_password)
        _put(url + user, root, {"password": password})
        acl = [user]
        _put(
            f"{url}{user}/{index}",
            root,
            {"type": "stage", "bases": [], "volatile": False, "acl_upload": acl, "acl_toxresult_upload": acl},
        )
    except BaseException as exc:
        stop(process)
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"devpi-server did not start: {exc}\n--- {log} ---\n{tail}") from exc
    upload_url = f"{url}{user}/{index}/"
    return Devpi(
        url=url,
        upload_url=upload_url,
        simple_url=upload_url + "+simple/",
        username=user,
        password=password,
        server_dir=server_dir,
        process=process,
        log=log,
        startup_seconds=time.monotonic() - started,
    )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _put(url: str, authorization: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": authorization, "Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()
