"""Trusted publishing in-process: an OIDC issuer of the test's own on loopback, the exchange on the wire as PyPI
answers it, and uploads with the minted token (tests/e2e/test_trusted_publishing.py runs `uv publish` over https)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from gateway import accounts
from gateway.app import SERVER_OPTIONS, create_app
from gateway.config import Config
from gateway.services import SERVICES
from gateway.store import Store
from tests.dists import make_wheel
from tests.harness.accounts import add_token, add_user
from tests.harness.fake_index import FakeIndex
from tests.harness.inprocess import InProcess
from tests.harness.oidc_issuer import Issuer, github_claims, rsa_key
from tests.integration.conftest import AppFactory

PROJECT = "sampleproject"
PUBLISHER = {"repository": "octo-org/sampleproject", "owner_id": "123456", "workflow": "release.yml"}


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    served = Issuer()
    async with served.serve():
        yield served


@pytest.fixture
async def gateway(start_app: AppFactory, index: FakeIndex, issuer: Issuer) -> InProcess:
    oidc = {"issuers": [{"name": "github", "url": issuer.url, "kind": "github"}]}
    return await start_app(index, oidc=oidc)


async def add_publisher(config: Config, project: str = PROJECT, *, pending_owner: str | None = None) -> str:
    """What `publisher add` does: a publisher (for an existing project, or pending) of the default workflow."""
    store = await Store.open(config.store.url)
    try:
        fields = accounts.publisher_fields_of(config.oidc, "github", **PUBLISHER)
        if pending_owner is not None:
            owner = await store.require_user(pending_owner)
            pending = await accounts.add_pending_publisher(
                store, config.oidc, project, project, "github", fields, owner
            )
            return pending.id
        return (await accounts.add_publisher(store, config.oidc, project, "github", fields, by="tests")).id
    finally:
        await store.close()


async def exchange(gateway: InProcess, id_token: str, path: str = "/_/oidc/mint-token") -> tuple[int, Any]:
    async with gateway.client.post(path, json={"token": id_token}) as response:
        return response.status, await response.json()


def refusal(answer: Any) -> tuple[str, str]:
    assert answer["message"] == "Token request failed", answer
    [error] = answer["errors"]
    return error["code"], error["description"]


async def upload(gateway: InProcess, tmp_path: Path, token: str, project: str = PROJECT) -> aiohttp.ClientResponse:
    return await gateway.upload(make_wheel(tmp_path, project, f"1.{time.monotonic_ns()}"), token)


async def test_the_audience_is_the_configured_word_and_off_without_issuers(
    gateway: InProcess, start_app: AppFactory, index: FakeIndex
) -> None:
    async with gateway.client.get("/_/oidc/audience") as response:
        assert (response.status, await response.json()) == (200, {"audience": "upload-gateway"})
    off = await start_app(index)
    async with off.client.get("/_/oidc/audience") as response:
        assert response.status == 403
        assert await response.json() == {"message": "Trusted publishing functionality not enabled"}


async def test_a_matching_id_token_mints_a_15_minute_token_that_uploads_and_is_audited_with_its_run(
    gateway: InProcess, issuer: Issuer, tmp_path: Path
) -> None:
    await add_user(gateway.config, "alice", "correct horse battery", owns=[PROJECT])
    publisher = await add_publisher(gateway.config)

    status, minted = await exchange(gateway, issuer.token(github_claims()))

    assert status == 200 and minted["success"] is True, minted
    assert minted["token"].startswith("pypi-") and abs(minted["expires"] - (time.time() + 900)) < 30
    assert (await upload(gateway, tmp_path, minted["token"])).status == 200
    [(user_name,)] = gateway.rows("SELECT user_name FROM files")
    assert user_name == f"publisher:{publisher}"
    [(detail,)] = gateway.rows("SELECT detail FROM audit WHERE event = 'upload.accepted'")
    assert json.loads(detail)["publisher"] == publisher
    assert json.loads(detail)["run"] == {
        "ref": "refs/heads/main",
        "sha": github_claims()["sha"],
        "repository": "octo-org/sampleproject",
    }
    [(caveats,)] = gateway.rows("SELECT caveats FROM tokens WHERE user_id = :id", id=publisher)
    assert json.loads(caveats)[0] == f'[4,"{publisher}",null]'
    # The issuer as the token's iss named it: its name alone says nothing once the name points elsewhere.
    [(created,)] = gateway.rows("SELECT detail FROM audit WHERE event = 'token.created'")
    assert (json.loads(created)["issuer"], json.loads(created)["issuer_url"]) == ("github", issuer.url)


async def test_the_legacy_route_mints_too(gateway: InProcess, issuer: Issuer) -> None:
    await add_user(gateway.config, "alice", "correct horse battery", owns=[PROJECT])
    await add_publisher(gateway.config)
    status, minted = await exchange(gateway, issuer.token(github_claims()), "/_/oidc/github/mint-token")
    assert status == 200, minted


async def test_refusals_on_the_wire(gateway: InProcess, issuer: Issuer) -> None:
    await add_user(gateway.config, "alice", "correct horse battery", owns=[PROJECT])
    await add_publisher(gateway.config)
    used = issuer.token(github_claims())
    assert (await exchange(gateway, used))[0] == 200
    stranger = Issuer()
    async with stranger.serve():
        foreign = stranger.token(github_claims())
    now = time.time()
    cases = {
        "replayed": (used, "invalid-reuse-token", "invalid token: already used"),
        "foreign issuer": (foreign, "invalid-payload", f"unknown trusted publishing issuer '{stranger.url}'"),
        "wrong audience": (issuer.token(github_claims(), aud="pypi"), "invalid-token", None),
        "expired": (issuer.token(github_claims(), now=now - 3600, lifetime=300), "invalid-token", None),
        "unknown kid": (issuer.token(github_claims(), key=rsa_key()), "invalid-token", None),
        "bad signature": (
            issuer.token(github_claims(), key=rsa_key(), header={"kid": issuer.signing.kid}),
            "invalid-token",
            None,
        ),
        "other workflow": (
            issuer.token(github_claims(workflow="nightly.yml")),
            "invalid-publisher",
            "valid token, but no corresponding publisher",
        ),
        "pull_request_target": (
            issuer.token(github_claims(event_name="pull_request_target")),
            "invalid-publisher",
            "pull_request_target",
        ),
    }
    for case, (id_token, code, description) in cases.items():
        status, answer = await exchange(gateway, id_token)
        assert status == 422, (case, answer)
        got_code, got_description = refusal(answer)
        assert got_code == code, (case, answer)
        if description is not None:
            assert description in got_description, (case, got_description)
    for body in (b"", b"[]", b'{"token": 7}', b"{" * 100000):
        async with gateway.client.post("/_/oidc/mint-token", data=body) as response:
            assert response.status == 422 and refusal(await response.json())[0] == "invalid-payload", body[:20]
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'upload_gateway_oidc_exchanges_total{issuer="github",outcome="invalid-reuse-token"} 1.0' in metrics
    assert 'upload_gateway_oidc_exchanges_total{issuer="unknown",outcome="invalid-payload"}' in metrics


async def test_the_minted_token_is_for_its_project_only_expires_and_burns(
    gateway: InProcess, issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_user(gateway.config, "alice", "correct horse battery", owns=[PROJECT, "other"])
    await add_publisher(gateway.config)
    minted = (await exchange(gateway, issuer.token(github_claims())))[1]["token"]

    elsewhere = await upload(gateway, tmp_path, minted, "other")
    assert elsewhere.status == 403, elsewhere.reason
    # Warehouse's words first (its tag 4 is checked first), then the project caveat's own.
    assert (elsewhere.reason or "").startswith(
        "Invalid API Token: OIDC scoped token is not valid for project 'other'"
    ), elsewhere.reason

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 901)  # the clock, 15 minutes on
    expired = await upload(gateway, tmp_path, minted)
    monkeypatch.setattr(time, "time", real)
    assert expired.status == 403 and "expired" in (expired.reason or ""), expired.reason

    fresh = (await exchange(gateway, issuer.token(github_claims())))[1]["token"]
    async with gateway.client.post("/_/oidc/burn-token", json={"token": fresh}) as response:
        assert response.status == 202
    burnt = await upload(gateway, tmp_path, fresh)
    assert burnt.status == 403 and "revoked" in (burnt.reason or ""), burnt.reason


async def test_a_pending_publisher_creates_its_project_on_first_use_and_only_while_it_is_new(
    gateway: InProcess, issuer: Issuer, tmp_path: Path
) -> None:
    alice = await add_user(gateway.config, "alice", "correct horse battery")
    await add_publisher(gateway.config, pending_owner="alice")

    status, minted = await exchange(gateway, issuer.token(github_claims()))

    assert status == 200, minted
    assert gateway.rows("SELECT role FROM roles WHERE project = :p AND user_id = :u", p=PROJECT, u=alice.id) == [
        ("owner",)
    ]
    assert (await upload(gateway, tmp_path, minted["token"])).status == 200

    await add_user(gateway.config, "bob", "correct horse battery", owns=["taken"])
    store = await Store.open(gateway.config.store.url)
    try:
        fields = accounts.publisher_fields_of(
            gateway.config.oidc, "github", repository="octo-org/taken", owner_id="123456", workflow="release.yml"
        )
        bob = await store.require_user("bob")
        await store.add_pending_publisher(
            "taken-late",
            "taken-late",
            "github",
            "github",
            fields,
            issuer_url=gateway.config.oidc.issuers[0].url,
            user=bob,
            expires=time.time() + 60,
        )
        await store.grant("taken-late", "taken-late", bob, "owner", by="tests")  # the project exists meanwhile
    finally:
        await store.close()
    status, answer = await exchange(gateway, issuer.token(github_claims(repository="taken")))
    assert status == 422 and refusal(answer) == (
        "invalid-pending-publisher",
        "valid token, but project already exists",
    ), answer


async def test_a_token_that_is_not_ascii_is_an_invalid_payload_on_both_routes(gateway: InProcess) -> None:
    """JSON can carry a lone surrogate, which no text encoding takes: PyJWT's (and the token digest's) encode
    raised on it, a 500 instead of PyPI's 422. A JWT and a macaroon token are ASCII."""
    for token in ('"\\ud800.e30.c2ln"', '"pypi-\\udcff"', '"\u00e9.e30.c2ln"'):
        for route in ("/_/oidc/mint-token", "/_/oidc/burn-token"):
            body = f'{{"token": {token}}}'.encode()
            async with gateway.client.post(route, data=body) as response:
                assert response.status == 422, (route, token, response.status)
                assert refusal(await response.json())[0] == "invalid-payload"


