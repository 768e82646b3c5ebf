"""A gateway started on a store with another server secret than the one its tokens were made with (a replica given
a fresh secret file) refuses to start, in one line, instead of refusing every token."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from gateway.config import ConfigError
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import FakeIndex
from tests.integration.conftest import AppFactory


async def test_another_secret_on_the_same_store_is_refused_and_the_first_still_works(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex
) -> None:
    first = await start_app(index)
    await add_user(first.config, "alice", "correct horse battery")
    token = await add_token(first.config, "alice")
    with pytest.raises(ConfigError) as refused:
        await start_app(index, tokens={"secret_file": str(tmp_path / "another.key")})
    assert str(refused.value) == (
        "tokens.secret_file: this is not the secret the store's tokens were made with: give every gateway on this "
        "store the same secret file (copy it from the first), or use this secret's own store"
    )
    again = await start_app(index)  # the first's secret file: it starts, and takes the first's tokens
    headers = {"Authorization": aiohttp.encode_basic_auth("__token__", token), "Content-Type": "multipart/form-data"}
    async with again.client.post("/legacy/", data=b"", headers=headers) as response:
        assert response.status == 400  # the token passed; the empty form did not
    assert first.rows("SELECT name FROM settings") == [("secret_fingerprint",)]
    (value,) = first.rows("SELECT value FROM settings")[0]
    assert first.config.tokens.secret_file.read_bytes().hex() not in value and len(value) == 64
