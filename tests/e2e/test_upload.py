"""The core path with real clients: twine uploads through the gateway into pypiserver; pip and uv read back."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import (
    PYTHON,
    GatewayFactory,
    GatewayProcess,
    Index,
    Relay,
    free_port,
    index_upstream,
    pip_download,
    start_gateway,
    stop,
    twine,
)
from tests.dists import make_sdist, make_wheel, sha256_of
from tests.harness.forms import upload_body

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def alice(gateway: GatewayProcess) -> GatewayProcess:
    gateway.add_user("alice", PASSWORD)
    return gateway


def raw_post(url: str, path: str, headers: dict[str, str], body: bytes = b"") -> http.client.HTTPResponse:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", path, body=body, headers=headers)
    return conn.getresponse()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_wheel_and_sdist_upload_list_and_download(alice: GatewayProcess, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "Demo-Pkg", "0.1.0")
    sdist = make_sdist(tmp_path, "Demo-Pkg", "0.1.0")
    result = twine(alice.url, "alice", PASSWORD, wheel, sdist)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {wheel.name, sdist.name} <= set(index.files())

    with urllib.request.urlopen(f"{alice.url}/simple/demo-pkg/") as resp:
        page = resp.read().decode()
    assert f'href="{alice.url}/packages/{wheel.name}#sha256=' in page
    assert sdist.name in page

    target = tmp_path / "downloaded"
    pip = pip_download(f"{alice.url}/simple/", "demo-pkg==0.1.0", target)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert sha256_of(target / wheel.name) == sha256_of(wheel)


def test_uv_installs_through_the_gateway(alice: GatewayProcess, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "uv-target", "1.2.3")
    assert twine(alice.url, "alice", PASSWORD, wheel).returncode == 0
    uv = subprocess.run(
        [PYTHON, "-m", "uv", "pip", "install", "--no-cache", "--python", PYTHON, "--target", str(tmp_path / "t")]
        + ["--index-url", f"{alice.url}/simple/", "uv-target==1.2.3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert (tmp_path / "t" / "uv_target" / "__init__.py").read_text().startswith("VERSION = '1.2.3'")


def test_non_normalized_name_redirect_points_at_the_gateway(alice: GatewayProcess) -> None:
    parts = urlsplit(alice.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", "/simple/Demo_Pkg/")
    resp = conn.getresponse()
    assert resp.status in (301, 302, 307, 308)
    assert resp.getheader("Location") == f"{alice.url}/simple/demo-pkg/"


def test_wrong_password_is_403(alice: GatewayProcess, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "wrongpw", "1.0")
    result = twine(alice.url, "alice", "not the password", wheel)
    assert result.returncode != 0
    assert "403" in result.stdout + result.stderr
    assert "Invalid or non-existent authentication information" in result.stdout + result.stderr


def test_no_credentials_is_401_with_basic_challenge(alice: GatewayProcess) -> None:
    resp = raw_post(alice.url, "/legacy/", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--\r\n")
    assert resp.status == 401
    assert resp.getheader("WWW-Authenticate", "").startswith("Basic ")
    assert "Authentication required" in resp.reason
    assert "Authentication required" in resp.read().decode()


def test_post_without_trailing_slash_is_not_redirected(alice: GatewayProcess, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "noslash", "1.0")
    result = subprocess.run(
        [PYTHON, "-m", "twine", "upload", "--repository-url", f"{alice.url}/legacy", "-u", "alice", "-p", PASSWORD]
        + ["--non-interactive", "--disable-progress-bar", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_index_never_sees_client_credentials(index: Index, tmp_path: Path) -> None:
    relay = Relay(int(urlsplit(index.url).port or 0))
    upstream = index_upstream(index, tmp_path) | {"url": relay.url}
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        gw.add_user("bob", "bob's secret password")
        wheel = make_wheel(tmp_path, "cred-check", "1.0")
        assert twine(gw.url, "bob", "bob's secret password", wheel).returncode == 0
        received = bytes(relay.received)
        assert b"POST / HTTP/1.1" in received
        assert basic(index.username, index.password).encode() in received
        assert basic("bob", "bob's secret password").encode() not in received
        assert b"bob's secret password" not in received
        assert received.count(b"Authorization:") == received.count(basic(index.username, index.password).encode())
    finally:
        stop(gw.process)
        relay.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_large_upload_streams_in_bounded_memory(gateway_factory: GatewayFactory, index: Index, tmp_path: Path) -> None:
    gw = gateway_factory(limits={"max_file_size": "1GiB"})
    gw.add_user("big", PASSWORD)
    wheel = make_wheel(tmp_path, "big-upload", "1.0", payload_size=200 * 2**20)
    idle = rss_kib(gw.pid)
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(gw.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = twine(gw.url, "big", PASSWORD, wheel)
    finally:
        done.set()
        sampler.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha256_of(index.packages / wheel.name) == sha256_of(wheel)
    print(f"peak RSS over idle: {(peak - idle) / 1024:.1f} MiB")
    assert (peak - idle) < 64 * 1024, f"peak RSS grew by {(peak - idle) // 1024} MiB"


class _FailingIndex(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


def post_upload(gw: GatewayProcess, wheel: Path, user: str) -> http.client.HTTPResponse:
    content_type, body = upload_body(wheel)
    return raw_post(gw.url, "/legacy/", {"Content-Type": content_type, "Authorization": basic(user, PASSWORD)}, body)


def test_index_down_is_502_naming_the_index_in_the_log_only(tmp_path: Path) -> None:
    """Issue #13: the index's URL is internal (in docker `http://index:8080/`): the client is told the index is
    unreachable, the operator's log names the URL and the cause."""
    dead = f"http://127.0.0.1:{free_port()}/"
    gw = start_gateway(tmp_path / "gw", {"url": dead}, ready=False)
    try:
        gw.add_user("dave", PASSWORD)
        resp = post_upload(gw, make_wheel(tmp_path, "nobody-home", "1.0"), "dave")
        body = resp.read().decode()
        assert resp.status == 502
        assert resp.reason == "The package index is unreachable; try again later"
        assert body == f"502 {resp.reason}\n"
        with pytest.raises(urllib.error.HTTPError) as ready:
            urllib.request.urlopen(gw.url + "/-/ready")
        assert ready.value.code == 503
        assert dead not in ready.value.reason and dead not in ready.value.read().decode()
        log = gw.log_text()
        assert "Traceback" not in log
        faults = [line for line in log.splitlines() if "index fault on simple: upstream_unreachable" in line]
        assert len(faults) == 1 and f'method=GET url={dead}simple/nobody-home/ cause="ClientConnectorError' in faults[0]
        assert f'the package index is not answering url={dead}simple/ cause="ClientConnectorError' in log
    finally:
        stop(gw.process)


