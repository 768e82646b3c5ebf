"""What the client is told when the index refuses, fails, resets or stalls an upload, or another upload of
the same file wins the race to it; and that the store then holds nothing of the upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dists import make_wheel
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import FakeIndex, Fault, Received
from tests.harness.inprocess import InProcess
from tests.integration.conftest import AppFactory

CREDENTIAL = "an operator must check upstream.username and upstream.password_file"


async def _token(gateway: InProcess) -> str:
    await add_user(gateway.config, "alice", "correct horse battery")
    return await add_token(gateway.config, "alice")


def _nothing_recorded(gateway: InProcess) -> None:
    assert gateway.rows("SELECT COUNT(*) FROM files") == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM roles") == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM project_claims") == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM size_reservations") == [(0,)]


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        (
            Fault(401, "Unauthorized"),
            502,
            f"The package index refused the gateway's own credential (HTTP 401); {CREDENTIAL}",
        ),
        (
            Fault(403, "Forbidden"),
            502,
            f"The package index refused the gateway's own credential (HTTP 403); {CREDENTIAL}",
        ),
        (
            Fault(413, "<pre>Entity too large</pre>"),
            413,
            "The package index refused the file as too large: Entity too large",
        ),
        (
            Fault(422, "<html><body>Invalid distribution\n metadata</body></html>"),
            400,
            "The package index refused the upload (HTTP 422): Invalid distribution metadata",
        ),
        (Fault(503, "Service Unavailable"), 502, "The package index failed (HTTP 503); try again later"),
        (Fault(reset=True), 502, "The package index sent no valid answer; try again later"),
    ],
    ids=["401", "403", "413", "422", "503", "reset"],
)
async def test_an_index_refusal_or_failure_is_passed_on_and_nothing_is_recorded(
    tmp_path: Path, gateway: InProcess, fault: Fault, status: int, message: str
) -> None:
    token = await _token(gateway)
    gateway.index.fault = fault
    wheel = make_wheel(tmp_path, "demo", "1.0")

    response = await gateway.upload(wheel, token)

    assert (response.status, response.reason) == (status, message)
    assert message in await response.text()
    [received] = gateway.index.uploads  # it reached the index whole, which answered as told
    assert received.content == wheel.read_bytes()
    _nothing_recorded(gateway)


async def test_an_index_that_does_not_answer_in_time_is_a_504(
    tmp_path: Path, start_app: AppFactory, index: FakeIndex
) -> None:
    gateway = await start_app(index, upstream={"timeout": "1s"})
    token = await _token(gateway)
    index.fault = Fault(delay=3)

    response = await gateway.upload(make_wheel(tmp_path, "demo", "1.0"), token)

    message = "The package index did not answer in time; try again later"
    assert (response.status, response.reason) == (504, message)
    assert message in await response.text()
    assert len(index.uploads) == 1
    _nothing_recorded(gateway)


async def test_an_answer_before_the_whole_upload_is_the_index_s_fault(tmp_path: Path, gateway: InProcess) -> None:
    token = await _token(gateway)
    gateway.index.fault = Fault(200, "OK", early=True)

    response = await gateway.upload(make_wheel(tmp_path, "demo", "1.0", payload_size=3 * 2**20), token)

    message = "The package index answered before it had the whole upload (HTTP 200); try again later"
    assert (response.status, response.reason) == (502, message)
    assert message in await response.text()
    assert gateway.index.uploads == [] and gateway.index.files == {}
    _nothing_recorded(gateway)


async def test_losing_the_race_to_the_same_file_is_already_present(tmp_path: Path, gateway: InProcess) -> None:
    """The index got the same file meanwhile (409): the gateway reads its page afresh, finds the same bytes and
    answers as for a re-upload; the upload created nothing, so nothing is claimed."""
    token = await _token(gateway)
    gateway.index.race = True
    wheel = make_wheel(tmp_path, "demo", "1.0")

    response = await gateway.upload(wheel, token)

    assert (response.status, response.reason, await response.text()) == (200, "OK", "OK\n")
    assert len(gateway.index.uploads) == 1
    assert gateway.index.files == {wheel.name: wheel.read_bytes()}
    assert gateway.index.reads.count("/simple/demo/") == 2  # before the upload, and again after the 409
    _nothing_recorded(gateway)


async def test_losing_the_race_to_other_bytes_is_file_exists(tmp_path: Path, gateway: InProcess) -> None:
    token = await _token(gateway)

    async def other_bytes_first(received: Received) -> None:
        assert received.filename is not None
        gateway.index.files[received.filename] = b"another upload's bytes"

    gateway.index.before_store = other_bytes_first
    wheel = make_wheel(tmp_path, "demo", "1.0")

    response = await gateway.upload(wheel, token)

    assert response.status == 400
    reason = response.reason or ""
    assert reason.startswith(f"File already exists ('{wheel.name}', with blake2_256 hash '")
    assert reason in await response.text()
    assert gateway.index.files == {wheel.name: b"another upload's bytes"}
    _nothing_recorded(gateway)
