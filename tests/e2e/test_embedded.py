"""`upstream.url = "embedded"`: the gateway runs its own pypiserver that only it can upload to."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import PYTHON, ROOT, start_gateway, stop, twine
from tests.dists import make_wheel, sha256_of
from tests.e2e.test_upload import basic, raw_post
from tests.harness.forms import upload_body


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def embedded_index_port(gateway_pid: int) -> int:
    for child in children(gateway_pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"gateway.index_server" in cmdline:
            return int(cmdline[cmdline.index(b"--port") + 1])
    raise AssertionError("no embedded index child")


def test_embedded_index_takes_uploads_only_through_the_gateway(tmp_path: Path) -> None:
    data = tmp_path / "packages"
    gw = start_gateway(tmp_path / "gw", {"url": "embedded", "data_dir": str(data)})
    try:
        gw.add_user("frank", "frank's password")
        wheel = make_wheel(tmp_path, "embedded-demo", "2.0")
        result = twine(gw.url, "frank", "frank's password", wheel)
        assert result.returncode == 0, result.stdout + result.stderr
        assert sha256_of(data / wheel.name) == sha256_of(wheel)

        direct = f"http://127.0.0.1:{embedded_index_port(gw.pid)}"
        other = make_wheel(tmp_path, "bypass", "1.0")
        content_type, body = upload_body(other)
        assert raw_post(direct, "/", {"Content-Type": content_type}, body).status == 401
        headers = {"Content-Type": content_type, "Authorization": basic("frank", "frank's password")}
        assert raw_post(direct, "/", headers, body).status == 403
        assert not (data / other.name).exists()
    finally:
        stop(gw.process)


def test_embedded_index_stops_with_the_gateway(tmp_path: Path) -> None:
    for how in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        gw = start_gateway(tmp_path / f"gw-{how.name}", {"url": "embedded", "data_dir": str(tmp_path / "d")})
        index_pids = children(gw.pid)
        assert index_pids
        os.kill(gw.pid, how)
        gw.process.wait(20)
        assert all(wait_gone(pid) for pid in index_pids), f"pypiserver outlived the gateway after {how.name}"


def test_make_run_banner_shows_the_port_it_listens_on(tmp_path: Path) -> None:
    """Port 0: the banner names the port the system chose (the twine and pip lines are in tests/e2e/test_cli.py)."""
    process = subprocess.Popen(
        [PYTHON, "-m", "gateway", "serve"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
            "GATEWAY_CONFIG": str(ROOT / "config" / "gateway.toml"),
            "GATEWAY_SERVER_LISTEN": "127.0.0.1:0",
            "GATEWAY_UPSTREAM_DATA_DIR": str(tmp_path / "packages"),
            "GATEWAY_STORE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "GATEWAY_TOKENS_SECRET_FILE": str(tmp_path / "secret"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:([0-9]+)) ", banner)
        assert found and int(found.group(2)) > 0, banner
        assert urllib.request.urlopen(found.group(1) + "/-/healthy", timeout=10).status == 200
    finally:
        process.terminate()
        process.wait(20)
