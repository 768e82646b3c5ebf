"""PostgreSQL killed under a running gateway: uploads get 503 with a message that says to retry (twine retries a
5xx by itself), installs keep being served from the page cache, and the gateway recovers by itself when PostgreSQL
returns (issue #18)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import GatewayProcess, Index, index_upstream, start_gateway, stop, twine
from tests.dists import make_wheel
from tests.e2e.test_throttle import basic, legacy_post, wheel_body
from tests.harness import postgresql

PASSWORD = "outage-proof password"


@dataclass
class Outage:
    server: postgresql.Server
    gw: GatewayProcess
    token: str


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory, index: Index) -> Iterator[Outage]:
    """A gateway on a PostgreSQL server of its own, which the tests may kill."""
    server = postgresql.start(durable=True)  # killed and restarted: what it committed must stay
    directory = tmp_path_factory.mktemp("outage")
    gw = start_gateway(
        directory, index_upstream(index, directory), store={"url": server.create()}, reads={"cache_ttl": "1h"}
    )
    try:
        gw.add_user("olga", PASSWORD)
        token = gw.cli("token", "create", "olga").stdout.strip()
        yield Outage(server, gw, token)
    finally:
        stop(gw.process)
        server.stop()


def page(gw: GatewayProcess, project: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{gw.url}/simple/{project}/", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_uploads_get_503_reads_keep_working_and_the_gateway_recovers(outage: Outage, tmp_path: Path) -> None:
    gw = outage.gw
    first = make_wheel(tmp_path, "outage-demo", "1.0")
    done = twine(gw.url, "__token__", outage.token, first)
    assert done.returncode == 0, done.stdout + done.stderr
    status, before = page(gw, "outage-demo")
    assert status == 200 and first.name in before  # now in the page cache

    outage.server.halt()
    try:
        content_type, body = wheel_body(tmp_path / "second", "outage-demo", "2.0")
        refused = legacy_post(gw, basic("__token__", outage.token), content_type, body)
        assert refused.status == 503, refused
        assert "The gateway's database is unavailable; retry shortly" in refused.text
        assert refused.headers.get("Retry-After") == "5"
        status, during = page(gw, "outage-demo")
        assert status == 200 and first.name in during, during[:300]
    finally:
        outage.server.resume()

    deadline = time.monotonic() + 30
    while (answer := legacy_post(gw, basic("__token__", outage.token), content_type, body)).status == 503:
        assert time.monotonic() < deadline, "the gateway did not recover within 30 s of PostgreSQL's return"
        time.sleep(0.2)
    assert answer.status == 200, answer
    assert "outage_demo-2.0" in page(gw, "outage-demo")[1]
