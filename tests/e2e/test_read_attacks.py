"""Issue #14 review: the read path attacked end to end, each attack against the real gateway (a subprocess) in front
of a scripted index (an aiohttp server in this process) that serves what a test tells it and records every request.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pymacaroons
import pytest
from aiohttp import web

from gateway.passwords import hash_password
from tests.conftest import GatewayProcess, start_gateway
from tests.dists import make_wheel
from tests.e2e.test_private_reads import basic, get
from tests.e2e.test_reads import SERVICE_AUTH, raw_get, recording_upstream
from tests.e2e.test_upload import raw_post
from tests.harness import stop
from tests.harness.forms import upload_body
from tests.harness.threaded_app import serve_in_thread

HTML = "text/html"
JSON = "application/vnd.pypi.simple.v1+json"
PASSWORD = "a long enough password"


@dataclass
class ScriptedIndex:
    """Serves `pages` ({path: (content type, body)}), records (method, raw path, Authorization) of every request, and
    takes uploads (a POST adds its file to `listing[project]`). A GET of a path in `held` waits for the event, with
    the page as it was when the request came."""

    url: str = ""
    pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    listing: dict[str, list[str]] = field(default_factory=dict)
    held: dict[str, threading.Event] = field(default_factory=dict)
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (status, Location)
    extra_headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> headers sent with it
    # "offered": gzip what a request accepts gzip for, as nginx with `gzip on` does; "always": whatever it accepts
    compress: str = ""
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    def page(self, path: str) -> tuple[str, bytes] | None:
        project = path.removeprefix("/simple/").strip("/")
        if path.startswith("/simple/") and project in self.listing:
            links = "".join(f'<a href="/packages/{name}">{name}</a>\n' for name in self.listing[project])
            return HTML, links.encode()
        return self.pages.get(path)

    def gets(self, path: str) -> int:
        return sum(1 for method, seen, _ in self.seen if method == "GET" and seen == path)


def _scripted_app(index: ScriptedIndex) -> web.Application:
    async def any_request(request: web.Request) -> web.StreamResponse:
        index.seen.append((request.method, request.raw_path, request.headers.get("Authorization")))
        if request.method == "POST":
            body = await request.read()
            name = re.search(rb'name="name"\r\n\r\n([^\r]*)', body)
            filename = re.search(rb'filename="([^"]+)"', body)
            if name and filename:
                index.listing.setdefault(name[1].decode(), []).append(filename[1].decode())
            return web.Response(text="OK")
        if request.path in index.redirects:
            status, location = index.redirects[request.path]
            return web.Response(status=status, headers={"Location": location})
        page = index.page(request.path)
        hold = index.held.pop(request.path, None)
        if hold is not None:
            while not hold.is_set():
                await asyncio.sleep(0.02)
        if page is None:
            return web.Response(status=404, text="not here")
        content_type, body = page
        headers = {"Content-Type": content_type, **index.extra_headers.get(request.path, {})}
        offered = "gzip" in request.headers.get("Accept-Encoding", "")
        if index.compress == "always" or (index.compress == "offered" and offered):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        return web.Response(body=body, headers=headers)

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_route("*", "/{tail:.*}", any_request)
    return app


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedIndex]:
    index = ScriptedIndex()
    with serve_in_thread(_scripted_app(index)) as url:
        index.url = url
        yield index


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedIndex) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("public")
    gw = start_gateway(directory, recording_upstream(scripted, directory), reads={"cache_ttl": "1h"})
    gw.add_user("rita", PASSWORD)
    yield gw
    stop(gw.process)


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedIndex) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("private")
    gw = start_gateway(
        directory, recording_upstream(scripted, directory), reads={"access": "authenticated", "cache_ttl": "1h"}
    )
    for name in ("alice", "bob", "carl"):
        gw.add_user(name, PASSWORD)
    gw.cli("project", "grant", "proj-a", "alice")
    scripted.listing.setdefault("proj-a", ["proj_a-1.0-py3-none-any.whl"])
    scripted.listing.setdefault("proj-b", ["proj_b-1.0-py3-none-any.whl", "proj_b-1.0.tar.gz"])
    scripted.pages["/simple/"] = (HTML, b'<a href="proj-a/">proj-a</a>\n<a href="proj-b/">proj-b</a>\n')
    for name in ("proj_a-1.0-py3-none-any.whl", "proj_b-1.0-py3-none-any.whl", "proj_b-1.0.tar.gz"):
        scripted.pages[f"/packages/{name}"] = ("application/octet-stream", name.encode())
        scripted.pages[f"/packages/{name}.metadata"] = ("text/plain", b"Metadata-Version: 2.1\n")
    yield gw
    stop(gw.process)


def upload(gw: GatewayProcess, wheel: Path, authorization: str) -> tuple[int, str]:
    content_type, body = upload_body(wheel)
    resp = raw_post(gw.url, "/legacy/", {"Content-Type": content_type, "Authorization": authorization}, body)
    return resp.status, resp.read().decode(errors="replace")


def attenuate(token: str, caveat: object) -> str:
    """What any holder can do offline: add a caveat to the token's macaroon."""
    prefix, _, body = token.partition("-")
    macaroon = pymacaroons.Macaroon.deserialize(body)
    macaroon.add_first_party_caveat(json.dumps(caveat, sort_keys=True, separators=(",", ":")))
    return f"{prefix}-{macaroon.serialize()}"


