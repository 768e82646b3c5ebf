"""Issue #13, index faults: an index that answers with something that is not HTTP (a malformed status line,
garbage, a connection closed mid-answer) or not at all is a 502/504 with a one-line message that never names
the index, and one log line that does; never a 500 with a traceback."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import GatewayProcess, Index, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel
from tests.e2e.test_upload import basic, raw_post
from tests.harness.forms import upload_body

PASSWORD = "index faults password 3"
NOT_HTTP = "The package index sent no valid answer; try again later"
BROKEN = {
    "a malformed status line": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "garbage": b"\x00\x01\x02 this is not HTTP\r\n\r\n",
    "an invalid header": b"HTTP/1.1 200 OK\r\nX\x01: y\r\nContent-Length: 0\r\n\r\n",
    "a close mid-headers": b"HTTP/1.1 200 OK\r\nContent-Le",
    "a close mid-body": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100\r\n\r\n<html>",
    "a close before any answer": b"",
    "a bad chunk": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
}


class FakeIndex:
    """A raw socket server: 404 for a project's simple page (so that an upload goes on to its POST), and
    `answer` for every other request, after reading the whole request. `answer=None`: never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/"
        self.answer: bytes | None = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        self.pages_ok = True
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(30)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                remaining = int(headers.get("content-length", "0")) - len(body)
                while remaining > 0:
                    chunk = client.recv(min(remaining, 65536))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                method, path = lines[0].split(" ")[:2]
                if self.pages_ok and method == "GET" and path.startswith("/simple/") and path != "/simple/":
                    client.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                elif self.answer is None:
                    time.sleep(10)
                else:
                    client.sendall(self.answer)
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        self.server.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeIndex]:
    index = FakeIndex()
    yield index
    index.close()


