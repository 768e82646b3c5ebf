"""Hostile and broken upload requests over raw sockets: each gets a 4xx with a one-line message, the index
receives nothing (checked at a recording relay in front of it), and the gateway goes on serving."""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import GatewayProcess, Index, Relay, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel
from tests.harness.forms import multipart, twine_fields

PASSWORD = "hostile input password"
AUTH = "Basic " + base64.b64encode(f"mallory:{PASSWORD}".encode()).decode()
WHEEL = "hostile_pkg-1.0-py3-none-any.whl"
DATA = b"PK\x03\x04 not really a zip but bytes are bytes" * 100


@dataclass
class Target:
    gateway: GatewayProcess
    relay: Relay

    def posts_seen(self) -> int:
        return bytes(self.relay.received).count(b"POST ")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, index: Index) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("hostile")
    relay = Relay(int(urlsplit(index.url).port or 0))
    upstream = index_upstream(index, directory) | {"url": relay.url}
    gw = start_gateway(directory / "gw", upstream, limits={"max_file_size": "5MiB", "read_timeout": "2s"})
    gw.add_user("mallory", PASSWORD)
    yield Target(gw, relay)
    stop(gw.process)
    relay.close()


def send(gw: GatewayProcess, raw: bytes, *, close_after: bool = False, timeout: float = 15) -> tuple[int, str, str]:
    parts = urlsplit(gw.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass  # the gateway may answer and close before all of a refused body is sent
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.reason, resp.read().decode("utf-8", "replace")


def request(body: bytes, content_type: str | None, *, headers: dict[str, str] | None = None, length: int | None = None):
    lines = ["POST /legacy/ HTTP/1.1", "Host: gateway", f"Authorization: {AUTH}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def form(filename: str = WHEEL, data: bytes = DATA, **overrides: str | None) -> tuple[str, bytes]:
    return multipart(twine_fields(filename, data, **overrides), [("content", filename, data)])


def raw_form(parts: list[bytes], boundary: str = "b0undary") -> tuple[str, bytes]:
    """A multipart body from hand-written parts (headers and value each), for malformed structure."""
    body = b"".join(f"--{boundary}\r\n".encode() + part + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def field(name: str, value: bytes) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value


def good_fields(**overrides: str | None) -> list[bytes]:
    return [field(key, value.encode()) for key, value in twine_fields(WHEEL, DATA, **overrides)]


def content(filename: bytes = WHEEL.encode(), ctype: bytes = b"application/octet-stream") -> bytes:
    return (
        b'Content-Disposition: form-data; name="content"; filename="'
        + filename
        + b'"\r\nContent-Type: '
        + ctype
        + (b"\r\n\r\n" + DATA)
    )


def with_form(content_type: str, body: bytes) -> bytes:
    return request(body, content_type)


def _case(*args: object) -> bytes:
    content_type, body = form(**args[0]) if args and isinstance(args[0], dict) else form()
    return with_form(content_type, body)


CASES: dict[str, Callable[[], bytes]] = {
    "no content type": lambda: request(form()[1], None),
    "json content type": lambda: request(b'{"name": "x"}', "application/json"),
    "text/plain": lambda: request(b"name=x", "text/plain"),
    "urlencoded": lambda: request(b"name=x&version=1", "application/x-www-form-urlencoded"),
    "multipart without boundary": lambda: request(form()[1], "multipart/form-data"),
    "empty boundary": lambda: request(form()[1], "multipart/form-data; boundary="),
    "boundary too long": lambda: request(form()[1], "multipart/form-data; boundary=" + "b" * 80),
    "chunked, no length": lambda: (
        "POST /legacy/ HTTP/1.1\r\nHost: g\r\nAuthorization: " + AUTH + "\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ).encode(),
    "content-length over the limit": lambda: request(b"", form()[0], length=6 * 2**20 + 3 * 2**20),
    "content-length not a number": lambda: (
        request(b"", form()[0], length=None)[:-4].replace(b"Content-Length: 0", b"Content-Length: lots") + b"\r\n\r\n"
    ),
    "garbage body": lambda: request(b"\x00\xff" * 500, form()[0]),
    "missing content part": lambda: with_form(*raw_form(good_fields())),
    "two content parts": lambda: with_form(*raw_form([*good_fields(), content(), content()])),
    "content without filename": lambda: with_form(
        *raw_form([*good_fields(), b'Content-Disposition: form-data; name="content"\r\n\r\n' + DATA])
    ),
    "field sent as a file": lambda: with_form(
        *raw_form([b'Content-Disposition: form-data; name="name"; filename="x"\r\n\r\nx', content()])
    ),
    "part without disposition": lambda: with_form(*raw_form([b"Content-Type: text/plain\r\n\r\nx", content()])),
    "disposition not form-data": lambda: with_form(
        *raw_form([b'Content-Disposition: attachment; name="name"\r\n\r\nx', content()])
    ),
    "oversized part header": lambda: with_form(
        *raw_form([b"X-Long: " + b"a" * 20000 + b"\r\n" + field("name", b"x"), content()])
    ),
    "too many part headers": lambda: with_form(
        *raw_form([b"".join(b"X-H%d: v\r\n" % i for i in range(20)) + field("name", b"x"), content()])
    ),
    "thousands of fields": lambda: with_form(*raw_form([field("classifiers", b"x")] * 3000 + [content()])),
    "oversized field": lambda: with_form(*raw_form([field("description", b"d" * 700_000), content()])),
    "non-utf-8 field": lambda: with_form(
        *raw_form([*good_fields(summary=None), field("summary", b"\xff\xfe"), content()])
    ),
    "nul in field name": lambda: with_form(*raw_form([field("na\x00me", b"x"), content()])),
    "truncated: no closing boundary": lambda: with_form(form()[0], form()[1][:-30]),
    "garbage after closing boundary": lambda: with_form(form()[0], form()[1] + b"trailing garbage"),
    "missing :action": lambda: _case({":action": None}),
    "remove_pkg not allowed": lambda: _case({":action": "remove_pkg"}),
    "doc_upload": lambda: _case({":action": "doc_upload"}),
    "duplicated name": lambda: with_form(*raw_form([*good_fields(), field("name", b"other"), content()])),
    "duplicated sha256": lambda: with_form(*raw_form([*good_fields(), field("sha256_digest", b"0" * 64), content()])),
    "no digests": lambda: _case({"sha256_digest": None, "blake2_256_digest": None}),
    "digest not hex": lambda: _case({"sha256_digest": "z" * 64}),
    "protocol version 2": lambda: _case({"protocol_version": "2"}),
    "unknown metadata version": lambda: _case({"metadata_version": "9.9"}),
    "invalid name": lambda: _case({"name": "x y"}),
    "invalid version": lambda: _case({"version": "1.0-foo"}),
    "local version": lambda: _case({"version": "1.0+local"}),
    "unknown filetype": lambda: _case({"filetype": "bdist_egg"}),
    "crlf in filename (header injection)": lambda: with_form(
        *raw_form([*good_fields(), content(b"a.whl\r\nX-Injected: yes\r\n\r\nhostile_pkg-1.0-py3-none-any.whl")])
    ),
    "dot-dot filename": lambda: with_form(*raw_form([*good_fields(), content(b"../../" + WHEEL.encode())])),
    "absolute filename": lambda: with_form(*raw_form([*good_fields(), content(b"/tmp/" + WHEEL.encode())])),
    "nul in filename": lambda: with_form(*raw_form([*good_fields(), content(b"hostile_pkg\x00-1.0-py3-none-any.whl")])),
    "backslash in filename": lambda: with_form(*raw_form([*good_fields(), content(b"..\\" + WHEEL.encode())])),
    "control character in filename": lambda: with_form(
        *raw_form([*good_fields(), content(b"hostile_pkg-1.0-py3-none-any\x07.whl")])
    ),
    "exe extension": lambda: with_form(*raw_form([*good_fields(), content(b"hostile_pkg-1.0.exe")])),
    "wheel names another project": lambda: _case({"name": "other-project"}),
    "version mismatch": lambda: _case({"version": "9.9"}),
    "image content type": lambda: with_form(*raw_form([*good_fields(), content(ctype=b"image/png")])),
    "zip sdist": lambda: with_form(*form("hostile_pkg-1.0.zip", filetype="sdist", pyversion="source")),
    "sdist name not normalized": lambda: with_form(
        *form("Hostile.Pkg-1.0.tar.gz", filetype="sdist", pyversion="source")
    ),
    "bad wheel filename": lambda: with_form(*raw_form([*good_fields(), content(b"hostile_pkg-1.0.whl")])),
    "wheel pypiserver files under another project": lambda: with_form(
        *raw_form([*good_fields(), content(b"hostile_pkg-v1-2-py3-none-any.whl")])
    ),
    "digest mismatch": lambda: _case({"sha256_digest": hashlib.sha256(b"other").hexdigest()}),
    "malformed authorization": lambda: request(form()[1], form()[0]).replace(AUTH.encode(), b"Basic !!notbase64"),
    "unknown user": lambda: request(form()[1], form()[0]).replace(
        AUTH.encode(), ("Basic " + base64.b64encode(b"nobody:whatever").decode()).encode()
    ),
    "digest auth scheme": lambda: request(form()[1], form()[0]).replace(AUTH.encode(), b'Digest username="x"'),
}


def test_there_are_at_least_40_distinct_cases() -> None:
    assert len(CASES) >= 40
    assert len({fn() for fn in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_a_4xx_and_reaches_nothing(target: Target, name: str) -> None:
    before = target.posts_seen()
    status, reason, body = send(target.gateway, CASES[name]())
    assert 400 <= status < 500, (status, reason)
    assert reason and "\n" not in reason and "Traceback" not in body
    if reason != "Bad Request":  # aiohttp's own HTTP parser answers malformed headers: its body says what
        assert reason in body
    assert body.strip(), "the body carries the message"
    time.sleep(0.05)
    assert target.posts_seen() == before, "a hostile request reached the index"


def test_a_slow_client_gets_408(target: Target) -> None:
    content_type, body = form()
    before = target.posts_seen()
    parts = urlsplit(target.gateway.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(request(body, content_type)[: -len(DATA) // 2])
        resp = http.client.HTTPResponse(sock)
        started = time.monotonic()
        resp.begin()
        assert resp.status == 408
        assert "timeout" in resp.reason.lower()
        assert 1 <= time.monotonic() - started < 15
    assert target.posts_seen() == before


def test_digest_mismatch_leaves_no_trace_on_the_index(target: Target, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "tampered", "1.0", payload_size=3 * 2**20)
    data = wheel.read_bytes()
    content_type, body = multipart(
        twine_fields(wheel.name, data, sha256_digest=hashlib.sha256(data[:-1]).hexdigest()),
        [("content", wheel.name, data)],
    )
    status, reason, _ = send(target.gateway, request(body, content_type))
    assert status == 400
    assert reason == "The digest supplied does not match a digest calculated from the uploaded file."
    time.sleep(2)
    assert not any("tampered" in name for name in index.files())
    assert not list(index.packages.glob("*tampered*"))


def test_the_gateway_still_serves_a_normal_upload(target: Target, index: Index, tmp_path: Path) -> None:
    before = target.posts_seen()
    wheel = make_wheel(tmp_path, "after-the-storm", "1.0")
    result = twine(target.gateway.url, "mallory", PASSWORD, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.posts_seen() == before + 1
    assert wheel.name in index.files()


def test_content_length_over_the_limit_is_refused_before_the_body(target: Target) -> None:
    parts = urlsplit(target.gateway.url)
    head = request(b"", form()[0], length=50 * 2**30)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        assert resp.status == 413
        assert "File too large" in resp.reason