def test_index_5xx_is_502(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingIndex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gw = start_gateway(tmp_path / "gw", {"url": f"http://127.0.0.1:{server.server_address[1]}/"}, ready=False)
        try:
            gw.add_user("carol", PASSWORD)
            resp = post_upload(gw, make_wheel(tmp_path, "five-hundred", "1.0"), "carol")
            assert resp.status == 502
            assert resp.reason == "The package index failed (HTTP 500); try again later"
            log = gw.log_text()
            assert "Traceback" not in log
            url = f"http://127.0.0.1:{server.server_address[1]}/simple/five-hundred/"
            assert f'index fault on simple: upstream_error method=GET url={url} cause="HTTP 500"' in log
        finally:
            stop(gw.process)
    finally:
        server.shutdown()


def test_logs_hold_no_password_or_authorization(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gw = gateway_factory(logging={"level": "debug"})
    gw.add_user("erin", "erin's very secret password")
    wheel = make_wheel(tmp_path, "log-check", "1.0")
    assert twine(gw.url, "erin", "wrong password here", wheel).returncode != 0
    assert twine(gw.url, "erin", "erin's very secret password", wheel).returncode == 0
    log = gw.log_text()
    assert "outcome=accepted" in log and "outcome=rejected reason=invalid_credentials" in log
    for secret in ("erin's very secret password", "wrong password here", "Authorization", "authorization"):
        assert secret not in log
    for user, password in (("erin", "erin's very secret password"), ("erin", "wrong password here")):
        assert basic(user, password).split()[1] not in log


def metric(gw: GatewayProcess, name: str, default: float | None = None) -> float:
    with urllib.request.urlopen(gw.url + "/metrics") as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    if default is not None:
        return default
    raise AssertionError(f"{name} not exposed")


def test_metrics_count_uploads(alice: GatewayProcess, tmp_path: Path) -> None:
    before = metric(alice, 'upload_gateway_uploads_total{outcome="accepted",reason="ok"}')
    bytes_before = metric(alice, "upload_gateway_upload_bytes_total")
    wheel = make_wheel(tmp_path, "counted", "1.0")
    assert twine(alice.url, "alice", PASSWORD, wheel).returncode == 0
    assert metric(alice, 'upload_gateway_uploads_total{outcome="accepted",reason="ok"}') == before + 1
    assert metric(alice, "upload_gateway_upload_bytes_total") == bytes_before + wheel.stat().st_size
    assert metric(alice, 'upload_gateway_upload_duration_seconds_count{outcome="accepted"}') >= 1
    assert metric(alice, "upload_gateway_uploads_in_flight") == 0


def open_temporary_files(pid: int) -> list[str]:
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return [t for t in targets if t.startswith(tempfile.gettempdir()) and t.endswith("(deleted)")]


@pytest.mark.parametrize("files_first", [False, True], ids=["streamed", "spooled"])
def test_client_disconnect_aborts_the_upstream_request(
    alice: GatewayProcess, index: Index, tmp_path: Path, files_first: bool
) -> None:
    wheel = make_wheel(tmp_path, f"half-sent-{files_first}".lower(), "1.0", payload_size=4 * 2**20)
    content_type, body = upload_body(wheel, files_first=files_first)
    parts = urlsplit(alice.url)
    before = metric(alice, 'upload_gateway_uploads_total{outcome="rejected",reason="truncated_body"}', default=0)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        head = (
            f"POST /legacy/ HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: {basic('alice', PASSWORD)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.5)
        if files_first:
            assert open_temporary_files(alice.pid), "the spooled body sits in an (anonymous) temporary file"
    deadline = time.monotonic() + 10
    while metric(alice, "upload_gateway_uploads_in_flight") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(alice, "upload_gateway_uploads_in_flight") == 0
    assert metric(alice, 'upload_gateway_uploads_total{outcome="rejected",reason="truncated_body"}') == before + 1
    time.sleep(2)  # pypiserver under gunicorn stores a short body when the connection ends with a FIN
    assert wheel.name not in index.files()
    assert open_temporary_files(alice.pid) == []
