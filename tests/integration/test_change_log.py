"""A change made by another process on the same store (the CLI, another replica) reaches this one's caches through
the change log within about a second, though a token's row may be cached for 30 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from gateway.authentication import ROW_TTL
from gateway.store import Store
from tests.dists import make_wheel
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import FakeIndex
from tests.harness.inprocess import InProcess
from tests.integration.conftest import AppFactory

GENEROUS = 3.0  # seconds; the follower reads every second, the row stays cached ROW_TTL


async def probe(gateway: InProcess, token: str) -> int:
    """An upload with no form: 400 while the token is accepted, 403 once it is refused; nothing is stored."""
    headers = {
        "Authorization": aiohttp.encode_basic_auth("__token__", token),
        "Content-Type": "multipart/form-data; boundary=x",
    }
    async with gateway.client.post("/legacy/", data=b"", headers=headers) as response:
        return response.status


async def refused_after(gateway: InProcess, token: str) -> float:
    started = time.monotonic()
    async with asyncio.timeout(ROW_TTL / 2):
        while (status := await probe(gateway, token)) != 403:
            assert status == 400, status
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_revocation_by_another_process_is_refused_within_a_second(
    start_app: AppFactory, index: FakeIndex
) -> None:
    gateway = await start_app(index)
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    assert await probe(gateway, token) == 400  # accepted: its row is now cached
    other = await Store.open(gateway.config.store.url)  # what the CLI, or another replica, opens
    try:
        user = await other.require_user("alice")
        await other.revoke_all_tokens(user, by="cli:test")
    finally:
        await other.close()
    assert await refused_after(gateway, token) < GENEROUS


async def test_a_removed_user_s_token_is_refused_within_a_second(start_app: AppFactory, index: FakeIndex) -> None:
    gateway = await start_app(index)
    await add_user(gateway.config, "Bob", "correct horse battery")
    token = await add_token(gateway.config, "Bob")
    assert await probe(gateway, token) == 400
    other = await Store.open(gateway.config.store.url)
    try:
        await other.remove_user(await other.require_user("bob"), by="cli:test")
    finally:
        await other.close()
    assert await refused_after(gateway, token) < GENEROUS


async def test_an_upload_s_own_change_does_not_make_the_next_upload_ask_the_index_again(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex
) -> None:
    """The change an upload logs drops its project's pages in every process, this one's too, but not the upload
    path's listing of the index's files (a stale "not listed" is safe: the index refuses a file it has): a
    project's uploads would each fetch its page from the index, which pypiserver answers by scanning its
    directory."""
    gateway = await start_app(index)
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    assert (await gateway.upload(make_wheel(tmp_path, "demo", "1.0"), token)).status == 200
    async with asyncio.timeout(GENEROUS):  # the follower has applied the upload's change
        while 'upload_gateway_changes_applied_total{kind="project"} 1.0' not in await metrics(gateway):
            await asyncio.sleep(0.05)
    fetched = index.reads.count("/simple/demo/")

    assert (await gateway.upload(make_wheel(tmp_path, "demo", "1.1"), token)).status == 200
    assert index.reads.count("/simple/demo/") == fetched
    assert set(index.files) == {"demo-1.0-py3-none-any.whl", "demo-1.1-py3-none-any.whl"}


async def metrics(gateway: InProcess) -> str:
    async with gateway.client.get("/metrics") as response:
        return await response.text()
