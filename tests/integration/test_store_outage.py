"""PostgreSQL unreachable at run time: an upload is answered 503 "The gateway's database is unavailable; retry
shortly" (a fault worth a retry), never a hang or a 500, and the gateway recovers by itself when the database
takes connections again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.dists import make_wheel
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import FakeIndex
from tests.harness.postgresql import Server
from tests.integration.conftest import AppFactory

# aiohttp-session keeps the session under a string key of the request, which aiohttp warns about.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

MESSAGE = "The gateway's database is unavailable; retry shortly"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ORIGIN = {"Origin": "http://gateway.test"}


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


async def test_the_account_pages_while_the_database_is_down_say_so_and_keep_the_session(
    start_app: AppFactory, index: FakeIndex, store_url: str, postgresql_server: Server
) -> None:
    """A signed-in page and a sign-in both need the database: each is a 503 page with the message (never a 500,
    and never a sign-out: the session is there again once the database is)."""
    gateway = await start_app(index)
    await add_user(gateway.config, "alice", "correct horse battery")
    login = await gateway.client.get("/account/login")
    [csrf] = CSRF.findall(await login.text())
    fields = {"username": "alice", "password": "correct horse battery", "csrf_token": csrf}
    signed_in = await gateway.client.post("/account/login", data=fields, headers=ORIGIN)
    assert signed_in.status == 200
    login_form = await gateway.client.get("/account/login")
    [csrf] = CSRF.findall(await login_form.text())
    name = store_url.rsplit("/", 1)[1]

    refuse_connections(postgresql_server, name, refuse=True)
    try:
        page = await gateway.client.get("/account/tokens", allow_redirects=False)
        assert (page.status, page.reason) == (503, MESSAGE)
        assert MESSAGE in await page.text() and page.headers["Retry-After"] == "5"
        again = {**fields, "csrf_token": csrf}
        sign_in = await gateway.client.post("/account/login", data=again, headers=ORIGIN, allow_redirects=False)
        assert (sign_in.status, sign_in.reason) == (503, MESSAGE)
    finally:
        refuse_connections(postgresql_server, name, refuse=False)

    page = await gateway.client.get("/account/tokens", allow_redirects=False)
    assert page.status == 200 and "alice" in await page.text()


async def test_a_refusal_while_the_database_is_down_is_still_the_refusal(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex, store_url: str, postgresql_server: Server
) -> None:
    """A form refused on its own (its filename does not match its version) needs no database: the client gets
    that 400, which names the mistake, although its audit entry cannot be written (a 503 would only be retried)."""
    gateway = await start_app(index)
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    assert (await gateway.upload(make_wheel(tmp_path, "demo", "1.0"), token)).status == 200  # its token, cached
    name = store_url.rsplit("/", 1)[1]

    refuse_connections(postgresql_server, name, refuse=True)
    try:
        refused = await gateway.upload(make_wheel(tmp_path, "demo", "2.0"), token, version="3.0")
    finally:
        refuse_connections(postgresql_server, name, refuse=False)

    assert refused.status == 400, (refused.status, refused.reason)
    assert len(index.uploads) == 1
