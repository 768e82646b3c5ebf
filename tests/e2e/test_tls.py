"""The gateway serving https itself (`server.tls_cert` / `server.tls_key`), with a certificate of the test CA that
the clients are told to trust and nothing else: twine, pip and uv publish and install; `serve --workers 2` serves
it too; plain http to the port is closed without a trace in the log; a connection counts against the per-address
cap from its accept, not from the end of its handshake; a large upload stays on the event loop (the pump reads
plain sockets only) in bounded memory; and a bad key or certificate is one line at start."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.connections import MAX_LINGERING
from tests.conftest import PYTHON, ROOT, GatewayProcess, Index, index_upstream, start_gateway, stop
from tests.dists import make_wheel, sha256_of
from tests.e2e.test_upload import rss_kib
from tests.harness.config import write_config
from tests.harness.tls import PKI

PASSWORD = "correct horse battery"
PUMPED = "upload_gateway_upload_pumped_bytes_total"
ACCEPTED = 'upload_gateway_uploads_total{outcome="accepted",reason="ok"}'
OPEN = "upload_gateway_connections_open"
TOO_MANY = 'upload_gateway_connections_refused_total{reason="too_many_connections"}'
OTHER = "127.0.0.2"  # another client: every 127.0.0.0/8 address is local on Linux


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory, index: Index, pki: PKI) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("https")
    gw = start_gateway(directory, index_upstream(index, directory), tls=pki, limits={"max_file_size": "1GiB"})
    gw.add_user("alice", PASSWORD)
    yield gw
    stop(gw.process)


def port_of(gw: GatewayProcess) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def get(gw: GatewayProcess, pki: PKI, path: str, source: str = "127.0.0.1") -> tuple[int, str]:
    """A GET over https on a new connection from the address `source`."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port_of(gw), timeout=30, context=pki.client_context(), source_address=(source, 0)
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def metric(gw: GatewayProcess, pki: PKI, name: str, source: str = "127.0.0.1") -> float:
    _, text = get(gw, pki, "/metrics", source)
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A client tool with the environment given, none of the caller's index or trust settings."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWINE_", "UV_", "PIP_", "SSL_CERT", "REQUESTS_CA", "CURL_CA"))
    }
    clean.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", NO_COLOR="1", UV_PYTHON_DOWNLOADS="never")
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env={**clean, **env}, stdin=subprocess.DEVNULL
    )
    return result


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args}\nexit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def twine_upload(gw: GatewayProcess, pki: PKI, *files: Path) -> subprocess.CompletedProcess[str]:
    return run(
        PYTHON, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
        "--repository-url", f"{gw.url}/legacy/", "-u", "alice", "-p", PASSWORD, *map(str, files),
        REQUESTS_CA_BUNDLE=str(pki.ca),
    )  # fmt: skip


def no_trace_in_log(gw: GatewayProcess) -> None:
    log = gw.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]


