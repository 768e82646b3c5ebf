"""The account pages in-process: signing in, the token pages and the second-factor pages, with their forms'
CSRF tokens as a browser sends them back (tests/e2e/test_web.py drives the same pages in Chromium)."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.harness.accounts import add_user
from tests.harness.inprocess import InProcess

# aiohttp-session keeps the session under a string key of the request, which aiohttp warns about (the gateway's
# own keys are typed); the server process shows that warning, and pytest would turn it into an error.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _csrf(gateway: InProcess, path: str) -> str:
    page = await gateway.client.get(path)
    assert page.status == 200, (path, page.status)
    found = CSRF.search(await page.text())
    assert found is not None, path
    return found.group(1)


async def _post(gateway: InProcess, path: str, fields: dict[str, str]) -> aiohttp.ClientResponse:
    data = {**fields, "csrf_token": await _csrf(gateway, path)}
    return await gateway.client.post(path, data=data, headers={"Origin": "http://gateway.test"})


async def test_sign_in_create_and_revoke_a_token_then_sign_out(gateway: InProcess) -> None:
    await add_user(gateway.config, "alice", "correct horse battery", owns=["demo"])

    wrong = await _post(gateway, "/account/login", {"username": "alice", "password": "wrong"})
    assert wrong.status == 401 and "Wrong user name or password." in await wrong.text()
    signed_in = await _post(gateway, "/account/login", {"username": "alice", "password": "correct horse battery"})
    assert signed_in.status == 200, await signed_in.text()
    assert "alice" in await signed_in.text()

    for path in ("/account/", "/account/projects", "/account/tokens", "/account/two-factor"):
        page = await gateway.client.get(path)
        assert page.status == 200, path

    again = {"password": "correct horse battery", "next": "/account/tokens/new"}
    confirmed = await _post(gateway, "/account/confirm", again)  # the password again before a token is made
    assert confirmed.status == 200 and "description" in await confirmed.text()
    created = await _post(
        gateway, "/account/tokens/new", {"description": "CI", "scope": "demo", "expires": "", "read": "on"}
    )
    assert created.status == 200
    shown = await created.text()
    assert re.search(r"pypi-[A-Za-z0-9_-]{20,}", shown), shown[:500]
    [(token_id,)] = gateway.rows("SELECT id FROM tokens WHERE description = 'CI'")

    revoked = await _post(gateway, f"/account/tokens/{token_id}/revoke", {})
    assert revoked.status == 200
    assert gateway.rows("SELECT revoked IS NOT NULL FROM tokens WHERE id = :id", id=token_id) == [(True,)]

    totp = await gateway.client.get("/account/two-factor/totp")
    assert totp.status == 200 and 'name="code"' in await totp.text()
    keys = await gateway.client.get("/account/two-factor/webauthn")
    assert keys.status == 200

    out = await _post(gateway, "/account/logout", {})
    assert out.status == 200
    after = await gateway.client.get("/account/tokens", allow_redirects=False)
    assert after.status in (302, 303)


async def test_a_form_without_its_csrf_token_is_refused(gateway: InProcess) -> None:
    await add_user(gateway.config, "alice", "correct horse battery")

    response = await gateway.client.post(
        "/account/login",
        data={"username": "alice", "password": "correct horse battery"},
    )

    message = "This form has expired or did not come from this site: reload the page"
    assert (response.status, response.reason) == (403, "Forbidden")  # the pages' own error page, in HTML
    assert message in await response.text()
