"""PostgreSQL unreachable at run time: an upload is answered 503 "The gateway's database is unavailable; retry
shortly" (a fault worth a retry), never a hang or a 500, and the gateway recovers by itself when the database
takes connections again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dists import make_wheel
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import FakeIndex
from tests.harness.postgresql import Server
from tests.integration.conftest import AppFactory

MESSAGE = "The gateway's database is unavailable; retry shortly"


@pytest.fixture
def store_url(postgresql_server: Server) -> str:
    """PostgreSQL only (this module's own `store_url`): the outage is a server's."""
    return postgresql_server.create()


def refuse_connections(server: Server, database: str, *, refuse: bool) -> None:
    server.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {"false" if refuse else "true"}')
    if refuse:
        server.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")  # noqa: S608


async def test_an_upload_while_the_database_is_down_is_a_503_and_the_gateway_recovers(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex, store_url: str, postgresql_server: Server
) -> None:
    gateway = await start_app(index)
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    first, second = make_wheel(tmp_path, "demo", "1.0"), make_wheel(tmp_path, "demo", "2.0")
    assert (await gateway.upload(first, token)).status == 200
    name = store_url.rsplit("/", 1)[1]

    refuse_connections(postgresql_server, name, refuse=True)
    try:
        refused = await gateway.upload(second, token)
        assert (refused.status, refused.reason) == (503, MESSAGE)
        assert refused.headers["Retry-After"] == "5" and MESSAGE in await refused.text()
        assert second.name not in index.files
        metrics = await (await gateway.client.get("/metrics")).text()
        assert 'upload_gateway_uploads_total{outcome="failed",reason="store_unavailable"} 1.0' in metrics
    finally:
        refuse_connections(postgresql_server, name, refuse=False)

    assert (await gateway.upload(second, token)).status == 200
    assert second.name in index.files
    assert gateway.rows("SELECT filename FROM files ORDER BY filename") == [(first.name,), (second.name,)]