# ---------------------------------------------------------------------------------------------------------- the cache


def test_a_page_fetched_before_an_upload_is_not_served_after_it(
    public: GatewayProcess, scripted: ScriptedIndex, tmp_path: Path
) -> None:
    """The purge race: a read that started before an upload (its fetch still in flight at the index) must not be
    what a read made after the upload's answer gets: "a page reflects an upload on the very next request"."""
    scripted.listing["race"] = ["race-1.0-py3-none-any.whl"]
    public.cli("project", "grant", "race", "rita")
    release = threading.Event()
    scripted.held["/simple/race/"] = release
    page = f"{public.url}/simple/race/"
    results: dict[str, bytes] = {}

    def read(name: str) -> None:
        results[name] = get(page)[2]

    before = threading.Thread(target=read, args=("before",))
    before.start()
    try:
        deadline = time.monotonic() + 10
        while scripted.gets("/simple/race/") < 1:
            assert time.monotonic() < deadline, "the first read never reached the index"
            time.sleep(0.02)
        wheel = make_wheel(tmp_path, "race", "2.0")
        status, body = upload(public, wheel, basic("rita", PASSWORD))
        assert status == 200, body
        assert wheel.name in scripted.listing["race"]
        after = threading.Thread(target=read, args=("after",))
        after.start()
        after.join(10)  # with the old fetch shared, this read waits for it (held until released below)
    finally:
        release.set()
    before.join(10)
    after.join(10)
    assert wheel.name.encode() in results["after"], "a read made after the upload got the page from before it"
    assert wheel.name.encode() in get(page)[2], "the page from before the upload was cached after the purge"


def test_no_request_header_changes_what_is_cached(public: GatewayProcess, scripted: ScriptedIndex) -> None:
    """Cache poisoning: the first reader's Host, X-Forwarded-*, Accept-Encoding or Authorization never shape the page
    later readers get; the page links to the public URL whatever the request said."""
    scripted.listing["poison"] = ["poison-1.0-py3-none-any.whl"]
    headers = (
        "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
        "Forwarded: host=evil.example\r\nAccept-Encoding: gzip\r\nAuthorization: Basic Zm9vOmJhcg==\r\n"
    )
    status, head, body = raw_get(public.url, "/simple/poison/", headers)
    assert status == 200 and b"evil" not in body and f"{public.url}/packages/".encode() in body
    assert b"content-encoding" not in head.lower()
    status, _, again = raw_get(public.url, "/simple/poison/")
    assert status == 200 and again == body
    assert scripted.gets("/simple/poison/") == 1
    assert all(auth == SERVICE_AUTH for method, path, auth in scripted.seen if path == "/simple/poison/")


