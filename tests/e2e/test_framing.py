"""How requests are framed: `Expect: 100-continue` invites a body only once the headers pass, and compressed
request bodies are refused on every route without being read (let alone inflated)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway import tokens
from tests.conftest import GatewayProcess
from tests.dists import make_wheel
from tests.e2e.test_upload import basic
from tests.harness.forms import upload_body

PASSWORD = "framing test password"


@pytest.fixture(scope="module")
def gw(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    gateway.add_user("ida", PASSWORD)
    yield gateway


def connect(gw: GatewayProcess) -> socket.socket:
    parts = urlsplit(gw.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def head(path: str, content_type: str, length: int, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", f"Content-Type: {content_type}", f"Content-Length: {length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_bad_credential_is_refused_before_any_body(gw: GatewayProcess, tmp_path: Path) -> None:
    content_type, body = upload_body(make_wheel(tmp_path, "expecting", "1.0"))
    with connect(gw) as sock:
        sock.sendall(
            head("/legacy/", content_type, len(body), Authorization=basic("ida", "wrong"), Expect="100-continue")
        )
        status = sock.makefile("rb").readline()
    assert status.startswith(b"HTTP/1.1 403 "), status


def test_a_forged_token_is_refused_before_any_body(gw: GatewayProcess, tmp_path: Path) -> None:
    """A real token's id with another signature is no credential: no 100 Continue for it, only the 403."""
    token = gw.cli("token", "create", "ida").stdout.strip()
    forged = tokens.parse(token, prefix="pypi").macaroon.copy()
    forged.signature = "0" * 64
    content_type, body = upload_body(make_wheel(tmp_path, "expecting-forged", "1.0"))
    authorization = basic("__token__", "pypi-" + forged.serialize())
    with connect(gw) as sock:
        sock.sendall(head("/legacy/", content_type, len(body), Authorization=authorization, Expect="100-continue"))
        status = sock.makefile("rb").readline()
    assert status == b"HTTP/1.1 403 Invalid API Token: signatures do not match\r\n", status


def test_good_headers_get_100_continue_then_the_upload(gw: GatewayProcess, tmp_path: Path) -> None:
    content_type, body = upload_body(make_wheel(tmp_path, "expecting-ok", "1.0"))
    with connect(gw) as sock:
        sock.sendall(
            head("/legacy/", content_type, len(body), Authorization=basic("ida", PASSWORD), Expect="100-continue")
        )
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(body)
        assert reader.readline().startswith(b"HTTP/1.1 200 ")


def test_too_large_is_refused_before_any_body(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        sock.sendall(
            head(
                "/legacy/",
                "multipart/form-data; boundary=x",
                50 * 2**30,
                Authorization=basic("ida", PASSWORD),
                Expect="100-continue",
            )
        )
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("path", ["/legacy/", "/account/login"])
def test_a_compressed_body_is_refused_unread(gw: GatewayProcess, path: str) -> None:
    """The 415 comes on the headers alone: no byte of the body was ever sent."""
    with connect(gw) as sock:
        sock.sendall(
            head(
                path,
                "multipart/form-data; boundary=x" if path == "/legacy/" else "application/x-www-form-urlencoded",
                1_000_000,
                Authorization=basic("ida", PASSWORD),
                Content_Encoding="gzip",
            )
        )
        reader = sock.makefile("rb")
        status = reader.readline()
        headers = b"".join(iter(reader.readline, b"\r\n"))
    assert status.startswith(b"HTTP/1.1 415 Content-Encoding is not accepted"), status
    assert b"Connection: close" in headers


def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(2**20)
    return b"".join(compressor.compress(zeros) for _ in range(1024)) + compressor.flush()


def test_gzip_bombs_do_not_hold_the_loop(gw: GatewayProcess) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 2 * 2**20
    done = threading.Event()

    def push(path: str) -> None:
        with connect(gw) as sock:
            content_type = "multipart/form-data; boundary=x" if path == "/legacy/" else "application/json"
            try:
                sock.sendall(head(path, content_type, len(bomb), Content_Encoding="gzip") + bomb)
            except OSError:
                pass  # refused and closed before the bomb was read
            done.wait(5)

    pushers = [threading.Thread(target=push, args=(path,)) for path in ("/legacy/", "/account/login") * 2]
    for pusher in pushers:
        pusher.start()
    slowest = 0.0
    for _ in range(20):
        started = time.perf_counter()
        with urllib.request.urlopen(gw.url + "/-/healthy", timeout=5) as resp:
            assert resp.status == 200
        slowest = max(slowest, time.perf_counter() - started)
    done.set()
    for pusher in pushers:
        pusher.join()
    # Inflating the bombs on the event loop would hold it for seconds; a loaded two-core machine alone can reach 100 ms.
    assert slowest < 0.5, f"/-/healthy took {slowest * 1000:.0f} ms"
