"""Issue #15: the bulk of a large upload moves through a pump's thread (`gateway/upload/pump.py`), reading the
client's socket itself. Every guarantee of the event loop's path holds there too: the index keeps exactly the
checked file or nothing, the last chunk waits for every check, slow and vanishing clients are cut off on time,
an index that stops reading is a 504, and the connection the pump read is never reused for another request."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import GatewayFactory, GatewayProcess, Index, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel, sha256_of
from tests.e2e.test_index_faults import FaultyRelay
from tests.e2e.test_slow_clients import connect, send_paced, until_closed
from tests.e2e.test_upload import basic, metric
from tests.harness.forms import multipart, twine_fields, upload_body

PASSWORD = "pump password 15"
MiB = 2**20
PUMPED = "upload_gateway_upload_pumped_bytes_total"
ATTESTATIONS = '[{"version": 1, "envelope": {"statement": "' + "A" * 800 + '"}}]'  # the gateway drops them


@pytest.fixture
def gw(gateway_factory: GatewayFactory) -> GatewayProcess:
    gateway = gateway_factory(limits={"read_timeout": "2s"})
    gateway.add_user("alice", PASSWORD)
    return gateway


def head(gw: GatewayProcess, content_type: str, length: int) -> bytes:
    return (
        f"POST /legacy/ HTTP/1.1\r\nHost: {urlsplit(gw.url).netloc}\r\nAuthorization: {basic('alice', PASSWORD)}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def answer_of(sock: socket.socket, timeout: float = 15) -> tuple[str, bytes]:
    """The status line and the rest, once the gateway closes the connection."""
    data = until_closed(sock, timeout)
    status, _, rest = data.partition(b"\r\n")
    return status.decode(), rest


def test_twine_sends_two_large_wheels_through_the_pump_byte_for_byte(
    gw: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    """Two 12 MiB wheels in one twine run: both stored as sent, nearly every byte read by the pump, and the
    second one on a new connection (the first was closed after its answer, as the pump read past aiohttp)."""
    wheels = [make_wheel(tmp_path, "pumped-pair", version, payload_size=12 * MiB) for version in ("1.0", "1.1")]
    result = twine(gw.url, "alice", PASSWORD, *wheels)
    assert result.returncode == 0, result.stdout + result.stderr
    for wheel in wheels:
        assert sha256_of(index.packages / wheel.name) == sha256_of(wheel)
    total = sum(wheel.stat().st_size for wheel in wheels)
    assert 0.8 * total < metric(gw, PUMPED) <= total + 64 * 1024
    assert metric(gw, 'upload_gateway_uploads_total{outcome="accepted",reason="ok"}') == 2


def test_a_small_upload_stays_on_the_event_loop(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "unpumped", "1.0", payload_size=200 * 1024)
    result = twine(gw.url, "alice", PASSWORD, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    assert wheel.name in index.files()
    assert metric(gw, PUMPED) == 0


def _post(gw: GatewayProcess, content_type: str, body: bytes) -> tuple[str, bytes]:
    with connect(gw) as sock:
        sock.sendall(head(gw, content_type, len(body)))
        sock.sendall(body)
        return answer_of(sock)


def test_a_digest_mismatch_found_after_the_pump_stores_nothing(
    gw: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    """The pump sends all but the last chunk; the digests are compared at the end and the index's request is
    reset, so pypiserver keeps nothing of the 8 MiB it was sent."""
    wheel = make_wheel(tmp_path, "pumped-tampered", "1.0", payload_size=8 * MiB)
    content_type, body = upload_body(wheel, sha256_digest=hashlib.sha256(b"other bytes").hexdigest())
    status, _ = _post(gw, content_type, body)
    assert status == "HTTP/1.1 400 The digest supplied does not match a digest calculated from the uploaded file."
    assert metric(gw, PUMPED) > 4 * MiB
    assert wheel.name not in index.files() and not list(index.packages.glob("pumped_tampered*"))


def test_the_boundary_inside_a_pumped_file_is_refused(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    """A delimiter-like line 6 MiB into the file (where only the pump reads) is refused as on the loop: another
    parser could end the file there."""
    boundary = "b0undary" + "7" * 24
    data = bytearray(make_wheel(tmp_path, "pumped-forged", "1.0", payload_size=8 * MiB).read_bytes())
    forged = f"\r\n--{boundary}\r\n".encode()
    data[6 * MiB : 6 * MiB + len(forged)] = forged
    name = "pumped_forged-1.0-py3-none-any.whl"
    content_type, body = multipart(twine_fields(name, bytes(data)), [("content", name, bytes(data))], boundary=boundary)
    status, _ = _post(gw, content_type, body)
    assert status.startswith("HTTP/1.1 400 Malformed multipart/form-data: "), status
    assert metric(gw, PUMPED) > 2 * MiB
    assert name not in index.files()


def with_part_after_file(content_type: str, body: bytes, name: str, value: str) -> bytes:
    """`body` (its file last) with one more field between the file and the closing delimiter."""
    boundary = content_type.split("boundary=", 1)[1].encode()
    closing = b"--" + boundary + b"--\r\n"
    assert body.endswith(closing)
    part = b"--" + boundary + f'\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return body[: -len(closing)] + part + closing


def test_fields_after_a_pumped_file_are_decided_on_as_on_the_loop(
    gw: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    """uv sends `attestations` after the file: the pump reads them too, the gateway drops them and the index
    gets the file (and a padding part); a second version after the file is refused."""
    wheel = make_wheel(tmp_path, "pumped-attested", "1.0", payload_size=6 * MiB)
    content_type, body = upload_body(wheel)
    status, _ = _post(gw, content_type, with_part_after_file(content_type, body, "attestations", ATTESTATIONS))
    assert status.startswith("HTTP/1.1 200 "), status
    assert sha256_of(index.packages / wheel.name) == sha256_of(wheel)

    other = make_wheel(tmp_path, "pumped-attested", "1.1", payload_size=6 * MiB)
    content_type, body = upload_body(other)
    status, _ = _post(gw, content_type, with_part_after_file(content_type, body, "version", "9.9"))
    assert status.startswith("HTTP/1.1 400 "), status  # two versions: PyPI's refusal of the field
    assert other.name not in index.files()
    assert metric(gw, PUMPED) > 6 * MiB


def test_a_client_that_stops_mid_pump_gets_408_and_the_index_keeps_nothing(
    gw: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "pumped-stalled", "1.0", payload_size=10 * MiB)
    content_type, body = upload_body(wheel)
    with connect(gw) as sock:
        sock.sendall(head(gw, content_type, len(body)) + body[: 6 * MiB])
        started = time.monotonic()
        status, _ = answer_of(sock)
    assert status == "HTTP/1.1 408 Request timeout: the client stopped sending the upload; try again"
    assert time.monotonic() - started < 2 + 1.5
    assert metric(gw, PUMPED) > 2 * MiB
    assert wheel.name not in index.files() and not list(index.packages.glob("pumped_stalled*"))
    assert metric(gw, 'upload_gateway_uploads_total{outcome="rejected",reason="read_timeout"}') == 1


def test_a_trickle_in_the_pump_is_judged_on_the_pace(
    gateway_factory: GatewayFactory, index: Index, tmp_path: Path
) -> None:
    """Fast for 3 MiB, then 2 KiB/s (under min_upload_rate 8 KiB/s): cut once the grace window (3 s) holds
    too little, although every read is well within read_timeout."""
    gw = gateway_factory(limits={"upload_grace": "3s"})
    gw.add_user("alice", PASSWORD)
    wheel = make_wheel(tmp_path, "pumped-trickle", "1.0", payload_size=6 * MiB)
    content_type, body = upload_body(wheel)
    with connect(gw) as sock:
        sock.sendall(head(gw, content_type, len(body)) + body[: 3 * MiB])
        started = time.monotonic()
        try:
            send_paced(sock, body[3 * MiB : 3 * MiB + 40 * 1024], rate=2048, piece=512)
        except OSError:
            pass  # the gateway gave up and closed
        status, _ = answer_of(sock)
    assert status.startswith("HTTP/1.1 408 Request timeout: the upload arrived slower than 8 KiB/s"), status
    assert time.monotonic() - started < 3 + 3
    assert wheel.name not in index.files()


def test_a_client_reset_mid_pump_leaves_nothing_and_the_gateway_serves_on(
    gw: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "pumped-reset", "1.0", payload_size=10 * MiB)
    content_type, body = upload_body(wheel)
    sock = connect(gw)
    sock.sendall(head(gw, content_type, len(body)) + body[: 5 * MiB])
    time.sleep(0.5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    deadline = time.monotonic() + 10
    while metric(gw, 'upload_gateway_uploads_total{outcome="rejected",reason="truncated_body"}', 0) < 1:
        assert time.monotonic() < deadline, gw.log_text()[-2000:]
        time.sleep(0.1)
    assert wheel.name not in index.files() and not list(index.packages.glob("pumped_reset*"))
    small = make_wheel(tmp_path, "after-reset", "1.0")
    assert twine(gw.url, "alice", PASSWORD, small).returncode == 0


class DeafRelay(FaultyRelay):
    """Stops reading the gateway's upload once `cut` bytes are through (and never answers it) until it is closed,
    then resets both sides: the index's one worker is not held into the next test."""

    def _fault(self, fault: str, client: socket.socket) -> None:
        self.closed.wait(30)