# ------------------------------------------------------------------------------------------------ the index's pages


def test_a_deeply_nested_json_page_is_a_502_not_a_500(public: GatewayProcess, scripted: ScriptedIndex) -> None:
    """A hostile (or broken) JSON index: nesting past the JSON parser's recursion limit is the index's fault."""
    deep = b'{"meta":{"api-version":"1.0"},"name":"deep","files":[{"filename":"deep-1.0.tar.gz","url":"/packages/x",'
    deep += b'"core-metadata":' + b"[" * 200_000 + b"]" * 200_000 + b"}]}"
    scripted.pages["/simple/deep/"] = (JSON, deep)
    status, _, body = raw_get(public.url, "/simple/deep/", f"Accept: {JSON}\r\n")
    assert status == 502, body
    assert b"upstream" in body.lower() or b"package index" in body
    assert "Traceback" not in public.log_text()


def test_pep_714_attributes_stay_escaped_in_html_and_json(public: GatewayProcess, scripted: ScriptedIndex) -> None:
    attack = (
        b'<a href="/packages/esc-1.0.tar.gz#sha256=ab" data-requires-python="&gt;=3&quot; onmouseover=&quot;x()"'
        b' data-core-metadata=\'sha256="><script>x()</script>\' data-yanked="&lt;img src=x onerror=x()&gt;"'
        b' data-dist-info-metadata=true data-x"onclick=x() onclick="x()">esc-1.0.tar.gz</a>'
    )
    scripted.pages["/simple/esc/"] = (HTML, attack)
    status, _, body = raw_get(public.url, "/simple/esc/")
    assert status == 200
    assert b"<script" not in body and b"<img" not in body
    assert attributes_of(body.decode()) == [
        ["href", "data-requires-python", "data-core-metadata", "data-yanked", "data-dist-info-metadata"]
    ]
    assert b'data-requires-python="&gt;=3&quot; onmouseover=&quot;x()"' in body
    status, _, data = raw_get(public.url, "/simple/esc/", f"Accept: {JSON}\r\n")
    (entry,) = json.loads(data)["files"]
    assert entry["requires-python"] == '>=3" onmouseover="x()'
    assert entry["yanked"] == "<img src=x onerror=x()>"
    assert "core-metadata" not in entry, "a malformed hash is no metadata"


def test_json_from_the_index_where_html_was_asked_and_html_where_json(
    public: GatewayProcess, scripted: ScriptedIndex
) -> None:
    scripted.pages["/simple/swap-json/"] = (JSON, b'{"files":[],"name":"swap-json","meta":{"api-version":"1.0"}}')
    assert raw_get(public.url, "/simple/swap-json/")[0] == 502
    scripted.pages["/simple/swap-html/"] = (JSON, b"<script>alert(1)</script>")
    assert raw_get(public.url, "/simple/swap-html/", f"Accept: {JSON}\r\n")[0] == 502
    relayed = {
        "name": "relay",
        "meta": {"api-version": "1.0"},
        "files": [
            {"filename": "relay-1.0.tar.gz", "url": "javascript:alert(1)", "hashes": {}},
            {"filename": "relay-1.1.tar.gz", "url": f"{scripted.url}+login", "hashes": {}},
            {"filename": "relay-1.2.tar.gz", "url": "/packages/relay-1.2.tar.gz", "hashes": {}},
        ],
    }
    scripted.pages["/simple/relay/"] = (JSON, json.dumps(relayed).encode())
    status, _, body = raw_get(public.url, "/simple/relay/", f"Accept: {JSON}\r\n")
    assert status == 200, body
    assert [entry["url"] for entry in json.loads(body)["files"]] == [f"{public.url}/packages/relay-1.2.tar.gz"]
    assert scripted.url.rstrip("/").encode() not in body


