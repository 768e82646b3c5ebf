"""The read path end to end: the allowlist against path tricks, safe rewriting, the purge-on-upload cache,
PEP 691 JSON for pip and uv, the gateway's own root page.

A recording index (a small aiohttp server in this process) notes every path it is asked for and the
Authorization header that came with it; the real gateway runs as a subprocess in front of it.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.conftest import (
    PYTHON,
    GatewayFactory,
    GatewayProcess,
    Index,
    pip_download,
    start_gateway,
    stop,
    twine,
)
from tests.dists import make_wheel, sha256_of
from tests.e2e.test_actions import PASSWORD as REMOVER_PASSWORD
from tests.e2e.test_actions import remove
from tests.e2e.test_upload import basic, raw_post
from tests.harness.forms import upload_body
from tests.harness.threaded_app import serve_in_thread
from tests.test_rewrite import HOSTILE

SERVICE_USER, SERVICE_PASSWORD = "svc", "service-secret"
SERVICE_AUTH = basic(SERVICE_USER, SERVICE_PASSWORD)
DEMO_WHEEL = b"not really a wheel, but bytes to download"
BIG_LINK = b'<a href="/packages/big-1.0-py3-none-any.whl#sha256=' + b"a" * 64 + b'">big-1.0-py3-none-any.whl</a><br>\n'
BIG_PAGE = BIG_LINK * (30 * 2**20 // len(BIG_LINK))


@dataclass
class RecordingIndex:
    """A PEP 503 index that records (raw path, Authorization) of every request it gets."""

    url: str = ""
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]


def _recording_app(record: RecordingIndex) -> web.Application:
    async def any_request(request: web.Request) -> web.StreamResponse:
        record.seen.append((request.raw_path, request.headers.get("Authorization")))
        path = request.path
        if path == "/simple/":
            return web.Response(text='<a href="demo/">demo</a><a href="/+login">login</a>', content_type="text/html")
        if path == "/simple/demo/":
            page = (
                '<a href="/packages/demo-1.0-py3-none-any.whl#sha256=ab">demo-1.0-py3-none-any.whl</a>'
                '<a href="/+api">api</a><a href="/root/private/+simple/">private</a>'
            )
            return web.Response(text=page, content_type="text/html")
        if path == "/simple/evil/":
            return web.Response(body=HOSTILE, content_type="text/html")
        if path == "/simple/big/":
            return web.Response(body=BIG_PAGE, content_type="text/html")
        if path == "/packages/demo-1.0-py3-none-any.whl":
            return web.Response(body=DEMO_WHEEL, content_type="application/octet-stream")
        return web.Response(status=404, text="not here")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_request)
    return app


@pytest.fixture(scope="module")
def recording() -> Iterator[RecordingIndex]:
    record = RecordingIndex()
    with serve_in_thread(_recording_app(record)) as url:
        record.url = url
        yield record


def recording_upstream(record: RecordingIndex, directory: Path) -> dict[str, object]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "svc-password").write_text(SERVICE_PASSWORD)
    return {"url": record.url, "username": SERVICE_USER, "password_file": str(directory / "svc-password")}


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, recording: RecordingIndex) -> Iterator[GatewayProcess]:
    """The gateway in front of the recording index, with the page cap raised to the most allowed (32 MiB)."""
    directory = tmp_path_factory.mktemp("front")
    gw = start_gateway(directory, recording_upstream(recording, directory), reads={"max_page_size": "32MiB"})
    yield gw
    stop(gw.process)


def raw_get(url: str, target: str, headers: str = "", timeout: float = 30) -> tuple[int, bytes, bytes]:
    """Send `target` byte for byte (no client normalises it); (status, head, body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{headers}Connection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


ATTACKS = [
    "/simple/%2e%2e/%2e%2e/root/dev/+api",
    "/simple/%2E%2E/+login",
    "/simple/../+login",
    "/simple/demo/../../+api",
    "/simple/demo/%2e%2e/%2e%2e/root/private/+simple/",
    "/%2e%2e/simple/",
    "/packages/..%2f..%2f+login",
    "/packages/%2e%2e/%2e%2e/+login",
    "/packages/..\\..\\+login",
    "/packages/%252e%252e/+login",
    "//simple/",
    "/simple//demo/",
    "//+login",
    "/packages//demo-1.0-py3-none-any.whl",
    "http://127.0.0.1:1/+login",
    "http://evil.example/simple/",
    "/+login",
    "/+api",
    "/root/private/+simple/",
    "/demo/json",
    "/simple/demo/extra/",
    "/health",
]


def test_path_tricks_never_leave_the_roots(front: GatewayProcess, recording: RecordingIndex) -> None:
    recording.seen.clear()
    for target in ATTACKS:
        status, _head, body = raw_get(front.url, target)
        assert status in (400, 404), (target, status, body)
        assert body.count(b"\n") <= 3 and body.strip(), (target, body)  # one line that says what to do
    assert recording.seen == [], "no trick reached the index"

    for target in ("/simple/", "/simple/demo/", "/packages/demo-1.0-py3-none-any.whl"):
        status, _, body = raw_get(front.url, target)
        assert status == 200, (target, body)
    assert set(recording.paths()) == {"/simple/", "/simple/demo/", "/packages/demo-1.0-py3-none-any.whl"}
    assert {auth for _, auth in recording.seen} == {SERVICE_AUTH}


def test_the_404_says_what_is_served(front: GatewayProcess) -> None:
    status, _, body = raw_get(front.url, "/+login")
    assert status == 404
    assert body.decode().startswith("404 Not found: this gateway serves the index at /simple/")


def test_links_outside_the_roots_are_not_offered(front: GatewayProcess, recording: RecordingIndex) -> None:
    status, _head, body = raw_get(front.url, "/simple/demo/")
    assert status == 200
    assert (
        body
        == (
            f'<a href="{front.url}/packages/demo-1.0-py3-none-any.whl#sha256=ab">demo-1.0-py3-none-any.whl</a>'
            "<a>api</a><a>private</a>"
        ).encode()
    )
    status, _, root = raw_get(front.url, "/simple/")
    assert root == f'<a href="{front.url}/simple/demo/">demo</a><a>login</a>'.encode()


def test_a_hostile_page_comes_back_escaped_and_inert(front: GatewayProcess) -> None:
    status, head, body = raw_get(front.url, "/simple/evil/")
    assert status == 200
    for dangerous in (b"<script", b"<img", b"<svg", b"<iframe", b"<base", b'onmouseover="', b"onclick", b"javascript"):
        assert dangerous not in body.lower()
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert f'<a href="{front.url}/packages/demo-1.0.tar.gz#sha256=AB12"'.encode() in body
    assert b"\r\nx-content-type-options: nosniff" in head.lower()
    csp = re.search(rb"\r\ncontent-security-policy: ([^\r]*)", head, re.IGNORECASE)
    assert csp is not None and b"default-src 'none'" in csp.group(1) and b"script-src" not in csp.group(1)


# Polls /-/healthy until its standard input closes, then prints the latencies: a process of its own, so that nothing
# this test process does (serving the big page as the index, receiving it as the client) is measured.
POLLER = """
import http.client, json, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
latencies = []
while not done.is_set():
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/-/healthy")
    assert conn.getresponse().status == 200
    latencies.append(time.perf_counter() - started)
    conn.close()
    time.sleep(0.02)
print(json.dumps(latencies))
"""


def test_a_30_mib_page_leaves_the_gateway_answering(front: GatewayProcess) -> None:
    """The issue's figure: /-/healthy under 100 ms while a 30 MiB page is read, rewritten and sent.

    On a loaded two-core machine an idle gateway's own worst case already reaches 100 ms (the scheduler), so the
    bound is on the 95th percentile; the longest wait is held under a second: the rewrite that ran on the event
    loop held it for 25 s on such a page.
    """
    parts = urlsplit(front.url)
    poller = subprocess.Popen(
        [PYTHON, "-c", POLLER, str(parts.hostname), str(parts.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    status, _, body = raw_get(front.url, "/simple/big/", timeout=300)
    out, _ = poller.communicate("", timeout=60)
    latencies = sorted(json.loads(out))
    assert status == 200 and body.count(b"<a href=") == BIG_PAGE.count(b"<a href=")
    assert len(latencies) >= 20, "the page was served too fast to measure anything"
    assert latencies[int(len(latencies) * 0.95)] < 0.1, latencies[-10:]
    assert latencies[-1] < 1.0, latencies[-10:]


def test_a_page_over_the_cap_is_refused(tmp_path: Path, recording: RecordingIndex) -> None:
    gw = start_gateway(tmp_path, recording_upstream(recording, tmp_path))  # the default cap: 8 MiB
    try:
        status, _, body = raw_get(gw.url, "/simple/big/")
        assert status == 502 and b"reads.max_page_size" in body
    finally:
        stop(gw.process)


def test_files_are_immutable_and_other_methods_point_at_legacy(front: GatewayProcess) -> None:
    status, head, body = raw_get(front.url, "/packages/demo-1.0-py3-none-any.whl")
    assert status == 200 and body == DEMO_WHEEL
    assert b"cache-control: public, max-age=31536000, immutable" in head.lower()
    parts = urlsplit(front.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/simple/", body=b"x", headers={"Content-Type": "text/plain"})
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"
    assert f"upload to {front.url}/legacy/" in text and "/legacy/" in resp.reason


def metric(gw: GatewayProcess, name: str) -> float:
    with urllib.request.urlopen(f"{gw.url}/metrics") as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def get(url: str, accept: str | None = None, etag: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Accept": accept} if accept else {}
    if etag:
        headers["If-None-Match"] = etag
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


PASSWORD = "reader's password"


@pytest.fixture
def cached(gateway_factory: GatewayFactory) -> GatewayProcess:
    gw = gateway_factory(reads={"cache_ttl": "2s"})
    gw.add_user("rita", PASSWORD)
    return gw


def test_an_upload_is_on_the_very_next_page_and_the_index_is_revalidated(
    cached: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    first = make_wheel(tmp_path, "cache-demo", "1.0")
    applied = 'upload_gateway_changes_applied_total{kind="project"}'
    before = metric(cached, applied)
    assert twine(cached.url, "rita", PASSWORD, first).returncode == 0
    deadline = time.monotonic() + 10
    while metric(cached, applied) <= before:  # the change log's purge of that upload, about a second after it
        assert time.monotonic() < deadline, "the upload's change never came through the change log"
        time.sleep(0.05)
    page = f"{cached.url}/simple/cache-demo/"
    assert first.name.encode() in get(page)[2]
    hits = metric(cached, 'upload_gateway_read_cache_hits_total{kind="html"}')
    assert first.name.encode() in get(page)[2]
    assert metric(cached, 'upload_gateway_read_cache_hits_total{kind="html"}') == hits + 1

    second = make_wheel(tmp_path, "cache-demo", "2.0")
    assert twine(cached.url, "rita", PASSWORD, second).returncode == 0
    assert second.name.encode() in get(page)[2], "the upload purged the cached page"
    assert b"cache-demo" in get(f"{cached.url}/simple/")[2]

    third = make_wheel(tmp_path, "cache-demo", "3.0")
    shutil.copy(third, index.packages / third.name)  # on the index directly: the gateway learns it by revalidating
    deadline = time.monotonic() + 10
    while third.name.encode() not in get(page)[2]:
        assert time.monotonic() < deadline, "a file added on the index never appeared"
        time.sleep(0.2)


def test_if_none_match_gives_304(cached: GatewayProcess, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "etag-demo", "1.0")
    assert twine(cached.url, "rita", PASSWORD, wheel).returncode == 0
    for accept in (None, "application/vnd.pypi.simple.v1+json"):
        status, headers, body = get(f"{cached.url}/simple/etag-demo/", accept)
        assert status == 200 and headers["Vary"] == "Accept"
        etag = headers["ETag"]
        status, headers, body = get(f"{cached.url}/simple/etag-demo/", accept, etag=etag)
        assert status == 304 and body == b"" and headers["ETag"] == etag
        assert get(f"{cached.url}/simple/etag-demo/", accept, etag='"other"')[0] == 200


def test_json_pages_say_what_the_gateway_knows(cached: GatewayProcess, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "json-demo", "1.0")
    assert twine(cached.url, "rita", PASSWORD, wheel).returncode == 0
    status, headers, body = get(f"{cached.url}/simple/json-demo/", "application/vnd.pypi.simple.latest+json")
    assert status == 200 and headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    data = json.loads(body)
    assert data["meta"] == {"api-version": "1.1"} and data["name"] == "json-demo" and data["versions"] == ["1.0"]
    (entry,) = data["files"]
    assert entry["filename"] == wheel.name and entry["size"] == wheel.stat().st_size
    assert entry["hashes"] == {"sha256": sha256_of(wheel)} and entry["upload-time"].endswith("Z")
    assert entry["url"].startswith(f"{cached.url}/packages/")
    root = json.loads(get(f"{cached.url}/simple/", "application/vnd.pypi.simple.v1+json")[2])
    assert {"name": "json-demo"} in root["projects"]
    assert get(f"{cached.url}/simple/json-demo/", "image/png")[0] == 406


def test_pip_and_uv_install_through_the_json_api(cached: GatewayProcess, tmp_path: Path) -> None:
    """pypiserver has no JSON API: the gateway builds it, and both installers take it."""
    wheel = make_wheel(tmp_path, "json-install", "1.0")
    assert twine(cached.url, "rita", PASSWORD, wheel).returncode == 0
    served = 'upload_gateway_reads_total{representation="json",route="project"}'
    before = metric(cached, served)
    result = pip_download(f"{cached.url}/simple/", "json-install", tmp_path / "pip")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha256_of(tmp_path / "pip" / wheel.name) == sha256_of(wheel)
    assert metric(cached, served) == before + 1

    result = subprocess.run(
        [PYTHON, "-m", "uv", "pip", "install", "--no-cache", "--python", PYTHON, "--target", str(tmp_path / "uv")]
        + ["--index-url", f"{cached.url}/simple/", "json-install"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert metric(cached, served) == before + 2


def test_the_root_page_and_files_of_the_embedded_index(tmp_path: Path) -> None:
    data = tmp_path / "packages"
    gw = start_gateway(tmp_path / "gw", {"url": "embedded", "data_dir": str(data)})
    try:
        status, headers, body = get(f"{gw.url}/")
        page = body.decode()
        assert status == 200 and headers["Content-Security-Policy"].startswith("default-src 'none'")
        for url in (f"{gw.url}/legacy/", f"{gw.url}/simple/", f'href="{gw.url}/account/"'):
            assert url in page
        ports = set(re.findall(r"127\.0\.0\.1:(\d+)", page))
        assert ports == {str(urlsplit(gw.url).port)}, "no other address (the embedded index's) is given away"

        gw.add_user("emma", PASSWORD)
        wheel = make_wheel(tmp_path, "embedded-read", "1.0")
        assert twine(gw.url, "emma", PASSWORD, wheel).returncode == 0
        status, head, body = raw_get(gw.url, f"/packages/{wheel.name}")
        assert status == 200 and body == wheel.read_bytes()
        assert b"cache-control: public, max-age=31536000, immutable" in head.lower()
        (data / ".hidden").write_text("x")
        for target in ("/packages/.hidden", "/packages/%2e%2e/gateway.db", "/packages/missing-1.0.tar.gz"):
            assert raw_get(gw.url, target)[0] in (400, 404), target
    finally:
        stop(gw.process)


def test_credentials_of_clients_never_reach_the_index(front: GatewayProcess, recording: RecordingIndex) -> None:
    recording.seen.clear()
    client_auth = "Basic " + base64.b64encode(b"alice:her-secret").decode()
    status, _, _ = raw_get(front.url, "/packages/demo-1.0-py3-none-any.whl", f"Authorization: {client_auth}\r\n")
    assert status == 200
    assert recording.seen == [("/packages/demo-1.0-py3-none-any.whl", SERVICE_AUTH)]


def test_a_removal_through_the_gateway_purges_the_page_too(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gw = gateway_factory(reads={"cache_ttl": "1h"}, policy={"allowed_actions": ["file_upload", "remove_pkg"]})
    gw.add_user("rita", REMOVER_PASSWORD)  # the password tests.e2e.test_actions.remove sends
    wheel = make_wheel(tmp_path, "purgedbyremoval", "1.0")
    assert twine(gw.url, "rita", REMOVER_PASSWORD, wheel).returncode == 0
    page = f"{gw.url}/simple/purgedbyremoval/"
    assert wheel.name.encode() in get(page)[2] and wheel.name.encode() in get(page)[2]  # the second one cached
    status, reason = remove(gw.url, "rita", "purgedbyremoval", "1.0")
    assert status == 200, reason
    status, _, body = get(page)
    assert wheel.name.encode() not in body, "with an hour's TTL, only the purge can have dropped the file"
    assert metric(gw, "upload_gateway_read_cache_purges_total") >= 2


def test_head_and_redirects(front: GatewayProcess) -> None:
    parts = urlsplit(front.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("HEAD", "/simple/demo/")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"" and resp.getheader("ETag")
    conn.request("GET", "/simple/Demo/?format=application/vnd.pypi.simple.v1%2Bjson")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 301
    assert resp.getheader("Location") == f"{front.url}/simple/demo/?format=application/vnd.pypi.simple.v1%2Bjson"


def test_an_upload_refused_before_the_index_purges_nothing(cached: GatewayProcess, tmp_path: Path) -> None:
    """A refusal the index never saw changed nothing on it: it must not empty the cache (any signed-in user could
    otherwise make the index rebuild every page, one refused upload each)."""
    wheel = make_wheel(tmp_path, "no-purge-demo", "1.0")
    applied = 'upload_gateway_changes_applied_total{kind="project"}'
    before = metric(cached, applied)
    assert twine(cached.url, "rita", PASSWORD, wheel).returncode == 0
    deadline = time.monotonic() + 10
    while metric(cached, applied) <= before:  # the change log's purge of that upload, which follows it
        assert time.monotonic() < deadline, "the upload's change never came through the change log"
        time.sleep(0.05)
    purges = metric(cached, "upload_gateway_read_cache_purges_total")
    assert purges >= 1
    broken = make_wheel(tmp_path, "no-purge-demo", "2.0")
    broken.write_bytes(b"not a zip, refused once the index has all but its last bytes" * 1000)
    content_type, body = upload_body(broken)
    headers = {"Content-Type": content_type, "Authorization": basic("rita", PASSWORD)}
    answer = raw_post(cached.url, "/legacy/", headers, body)
    assert answer.status == 400 and "zip" in answer.reason.lower(), answer.reason
    assert metric(cached, "upload_gateway_read_cache_purges_total") == purges
