"""Credentials no client could mean, over the wire: a 401 with a Basic challenge, never a 500."""

from __future__ import annotations

import pytest

from tests.integration.conftest import AppFactory, IndexFactory


@pytest.mark.parametrize("path", ["/legacy/", "/simple/"])
async def test_basic_credentials_that_are_not_ascii_are_a_401(
    start_index: IndexFactory, start_app: AppFactory, path: str
) -> None:
    gateway = await start_app(await start_index(), reads={"access": "authenticated"})
    headers = {"Authorization": "Basic YWxpY2U6\u00e9", "Accept": "text/plain", "Content-Length": "0"}
    response = await gateway.client.request("POST" if path == "/legacy/" else "GET", path, headers=headers)
    assert response.status == 401, await response.text()
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