def test_no_answer_gives_the_index_address_away(public: GatewayProcess, scripted: ScriptedIndex) -> None:
    """Redirects, Link and other headers of the index, error answers: the index's address never reaches a client."""
    internal = scripted.url.rstrip("/").removeprefix("http://")
    scripted.redirects["/packages/away-1.0.tar.gz"] = (302, f"{scripted.url}+login")
    scripted.redirects["/packages/inside-1.0.tar.gz"] = (302, "/packages/inside-1.1.tar.gz")
    scripted.redirects["/packages/abs-1.0.tar.gz"] = (301, f"{scripted.url}packages/abs-1.1.tar.gz")
    scripted.redirects["/simple/moved/"] = (301, f"{scripted.url}simple/elsewhere/")
    scripted.pages["/packages/link-1.0.tar.gz"] = ("application/octet-stream", b"file")
    scripted.extra_headers["/packages/link-1.0.tar.gz"] = {
        "Link": f"<{scripted.url}+login>; rel=alternate",
        "Content-Location": f"{scripted.url}packages/link-1.0.tar.gz",
        "Set-Cookie": "session=index",
        "Server": "index-internal",
        "Refresh": f"0; url={scripted.url}",
    }
    scripted.pages["/simple/linked/"] = (HTML, b'<a href="/packages/link-1.0.tar.gz">link-1.0.tar.gz</a>')
    scripted.extra_headers["/simple/linked/"] = {"Link": f"<{scripted.url}>; rel=canonical", "Set-Cookie": "a=b"}
    answers = {
        target: raw_get(public.url, target)
        for target in (
            "/packages/away-1.0.tar.gz",
            "/packages/inside-1.0.tar.gz",
            "/packages/abs-1.0.tar.gz",
            "/simple/moved/",
            "/packages/link-1.0.tar.gz",
            "/simple/linked/",
            "/simple/nothing-here/",
            "/simple/Linked/",
            "/",
        )
    }
    for target, (status, head, body) in answers.items():
        assert internal.encode() not in head + body, (target, status, head)
        assert b"set-cookie" not in head.lower() and b"\r\nlink:" not in head.lower(), (target, head)
    assert answers["/packages/away-1.0.tar.gz"][0] == 502
    assert (
        f"location: {public.url}/packages/inside-1.1.tar.gz".encode()
        in answers["/packages/inside-1.0.tar.gz"][1].lower()
    )
    assert f"location: {public.url}/packages/abs-1.1.tar.gz".encode() in answers["/packages/abs-1.0.tar.gz"][1].lower()
    assert answers["/simple/moved/"][0] == 404


def test_an_etag_of_one_representation_is_no_304_for_another(public: GatewayProcess, scripted: ScriptedIndex) -> None:
    scripted.listing["tagged"] = ["tagged-1.0-py3-none-any.whl"]
    scripted.pages.setdefault("/simple/", (HTML, b'<a href="tagged/">tagged</a>'))
    html = get_with(f"{public.url}/simple/tagged/", accept=HTML)
    json_page = get_with(f"{public.url}/simple/tagged/", accept=JSON)
    assert html[1]["ETag"] != json_page[1]["ETag"]
    assert get_with(f"{public.url}/simple/tagged/", accept=JSON, etag=html[1]["ETag"])[0] == 200
    assert get_with(f"{public.url}/simple/tagged/", accept=HTML, etag=json_page[1]["ETag"])[0] == 200
    assert get_with(f"{public.url}/simple/", accept=HTML, etag=html[1]["ETag"])[0] == 200
    assert get_with(f"{public.url}/simple/tagged/", accept=HTML, etag="W/" + html[1]["ETag"])[0] == 304


