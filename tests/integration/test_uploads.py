"""Uploads through the in-process app, end to end: what the client is told, what the index got, what the store
recorded."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiohttp
import pytest

from tests.dists import make_wheel
from tests.harness import database
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import USERNAME, FakeIndex
from tests.harness.forms import multipart
from tests.harness.inprocess import InProcess
from tests.integration.conftest import AppFactory, IndexFactory

SERVICE = aiohttp.encode_basic_auth(USERNAME, "index-service-password")


@pytest.mark.parametrize("flavour", ["pypiserver", "devpi"])
async def test_a_streamed_upload_is_stored_and_recorded(
    tmp_path: Path, start_index: IndexFactory, start_app: AppFactory, flavour: str
) -> None:
    index = await start_index(flavour)
    gateway = await start_app(index)
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    wheel = make_wheel(tmp_path, "demo", "1.0")

    response = await gateway.upload(wheel, token)

    assert (response.status, response.reason, await response.text()) == (200, "OK", "OK\n")
    [received] = index.uploads
    assert received.path == index.upload_path
    assert received.authorization == SERVICE  # the gateway's own credential, never the client's token
    assert token not in str(received.headers)
    assert (received.filename, received.content) == (wheel.name, wheel.read_bytes())
    assert received.fields["name"] == ["demo"] and received.fields["version"] == ["1.0"]
    assert index.files == {wheel.name: wheel.read_bytes()}
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert gateway.rows("SELECT filename, project, sha256, user_name FROM files") == [
        (wheel.name, "demo", sha256, "alice")
    ]
    assert gateway.rows("SELECT project, role FROM roles") == [("demo", "owner")]  # the claim, recorded
    assert gateway.rows("SELECT COUNT(*) FROM project_claims") == [(0,)]


async def test_a_file_sent_before_its_fields_is_spooled_then_stored(tmp_path: Path, gateway: InProcess) -> None:
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    wheel = make_wheel(tmp_path, "demo", "1.0")

    response = await gateway.upload(wheel, token, files_first=True)

    assert (response.status, response.reason, await response.text()) == (200, "OK", "OK\n")
    [received] = gateway.index.uploads
    assert (received.filename, received.content) == (wheel.name, wheel.read_bytes())
    assert received.fields["sha256_digest"] == [hashlib.sha256(wheel.read_bytes()).hexdigest()]
    assert gateway.rows("SELECT filename FROM files") == [(wheel.name,)]


async def test_a_project_over_max_project_size_is_refused_before_the_index_keeps_it(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex
) -> None:
    gateway = await start_app(index, limits={"max_project_size": "64KiB"})
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    first = make_wheel(tmp_path, "demo", "1.0", payload_size=40_000)
    second = make_wheel(tmp_path, "demo", "2.0", payload_size=40_000)
    assert (await gateway.upload(first, token)).status == 200

    response = await gateway.upload(second, token)

    message = (
        "Project size too large. Limit for project 'demo' total size is 6.10352e-05 GiB. "
        "See http://gateway.test/account/projects"
    )
    assert (response.status, response.reason) == (400, message)
    assert message in await response.text()
    assert [received.filename for received in index.uploads] == [first.name]  # the second never arrived whole
    assert sorted(index.files) == [first.name]
    assert gateway.rows("SELECT filename FROM files") == [(first.name,)]
    assert gateway.rows("SELECT COUNT(*) FROM size_reservations") == [(0,)]


async def test_a_refused_token_sends_nothing_to_the_index(tmp_path: Path, gateway: InProcess) -> None:
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)

    response = await gateway.upload(make_wheel(tmp_path, "demo", "1.0"), forged)

    assert response.status == 403
    reason = response.reason or ""
    assert reason.startswith("Invalid API Token: ")
    assert reason in await response.text()
    assert gateway.index.uploads == []
    assert set(gateway.index.reads) <= {"/simple/"}  # the app's probe of the index, never the project's page
    assert gateway.rows("SELECT COUNT(*) FROM files") == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM projects") == [(0,)]


async def test_an_action_with_a_token_revoked_elsewhere_never_reaches_the_index(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex
) -> None:
    """`remove_pkg` changes the index at once, so the token is read afresh first: a revocation this process has
    not heard of yet (the change log's follower is behind, or stopped) still stops it."""
    gateway = await start_app(index, policy={"allowed_actions": ["file_upload", "remove_pkg"]})
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    assert (await gateway.upload(make_wheel(tmp_path, "demo", "1.0"), token)).status == 200  # its row, cached
    database.execute(gateway.config.store.url, "UPDATE tokens SET revoked = :now", now=time.time())

    content_type, body = multipart([(":action", "remove_pkg"), ("name", "demo"), ("version", "1.0")])
    headers = {"Content-Type": content_type, "Authorization": aiohttp.encode_basic_auth("__token__", token)}
    refused = await gateway.client.post("/legacy/", data=body, headers=headers)

    assert refused.status == 403 and "revoked" in (refused.reason or ""), (refused.status, refused.reason)
    assert len(index.uploads) == 1, "the index was asked to remove the release"


async def test_a_new_project_s_second_file_waits_for_the_record_of_the_first_the_index_already_lists(
    tmp_path: Path, gateway: InProcess, index: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uploads of one user for a new project share its claim. The first's file is on the index and its record
    is a moment behind: the second finds the project listed, and must not take it for one the gateway never
    imported (403 "already exists on the index and has no owner")."""
    from gateway.services import SERVICES

    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    store = gateway.client.app[SERVICES].store
    record, recording = store.record_upload, asyncio.Event()

    async def late_record(*args: object, **kwargs: object) -> object:
        recording.set()
        await asyncio.sleep(0.5)
        return await record(*args, **kwargs)

    monkeypatch.setattr(store, "record_upload", late_record)
    first = asyncio.create_task(gateway.upload(make_wheel(tmp_path, "newproj", "1.0"), token))
    await recording.wait()  # the index has the first file; its record has not run
    second = await gateway.upload(make_wheel(tmp_path, "newproj", "2.0"), token)
    assert (second.status, second.reason) == (200, "OK")
    assert (await first).status == 200
    assert gateway.rows("SELECT role FROM roles JOIN users ON users.id = roles.user_id WHERE users.name = 'alice'") == [
        ("owner",)
    ]