@contextlib.contextmanager
def behind(relay_url: str, index: Index, directory: Path) -> Iterator[GatewayProcess]:
    """A gateway whose index is reached through a relay, with a 2 s upstream timeout."""
    gateway = start_gateway(directory, index_upstream(index, directory) | {"url": relay_url, "timeout": "2s"})
    try:
        gateway.add_user("alice", PASSWORD)
        yield gateway
    finally:
        stop(gateway.process)


@pytest.fixture
def deaf(index: Index) -> Iterator[DeafRelay]:
    port = urlsplit(index.url).port
    assert port is not None
    relay = DeafRelay(port, cut=2 * MiB)
    relay.fault = "deaf"
    yield relay
    relay.close()


def test_an_index_that_stops_reading_mid_pump_is_a_504(deaf: DeafRelay, index: Index, tmp_path: Path) -> None:
    """The index takes 2 MiB and then nothing: after upstream.timeout (2 s) the client gets a 504 in one line,
    and the index keeps nothing."""
    with behind(deaf.url, index, tmp_path / "gw") as gw:
        _deaf_upload(gw, index, tmp_path)


def _post_whole(gw: GatewayProcess, content_type: str, body: bytes) -> str:
    """The status line for `body`, sent as far as the gateway takes it (it may stop reading when the index fails)."""
    with connect(gw) as sock:
        sock.sendall(head(gw, content_type, len(body)))
        try:
            sock.sendall(body)
        except OSError:
            pass
        status, _ = answer_of(sock, timeout=20)
    return status