def test_an_index_that_compresses_what_it_is_offered_to(public: GatewayProcess, scripted: ScriptedIndex) -> None:
    """A different parser: an index behind a compressing proxy answers gzip to a request that accepts it; the
    gateway reads pages and relays files as bytes, so it must not offer to take what it does not decode."""
    scripted.listing["squeezed"] = ["squeezed-1.0-py3-none-any.whl"]
    scripted.pages["/packages/squeezed-1.0-py3-none-any.whl"] = ("application/octet-stream", b"wheel bytes " * 100)
    scripted.compress = "offered"
    try:
        status, _, page = raw_get(public.url, "/simple/squeezed/")
        assert status == 200 and b'href="' + f"{public.url}/packages/squeezed-1.0".encode() in page, page[:200]
        status, head, body = raw_get(public.url, "/packages/squeezed-1.0-py3-none-any.whl")
        assert status == 200 and body == b"wheel bytes " * 100, head
        scripted.compress = "always"  # a broken proxy: what it sends compressed anyway is refused, not garbled
        scripted.listing["squeezed-too"] = ["squeezed_too-1.0-py3-none-any.whl"]
        assert raw_get(public.url, "/simple/squeezed-too/")[0] == 502
        assert raw_get(public.url, "/packages/squeezed-1.0-py3-none-any.whl")[0] == 502
    finally:
        scripted.compress = ""


def test_the_embedded_index_serves_only_its_packages(tmp_path: Path) -> None:
    """Files of the embedded index are served from its data directory, not through pypiserver: nothing there that
    pypiserver would not serve (not a package) may come out, even when the operator put the gateway's own state
    beside the packages (`data_dir = "data"`: the store, the server secret, the configuration, the log)."""
    directory = tmp_path / "gw"
    gw = start_gateway(directory, {"url": "embedded", "data_dir": str(directory)})
    try:
        gw.add_user("emma", PASSWORD)
        wheel = make_wheel(tmp_path, "embedded-only", "1.0")
        assert upload(gw, wheel, basic("emma", PASSWORD))[0] == 200
        status, _, body = raw_get(gw.url, f"/packages/{wheel.name}")
        assert status == 200 and body == wheel.read_bytes()
        for name in ("gateway.db", "secret.key", "gateway.toml", "gateway.log"):
            assert (directory / name).exists(), name
            status, _, body = raw_get(gw.url, f"/packages/{name}")
            assert status == 404, (name, status, body[:100])
    finally:
        stop(gw.process)


# ------------------------------------------------------------------------------------------------ private indexes


def test_a_scoped_reader_never_gets_the_cached_full_root(private: GatewayProcess, scripted: ScriptedIndex) -> None:
    everyone = basic("alice", PASSWORD)
    scoped = basic("__token__", private.cli("token", "create", "alice", "--read-only", "--project", "proj-a").stdout)
    for accept in (HTML, JSON):
        status, headers, full = get_with(f"{private.url}/simple/", everyone, accept)
        assert status == 200 and b"proj-b" in full
        etag = headers.get("ETag", '"none"')
        for method in ("GET", "HEAD"):
            status, headers, body = get_with(f"{private.url}/simple/", scoped, accept, method=method)
            assert status == 200 and b"proj-b" not in body, (accept, method)
            assert headers["Cache-Control"].startswith("private") and "Authorization" in headers["Vary"]
        status, _, body = get_with(f"{private.url}/simple/", scoped, accept, etag=etag)
        assert status == 200 and b"proj-b" not in body, "the full root's ETag does not make a 304 for a scoped reader"


