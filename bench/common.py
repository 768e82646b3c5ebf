"""What every benchmark shares: the figures and their report, the machine they ran on, and nginx."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import free_port, stop, wait_http


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
