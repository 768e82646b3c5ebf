"""The index receives exactly the gateway's canonical encoding of what it validated, never the client's bytes.

Two recording relays: one between the client and the gateway, one between the gateway and pypiserver. The body
the index got is compared byte for byte with a canonical encoding built here, independently of the gateway's
encoder, from what the client sent (read by python-multipart) and the boundary the gateway chose.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.upload.encoding import FORWARDED_FIELDS
from tests.conftest import PYTHON, GatewayProcess, Index, RecordedRequest, Relay, index_upstream, start_gateway, stop
from tests.conftest import twine as run_twine
from tests.dists import make_sdist, make_wheel
from tests.e2e.test_upload import basic
from tests.harness.forms import read_multipart, upload_body

PASSWORD = "canonical encoding password"


@dataclass
class Wire:
    gateway: GatewayProcess
    to_gateway: Relay
    to_index: Relay

    @property
    def url(self) -> str:
        return self.to_gateway.url.rstrip("/")


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory, index: Index) -> Iterator[Wire]:
    directory = tmp_path_factory.mktemp("canonical")
    to_index = Relay(int(urlsplit(index.url).port or 0))
    gw = start_gateway(directory / "gw", index_upstream(index, directory) | {"url": to_index.url})
    gw.add_user("carla", PASSWORD)
    to_gateway = Relay(int(urlsplit(gw.url).port or 0))
    yield Wire(gw, to_gateway, to_index)
    stop(gw.process)
    to_gateway.close()
    to_index.close()


def expected_body(client: RecordedRequest, boundary: str) -> bytes:
    """What the gateway must write for this client request: PyPI's fields in their fixed order, each value as the
    client sent it, then the file under its own name."""
    parts = read_multipart(client.headers["content-type"], client.body)
    (content,) = [part for part in parts if part.name == "content"]
    assert content.filename is not None
    delimiter = f"--{boundary}\r\n".encode()
    body = b""
    for name in FORWARDED_FIELDS:  # attestations are not among them: the gateway cannot verify them
        for part in parts:
            if part.name == name and part.filename is None:
                body += (
                    delimiter + f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + part.data + b"\r\n"
                )
    body += (
        delimiter
        + (
            f'Content-Disposition: form-data; name="content"; filename="{content.filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
    )
    return body + content.data + f"\r\n--{boundary}--\r\n".encode()


def uploads(relay: Relay) -> list[RecordedRequest]:
    return [request for request in relay.requests() if request.method == "POST"]


def check_last_upload(wire: Wire, sent_before: int, received_before: int) -> None:
    sent, received = uploads(wire.to_gateway), uploads(wire.to_index)
    assert len(sent) == sent_before + 1 and len(received) == received_before + 1
    client, index_request = sent[-1], received[-1]
    content_type = index_request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=upload-gateway-")
    boundary = content_type.split("boundary=", 1)[1]
    assert boundary not in client.headers["content-type"]
    assert index_request.body == expected_body(client, boundary)
    assert index_request.headers["content-length"] == str(len(index_request.body))
    assert "transfer-encoding" not in index_request.headers


def test_twine(wire: Wire, tmp_path: Path) -> None:
    before = len(uploads(wire.to_gateway)), len(uploads(wire.to_index))
    wheel = make_wheel(tmp_path, "canonical-twine", "1.0")
    result = run_twine(wire.url, "carla", PASSWORD, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    check_last_upload(wire, *before)


def test_uv(wire: Wire, tmp_path: Path) -> None:
    before = len(uploads(wire.to_gateway)), len(uploads(wire.to_index))
    token = wire.gateway.cli("token", "create", "carla").stdout.strip()
    sdist = make_sdist(tmp_path, "canonical-uv", "1.0")
    result = subprocess.run(
        [PYTHON, "-m", "uv", "publish", "--no-progress", "--publish-url", f"{wire.url}/legacy/", "--token", token]
        + [str(sdist)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check_last_upload(wire, *before)


def test_uv_with_attestations_after_the_file(wire: Wire, tmp_path: Path) -> None:
    """uv sends `attestations` after the file: the streamed file ends before the length the index was promised,
    and the gateway makes up the difference with a padding part (attestations it cannot verify are not passed
    on)."""
    before = len(uploads(wire.to_gateway)), len(uploads(wire.to_index))
    token = wire.gateway.cli("token", "create", "carla").stdout.strip()
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = make_wheel(dist, "canonical-attested", "1.0", payload_size=2 * 2**20)
    statement = '{"envelope":{"signature":"AAAA","statement":"e30="},"verification_material":'
    attestation = statement + '{"certificate":"MIIB","transparency_entries":[]},"version":1}'
    (dist / f"{wheel.name}.publish.attestation").write_text(attestation)
    result = subprocess.run(
        [PYTHON, "-m", "uv", "publish", "--no-progress", "--publish-url", f"{wire.url}/legacy/", "--token", token]
        + [str(path) for path in sorted(dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sent, received = uploads(wire.to_gateway), uploads(wire.to_index)
    assert len(sent) == before[0] + 1 and len(received) == before[1] + 1
    client, index_request = sent[-1], received[-1]
    assert [part.name for part in read_multipart(client.headers["content-type"], client.body)][-1] == "attestations"
    boundary = index_request.headers["content-type"].split("boundary=", 1)[1]
    expected = expected_body(client, boundary)
    file_end = len(expected) - len(f"\r\n--{boundary}--\r\n")
    assert index_request.body.startswith(expected[:file_end])
    padding = index_request.body[file_end:]
    head = f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="upload_gateway_padding"\r\n\r\n'.encode()
    assert padding.startswith(head) and padding.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert padding[len(head) : -len(f"\r\n--{boundary}--\r\n")].strip(b" ") == b""
    assert b"attestations" not in index_request.body
    assert index_request.headers["content-length"] == str(len(index_request.body))


def test_file_first_upload_is_spooled_and_reencoded(wire: Wire, tmp_path: Path) -> None:
    before = len(uploads(wire.to_gateway)), len(uploads(wire.to_index))
    wheel = make_wheel(tmp_path, "canonical-spooled", "1.0", payload_size=300_000)
    content_type, body = upload_body(wheel, files_first=True)
    head = (
        f"POST /legacy/ HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: {basic('carla', PASSWORD)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", wire.to_gateway.port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = sock.makefile("rb").readline()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    check_last_upload(wire, *before)