def test_a_scoped_reader_reaches_no_file_of_another_project(private: GatewayProcess, scripted: ScriptedIndex) -> None:
    token = private.cli("token", "create", "alice", "--read-only", "--project", "proj-a").stdout.strip()
    auth = basic("__token__", token)
    assert get_with(f"{private.url}/packages/proj_a-1.0-py3-none-any.whl", auth)[0] == 200
    scripted.seen.clear()
    for target in (
        "/packages/proj_b-1.0-py3-none-any.whl",
        "/packages/PROJ_B-1.0-py3-none-any.whl",
        "/packages/proj.b-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz.metadata",
        "/packages/proj_b-1.0-py3-none-any.whl.metadata",
        "/packages/proj_b-1.0.tar.gz.asc",
        "/packages/proj_b-1.0.tar.gz.provenance",
        "/packages/proj_a-1.0-py3-none-any.whl/../proj_b-1.0.tar.gz",
        "/packages/proj_a-1.0-py3-none-any.whl%2f..%2fproj_b-1.0.tar.gz",
        "/packages/proj_a-1.0-py3-none-any.whl;/proj_b-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz?proj_a-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz#proj_a-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz%23proj_a-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz%00proj_a-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz%3fproj_a-1.0.tar.gz",
        "/packages/proj_b/proj_a-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz/proj_a-1.0.tar.gz",
        "/packages/proj_b-1.0.tar.gz\\proj_a-1.0.tar.gz",
        "/packages/proj_b-1.0.zip",
        "/packages/",
        "/packages",
        "/packages/proj_b/",
        "/simple/proj-a/../proj-b/",
        "/simple/proj-a/%2e%2e/proj-b/",
        "/packages/README",
        "/simple/proj-b/",
        "/simple/PROJ_B/",
        "/simple/proj.b",
        "/simple/proj-b/?format=" + JSON,
    ):
        status, _, body = raw_get(private.url, target, f"Authorization: {auth}\r\n")
        assert status in (400, 404), (target, status, body)
    for method in ("GET", "HEAD"):  # no validator answers before the access decision
        assert get_with(f"{private.url}/simple/proj-b/", auth, etag="*", method=method)[0] == 404, method
    # Only a file that is proj-a's by its name may be asked for (an index may keep files in subdirectories).
    # (The readiness probe's GET of the index's /simple/ every 15 s may land in a slow run: it is no file.)
    asked = [path for _, path, _ in scripted.seen if path != "/simple/"]
    assert all(path.rsplit("/", 1)[-1] == "proj_a-1.0.tar.gz" for path in asked), asked


def test_a_password_read_is_not_remembered_past_what_changed(private: GatewayProcess, tmp_path: Path) -> None:
    page = f"{private.url}/simple/proj-a/"
    for name in ("bob", "carl"):
        assert get_with(page, basic(name, PASSWORD))[0] == 200
    assert get_with(page, basic("bob", PASSWORD + "x"))[0] == 401

    private.cli("user", "2fa", "enable", "bob")
    status, _, body = get_with(page, basic("bob", PASSWORD))
    assert status == 403 and b"two-factor" in body, "2FA enabled after a cached password read"

    store = Path(private.config.parent / "gateway.db")
    with sqlite3.connect(store) as db:
        db.execute("UPDATE users SET password_hash = ? WHERE name = 'carl'", (hash_password("a new long password"),))
    assert get_with(page, basic("carl", PASSWORD))[0] == 401, "an old password still reads after it changed"
    assert get_with(page, basic("carl", "a new long password"))[0] == 200
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM users WHERE name = 'carl'")
    assert get_with(page, basic("carl", "a new long password"))[0] == 401, "a removed user still reads"


def test_a_removed_users_read_token_stops_at_once(private: GatewayProcess) -> None:
    private.add_user("dora", PASSWORD)
    auth = basic("__token__", private.cli("token", "create", "dora", "--read-only").stdout.strip())
    page = f"{private.url}/simple/proj-a/"
    assert get_with(page, auth)[0] == 200
    with sqlite3.connect(private.config.parent / "gateway.db") as db:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM users WHERE name = 'dora'")
    assert get_with(page, auth)[0] == 401, "a removed user's token still reads"


