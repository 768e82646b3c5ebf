"""`upstream.buffer_uploads` in front of pypiserver under gunicorn with ONE sync worker (gunicorn's defaults,
spelled out in GUNICORN_CMD_ARGS, but for a 10 s worker timeout instead of 30 s, so that the tests take seconds):
the index serves one request at a time and kills a worker busy for 10 s.

Streamed, an upload holds that worker at the client's pace: one client sending a byte a second stalls every
read through the gateway, and an honest upload longer than the worker timeout dies with the worker
(`WORKER TIMEOUT`).
Buffered, the gateway takes the whole body first and the index gets it at local speed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Index, index_upstream, start_gateway, start_index, stop, twine
from tests.dists import make_wheel, sha256_of
from tests.e2e.test_slow_clients import PASSWORD, connect, upload_head
from tests.harness.forms import multipart, twine_fields

ONE_SYNC_WORKER = "--workers=1 --worker-class=sync --timeout=10"
MiB = 2**20


@pytest.fixture(scope="module")
def sync_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    index = start_index(tmp_path_factory.mktemp("sync-index"), gunicorn_args=ONE_SYNC_WORKER)
    yield index
    stop(index.process)


def read_simple(url: str, timeout: float) -> str:
    """'200' or why the read failed."""
    try:
        with urllib.request.urlopen(url + "/simple/", timeout=timeout) as resp:
            return str(resp.status)
    except OSError as exc:
        return type(exc).__name__


@pytest.mark.parametrize("buffered", [False, True], ids=["streamed", "buffered"])
def test_a_trickling_upload_blocks_reads_only_when_streamed(sync_index: Index, tmp_path: Path, buffered: bool) -> None:
    upstream = index_upstream(sync_index, tmp_path) | {"buffer_uploads": str(buffered).lower()}
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        gw.add_user("alice", PASSWORD)
        wheel = make_wheel(tmp_path, "trickle-pkg", "1.0", payload_size=MiB)
        data = wheel.read_bytes()
        content_type, body = multipart(twine_fields(wheel.name, data), [("content", wheel.name, data)])
        with connect(gw, timeout=30) as sock:
            # The fields and half the file at once (a streamed upload has its index request open by then),
            # then a byte a second.
            sock.sendall(upload_head(gw, content_type, len(body)) + body[: len(body) // 2])
            stop_trickle = threading.Event()
            trickle = threading.Thread(target=_trickle, args=(sock, body[len(body) // 2 :], stop_trickle))
            trickle.start()
            time.sleep(1)
            outcome = read_simple(gw.url, timeout=5)
            stop_trickle.set()
            trickle.join()
        if buffered:
            assert outcome == "200"
            assert read_simple(gw.url, timeout=5) == "200"
        else:
            assert outcome == "TimeoutError", "the index's one worker was not held by the trickle"
        assert wheel.name not in sync_index.files()
    finally:
        stop(gw.process)


def _trickle(sock: socket.socket, rest: bytes, stop_trickle: threading.Event) -> None:
    for offset in range(len(rest)):
        if stop_trickle.wait(1.0) or select.select([sock], [], [], 0)[0]:
            return
        sock.send(rest[offset : offset + 1])


class ThrottledRelay:
    """A TCP relay that passes what the client sends at `rate` bytes per second (a slow uplink)."""

    def __init__(self, target: str, rate: float) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.rate = rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, self.rate), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, 0.0), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, rate: float) -> None:
        """Copy one direction; a failure on either side ends both (as a cut cable would)."""
        started, sent = time.monotonic(), 0
        try:
            while data := source.recv(16 * 1024):
                sink.sendall(data)
                sent += len(data)
                if rate:
                    time.sleep(max(0.0, started + sent / rate - time.monotonic()))
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


@pytest.mark.slow
def test_32_mib_over_a_2_mb_per_s_link_is_stored_by_a_one_worker_index_when_buffered(
    sync_index: Index, tmp_path: Path
) -> None:
    """About 17 s from twine to the gateway, with the default limits (min_upload_rate, upload_deadline): well past
    the index's 10 s worker timeout, which a buffered upload never meets."""
    gw = start_gateway(tmp_path / "gw", index_upstream(sync_index, tmp_path) | {"buffer_uploads": "true"})
    relay = ThrottledRelay(gw.url, rate=2_000_000)
    try:
        gw.add_user("alice", PASSWORD)
        index_log = len(sync_index.log.read_bytes())
        wheel = make_wheel(tmp_path, "big-slow", "1.0", payload_size=32 * MiB - 64 * 1024)
        assert 31 * MiB < wheel.stat().st_size <= 32 * MiB
        started = time.monotonic()
        result = twine(relay.url, "alice", PASSWORD, wheel)
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started > 15, "the link was not slow"
        assert sha256_of(sync_index.packages / wheel.name) == sha256_of(wheel)
        assert b"WORKER TIMEOUT" not in sync_index.log.read_bytes()[index_log:]
    finally:
        relay.close()
        stop(gw.process)


@pytest.mark.slow
def test_an_upload_longer_than_the_worker_timeout_dies_when_streamed(sync_index: Index, tmp_path: Path) -> None:
    """The evidence for the test above: the same index, streamed, 3 MiB at 200 kB/s (16 s) fails after 10 s.
    gunicorn answers 500 for the worker it kills, long before the body's end: the index's fault, and said so
    (twine would re-send it five times: a raw client reads the one answer)."""
    gw = start_gateway(tmp_path / "gw", index_upstream(sync_index, tmp_path))
    try:
        gw.add_user("alice", PASSWORD)
        index_log = len(sync_index.log.read_bytes())
        wheel = make_wheel(tmp_path, "slow-streamed", "1.0", payload_size=3 * MiB)
        data = wheel.read_bytes()
        content_type, body = multipart(twine_fields(wheel.name, data), [("content", wheel.name, data)])
        with connect(gw, timeout=60) as sock:
            sock.sendall(upload_head(gw, content_type, len(body)))
            started, answer = time.monotonic(), b""
            for offset in range(0, len(body), 16 * 1024):
                if select.select([sock], [], [], max(0.0, started + offset / 200_000 - time.monotonic()))[0]:
                    answer = sock.recv(65536)
                    break
                sock.sendall(body[offset : offset + 16 * 1024])
        assert answer.startswith(b"HTTP/1.1 502 The package index failed (HTTP 500); try again later"), answer[:200]
        assert sync_index.url.encode() not in answer  # the index's URL is for the log only (issue #13)
        assert wheel.name not in sync_index.files()
        assert b"WORKER TIMEOUT" in sync_index.log.read_bytes()[index_log:]
    finally:
        stop(gw.process)