def test_twine_uploads_and_pip_installs_over_https(https: GatewayProcess, pki: PKI, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "tls-demo", "1.0")
    result = twine_upload(https, pki, wheel)
    assert result.returncode == 0, output(result)

    status, page = get(https, pki, "/simple/tls-demo/")
    assert status == 200 and f'href="{https.url}/packages/' in page, page  # links on the public https URL

    downloaded = tmp_path / "downloaded"
    pip = [PYTHON, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir", "--cert", str(pki.ca)]
    index_url = ["--index-url", f"{https.url}/simple/"]
    result = run(*pip, "download", "--no-deps", "-d", str(downloaded), *index_url, "tls-demo==1.0")
    assert result.returncode == 0, output(result)
    assert sha256_of(downloaded / wheel.name) == sha256_of(wheel)
    result = run(*pip, "install", "--no-deps", "--target", str(tmp_path / "target"), *index_url, "tls-demo==1.0")
    assert result.returncode == 0, output(result)
    assert (tmp_path / "target" / "tls_demo").is_dir()

    untrusting = run(*pip[:-2], "download", "--no-deps", "-d", str(tmp_path / "no"), *index_url, "tls-demo==1.0")
    assert untrusting.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusting.stdout + untrusting.stderr
    no_trace_in_log(https)


def test_uv_publishes_and_installs_over_https(https: GatewayProcess, pki: PKI, tmp_path: Path) -> None:
    """uv trusts its bundled roots; SSL_CERT_FILE makes it trust the test CA (no --native-tls needed)."""
    token = https.cli("token", "create", "alice").stdout.strip()
    wheel = make_wheel(tmp_path, "tls-uv", "1.0")
    uv = [PYTHON, "-m", "uv"]
    publish = [*uv, "publish", "--no-progress", "--no-config", "--trusted-publishing", "never"]
    publish += ["--publish-url", f"{https.url}/legacy/", "-u", "__token__", "-p", token, str(wheel)]
    result = run(*publish, SSL_CERT_FILE=str(pki.ca))
    assert result.returncode == 0, output(result)

    target = tmp_path / "target"
    install = [*uv, "pip", "install", "--no-cache", "--no-deps", "--no-config", "--python", PYTHON]
    install += ["--target", str(target), "--index-url", f"{https.url}/simple/", "tls-uv==1.0"]
    result = run(*install, SSL_CERT_FILE=str(pki.ca))
    assert result.returncode == 0, output(result)
    assert (target / "tls_uv").is_dir()

    install[install.index("--target") + 1] = str(tmp_path / "untrusting")
    untrusting = run(*install)
    assert untrusting.returncode != 0 and "certificate" in untrusting.stderr.lower(), output(untrusting)
    no_trace_in_log(https)


def test_plain_http_to_the_tls_port_is_closed_cleanly(https: GatewayProcess, pki: PKI) -> None:
    port = port_of(https)
    for request in (b"GET /simple/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"POST /legacy/ HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(request)
            received = until_closed(sock)
            assert not received.startswith(b"HTTP/"), received  # no http spoken on a TLS port: closed
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(https.url.replace("https://", "http://") + "/-/healthy", timeout=15)
    assert get(https, pki, "/-/healthy")[0] == 200
    no_trace_in_log(https)


def test_a_handshake_that_never_comes_is_closed_after_the_header_timeout(
    tmp_path: Path, index: Index, pki: PKI
) -> None:
    """asyncio allows a handshake 60 s; the gateway `limits.header_timeout`, as for a request's headers."""
    gw = start_gateway(tmp_path, index_upstream(index, tmp_path), tls=pki, limits={"header_timeout": "1s"})
    try:
        with socket.create_connection(("127.0.0.1", port_of(gw)), timeout=20) as sock:
            sock.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
            started = time.monotonic()
            try:
                assert sock.recv(4096) == b""  # closed by the gateway, not by the socket's timeout (an error)
            except ConnectionResetError:
                pass
            waited = time.monotonic() - started
        assert waited < 15, f"the half-open handshake was held {waited:.0f} s"
        refused = 'upload_gateway_connections_refused_total{reason="header_timeout"}'
        assert metric(gw, pki, refused) == 1.0, "a handshake cut off by the timeout is counted as late headers are"
        assert "connection from 127.0.0.1 closed: no TLS handshake within 1 s (limits.header_timeout)" in gw.log_text()
        no_trace_in_log(gw)
    finally:
        stop(gw.process)


def stalled(gw: GatewayProcess, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the https port that never sends its ClientHello."""
    return socket.create_connection(("127.0.0.1", port_of(gw)), timeout=20, source_address=(source, 0))


def until_closed(sock: socket.socket) -> bytes:
    """What the gateway sends until it closes the connection (a reset too: the end)."""
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_connections_still_in_their_handshake_count_against_the_per_address_cap(
    tmp_path: Path, index: Index, pki: PKI
) -> None:
    """Before: asyncio handed a TLS connection to the guard only once its handshake had completed, so one address
    could hold any number of connections that never send a ClientHello (each up to `header_timeout`) and run the
    gateway out of file descriptors. Now a connection counts from its accept: over the cap, a TLS client from that
    address reads the 429 over TLS, another address is served, and once the stalled connections are closed the
    first address is served again."""
    limits = {"max_connections_per_address": 4, "header_timeout": "1m"}
    gw = start_gateway(tmp_path, index_upstream(index, tmp_path), tls=pki, limits=limits)
    attack: list[socket.socket] = []
    try:
        attack = [stalled(gw) for _ in range(6)]
        wait_until(lambda: metric(gw, pki, TOO_MANY, OTHER) == 2, "the stalled ones over the cap were not refused")
        # and the one asking for the metrics (the previous one may not be counted out yet: waited for)
        wait_until(lambda: metric(gw, pki, OPEN, OTHER) == 4 + 1, "the stalled ones under the cap are not counted")

        status, body = get(gw, pki, "/-/healthy")
        assert status == 429, body
        assert body == "429 Too many connections from your address: at most 4 at once; close some and try again\n"
        assert get(gw, pki, "/-/healthy", OTHER) == (200, "OK\n")
        assert metric(gw, pki, TOO_MANY, OTHER) == 3
        assert "connection from 127.0.0.1 refused: it has 4 open (limits.max_connections_per_address)" in gw.log_text()

        for sock in attack:
            sock.close()
        wait_until(lambda: metric(gw, pki, OPEN, OTHER) == 1, "the closed connections still count")
        assert get(gw, pki, "/-/healthy") == (200, "OK\n")
        no_trace_in_log(gw)
    finally:
        for sock in attack:
            sock.close()
        stop(gw.process)


def test_handshakes_that_fail_give_their_slot_back(tmp_path: Path, index: Index, pki: PKI) -> None:
    """Every way a handshake ends without a connection (plain http, bytes that are not TLS, a client that hangs up
    mid-handshake or does not trust the certificate, one that never sends a byte) releases what it was counted
    under, exactly once: after the cap's number of each, a client from the same address is served and the gauge of
    open connections is back to the one asking for it."""
    cap = 4
    limits = {"max_connections_per_address": cap, "header_timeout": "2s"}
    gw = start_gateway(tmp_path, index_upstream(index, tmp_path), tls=pki, limits=limits)
    try:
        for _ in range(cap):
            for sent in (b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"\x00" * 64, b"\x16\x03\x01\x02"):
                with stalled(gw) as sock:
                    sock.sendall(sent)
                    if sent.startswith(b"\x16"):
                        continue  # hangs up in the middle of its ClientHello
                    assert not until_closed(sock).startswith(b"HTTP/"), sent
            with pytest.raises(ssl.SSLCertVerificationError), stalled(gw) as sock:
                ssl.create_default_context().wrap_socket(sock, server_hostname="127.0.0.1")  # not the test CA
        # the gateway counts the last one out a moment after the client saw it closed
        wait_until(lambda: metric(gw, pki, OPEN, OTHER) == 1, f"{OPEN} is not back to 1 after the failed ones")
        timed_out = [stalled(gw) for _ in range(cap)]
        for sock in timed_out:
            assert until_closed(sock) == b""  # closed by the gateway at the handshake's deadline
            sock.close()

        wait_until(lambda: metric(gw, pki, OPEN, OTHER) == 1, f"{OPEN} is not back to 1 after the timed-out ones")
        assert get(gw, pki, "/-/healthy") == (200, "OK\n")
        assert metric(gw, pki, TOO_MANY, OTHER) == 0
        no_trace_in_log(gw)
    finally:
        stop(gw.process)


def test_over_the_cap_a_tls_client_is_closed_at_once_when_too_many_refusals_linger(
    tmp_path: Path, index: Index, pki: PKI
) -> None:
    """A refused TLS connection is given its handshake (within `header_timeout`) to read the 429; at most
    MAX_LINGERING at once, as for plain http. Past that one is closed at once, and once the lingering ones end
    the next refusal is answered again."""
    cap = 2  # not 1: the metrics' connection from OTHER may start before the previous one is counted out
    limits = {"max_connections_per_address": cap, "header_timeout": "1m"}
    gw = start_gateway(tmp_path, index_upstream(index, tmp_path), tls=pki, limits=limits)
    attack: list[socket.socket] = []
    try:
        attack = [stalled(gw) for _ in range(cap + MAX_LINGERING)]
        wait_until(lambda: metric(gw, pki, TOO_MANY, OTHER) == MAX_LINGERING, "the stalled ones were not refused")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(gw, pki, "/-/healthy")  # no room to linger: closed during its handshake
        assert metric(gw, pki, TOO_MANY, OTHER) == MAX_LINGERING + 1

        for sock in attack[cap:]:
            sock.close()

        def refused_over_tls() -> bool:
            try:
                return get(gw, pki, "/-/healthy")[0] == 429
            except (ssl.SSLError, ConnectionError):
                return False

        wait_until(refused_over_tls, "the closed refusals still hold their lingering")
        no_trace_in_log(gw)
    finally:
        for sock in attack:
            sock.close()
        stop(gw.process)


def test_a_request_sent_with_the_last_bytes_of_the_handshake_is_answered(https: GatewayProcess, pki: PKI) -> None:
    """A TLS 1.3 client may send its request in the same write as its Finished: the server completes the
    handshake and has the request's bytes at once, before the connection is handed to aiohttp. They must reach it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    answer = b""
    with socket.create_connection(("127.0.0.1", port_of(https)), timeout=20) as sock:
        while True:
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        assert client.version() == "TLSv1.3"
        client.write(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        sock.sendall(outgoing.read())  # the client's Finished and the request, in one write
        while True:
            try:
                if not (chunk := client.read(65536)):
                    break  # the gateway's close_notify
                answer += chunk
            except ssl.SSLWantReadError:
                if not (data := sock.recv(65536)):
                    break
                incoming.write(data)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nOK\n"), answer


def test_several_workers_serve_https(tmp_path: Path, index: Index, pki: PKI) -> None:
    """The context is built in the parent before it forks; every worker serves it."""
    gw = start_gateway(tmp_path, index_upstream(index, tmp_path), tls=pki, server={"workers": 2})
    try:
        gw.add_user("alice", PASSWORD)
        for _ in range(8):
            assert get(gw, pki, "/-/ready")[0] == 200
        wheel = make_wheel(tmp_path, "tls-workers", "1.0")
        result = twine_upload(gw, pki, wheel)
        assert result.returncode == 0, output(result)
        assert "upload-gateway listening on https://127.0.0.1:" in gw.log_text()
        no_trace_in_log(gw)
    finally:
        stop(gw.process)


@pytest.mark.slow
def test_a_large_upload_over_https_stays_on_the_loop_in_bounded_memory(
    https: GatewayProcess, pki: PKI, index: Index, tmp_path: Path
) -> None:
    """The pump reads plain sockets only: over TLS the body is streamed on the event loop, as before the pump,
    with aiohttp's flow control, so a 200 MiB file never sits in memory."""
    wheel = make_wheel(tmp_path, "tls-big", "1.0", payload_size=200 * 2**20)
    accepted = metric(https, pki, ACCEPTED)
    idle = rss_kib(https.pid)
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(https.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        result = twine_upload(https, pki, wheel)
    finally:
        done.set()
        sampler.join()
    took = time.monotonic() - started
    assert result.returncode == 0, output(result)
    assert sha256_of(index.packages / wheel.name) == sha256_of(wheel)
    assert metric(https, pki, ACCEPTED) == accepted + 1
    assert metric(https, pki, PUMPED) == 0
    print(f"200 MiB over https: {took:.1f} s, peak RSS over idle {(peak - idle) / 1024:.1f} MiB")
    assert (peak - idle) < 64 * 1024, f"peak RSS grew by {(peak - idle) // 1024} MiB"


def bad_files(pki: PKI, directory: Path, fault: str) -> dict[str, object]:
    if fault == "world-readable key":
        key = directory / "open.key"
        shutil.copyfile(pki.key, key)
        os.chmod(key, 0o644)
        return {"tls_cert": str(pki.cert), "tls_key": str(key)}
    if fault == "another certificate's key":
        return {"tls_cert": str(pki.cert), "tls_key": str(pki.issue("stranger")[1])}
    if fault == "missing certificate":
        return {"tls_cert": str(directory / "missing.pem"), "tls_key": str(pki.key)}
    return {"tls_cert": str(pki.cert)}  # no key


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("world-readable key", "server.tls_key"),
        ("another certificate's key", "server.tls_key"),
        ("missing certificate", "server.tls_cert"),
        ("no key", "server.tls_key"),
    ],
)
def test_a_bad_key_or_certificate_is_one_line_at_start(
    tmp_path: Path, pki: PKI, fault: str, named: str, workers: int
) -> None:
    config = tmp_path / "gateway.toml"
    write_config(
        config,
        {
            "server": {"listen": "127.0.0.1:0", "workers": workers, **bad_files(pki, tmp_path, fault)},
            "store": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
            "tokens": {"secret_file": str(tmp_path / "secret.key")},
        },
    )
    result = subprocess.run(
        [PYTHON, "-m", "gateway", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")},
    )
    assert result.returncode == 1, output(result)
    assert result.stdout == ""
    assert result.stderr.startswith(f"upload-gateway: {named}: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "gateway.db").exists()  # refused before anything started


def test_a_refusal_before_the_body_reaches_twine_over_https(https: GatewayProcess, pki: PKI, tmp_path: Path) -> None:
    """A wrong password is refused on the headers and the connection closed with most of the body unread: twine
    still shows the 403, as over plain http."""
    wheel = make_wheel(tmp_path, "tls-refused", "1.0", payload_size=8 * 2**20)
    result = run(
        PYTHON, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
        "--repository-url", f"{https.url}/legacy/", "-u", "alice", "-p", "wrong password", str(wheel),
        REQUESTS_CA_BUNDLE=str(pki.ca),
    )  # fmt: skip
    assert result.returncode != 0
    assert "403" in result.stdout + result.stderr, output(result)
    no_trace_in_log(https)