def test_no_caveat_lets_a_token_do_what_the_gateway_did_not_grant(
    private: GatewayProcess, scripted: ScriptedIndex, tmp_path: Path
) -> None:
    page = f"{private.url}/simple/proj-a/"
    upload_only = private.cli("token", "create", "alice").stdout.strip()
    read_only = private.cli("token", "create", "alice", "--read-only").stdout.strip()
    both = private.cli("token", "create", "alice", "--read").stdout.strip()
    widening = (
        ["upload-gateway:permissions", ["read"]],
        ["upload-gateway:permissions", ["read", "upload"]],
        ["upload-gateway:permissions", ["upload", "read"]],
        [1, ["proj-a"]],
        ["upload-gateway:permissions", ["read", "admin"]],
        ["upload-gateway:permissions", "read"],
        ["upload-gateway:permissions", ["read"], "extra"],
        [True, ["proj-a"]],
    )
    for caveat in widening:
        status, _, body = get_with(page, basic("__token__", attenuate(upload_only, caveat)))
        assert status in (401, 403), (caveat, status, body)
    wheel = make_wheel(tmp_path, "proj-a", "9.0")
    for caveat in widening:
        status, body = upload(private, wheel, basic("__token__", attenuate(read_only, caveat)))
        assert status in (401, 403), (caveat, status, body)
    narrowed = attenuate(both, ["upload-gateway:permissions", ["read"]])
    assert get_with(page, basic("__token__", narrowed))[0] == 200
    status, body = upload(private, wheel, basic("__token__", narrowed))
    assert status == 403 and "not valid for upload" in body, body
    upload_narrowed = attenuate(both, ["upload-gateway:permissions", ["upload"]])
    assert get_with(page, basic("__token__", upload_narrowed))[0] == 403
    assert not any(method == "POST" for method, _, _ in scripted.seen), "no refused upload reached the index"


def test_a_holder_narrows_a_read_token_offline(private: GatewayProcess, scripted: ScriptedIndex) -> None:
    """Caveats a holder adds to an account-wide read token scope it as the gateway's own would: the root lists only
    the projects left, the others' pages and files are not found; an expiry added offline ends it."""
    token = private.cli("token", "create", "alice", "--read-only").stdout.strip()
    with sqlite3.connect(private.config.parent / "gateway.db") as db:
        (project_id,) = db.execute("SELECT id FROM projects WHERE name = 'proj-a'").fetchone()
    for caveat in ([1, ["proj-a"]], [2, [project_id]], {"version": 1, "permissions": {"projects": ["proj-a"]}}):
        auth = basic("__token__", attenuate(token, caveat))
        for accept in (HTML, JSON):
            status, _, root = get_with(f"{private.url}/simple/", auth, accept)
            assert status == 200 and b"proj-a" in root and b"proj-b" not in root, (caveat, accept)
        assert get_with(f"{private.url}/simple/proj-a/", auth)[0] == 200, caveat
        for path in ("/simple/proj-b/", "/packages/proj_b-1.0.tar.gz", "/packages/README"):
            assert get_with(private.url + path, auth)[0] == 404, (caveat, path)
    now = int(time.time())
    assert (
        get_with(f"{private.url}/simple/proj-a/", basic("__token__", attenuate(token, [0, now - 1, now - 60])))[0]
        == 403
    )
    assert get_with(f"{private.url}/simple/", basic("__token__", attenuate(token, [3, "someone-else"])))[0] == 403


