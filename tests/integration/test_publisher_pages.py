"""The trusted-publisher pages in-process: only a project's owners list, add and remove its publishers, an id of
another project's publisher removes nothing, and pending publishers for names to come (tests/e2e/test_web.py
drives the same pages in Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest
from packaging.utils import canonicalize_name

from gateway import accounts
from gateway.authentication import TokenSettings
from gateway.config import Config, token_location
from gateway.crypto import server_secret
from gateway.store import Store
from tests.dists import make_wheel
from tests.harness.accounts import add_user
from tests.harness.fake_index import FakeIndex
from tests.harness.inprocess import InProcess
from tests.integration.conftest import AppFactory

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
ISSUERS = [
    {"name": "github", "url": "https://token.actions.githubusercontent.com", "kind": "github"},
    {"name": "gitlab", "url": "https://gitlab.example", "kind": "gitlab"},
]
GITHUB = {"repository": "octo-org/sampleproject", "owner_id": "123456", "workflow": "release.yml"}


@pytest.fixture
async def gateway(start_app: AppFactory, index: FakeIndex) -> InProcess:
    return await start_app(index, oidc={"issuers": ISSUERS})


async def _csrf(gateway: InProcess, path: str) -> str:
    page = await gateway.client.get(path)
    assert page.status == 200, (path, page.status, await page.text())
    found = CSRF.search(await page.text())
    assert found is not None, path
    return found.group(1)


async def _post(
    gateway: InProcess, path: str, fields: dict[str, str], *, form_at: str | None = None
) -> aiohttp.ClientResponse:
    """The form at `form_at` (default `path`) posted to `path`, with its CSRF token, as a browser posts it."""
    data = {**fields, "csrf_token": await _csrf(gateway, form_at or path)}
    return await gateway.client.post(path, data=data, headers={"Origin": "http://gateway.test"})


async def _sign_in(gateway: InProcess, name: str, *, confirm: bool = True) -> None:
    signed_in = await _post(gateway, "/account/login", {"username": name, "password": PASSWORD})
    assert signed_in.status == 200, await signed_in.text()
    if confirm:
        again = await _post(gateway, "/account/confirm", {"password": PASSWORD, "next": "/account/projects"})
        assert again.status == 200


async def _publisher(config: Config, project: str, *, pending_owner: str | None = None) -> str:
    """What `publisher add` does: the id of a GitHub publisher of `project` (pending, owned by `pending_owner`)."""
    store = await Store.open(config.store.url)
    try:
        fields = accounts.publisher_fields_of(config.oidc, "github", **GITHUB)
        if pending_owner is not None:
            owner = await store.require_user(pending_owner)
            name = canonicalize_name(project)
            return (await accounts.add_pending_publisher(store, config.oidc, name, project, "github", fields, owner)).id
        return (await accounts.add_publisher(store, config.oidc, project, "github", fields, by="tests")).id
    finally:
        await store.close()


async def test_an_owner_cannot_remove_another_projects_publisher_by_its_id(gateway: InProcess) -> None:
    await add_user(gateway.config, "mallory", PASSWORD, owns=["mallory-lib"])
    await add_user(gateway.config, "bob", PASSWORD, owns=["bob-lib"])
    victim = await _publisher(gateway.config, "bob-lib")
    pending_victim = await _publisher(gateway.config, "bob-next", pending_owner="bob")
    await _sign_in(gateway, "mallory")
    own_form = "/account/projects/mallory-lib/publishers"
    headers = {"Origin": "http://gateway.test"}
    csrf = await _csrf(gateway, own_form)

    for path in (
        f"/account/projects/mallory-lib/publishers/{victim}/remove",  # her own project's path, bob's publisher
        f"/account/projects/bob-lib/publishers/{victim}/remove",  # bob's project, which she does not own
        f"/account/publishers/pending/{pending_victim}/remove",  # bob's pending publisher
        f"/account/projects/mallory-lib/publishers/{pending_victim}/remove",
    ):
        shown = await gateway.client.get(path)
        posted = await gateway.client.post(path, data={"csrf_token": csrf}, headers=headers)
        assert (shown.status, posted.status) == (404, 404), path

    assert gateway.rows("SELECT id FROM publishers") == [(victim,)]
    assert gateway.rows("SELECT id FROM pending_publishers") == [(pending_victim,)]
    listed = await gateway.client.get("/account/projects/bob-lib/publishers")
    assert listed.status == 404  # nor may she read which workflows bob's project trusts


async def test_a_maintainer_may_neither_see_nor_add_publishers(gateway: InProcess) -> None:
    owner = await add_user(gateway.config, "olga", PASSWORD, owns=["demo"])
    await add_user(gateway.config, "max", PASSWORD)
    store = await Store.open(gateway.config.store.url)
    try:
        maintainer = await store.require_user("max")
        await store.grant("demo", "demo", maintainer, "maintainer", by=owner.name)
    finally:
        await store.close()
    publisher = await _publisher(gateway.config, "demo")
    await _sign_in(gateway, "max")

    projects = await gateway.client.get("/account/projects")
    assert "owners only" in await projects.text() and "/account/projects/demo/publishers" not in await projects.text()
    page = await gateway.client.get("/account/projects/demo/publishers")
    assert page.status == 404 and "No such project among those you own" in await page.text()
    csrf = await _csrf(gateway, "/account/projects")
    headers = {"Origin": "http://gateway.test"}
    fields = {**GITHUB, "issuer": "github", "workflow": "other.yml", "csrf_token": csrf}
    added = await gateway.client.post("/account/projects/demo/publishers", data=fields, headers=headers)
    removed = await gateway.client.post(
        f"/account/projects/demo/publishers/{publisher}/remove", data={"csrf_token": csrf}, headers=headers
    )
    assert (added.status, removed.status) == (404, 404)
    assert gateway.rows("SELECT id FROM publishers") == [(publisher,)]


async def test_an_owner_adds_lists_and_removes_a_publisher_after_confirming(gateway: InProcess) -> None:
    await add_user(gateway.config, "alice", PASSWORD, owns=["Demo"])
    await _sign_in(gateway, "alice", confirm=False)
    projects = await gateway.client.get("/account/projects")
    assert 'href="/account/projects/demo/publishers"' in await projects.text()
    path = "/account/projects/demo/publishers"

    unconfirmed = await _post(gateway, path, {**GITHUB, "issuer": "github"})
    assert unconfirmed.url.path == "/account/confirm"  # the password again first: a publisher mints tokens
    assert gateway.rows("SELECT id FROM publishers") == []
    confirmed = await _post(gateway, "/account/confirm", {"password": PASSWORD, "next": path})
    assert confirmed.url.path == path

    for given, error in (
        ({**GITHUB, "owner_id": "octo"}, "repository_owner_id: Specify the owner&#39;s numeric id"),
        ({**GITHUB, "workflow": ""}, "A github publisher needs the repository (OWNER/REPO), the owner&#39;s id"),
    ):
        refused = await _post(gateway, path, {**given, "issuer": "github"})
        shown = await refused.text()
        one_line = f'<p class="error" role="alert">{re.escape(error)}[^<\n]*</p>'
        assert refused.status == 400 and re.search(one_line, shown), shown
    assert gateway.rows("SELECT id FROM publishers") == []
    unknown = await _post(gateway, path, {**GITHUB, "issuer": "elsewhere"})
    assert unknown.status == 400 and "Choose an issuer from the list" in await unknown.text()

    added = await _post(gateway, path, {**GITHUB, "issuer": "github", "environment": "<i>PyPI</i>"})
    listing = await added.text()
    assert added.status == 200 and added.url.path == path and "<i>" not in listing
    described = "GitHub octo-org/sampleproject, workflow release.yml, environment &lt;i&gt;pypi&lt;/i&gt;"
    assert f"Demo may now be published by {described}." in listing
    assert f'<td data-label="Publisher">{described}<br>' in listing
    [(publisher,)] = gateway.rows("SELECT id FROM publishers WHERE project = 'demo'")
    assert f'data-publisher-id="{publisher}"' in listing
    again = await _post(gateway, path, {**GITHUB, "issuer": "github", "environment": "<i>pypi</i>"})
    assert again.status == 400 and "demo has that publisher already" in await again.text()

    remove = f"{path}/{publisher}/remove"
    confirmation = await gateway.client.get(remove)
    assert "every token it was given is revoked" in await confirmation.text()
    removed = await _post(gateway, remove, {})
    assert removed.url.path == path and "its tokens are revoked" in await removed.text()
    assert gateway.rows("SELECT id FROM publishers") == []
    assert gateway.rows("SELECT user_name FROM audit WHERE event = 'publisher.added'") == [("alice",)]
    [(detail,)] = gateway.rows("SELECT detail FROM audit WHERE event = 'publisher.removed'")
    assert json.loads(detail)["by"] == "alice"


async def test_each_issuer_shows_the_fields_of_its_kind(gateway: InProcess) -> None:
    await add_user(gateway.config, "alice", PASSWORD, owns=["demo"])
    await _sign_in(gateway, "alice")
    path = "/account/projects/demo/publishers"

    github = await (await gateway.client.get(path)).text()
    gitlab = await (await gateway.client.get(f"{path}?issuer=gitlab")).text()
    assert 'name="owner_id"' in github and 'name="namespace"' not in github
    assert 'name="namespace"' in gitlab and 'name="ci_config"' in gitlab and 'name="owner_id"' not in gitlab

    fields = {"issuer": "gitlab", "namespace": "group", "project_path": "demo", "ci_config": ".gitlab-ci.yml"}
    added = await _post(gateway, path, fields)
    assert "may now be published by GitLab group/demo, CI config .gitlab-ci.yml" in await added.text()


async def test_a_pending_publisher_for_a_name_to_come(gateway: InProcess) -> None:
    alice = await add_user(gateway.config, "alice", PASSWORD, owns=["demo"])
    await _sign_in(gateway, "alice")
    path = "/account/publishers/pending"

    exists = await _post(gateway, path, {**GITHUB, "issuer": "github", "name": "Demo"})
    assert exists.status == 400 and "demo exists" in await exists.text()
    added = await _post(gateway, path, {**GITHUB, "issuer": "github", "name": "New_Thing"})
    shown = await added.text()
    assert added.url.path == path and "The first publish of New_Thing" in shown
    [(pending, project, owner)] = gateway.rows("SELECT id, project, added_by FROM pending_publishers")
    assert (project, owner) == ("new-thing", alice.id) and f'data-publisher-id="{pending}"' in shown

    removed = await _post(gateway, f"{path}/{pending}/remove", {})
    assert removed.url.path == path and "The pending publisher of New_Thing is removed." in await removed.text()
    assert gateway.rows("SELECT id FROM pending_publishers") == []


async def test_removing_a_publisher_on_its_page_stops_its_minted_token_at_once(
    gateway: InProcess, tmp_path: Path
) -> None:
    await add_user(gateway.config, "alice", PASSWORD, owns=["demo"])
    publisher = await _publisher(gateway.config, "demo")
    store = await Store.open(gateway.config.store.url)
    try:
        principal, project = await store.get_user_by_id(publisher), (await store.project_access("demo", publisher))[0]
        assert principal is not None and project is not None
        settings = TokenSettings(
            gateway.config.tokens.prefix, token_location(gateway.config), server_secret(gateway.config)
        )
        token, _ = await accounts.mint_publisher_token(
            store, settings, principal, project, description="ci", lifetime=900, run={}, audit={}
        )
    finally:
        await store.close()
    accepted = await gateway.upload(make_wheel(tmp_path, "demo", "1.0"), token)
    assert accepted.status == 200, await accepted.text()  # the token's row is now cached by the serving process
    await _sign_in(gateway, "alice")

    await _post(gateway, f"/account/projects/demo/publishers/{publisher}/remove", {})

    refused = await gateway.upload(make_wheel(tmp_path, "demo", "1.1"), token)
    assert refused.status == 403, await refused.text()


async def test_a_publisher_whose_issuer_now_names_another_url_is_shown_refused(
    gateway: InProcess, start_app: AppFactory, index: FakeIndex
) -> None:
    await add_user(gateway.config, "olga", PASSWORD, owns=["demo"])
    await _publisher(gateway.config, "demo")
    await _publisher(gateway.config, "demo-next", pending_owner="olga")
    moved = [{**ISSUERS[0], "url": "https://ghes.example.com/_services/token"}, ISSUERS[1]]
    repointed = await start_app(index, oidc={"issuers": moved})
    await _sign_in(repointed, "olga")
    for path in ("/account/projects/demo/publishers", "/account/publishers/pending"):
        page = await (await repointed.client.get(path)).text()
        assert "Refused: issuer &#39;github&#39; is now https://ghes.example.com/_services/token" in page, path


async def test_a_pending_publisher_is_no_way_round_new_projects_deny(start_app: AppFactory, index: FakeIndex) -> None:
    """`policy.new_projects = "deny"`: new projects need an administrator. A pending publisher added on the pages
    would create one on its first publish, owned by whoever added it: refused, with what the administrator runs
    instead (`publisher add --pending --owner`, which stays theirs to decide)."""
    gateway = await start_app(index, oidc={"issuers": ISSUERS}, policy={"new_projects": "deny"})
    await add_user(gateway.config, "alice", PASSWORD)
    await _sign_in(gateway, "alice")
    path = "/account/publishers/pending"

    refused = await _post(gateway, path, {**GITHUB, "issuer": "github", "name": "New_Thing"})

    assert refused.status == 403, await refused.text()
    assert "new projects need an administrator" in await refused.text()
    assert "publisher add New_Thing --pending --owner alice" in await refused.text()
    assert gateway.rows("SELECT id FROM pending_publishers") == []
