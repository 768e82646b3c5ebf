"""docker-compose.yml's two replicas behind nginx, without Docker: config/nginx/gateway.conf run by a real nginx in
front of two `serve` processes started through the image's entrypoint with the environments of `gateway-a` and
`gateway-b` (tests/harness/compose.py maps addresses, secrets and /data to this machine; nginx's address becomes
127.0.0.1, the address nginx connects from). The two share one PostgreSQL database (on the tests' server, as
the `postgres` service) and /data as they share the gateway-data volume: one server secret, which both create at
the same moment. Requests reach both replicas; an upload streams through nginx (a replica is at work on
it, and refuses bad metadata, while the client still holds half the body back: nginx buffering the body could
never show either); the client's address, not nginx's, reaches the audit trail."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PYTHON, STARTED, GatewayProcess, free_port, stop, twine, wait_http
from tests.dists import make_wheel, sha256_of
from tests.e2e.test_upload import basic
from tests.harness import nginx
from tests.harness.compose import (
    GATEWAYS,
    ROOT,
    edge_address,
    entrypoint,
    gateway_env,
    index_argv,
    secret_files,
)
from tests.harness.forms import upload_body
from tests.harness.postgresql import Server

# A client address of its own on loopback (all of 127/8 is local on Linux), so it cannot be mistaken for nginx's.
CLIENT = "127.0.0.5"
PASSWORD = "replica password"
CONFIG = ROOT / "config" / "gateway.toml"  # the image's; GATEWAY_CONFIG names it


@dataclass
class Replicas:
    nginx: nginx.Nginx
    gateways: dict[str, GatewayProcess]
    data: Path
    packages: Path
    token: str

    def cli(self, *args: str) -> str:
        return cli(self.gateways[GATEWAYS[0]].env, *args)


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """A command as `docker compose exec gateway-a upload-gateway …` runs it: through the entrypoint."""
    result = subprocess.run(entrypoint(*args), input=stdin, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgresql_server: Server) -> Iterator[Replicas]:
    directory = tmp_path_factory.mktemp("replicas")
    packages, data = directory / "packages", directory / "data"
    packages.mkdir()
    data.mkdir()
    index_port = free_port()
    index = subprocess.Popen(
        index_argv(PYTHON, index_port, packages),
        stdout=(directory / "index.log").open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "XDG_RUNTIME_DIR": str(directory)},
    )
    ports = {name: free_port() for name in GATEWAYS}
    # nginx first: it names the replicas by address, so it starts while neither is up.
    proxy = nginx.start(
        directory / "nginx", {f"{edge_address(name)}:8080": f"127.0.0.1:{ports[name]}" for name in GATEWAYS}
    )
    gateways: dict[str, GatewayProcess] = {}
    try:
        wait_http(f"http://127.0.0.1:{index_port}/health", index)
        database = postgresql_server.create()  # the `postgres` service: both replicas on one database
        envs = {
            name: gateway_env(
                name,
                PYTHON,
                data,
                port=ports[name],
                index_port=index_port,
                public_url=proxy.url,
                store_url=database,
                replace={f"{edge_address('nginx')}/32": "127.0.0.1/32"},  # where nginx connects from here
            )
            for name in GATEWAYS
        }
        # What `migrate` does before the replicas start (the first command creates the store's schema).
        cli(envs[GATEWAYS[0]], "user", "add", "replica-alice", "--password-stdin", stdin=PASSWORD + "\n")
        assert not (data / "secret.key").exists()
        for name, env in envs.items():  # both at once: they race to create the server secret
            log = directory / f"{name}.log"
            process = subprocess.Popen(entrypoint("serve"), stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
            gateways[name] = GatewayProcess(f"http://127.0.0.1:{ports[name]}", CONFIG, log, process, env)
            # The index's and PostgreSQL's passwords (the entrypoint put the latter in PGPASSWORD) stay out of logs.
            gateways[name].secrets.extend([PASSWORD, *(path.read_text().strip() for path in secret_files().values())])
            STARTED.append(gateways[name])
        for gateway in gateways.values():
            wait_http(gateway.url + "/-/ready", gateway.process)
        token = cli(envs[GATEWAYS[0]], "token", "create", "replica-alice").strip()
        for gateway in gateways.values():
            gateway.secrets.append(token)
        yield Replicas(proxy, gateways, data, packages, token)
    finally:
        for gateway in gateways.values():
            stop(gateway.process)
        proxy.stop()
        stop(index)


def metric(gateway: GatewayProcess, name: str) -> float:
    """The sum of a metric's samples on one replica, asked directly (not through nginx)."""
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_nginx_spreads_requests_over_both_replicas(replicas: Replicas) -> None:
    before = {name: metric(gw, "upload_gateway_reads_total") for name, gw in replicas.gateways.items()}
    for _ in range(20):
        with urllib.request.urlopen(replicas.nginx.url + "/simple/", timeout=10) as response:
            assert response.status == 200
    served = {name: metric(gw, "upload_gateway_reads_total") - before[name] for name, gw in replicas.gateways.items()}
    assert sum(served.values()) == 20
    assert all(count >= 5 for count in served.values()), served


