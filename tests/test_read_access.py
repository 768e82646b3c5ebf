"""The read guard of private indexes, on a real SQLite store: who may read what, before anything is fetched."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import pymacaroons
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import read_access, tokens
from gateway.accounts import create_token
from gateway.authentication import Authenticator, TokenSettings
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.guard import Guard
from gateway.logs import FIELDS
from gateway.metrics import Metrics
from gateway.password_checks import PasswordChecks
from gateway.passwords import hash_password
from gateway.read_access import OTHER, ROOT, ReadGrant, ReadGuard, ReadTarget, root_page
from gateway.reads.handler import read_target
from gateway.reads.paths import IndexLayout, decide
from gateway.store import Project, Store, User
from gateway.throttle import Rules
from tests.harness import database

SETTINGS = TokenSettings(prefix="pypi", location="gateway.test", server_secret=b"k" * 32)
PASSWORD = "correct horse battery"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
LAYOUT = IndexLayout.build("http://index.test/", file_roots=["packages/", "root/pypi/+f/"])


def target_of(raw_target: str) -> ReadTarget:
    """What the read handler asks the guard about: the allowlist's route, or `other` when it refuses the path (a
    refused path is never read, so `other`, which only a reader of everything may see, is the strict stand-in)."""
    try:
        return read_target(decide(raw_target, LAYOUT))
    except GatewayError:
        return OTHER


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/simple/", ROOT),
        ("/simple", ROOT),
        ("/simple/demo/", ReadTarget("project", "demo")),
        ("/simple/Demo_Pkg", ReadTarget("project", "demo-pkg")),
        ("/packages/demo_pkg-1.0-py3-none-any.whl", ReadTarget("file", "demo-pkg")),
        ("/packages/demo_pkg-1.0-py3-none-any.whl.metadata", ReadTarget("file", "demo-pkg")),
        ("/packages/Demo.Pkg-1.0.tar.gz", ReadTarget("file", "demo-pkg")),
        ("/root/pypi/+f/abc/demo-1.0.zip", ReadTarget("file", "demo")),
        ("/packages/demo%2D1.0.tar.gz", ReadTarget("file", "demo")),
        # Anything that could read as another path to the index names no project.
        ("/", OTHER),
        ("/simple/demo/other/", OTHER),
        ("/simple/-bad-/", OTHER),
        ("/simple/a/../b/", OTHER),
        ("/simple/a/%2e%2e/b/", OTHER),
        ("/simple/b%2fx/", OTHER),
        ("/simple//b/", OTHER),
        ("//simple/b/", OTHER),
        ("/packages/..%2fdemo-1.0.tar.gz", OTHER),
        ("/packages/x%5cdemo-1.0.tar.gz", OTHER),
        ("/packages/%252e%252e/demo-1.0.tar.gz", OTHER),
        ("/packages/./demo-1.0.tar.gz", OTHER),
        ("/packages/demo-1.0.exe", OTHER),
        ("/packages/not a dist.whl", OTHER),
        ("/+login", OTHER),
        ("http://evil/simple/demo/", OTHER),
    ],
)
def test_targets(path: str, expected: ReadTarget) -> None:
    assert target_of(path) == expected


def test_a_filtered_root_page_escapes_and_lists_only_the_grant() -> None:
    page = root_page([("a", "A"), ("b", "B<script>")], ReadGrant(frozenset({"b"})))
    assert '<a href="/simple/b/">B&lt;script&gt;</a>' in page and "/simple/a/" not in page


def test_authenticated_answers_are_private_to_shared_caches() -> None:
    assert ReadGrant(authenticated=True).cache_control("public, max-age=60") == "private, max-age=60"
    assert ReadGrant().cache_control("public, max-age=60") == "public, max-age=60"


class World:
    """A store with users alice (no 2FA) and carol (2FA), projects a and b (alice owns both)."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self.authenticator = Authenticator(
            store, SETTINGS, metrics, PasswordChecks(workers=2, queue=64, metrics=metrics)
        )
        self.throttle = Guard(store, Rules.of(load_config(None, {}).throttle), metrics, server_secret=b"k" * 32)
        self.guard = self.read_guard("authenticated")
        self.alice: User
        self.projects: dict[str, Project] = {}

    def read_guard(self, access: Literal["public", "authenticated"]) -> ReadGuard:
        return ReadGuard(
            access, self.store, self.authenticator, self.metrics, guard=self.throttle, public_url="http://gw.test"
        )

    async def token(self, *scope: str, permissions: tuple[str, ...] = ("read", "upload")) -> str:
        token, _ = await create_token(
            self.store,
            SETTINGS,
            self.alice,
            description="t",
            projects=[self.projects[name] for name in scope],
            expires_at=None,
            permissions=permissions,
        )
        return token

    async def read(self, authorization: str | None, path: str, address: str = "192.0.2.1") -> ReadGrant:
        headers = {"Authorization": authorization} if authorization is not None else {}
        request = make_mocked_request("GET", path, headers=headers)
        request[FIELDS] = {"client": address}  # as the access middleware leaves it
        return await self.guard.authorize_target(request, target_of(path))

    async def refusal(self, authorization: str | None, path: str, address: str = "192.0.2.1") -> GatewayError:
        with pytest.raises(GatewayError) as excinfo:
            await self.read(authorization, path, address)
        return excinfo.value

    def refused(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value("upload_gateway_reads_refused_total", {"reason": reason})
        return value or 0.0


@pytest.fixture
async def world(store_url: str) -> AsyncIterator[World]:
    store = await Store.open(store_url)
    world = World(store, Metrics())
    password_hash = hash_password(PASSWORD)
    world.alice = await store.add_user("alice", password_hash)
    carol = await store.add_user("carol", password_hash)
    await store.set_totp(carol, b"sealed", [], by="test")
    for name in ("a", "b"):
        await store.grant(name, name.upper(), world.alice, "owner", by="test")
        project, _, _ = await store.project_access(name, world.alice.id)
        assert project is not None
        world.projects[name] = project
    yield world
    await store.close()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def token_auth(token: str) -> str:
    return basic("__token__", token)


def attenuate(token: str, *predicates: bytes) -> str:
    macaroon = pymacaroons.Macaroon.deserialize(token.removeprefix("pypi-"))
    for predicate in predicates:
        macaroon.add_first_party_caveat(predicate)
    return f"pypi-{macaroon.serialize()}"


async def test_public_reads_need_nothing(world: World) -> None:
    guard = world.read_guard("public")
    assert (
        await guard.authorize_target(make_mocked_request("GET", "/simple/a/"), ReadTarget("project", "a"))
        == ReadGrant()
    )


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "read_credentials_required"),
        ("Digest x", "bad_credentials"),
        (basic("alice", "wrong password"), "invalid_credentials"),
        (basic("nobody", PASSWORD), "invalid_credentials"),
        (basic("__token__", "pypi-garbage"), "invalid_token"),
        (basic("__token__", "not-a-token"), "invalid_token"),
    ],
)
async def test_no_or_wrong_credentials_get_a_401_challenge(
    world: World, authorization: str | None, reason: str
) -> None:
    refusal = await world.refusal(authorization, "/simple/a/")
    assert (refusal.status, refusal.reason) == (401, reason)
    assert refusal.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert world.refused(reason) == 1


