"""An upload the index stored but the store cannot record: the record's transaction rolls back whole, and the
upload's claim and size reservation are released, so a failed upload never owns a project."""

from __future__ import annotations

from pathlib import Path

from tests.dists import make_wheel
from tests.harness import database
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import FakeIndex, Received
from tests.integration.conftest import AppFactory


async def test_a_record_that_fails_rolls_back_and_releases_the_claim(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex
) -> None:
    gateway = await start_app(index, limits={"max_project_size": "1GiB"})
    await add_user(gateway.config, "alice", "correct horse battery")
    token = await add_token(gateway.config, "alice")
    wheel = make_wheel(tmp_path, "demo", "1.0")

    async def recorded_elsewhere(received: Received) -> None:
        """Another gateway on the same store recorded this filename while the index took the upload."""
        database.execute(
            gateway.config.store.url,
            "INSERT INTO files (filename, project, size, sha256, blake2_256, uploaded) "
            "VALUES (:filename, 'elsewhere', 1, '', '', 0)",
            filename=received.filename,
        )

    index.before_store = recorded_elsewhere

    response = await gateway.upload(wheel, token)

    message = "Internal error in the upload gateway"
    assert (response.status, response.reason) == (500, message)
    assert message in await response.text()
    assert index.files == {wheel.name: wheel.read_bytes()}  # the index kept it: only the record failed
    assert gateway.rows("SELECT filename, project FROM files") == [(wheel.name, "elsewhere")]
    assert gateway.rows("SELECT COUNT(*) FROM projects") == [(0,)]  # the claim's project, rolled back
    assert gateway.rows("SELECT COUNT(*) FROM roles") == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM project_claims") == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM size_reservations") == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM audit WHERE event = 'upload.accepted'") == [(0,)]
