"""`serve --workers 3` as real processes: one port served by several workers, one embedded index, metrics that
add up across workers, a killed worker replaced, and SIGTERM ending every process with status 0."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, GatewayProcess, start_gateway, stop
from tests.dists import make_wheel
from tests.e2e.test_embedded import alive, children, wait_gone
from tests.e2e.test_upload import basic
from tests.harness.forms import upload_body

WORKERS = 3
ROOT_READS = 'upload_gateway_reads_total{representation="html",route="root"}'


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def is_index(pid: int) -> bool:
    try:
        return b"gateway.index_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def workers_of(gateway: GatewayProcess) -> list[int]:
    return [pid for pid in children(gateway.pid) if not is_index(pid)]


def owner(conn: http.client.HTTPConnection, port: int, pids: list[int]) -> int:
    """The worker holding the server's end of `conn`: its socket's inode in /proc/net/tcp, then whose fd it is."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inode = next(
        fields[9]
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].split(":")[1], 16) == port and int(fields[2].split(":")[1], 16) == client_port
    )
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def get(url: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def metric(url: str, name: str) -> float:
    status, body = get(url, "/metrics")
    assert status == 200
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body.decode(), re.MULTILINE)
    assert found, f"{name} not on the page"
    return float(found.group(1))


def concurrent_reads(gateway: GatewayProcess, count: int) -> list[int]:
    """`count` clients at once, each a keep-alive connection that reads the root page: the worker of each."""
    port = int(gateway.url.rsplit(":", 1)[1])
    connections = [http.client.HTTPConnection(f"127.0.0.1:{port}", timeout=10) for _ in range(count)]
    start = threading.Barrier(count)
    statuses: list[int] = []

    def read(conn: http.client.HTTPConnection) -> None:
        start.wait()
        conn.request("GET", "/simple/")
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)

    threads = [threading.Thread(target=read, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert statuses == [200] * count
        pids = workers_of(gateway)
        return [owner(conn, port, pids) for conn in connections]
    finally:
        for conn in connections:
            conn.close()


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayProcess]:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where the metrics directory is made
    (tmp_path / "tmp").mkdir()
    upstream = {"url": "embedded", "data_dir": str(tmp_path / "packages")}
    gw = start_gateway(tmp_path / "gw", upstream, server={"workers": WORKERS})
    wait_for(lambda: len(workers_of(gw)) == WORKERS and gw.log_text().count("listening on") == 1)
    yield gw
    stop(gw.process)


def test_one_port_is_served_by_several_workers_and_one_embedded_index(gateway: GatewayProcess) -> None:
    processes = children(gateway.pid)
    assert len([pid for pid in processes if is_index(pid)]) == 1, "the embedded index starts once, in the parent"
    assert len(workers_of(gateway)) == WORKERS
    assert gateway.log_text().count("upload-gateway listening on") == 1, "the banner is printed once"
    served_by = concurrent_reads(gateway, 30)
    assert len(set(served_by)) > 1, f"every connection went to one worker: {served_by}"


def test_the_metrics_page_adds_up_every_worker(gateway: GatewayProcess) -> None:
    served_by = concurrent_reads(gateway, 30)
    served_by += concurrent_reads(gateway, 12)
    assert len(set(served_by)) > 1
    scrapes = {metric(gateway.url, ROOT_READS) for _ in range(10)}
    assert scrapes == {42.0}, "each scrape, whichever worker answers it, gives the total of all of them"
    assert metric(gateway.url, "upload_gateway_workers") == WORKERS
    assert metric(gateway.url, "upload_gateway_connections_open") >= 1  # the scrape's own connection, at least
    assert metric(gateway.url, "upload_gateway_upstream_up") == 1
    _, page = get(gateway.url, "/metrics")
    assert b"process_cpu_seconds_total" not in page, "one process's figures would jump between scrapes"


def test_a_killed_worker_is_replaced_and_the_others_keep_serving(gateway: GatewayProcess) -> None:
    concurrent_reads(gateway, 10)
    victim = workers_of(gateway)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_gone(victim)
    for _ in range(10):
        assert get(gateway.url, "/simple/")[0] == 200
    wait_for(lambda: len(workers_of(gateway)) == WORKERS and victim not in workers_of(gateway))
    wait_for(lambda: gateway.log_text().count(" serving (pid ") == WORKERS + 1)
    log = gateway.log_text()
    assert re.search(rf"WARNING gateway\.workers: worker \d \(pid {victim}\) was killed by SIGKILL after", log), log
    assert metric(gateway.url, "upload_gateway_worker_restarts_total") == 1
    assert metric(gateway.url, "upload_gateway_workers") == WORKERS
    assert metric(gateway.url, ROOT_READS) == 20, "the dead worker's counts stay in the totals"
    assert metric(gateway.url, "upload_gateway_uploads_in_flight") == 0


def test_sigterm_stops_every_process_with_status_0(gateway: GatewayProcess, tmp_path: Path) -> None:
    concurrent_reads(gateway, 10)  # the read path's render pool exists in each worker
    processes = descendants(gateway.pid)
    assert len(processes) > WORKERS + 1
    assert [path.name[:23] for path in (tmp_path / "tmp").iterdir()] == ["upload-gateway-metrics-"]
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(60) == 0
    assert all(wait_gone(pid) for pid in processes), [pid for pid in processes if alive(pid)]
    assert list((tmp_path / "tmp").iterdir()) == [], "the metrics directory is removed"
    assert "Traceback" not in gateway.log_text()


def test_sigterm_waits_for_an_upload_in_flight_and_a_second_signal_ends_it(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    gateway.add_user("slow", "slow uploader's password")
    token = gateway.cli("token", "create", "slow").stdout.strip()
    content_type, body = upload_body(make_wheel(tmp_path, "slow-demo", "1.0", payload_size=256 * 1024))
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        head = (
            f"POST /legacy/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: {basic('__token__', token)}\r\n\r\n"
        )
        client.sendall(head.encode() + body[: len(body) // 2])
        wait_for(lambda: metric(gateway.url, "upload_gateway_uploads_in_flight") == 1)
        processes = descendants(gateway.pid)
        gateway.process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            gateway.process.wait(3)  # the upload's worker drains: it waits for the upload, as one `serve` does
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(20) == 0
    assert "workers still running: killing 1 of them" in gateway.log_text()
    assert all(wait_gone(pid) for pid in processes), [pid for pid in processes if alive(pid)]


def test_a_worker_that_cannot_start_stops_the_gateway_with_its_one_line(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_bytes(b"short")
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\nworkers = {WORKERS}\n[upstream]\nurl = "http://127.0.0.1:9/"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "gateway.db"}"\n[tokens]\nsecret_file = "{tmp_path / "secret.key"}"\n'
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    result = subprocess.run(
        [PYTHON, "-m", "gateway", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 1
    assert "upload-gateway: tokens.secret_file: secret file" in result.stderr
    assert "listening on" not in result.stdout
    assert "Traceback" not in result.stderr