def test_metrics_are_not_served_through_nginx(replicas: Replicas) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(replicas.nginx.url + "/metrics", timeout=10)
    assert refused.value.code == 404
    for gateway in replicas.gateways.values():
        assert metric(gateway, "upload_gateway_build_info") == 1  # each replica serves its own


def test_the_replicas_made_one_secret_and_both_take_its_tokens(replicas: Replicas, tmp_path: Path) -> None:
    secret = replicas.data / "secret.key"
    assert len(secret.read_bytes()) == 32
    assert [path.name for path in replicas.data.iterdir() if path.name.startswith(".secret.key")] == []
    for number, gateway in enumerate(replicas.gateways.values()):
        wheel = make_wheel(tmp_path, "replica-direct", f"1.{number}")
        result = twine(gateway.url, "__token__", replicas.token, wheel)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (replicas.packages / wheel.name).is_file()


def test_twine_uploads_20_mib_through_nginx(replicas: Replicas, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "replica-large", "1.0", payload_size=20 * 2**20)
    result = twine(replicas.nginx.url, "__token__", replicas.token, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha256_of(replicas.packages / wheel.name) == sha256_of(wheel)


def client_socket(url: str) -> socket.socket:
    port = int(url.rpartition(":")[2])
    sock = socket.socket()
    sock.bind((CLIENT, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def request_head(token: str, content_type: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST /legacy/ HTTP/1.1\r\nHost: localhost:8080\r\nAuthorization: {basic('__token__', token)}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}Connection: close\r\n\r\n"
    ).encode()


def answer(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_an_upload_streams_through_nginx(replicas: Replicas, tmp_path: Path) -> None:
    """Half the body sent, then a pause: the upload is already in flight on a replica. nginx buffering request
    bodies would not open the request to a replica before the last byte, and nothing would be in flight."""
    wheel = make_wheel(tmp_path, "replica-streamed", "1.0", payload_size=20 * 2**20)
    content_type, body = upload_body(wheel)
    half = len(body) // 2
    with client_socket(replicas.nginx.url) as sock:
        sock.sendall(request_head(replicas.token, content_type, len(body)) + body[:half])
        deadline = time.monotonic() + 20
        while sum(metric(gw, "upload_gateway_uploads_in_flight") for gw in replicas.gateways.values()) < 1:
            assert time.monotonic() < deadline, "no replica began the upload while half its body was held back"
            time.sleep(0.05)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # and it is not finished: no answer before the rest
        sock.setblocking(True)
        sock.sendall(body[half:])
        received = answer(sock)
    assert received.startswith(b"HTTP/1.1 200"), received[:300]
    assert hashlib.sha256((replicas.packages / wheel.name).read_bytes()).hexdigest() == sha256_of(wheel)


def test_the_client_address_reaches_the_audit_trail(replicas: Replicas, tmp_path: Path) -> None:
    """nginx appends the client's address to X-Forwarded-For; the replica believes it from nginx only, and reads
    it right to left, so an address the client put there itself is not taken."""
    wheel = make_wheel(tmp_path, "replica-forwarded", "1.0")
    content_type, body = upload_body(wheel)
    with client_socket(replicas.nginx.url) as sock:
        sock.sendall(request_head(replicas.token, content_type, len(body), "X-Forwarded-For: 203.0.113.9\r\n") + body)
        received = answer(sock)
    assert received.startswith(b"HTTP/1.1 200"), received[:300]
    events = [json.loads(line) for line in replicas.cli("audit", "--json").splitlines()]
    [event] = [e for e in events if e["event"] == "upload.accepted" and e["detail"].get("filename") == wheel.name]
    assert event["address"] == CLIENT, event
    logs = "".join(gateway.log_text() for gateway in replicas.gateways.values())
    [line] = [json.loads(line) for line in logs.splitlines() if wheel.name in line and '"gateway.access"' in line]
    assert line["client"] == CLIENT, line


def test_a_refusal_on_the_metadata_arrives_while_the_file_is_still_held_back(
    replicas: Replicas, tmp_path: Path
) -> None:
    """The replica read the form's fields from the body's first half and refused them: its answer comes back
    through nginx before the client sent the rest, which nginx buffering the body would never forward."""
    wheel = make_wheel(tmp_path, "replica-refused", "1.0", payload_size=4 * 2**20)
    content_type, body = upload_body(wheel, version="2.0")  # the file says 1.0
    with client_socket(replicas.nginx.url) as sock:
        sock.sendall(request_head(replicas.token, content_type, len(body)) + body[: len(body) // 2])
        received = answer(sock)
    status_line = received.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/1.1 400 Version in filename should be '2.0'"), received[:300]
    assert not (replicas.packages / wheel.name).exists()