async def test_a_password_reads_everything_but_not_for_a_2fa_account(world: World) -> None:
    assert await world.read(basic("alice", PASSWORD), "/simple/b/") == ReadGrant(authenticated=True)
    refusal = await world.refusal(basic("carol", PASSWORD), "/simple/a/")
    assert (refusal.status, refusal.reason) == (403, "password_with_2fa")
    assert "two-factor" in refusal.message and "http://gw.test/account/tokens" in refusal.message


async def test_one_argon2_check_per_password_while_cached(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[str] = []
    real = read_access.verify_password

    def counted(password_hash: str, password: str) -> bool:
        checks.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(read_access, "verify_password", counted)
    await asyncio.gather(*(world.read(basic("alice", PASSWORD), f"/simple/{'ab'[i % 2]}/") for i in range(20)))
    await world.read(basic("alice", PASSWORD), "/packages/" + WHEEL)
    assert len(checks) == 1
    for _ in range(3):  # a wrong password is never remembered
        await world.refusal(basic("alice", "wrong password"), "/simple/a/")
    assert len(checks) == 4
    assert PASSWORD not in repr(world.guard._passwords.keys())


async def test_sixty_concurrent_wrong_read_passwords_run_five_checks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Password reads go through the sign-in throttle: counted before checked, 429 with Retry-After past it."""
    checks: list[str] = []
    real = read_access.verify_password

    def counted(password_hash: str, password: str) -> bool:
        checks.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(read_access, "verify_password", counted)
    answers = await asyncio.gather(
        *(world.refusal(basic("alice", f"guess {n}"), "/simple/a/") for n in range(60)), return_exceptions=True
    )
    reasons = sorted(a.reason for a in answers if isinstance(a, GatewayError))
    assert reasons == ["invalid_credentials"] * 5 + ["throttled"] * 55 and len(checks) == 5
    locked = await world.refusal(basic("alice", PASSWORD), "/simple/a/")  # the right one too, from this address
    assert locked.status == 429 and int(locked.headers["Retry-After"]) > 0 and len(checks) == 5
    assert world.refused("throttled") == 56
    assert await world.read(basic("alice", PASSWORD), "/simple/a/", "198.51.100.7") == ReadGrant(authenticated=True)


async def test_a_password_cached_for_one_address_does_not_skip_the_lock_of_another(world: World) -> None:
    """The owner's pip install from 198.51.100.7 leaves its password cached; an attacker locked out at 192.0.2.1
    who guesses it still gets 429, not a cache hit that would confirm it."""
    await world.read(basic("alice", PASSWORD), "/simple/a/", "198.51.100.7")
    for n in range(5):
        assert (await world.refusal(basic("alice", f"guess {n}"), "/simple/a/")).reason == "invalid_credentials"
    assert (await world.refusal(basic("alice", PASSWORD), "/simple/a/")).reason == "throttled"


async def test_a_2fa_accounts_password_gets_one_answer_right_or_wrong_and_is_never_checked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    monkeypatch.setattr(read_access, "verify_password", lambda stored, password: checks.append(password) or False)
    answers = [await world.refusal(basic("carol", p), "/simple/a/") for p in (PASSWORD, "wrong", "wrong again")]
    assert {(a.status, a.reason, a.message) for a in answers} == {
        (answers[0].status, "password_with_2fa", answers[0].message)
    }
    assert checks == []


async def test_a_changed_password_or_removed_user_counts_at_once(world: World, store_url: str) -> None:
    await world.read(basic("alice", PASSWORD), "/simple/a/")
    changed = hash_password("new password!")
    database.execute(store_url, "UPDATE users SET password_hash = :changed WHERE name = 'alice'", changed=changed)
    assert (await world.refusal(basic("alice", PASSWORD), "/simple/a/")).reason == "invalid_credentials"
    await world.read(basic("alice", "new password!"), "/simple/a/")
    database.execute(store_url, "DELETE FROM users WHERE name = 'alice'")
    assert (await world.refusal(basic("alice", "new password!"), "/simple/a/")).reason == "invalid_credentials"


async def test_enrolling_2fa_stops_password_reads_at_once(world: World) -> None:
    await world.read(basic("alice", PASSWORD), "/simple/a/")
    await world.store.set_totp(world.alice, b"sealed", [], by="test")
    assert (await world.refusal(basic("alice", PASSWORD), "/simple/a/")).reason == "password_with_2fa"


async def test_an_upload_token_cannot_read(world: World) -> None:
    token = await world.token(permissions=("upload",))
    for path in ("/simple/", "/simple/a/", "/packages/" + WHEEL):
        refusal = await world.refusal(token_auth(token), path)
        assert (refusal.status, refusal.reason) == (403, "read_not_granted")


async def test_a_read_token_reads_everything_and_a_revocation_counts_at_once(world: World) -> None:
    token = await world.token()
    for path in ("/simple/", "/simple/a/", "/simple/b/", "/packages/" + WHEEL, "/simple/unknown/"):
        assert await world.read(token_auth(token), path) == ReadGrant(authenticated=True)
    row_id = tokens.parse(token, prefix="pypi").token_id
    await world.store.revoke_token(row_id, by="test")  # in the store only: the authenticator's row cache is warm
    refusal = await world.refusal(token_auth(token), "/simple/a/")
    assert (refusal.status, refusal.reason) == (401, "revoked_token")


async def test_a_scoped_read_token_sees_only_its_projects(world: World) -> None:
    token = await world.token("a")
    assert await world.read(token_auth(token), "/simple/a/") == ReadGrant(frozenset({"a"}), authenticated=True)
    assert await world.read(token_auth(token), "/packages/a-1.0.tar.gz") == ReadGrant(frozenset({"a"}), True)
    assert await world.read(token_auth(token), "/simple/") == ReadGrant(frozenset({"a"}), authenticated=True)
    for path in ("/simple/b/", "/packages/b-1.0.tar.gz", "/packages/b-1.0-py3-none-any.whl", "/", "/simple/x/"):
        refusal = await world.refusal(token_auth(token), path)
        assert (refusal.status, refusal.reason) == (404, "read_outside_scope"), path


async def test_a_holder_narrows_scope_and_permission_offline(world: World) -> None:
    token = await world.token()
    narrowed = attenuate(token, b'[1,["b"]]')
    assert (await world.read(token_auth(narrowed), "/simple/")).projects == frozenset({"b"})
    assert (await world.refusal(token_auth(narrowed), "/simple/a/")).reason == "read_outside_scope"
    upload_only = attenuate(token, b'["upload-gateway:permissions",["upload"]]')
    refusal = await world.refusal(token_auth(upload_only), "/simple/a/")
    assert (refusal.status, refusal.reason) == (403, "invalid_token")
    assert "not valid for read" in refusal.message and world.refused("invalid_token") == 1
    assert world.refused("read_outside_scope") == 1
    by_id_only = attenuate(token, json.dumps([2, [world.projects["a"].id]]).encode())
    assert (await world.read(token_auth(by_id_only), "/simple/")).projects == frozenset({"a"})


async def test_a_root_scoped_by_project_id_costs_no_check_per_project_of_the_store(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #14 review: a holder narrows a token by id alone ([2, [id]]); its root must not look up every project the
    store has (one query each, on every request of that root)."""
    for index in range(200):
        await world.store.grant(f"p{index}", f"P{index}", world.alice, "owner", by="test")
    lookups: list[str] = []
    project_access = world.store.project_access

    async def counted(name: str, user_id: str) -> Any:
        lookups.append(name)
        return await project_access(name, user_id)

    monkeypatch.setattr(world.store, "project_access", counted)
    by_id_only = attenuate(await world.token(), json.dumps([2, [world.projects["a"].id]]).encode())
    assert (await world.read(token_auth(by_id_only), "/simple/")).projects == frozenset({"a"})
    assert lookups == ["a"]


async def test_a_read_only_copy_still_reads(world: World) -> None:
    token = attenuate(await world.token(), b'["upload-gateway:permissions",["read"]]')
    assert await world.read(token_auth(token), "/simple/a/") == ReadGrant(authenticated=True)


# Every caveat a holder could add: each known tag with values that pass and that fail, the gateway's own tag
# granting everything, unknown tags, Warehouse's legacy objects, and garbage.
KNOWN_CAVEATS = [
    b"[0,4102444800,0]",
    b"[0,1,0]",
    b'[1,["a"]]',
    b'[1,["a","b"]]',
    b"[1,[]]",
    b'[2,["x"]]',
    b'[3,"someone"]',
    b'[4,"publisher"]',
    b'["upload-gateway:permissions",["read"]]',
    b'["upload-gateway:permissions",["read","upload"]]',
    b'["upload-gateway:permissions",["upload"]]',
    b'["upload-gateway:permissions",["admin"]]',
    b'["upload-gateway:read"]',
    b'["read"]',
    b"[5]",
    b"[true]",
    b'{"version": 1, "permissions": "user"}',
    b'{"version": 1, "permissions": {"projects": ["a"]}}',
    b'{"permissions": "read"}',
    b"{}",
    b"[]",
    b"null",
    b"",
    b"not json",
]


@pytest.mark.parametrize("caveat", KNOWN_CAVEATS)
async def test_no_caveat_lets_an_upload_token_read(world: World, caveat: bytes) -> None:
    token = await world.token(permissions=("upload",))
    for path in ("/simple/", "/simple/a/", "/packages/a-1.0.tar.gz"):
        assert (await world.refusal(token_auth(attenuate(token, caveat)), path)).status in (403, 404)


@settings(database=None, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    caveats=st.lists(
        st.one_of(
            st.sampled_from(KNOWN_CAVEATS),
            st.text(max_size=30).map(str.encode),
            st.builds(lambda tag, value: json.dumps([tag, value]).encode(), st.integers() | st.text(), st.text()),
        ),
        min_size=1,
        max_size=3,
    ),
    path=st.sampled_from(["/simple/", "/simple/a/", "/packages/a-1.0.tar.gz", "/other"]),
)
async def test_no_caveats_at_all_let_an_upload_token_read(world: World, caveats: list[bytes], path: str) -> None:
    token = attenuate(await world.token(permissions=("upload",)), *caveats)
    refusal = await world.refusal(token_auth(token), path)
    assert refusal.status in (401, 403, 404)
