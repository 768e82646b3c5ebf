"""What every benchmark shares: the figures and their report, the machine they ran on, nginx, and the upload
bodies the upload benchmarks post."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.dists import LargeWheel
from tests.harness import free_port, stop, wait_http

MiB = 2**20
BLOCK = os.urandom(MiB)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    detail: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    machine: dict[str, str]
    quick: bool
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(_row(figure), flush=True)


def _row(f: Figure) -> str:
    base = f"{f.baseline:10.3f}" if f.baseline is not None else " " * 10
    ratio = f"{f.ratio:7.3f}" if f.ratio is not None else " " * 7
    verdict = {True: "ok", False: "MISSED", None: ""}[f.met]
    detail = " ".join(f"{key} {value:.3g}" for key, value in f.detail.items())
    note = "; ".join(part for part in (f.note, detail) if part)
    return f"{f.name:<44} {f.value:10.3f} {f.unit:<9} {base} {ratio}  {f.target:<12} {verdict:<6} {note}"


def machine() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {
        "cpu": cpu or platform.processor(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def start_nginx(directory: Path, server: str, health: str = "/health") -> tuple[str, subprocess.Popen[bytes]] | None:
    """nginx with one worker on a free loopback port, `server` the body of its one server block; None when
    nginx is not installed."""
    binary = nginx_binary()
    if binary is None:
        return None
    directory.mkdir(parents=True)
    port = free_port()
    (directory / "nginx.conf").write_text(
        f"""worker_processes 1;
error_log {directory}/error.log;
pid {directory}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {directory}/body;
  proxy_temp_path {directory}/proxy;
  server {{
    listen 127.0.0.1:{port};
{server}
  }}
}}
"""
    )
    process = subprocess.Popen([binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + health, process)
    except BaseException:
        stop(process)
        raise
    return url, process


# ---------------------------------------------------------------------------------------------------- uploads


class Body:
    """A twine-like multipart upload of a real wheel (`LargeWheel`: one big member repeating a random block),
    streamed, never held in memory, with its digests."""

    # The file's hash states after its prefix and payload, per project and size: only the end differs by version.
    _states: dict[tuple[str, int], tuple[Any, Any]] = {}  # noqa: RUF012 - a cache shared by all bodies

    def __init__(self, project: str, version: str, size: int) -> None:
        self.wheel = LargeWheel(project, version, size, BLOCK)
        self.filename = self.wheel.filename
        self.size = self.wheel.length
        sha256, blake2 = self.digests(project, size)
        boundary = uuid.uuid4().hex
        fields = {
            "name": project,
            "version": version,
            "filetype": "bdist_wheel",
            "pyversion": "py3",
            "metadata_version": "2.1",
            "sha256_digest": sha256,
            "blake2_256_digest": blake2,
            ":action": "file_upload",
            "protocol_version": "1",
        }
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{self.filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self.head = head.encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.length = len(self.head) + self.size + len(self.tail)
        self.content_type = f"multipart/form-data; boundary={boundary}"

    def digests(self, project: str, size: int) -> tuple[str, str]:
        key = (project, size)
        if key not in self._states:
            sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=32)
            for chunk in self.wheel.chunks():
                if chunk is not self.wheel.suffix:
                    sha.update(chunk)
                    blake.update(chunk)
            self._states[key] = (sha, blake)
        sha, blake = (state.copy() for state in self._states[key])
        sha.update(self.wheel.suffix)
        blake.update(self.wheel.suffix)
        return sha.hexdigest(), blake.hexdigest()

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.head
        for chunk in self.wheel.chunks():
            yield chunk
        yield self.tail


async def post(session: aiohttp.ClientSession, url: str, body: Body, authorization: str | None) -> float:
    started = time.perf_counter()
    headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
    if authorization:
        headers["Authorization"] = authorization
    async with session.post(url, data=body.chunks(), headers=headers) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"upload of {body.filename} to {url}: {resp.status} {resp.reason} {text[:200]}")
    return time.perf_counter() - started


def token_auth(token: str) -> str:
    return aiohttp.encode_basic_auth("__token__", token)