# Request targets in every form HTTP has, and path spellings other parsers read differently; (method, target).
TARGETS = [
    ("GET", "http://127.0.0.1:1/simple/"),
    ("GET", "http://127.0.0.1:1/+login"),
    ("GET", "HTTP://127.0.0.1:1/../+login"),
    ("GET", "//127.0.0.1:1/+login"),
    ("GET", "*"),
    ("OPTIONS", "*"),
    ("CONNECT", "127.0.0.1:1"),
    ("GET", "127.0.0.1:1"),
    ("GET", "simple/"),
    ("GET", "/simple/%C0%AE%C0%AE/%C0%AE%C0%AE/+login"),
    ("GET", "/simple/%E0%80%AE%E0%80%AE/+login"),
    ("GET", "/simple/%E2%80%A4%E2%80%A4/+login"),
    ("GET", "/simple/%EF%BC%8E%EF%BC%8E/+login"),
    ("GET", "/simple/..;/+login"),
    ("GET", "/simple/demo;x=1/"),
    ("GET", "/packages/demo-1.0.tar.gz;.whl"),
    ("GET", "/packages/%2e%2e%5c%2e%2e%5c+login"),
    ("GET", "/packages/.%2e/+login"),
    ("GET", "/packages/%2E./+login"),
    ("GET", "/packages/demo%00.whl"),
    ("GET", "/packages/demo%0d%0aX-Injected:%201.whl"),
    ("GET", "/packages/%ff.whl"),
    ("GET", "/packages/%u002e%u002e/+login"),
    ("GET", "/packages/~/../+login"),
    ("GET", "/packages/%7e%2f..%2f+login"),
    ("GET", "/simple/./"),
    ("GET", "/./simple/"),
    ("GET", "/simple/%2fdemo/"),
    ("GET", "/simple/demo%2f/"),
    ("GET", "/simple/%20demo/"),
    ("GET", "/packages/?../+login"),
    ("GET", "/account/../simple/"),
    ("GET", "/metrics/../simple/%2e%2e/+login"),
]


def test_request_target_forms_never_leave_the_roots(public: GatewayProcess, scripted: ScriptedIndex) -> None:
    scripted.seen.clear()
    for method, target in TARGETS:
        status, body = raw_request(public.url, method, target)
        assert 400 <= status < 500, (method, target, status, body)
        assert b"X-Injected" not in body.split(b"\r\n\r\n")[0] or status == 400
    assert [path for _, path, _ in scripted.seen if "+login" in path or ".." in path] == []
    assert all(path.startswith(("/simple/", "/packages/")) for _, path, _ in scripted.seen), scripted.seen


def test_refusals_reflect_no_markup_and_no_header(public: GatewayProcess) -> None:
    """The 405 for a POST off the upload path names the path: a reflected path is inert text, and no control
    character in it reaches the status line or the headers."""
    for target in (
        "/%3Cscript%3Ealert(1)%3C/script%3E",
        "/simple/%0d%0aX-Injected:%201",
        "/simple/%0aX-Injected:%201",
        "/simple/%0dX-Injected:%201",
        "/simple/%00",
    ):
        status, answer = raw_request(public.url, "POST", target)
        head = answer.split(b"\r\n\r\n")[0].lower()
        assert status in (400, 404, 405), (target, answer[:300])
        lines = head.split(b"\r\n")
        assert not any(line.startswith(b"x-injected") or b"\r" in line or b"\n" in line for line in lines), lines
        assert b"\r\nx-content-type-options: nosniff" in head and b"content-type: text/plain" in head, head


def raw_request(url: str, method: str, target: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    head = bytes(data).split(b"\r\n", 1)[0]
    return int(head.split(b" ", 2)[1]), bytes(data)


def attributes_of(page: str) -> list[list[str]]:
    """The attribute names of each start tag, as a browser's parser (the stdlib's) reads the page."""
    found: list[list[str]] = []

    class Reader(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append([name for name, _ in attrs])

    Reader().feed(page)
    return found


def get_with(
    url: str,
    authorization: str | None = None,
    accept: str | None = None,
    *,
    etag: str | None = None,
    method: str = "GET",
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": authorization} if authorization else {}
    if accept:
        headers["Accept"] = accept
    if etag:
        headers["If-None-Match"] = etag
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