def _deaf_upload(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "pumped-deaf", "1.0", payload_size=16 * MiB)
    content_type, body = upload_body(wheel)
    started = time.monotonic()
    status = _post_whole(gw, content_type, body)
    assert status == "HTTP/1.1 504 The package index did not answer in time; try again later", status
    assert time.monotonic() - started < 2 + 4
    assert wheel.name not in index.files()
    log = gw.log_text()
    assert "Traceback" not in log and "never retrieved" not in log


@pytest.mark.parametrize("fault", ["reset", "garbage", "stall"])
def test_an_index_fault_mid_pump_is_a_5xx_and_no_partial_file(fault: str, index: Index, tmp_path: Path) -> None:
    port = urlsplit(index.url).port
    assert port is not None
    relay = FaultyRelay(port, cut=3 * MiB)
    relay.fault = fault
    with behind(relay.url, index, tmp_path / "gw") as gw:
        wheel = make_wheel(tmp_path, f"pumped-{fault}", "1.0", payload_size=8 * MiB)
        content_type, body = upload_body(wheel)
        status = _post_whole(gw, content_type, body)
        assert status.startswith(("HTTP/1.1 502 ", "HTTP/1.1 504 ")), status
        assert wheel.name not in index.files() and not list(index.packages.glob(f"pumped_{fault}*"))
        log = gw.log_text()
        assert "Traceback" not in log and "never retrieved" not in log
    relay.close()


def test_a_request_pipelined_after_a_pumped_body_is_never_served(
    gw: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    """A second request written right behind the body (smuggled past the pump, which reads exactly
    Content-Length bytes from the socket) is never parsed: one answer, then the connection closes. The second
    upload would be stored if aiohttp read the socket again after the pump took it."""
    first = make_wheel(tmp_path, "pumped-piped", "1.0", payload_size=6 * MiB)
    second = make_wheel(tmp_path, "pumped-piped", "1.1", payload_size=64 * 1024)
    content_type, body = upload_body(first)
    other_type, other = upload_body(second)
    with connect(gw) as sock:
        sock.sendall(head(gw, content_type, len(body)) + body + head(gw, other_type, len(other)) + other)
        try:
            answer = until_closed(sock, 20)
        except ConnectionResetError:
            answer = b""  # unread bytes behind the body: the close may reset before the answer is read
    assert answer.count(b"HTTP/1.1 ") <= 1, answer[:400]
    assert not answer or answer.startswith(b"HTTP/1.1 200 "), answer[:400]
    assert sha256_of(index.packages / first.name) == sha256_of(first)
    assert second.name not in index.files()
    assert metric(gw, 'upload_gateway_uploads_total{outcome="accepted",reason="ok"}') == 1
    assert metric(gw, PUMPED) > 4 * MiB