@pytest.fixture(scope="module")
def gw(fake: FakeIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = start_gateway(tmp_path_factory.mktemp("faults"), {"url": fake.url, "timeout": "1s"}, ready=False)
    gateway.add_user("ivy", PASSWORD)
    yield gateway
    stop(gateway.process)


def upload(gw: GatewayProcess, tmp_path: Path) -> http.client.HTTPResponse:
    content_type, body = upload_body(make_wheel(tmp_path, "fault-pkg", "1.0"))
    return raw_post(gw.url, "/legacy/", {"Content-Type": content_type, "Authorization": basic("ivy", PASSWORD)}, body)


def read(gw: GatewayProcess, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(gw.url.removeprefix("http://"), timeout=30)
    conn.request("GET", path)
    return conn.getresponse()


def new_log(gw: GatewayProcess, since: int) -> str:
    time.sleep(0.2)  # the access line follows the answer
    return gw.log_text()[since:]


def assert_one_line_answer(resp: http.client.HTTPResponse, status: int, message: str, fake: FakeIndex) -> None:
    body = resp.read().decode()
    assert (resp.status, resp.reason) == (status, message)
    assert body == f"{status} {message}\n"
    assert fake.url not in resp.reason + body and "127.0.0.1" not in body


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_answer_to_an_upload_is_a_502_in_one_line(
    broken: str, fake: FakeIndex, gw: GatewayProcess, tmp_path: Path
) -> None:
    fake.answer, fake.pages_ok = BROKEN[broken], True
    seen = len(gw.log_text())
    assert_one_line_answer(upload(gw, tmp_path), 502, NOT_HTTP, fake)
    log = new_log(gw, seen)
    assert "Traceback" not in log and "internal_error" not in log
    faults = [line for line in log.splitlines() if "gateway.upstream: index fault" in line]
    assert len(faults) == 1 and f"index fault on upload: upstream_protocol method=POST url={fake.url} " in faults[0]
    assert "reason=upstream_protocol" in log


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_answer_to_a_read_is_a_502_in_one_line(broken: str, fake: FakeIndex, gw: GatewayProcess) -> None:
    fake.answer, fake.pages_ok = BROKEN[broken], False
    seen = len(gw.log_text())
    assert_one_line_answer(read(gw, "/simple/"), 502, NOT_HTTP, fake)
    assert_one_line_answer(read(gw, "/simple/some-project/"), 502, NOT_HTTP, fake)
    log = new_log(gw, seen)
    assert "Traceback" not in log
    faults = [line for line in log.splitlines() if "gateway.upstream: index fault" in line]
    assert len(faults) == 2
    assert all(f"index fault on simple: upstream_protocol method=GET url={fake.url}simple/" in f for f in faults)


def test_an_index_that_says_nothing_is_a_504(fake: FakeIndex, gw: GatewayProcess, tmp_path: Path) -> None:
    fake.answer, fake.pages_ok = None, True
    seen = len(gw.log_text())
    assert_one_line_answer(upload(gw, tmp_path), 504, "The package index did not answer in time; try again later", fake)
    log = new_log(gw, seen)
    assert "Traceback" not in log
    assert f'upstream_timeout method=POST url={fake.url} cause="SocketTimeoutError: Timeout on reading data' in log


def test_a_file_cut_off_mid_stream_is_cut_off_for_the_client_too(fake: FakeIndex, gw: GatewayProcess) -> None:
    """Once the answer has begun nothing can replace it: the client's connection is cut (it sees the file
    incomplete, never a short file that looks whole), and the log has one line, no traceback."""
    fake.answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nPK"
    seen = len(gw.log_text())
    resp = read(gw, "/packages/fault_pkg-1.0-py3-none-any.whl")
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    log = new_log(gw, seen)
    assert "Traceback" not in log
    assert f"index fault on packages: upstream_protocol method=GET url={fake.url}packages/" in log
    fake.answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nPK\r\n"
    )
    resp = read(gw, "/packages/fault_pkg-1.0-py3-none-any.whl")
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    with pytest.raises(http.client.IncompleteRead):
        resp.read()


class FaultyRelay:
    """A relay in front of the real pypiserver that passes short exchanges (simple pages) and, once a connection
    has carried `cut` bytes towards the index (an upload's body is under way), does `fault` to both sides:
    `reset` (a TCP reset), `garbage` (answers bytes that are not HTTP, then resets), `stall` (takes what comes,
    never answers, resets once the gateway gives up). `fault=None`: a plain relay."""

    def __init__(self, target_port: int, cut: int = 64 * 1024) -> None:
        self.target_port = target_port
        self.cut = cut
        self.fault: str | None = None
        self.closed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        back = threading.Thread(target=self._copy, args=(upstream, client), daemon=True)
        back.start()
        sent, fault = 0, self.fault
        try:
            while data := client.recv(65536):
                if fault is not None and sent + len(data) > self.cut:
                    upstream.sendall(data[: max(0, self.cut - sent)])
                    self._fault(fault, client)
                    break
                sent += len(data)
                upstream.sendall(data)
        except OSError:
            pass
        for sock in (client, upstream):
            _reset(sock)
        back.join(5)
        client.close()
        upstream.close()

    def _fault(self, fault: str, client: socket.socket) -> None:
        if fault == "garbage":
            client.sendall(b"\x00\x01 this is not HTTP\r\n\r\n")
        elif fault == "stall":
            client.settimeout(30)
            while client.recv(65536):
                pass

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        self.server.close()


def _reset(sock: socket.socket) -> None:
    """Make closing `sock` send a reset, and wake a thread reading it (closing alone would wait for that read,
    and would leave pypiserver's one worker waiting for the rest of the body)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


@pytest.fixture(scope="module")
def relay(index: Index) -> Iterator[FaultyRelay]:
    port = urlsplit(index.url).port
    assert port is not None
    faulty = FaultyRelay(port)
    yield faulty
    faulty.close()


@pytest.fixture(scope="module")
def relayed(relay: FaultyRelay, index: Index, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("relayed")
    gateway = start_gateway(directory, index_upstream(index, directory) | {"url": relay.url, "timeout": "2s"})
    gateway.add_user("ivy", PASSWORD)
    yield gateway
    stop(gateway.process)


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ("reset", 502, NOT_HTTP),
        ("garbage", 502, NOT_HTTP),
        ("stall", 504, "The package index did not answer in time; try again later"),
    ],
)
def test_twine_sees_a_5xx_and_the_index_keeps_no_partial_file(
    fault: str, status: int, message: str, relay: FaultyRelay, relayed: GatewayProcess, index: Index, tmp_path: Path
) -> None:
    """A real upload with twine through a real pypiserver whose connection breaks mid-body: twine is told
    5xx in one line (a fault it may retry, not a refusal), the gateway logs one line and no traceback, the index
    holds no part of the file, and the same upload goes through once the index is reachable again."""
    wheel = make_wheel(tmp_path, f"fault-{fault}", "1.0", payload_size=512 * 1024)
    relay.fault = fault
    seen = len(relayed.log_text())
    result = twine(relayed.url, "ivy", PASSWORD, wheel)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f'Received "{status}: {message}"' in output and "Retry 5 of 5" in output, output
    assert f"HTTPError: {status} " in output and output.count(f'Received "{status}: {message}"') == 5
    assert "Traceback" not in output and relay.url not in output
    log = new_log(relayed, seen)
    assert "Traceback" not in log and "internal_error" not in log
    reason = "upstream_timeout" if status == 504 else "upstream_protocol"
    faults = [line for line in log.splitlines() if f"index fault on upload: {reason} " in line]
    assert len(faults) == log.count(f"POST /legacy/ {status} ") == 5, log  # one line for each of twine's tries
    assert wheel.name not in index.files() and not [p for p in index.packages.iterdir() if fault in p.name]

    relay.fault = None
    result = twine(relayed.url, "ivy", PASSWORD, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    assert wheel.name in index.files()