async def test_the_minted_token_uploads_at_once_on_a_replica_whose_clock_is_a_little_behind(
    gateway: InProcess, issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`uv publish` uploads the moment it has the token, maybe to another replica (the jti's margin allows for
    replicas' clocks that disagree): a `not_before` of exactly the minting second refused it there."""
    await add_user(gateway.config, "alice", "correct horse battery", owns=[PROJECT])
    await add_publisher(gateway.config)
    minted = (await exchange(gateway, issuer.token(github_claims())))[1]["token"]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 5)
    response = await upload(gateway, tmp_path, minted)
    monkeypatch.setattr(time, "time", real)
    assert response.status == 200, response.reason


async def test_jobs_that_mint_at_once_for_a_new_project_all_get_a_token(gateway: InProcess, issuer: Issuer) -> None:
    """A matrix of release jobs, each with its own ID token, exchanging at once for the project a pending
    publisher creates: one reifies it, the others find the publisher it became (not "project already exists")."""
    await add_user(gateway.config, "alice", "correct horse battery")
    await add_publisher(gateway.config, pending_owner="alice")
    answers = await asyncio.gather(*(exchange(gateway, issuer.token(github_claims())) for _ in range(3)))
    assert [status for status, _ in answers] == [200, 200, 200], [answer.get("errors") for _, answer in answers]
    assert gateway.rows("SELECT COUNT(*) FROM publishers") == [(1,)]


async def test_a_pending_publisher_never_takes_a_project_the_index_has_but_the_gateway_never_imported(
    gateway: InProcess, index: FakeIndex, issuer: Issuer
) -> None:
    await add_user(gateway.config, "alice", "correct horse battery")
    await add_publisher(gateway.config, pending_owner="alice")
    index.files[f"{PROJECT}-1.0.tar.gz"] = b"uploaded before the gateway"
    status, answer = await exchange(gateway, issuer.token(github_claims()))
    assert status == 422 and refusal(answer) == ("invalid-pending-publisher", "valid token, but project already exists")
    assert gateway.rows("SELECT COUNT(*) FROM projects WHERE name = :p", p=PROJECT) == [(0,)]
    assert gateway.rows("SELECT COUNT(*) FROM pending_publishers") == [(0,)]


async def test_a_job_that_finds_the_new_project_published_by_another_job_of_its_release_gets_a_token(
    gateway: InProcess, issuer: Issuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs of one release read the pending publisher; the other job reifies it and uploads before this one
    asks the index, which then lists the project: this job's claims match the publisher it became."""
    await add_user(gateway.config, "alice", "correct horse battery")
    await add_publisher(gateway.config, pending_owner="alice")
    publishing = gateway.client.app[SERVICES].trusted_publishing
    listed = publishing._project_listed
    others: list[int] = []

    async def other_job_first(name: str) -> bool:
        monkeypatch.setattr(publishing, "_project_listed", listed)  # the other job's exchange asks the index
        status, minted = await exchange(gateway, issuer.token(github_claims()))
        others.append(status)
        assert (await upload(gateway, tmp_path, minted["token"])).status == 200
        return await listed(name)

    monkeypatch.setattr(publishing, "_project_listed", other_job_first)
    status, answer = await exchange(gateway, issuer.token(github_claims()))
    assert (others, status) == ([200], 200), answer


async def test_burn_token_leaves_a_persons_token_alone(gateway: InProcess, tmp_path: Path) -> None:
    await add_user(gateway.config, "alice", "correct horse battery", owns=[PROJECT])
    token = await add_token(gateway.config, "alice")
    async with gateway.client.post("/_/oidc/burn-token", json={"token": token}) as response:
        assert response.status == 202
    assert (await upload(gateway, tmp_path, token)).status == 200


async def test_a_pending_publisher_waits_for_another_user_s_upload_of_the_project_s_first_file(
    gateway: InProcess, issuer: Issuer
) -> None:
    await add_user(gateway.config, "alice", "correct horse battery")
    bob = await add_user(gateway.config, "bob", "correct horse battery")
    await add_publisher(gateway.config, pending_owner="alice")
    store = await Store.open(gateway.config.store.url)
    try:
        assert await store.hold_claim(PROJECT, bob.id)  # bob's upload of the project's first file is on its way
        status, answer = await exchange(gateway, issuer.token(github_claims()))
        assert status == 422 and refusal(answer) == (
            "invalid-pending-publisher",
            f"valid token, but another user's upload is creating {PROJECT} right now; try again in a minute",
        ), answer
        await store.release_claim(PROJECT, bob.id)  # it failed: the name is free again
    finally:
        await store.close()
    status, minted = await exchange(gateway, issuer.token(github_claims()))
    assert status == 200, minted


async def test_a_publisher_is_bound_to_its_issuer_s_url_not_to_the_issuer_s_name(
    gateway: InProcess,
    start_app: AppFactory,
    index: FakeIndex,
    caplog: pytest.LogCaptureFixture,
    aiohttp_client: AiohttpClient,
) -> None:
    """An operator who points the issuer named "github" at another URL (a new GitHub Enterprise host, or a typo)
    must not hand that host every publisher registered for the old one: they are refused, said so at start and in
    `publisher list`, until added again."""
    await add_user(gateway.config, "alice", "correct horse battery", owns=[PROJECT])
    publisher = await add_publisher(gateway.config)
    moved = Issuer()
    async with moved.serve():
        with caplog.at_level(logging.WARNING, logger="gateway"):
            repointed = await start_app(
                index, oidc={"issuers": [{"name": "github", "url": moved.url, "kind": "github"}]}
            )
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(publisher in line and moved.url in line and "publisher list" in line for line in warnings), warnings
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gateway"):  # a worker of several other than the first
            await aiohttp_client(create_app(repointed.config, start_warnings=False), server_kwargs=SERVER_OPTIONS)
        assert not [r for r in caplog.records if publisher in r.getMessage()]

        status, answer = await exchange(repointed, moved.token(github_claims()))
        assert status == 422 and refusal(answer)[0] == "invalid-publisher", answer

        store = await Store.open(repointed.config.store.url)
        try:
            [row] = await accounts.list_publishers(store, PROJECT, repointed.config.oidc)
            assert row["id"] == publisher and row["issuer_url"] != moved.url
            assert row["refused"] is not None and moved.url in row["refused"], row
        finally:
            await store.close()
        again = await add_publisher(repointed.config)  # its owner trusts the new URL: the same publisher, again
        status, minted = await exchange(repointed, moved.token(github_claims()))
        assert status == 200, minted
        assert repointed.rows("SELECT user_id FROM tokens WHERE run IS NOT NULL") == [(again,)]
