"""`KeySets` against a real OIDC issuer on loopback: what is fetched, when, and what is kept when the issuer fails."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest

from gateway.config import OIDCIssuer
from gateway.oidc.keys import MAX_DOCUMENT, KeySets
from tests.harness.oidc_issuer import Fault, Issuer, ec_key, ed25519_key, rsa_key


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def configured(issuer: Issuer, *, name: str = "test", jwks_url: str = "") -> OIDCIssuer:
    return OIDCIssuer(name=name, url=issuer.url, kind="github", jwks_url=jwks_url)


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    issuer = Issuer()
    async with issuer.serve():
        yield issuer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def keys(session: aiohttp.ClientSession, clock: Clock) -> AsyncIterator[KeySets]:
    keys = KeySets(session, clock=clock)
    yield keys
    await keys.close()


async def test_the_keys_are_found_through_discovery_and_fetched_once(issuer: Issuer, keys: KeySets) -> None:
    key = await keys.key(configured(issuer), issuer.signing.kid)
    assert key is not None and key.algorithm_name == "RS256"
    assert issuer.requests == ["discovery", "jwks"]
    assert await keys.key(configured(issuer), issuer.signing.kid) is key
    assert issuer.requests == ["discovery", "jwks"]


async def test_a_jwks_url_is_fetched_instead_of_discovery(issuer: Issuer, keys: KeySets) -> None:
    issuer.fault = "wrong_issuer"  # discovery would be refused: it is not asked
    assert await keys.key(configured(issuer, jwks_url=issuer.jwks_url), issuer.signing.kid) is not None
    assert issuer.requests == ["jwks"]


async def test_an_issuer_url_with_a_path_and_a_trailing_slash_finds_its_discovery(
    session: aiohttp.ClientSession,
) -> None:
    """Forgejo's issuer is https://host/api/actions; OpenID Connect Discovery drops one trailing slash."""
    issuer = Issuer(path="/api/actions")
    async with issuer.serve():
        keys = KeySets(session)
        assert await keys.key(configured(issuer), issuer.signing.kid) is not None
        assert issuer.requests == ["discovery", "jwks"]


async def test_an_unknown_kid_refreshes_once_then_waits_out_the_cooldown(
    issuer: Issuer, keys: KeySets, clock: Clock
) -> None:
    first = issuer.signing.kid
    assert await keys.key(configured(issuer), first) is not None
    assert await keys.key(configured(issuer), "unknown") is None  # the first fetch began the cooldown
    assert issuer.requests == ["discovery", "jwks"]
    clock.advance(60)
    assert await keys.key(configured(issuer), "unknown") is None
    assert issuer.requests == ["discovery", "jwks"] * 2
    rotated = issuer.rotate()
    clock.advance(59)
    assert await keys.key(configured(issuer), rotated.kid) is None  # within the cooldown: not even asked
    assert await keys.key(configured(issuer), "another") is None
    assert issuer.requests == ["discovery", "jwks"] * 2
    clock.advance(1)
    assert await keys.key(configured(issuer), rotated.kid) is not None
    assert await keys.key(configured(issuer), first) is not None  # still listed beside the new one
    assert issuer.requests == ["discovery", "jwks"] * 3


async def test_the_cooldown_counts_from_each_attempt_even_a_failed_one(
    issuer: Issuer, keys: KeySets, clock: Clock
) -> None:
    """Warehouse sets its cooldown only after a fetch that worked; here every attempt counts, so tokens with
    made-up key ids cannot make the gateway hammer an issuer that is failing."""
    issuer.fault = "unavailable"
    for _ in range(5):
        assert await keys.key(configured(issuer), issuer.signing.kid) is None
        clock.advance(10)
    assert issuer.requests == ["discovery"]
    clock.advance(10)
    issuer.fault = None
    assert await keys.key(configured(issuer), issuer.signing.kid) is not None


async def test_a_retired_key_is_gone_after_the_next_refresh(issuer: Issuer, keys: KeySets, clock: Clock) -> None:
    old = issuer.signing.kid
    assert await keys.key(configured(issuer), old) is not None
    new = issuer.rotate(retire=True).kid
    clock.advance(60)
    assert await keys.key(configured(issuer), new) is not None
    assert keys.held(configured(issuer)) == {new}
    assert await keys.key(configured(issuer), old) is None


async def test_lookups_at_once_share_one_fetch(issuer: Issuer, keys: KeySets, clock: Clock) -> None:
    issuer.delay = 0.2
    found = await asyncio.gather(*(keys.key(configured(issuer), issuer.signing.kid) for _ in range(20)))
    assert all(key is not None for key in found)
    assert issuer.requests == ["discovery", "jwks"]
    clock.advance(60)
    assert await asyncio.gather(*(keys.key(configured(issuer), f"kid-{n}") for n in range(20))) == [None] * 20
    assert issuer.requests == ["discovery", "jwks"] * 2


async def test_a_cancelled_lookup_leaves_the_fetch_to_the_others(issuer: Issuer, keys: KeySets) -> None:
    issuer.delay = 0.3
    cancelled = asyncio.ensure_future(keys.key(configured(issuer), issuer.signing.kid))
    waiting = asyncio.ensure_future(keys.key(configured(issuer), issuer.signing.kid))
    await asyncio.sleep(0.1)
    cancelled.cancel()
    assert await waiting is not None
    assert cancelled.cancelled()
    assert issuer.requests == ["discovery", "jwks"]


@pytest.mark.parametrize(
    "fault",
    [
        "unavailable",
        "redirect",
        "not_json",
        "no_jwks_uri",
        "insecure_jwks_uri",
        "wrong_issuer",
        "no_keys",
        "huge",
        "huge_chunked",
        "deep",
    ],
)
async def test_a_failed_refresh_keeps_the_keys_held(
    issuer: Issuer, keys: KeySets, clock: Clock, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    old = issuer.signing.kid
    old_key = await keys.key(configured(issuer), old)
    assert old_key is not None
    new = issuer.rotate(retire=True).kid
    issuer.fault = fault
    clock.advance(60)
    with caplog.at_level(logging.INFO, logger="gateway.oidc"):
        assert await keys.key(configured(issuer), new) is None
    assert await keys.key(configured(issuer), old) is old_key
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "the keys of OIDC issuer test were not refreshed" in warnings[0].getMessage()
    assert "the 1 held are kept" in warnings[0].getMessage()
    assert "moved" not in issuer.requests  # a redirect is never followed
    issuer.fault = None
    clock.advance(60)
    assert await keys.key(configured(issuer), new) is not None


async def test_a_larger_key_set_than_the_bound_is_refused_and_a_smaller_one_taken(
    issuer: Issuer, keys: KeySets, clock: Clock
) -> None:
    padding = {"kty": "unknown", "padding": "x" * (MAX_DOCUMENT - 4096)}
    issuer.extra_entries = [padding]
    assert await keys.key(configured(issuer), issuer.signing.kid) is not None
    padding["padding"] = "x" * MAX_DOCUMENT
    new = issuer.rotate().kid
    clock.advance(60)
    assert await keys.key(configured(issuer), new) is None


async def test_an_issuer_that_is_down_keeps_its_keys(
    session: aiohttp.ClientSession, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    issuer = Issuer()
    keys = KeySets(session, clock=clock)
    async with issuer.serve() as server:
        held = await keys.key(configured(issuer), issuer.signing.kid)
        await server.close()
        clock.advance(60)
        with caplog.at_level(logging.WARNING, logger="gateway.oidc"):
            assert await keys.key(configured(issuer), "rotated") is None
        assert await keys.key(configured(issuer), issuer.signing.kid) is held is not None
        assert "could not be fetched (ClientConnectorError)" in caplog.text


async def test_an_issuer_that_never_answered_has_no_keys(session: aiohttp.ClientSession) -> None:
    issuer = Issuer()
    async with issuer.serve() as server:
        await server.close()
        assert await KeySets(session).key(configured(issuer), issuer.signing.kid) is None


async def test_a_slow_issuer_is_given_up_on_after_the_timeout(issuer: Issuer, session: aiohttp.ClientSession) -> None:
    keys = KeySets(session, timeout=0.3)
    issuer.delay = 5
    started = time.monotonic()
    assert await keys.key(configured(issuer), issuer.signing.kid) is None
    assert time.monotonic() - started < 2


async def test_only_asymmetric_signing_keys_with_a_key_id_are_held(issuer: Issuer, keys: KeySets) -> None:
    good = issuer.signing.jwk()
    issuer.extra_entries = [
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},  # an HMAC secret
        {**good, "kid": "encryption", "use": "enc"},
        {**good, "kid": ""},
        {**good, "kid": 7},
        {key: value for key, value in good.items() if key != "kid"},
        {**good, "kid": "hs", "alg": "HS256"},
        {**good, "kid": "bad-modulus", "n": "!!"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
        "not a key",
        None,
    ]
    assert await keys.key(configured(issuer), good["kid"]) is not None
    assert keys.held(configured(issuer)) == {good["kid"]}


async def test_ec_and_ed25519_keys_are_held_with_their_algorithms(issuer: Issuer, keys: KeySets) -> None:
    es256, es384, eddsa = issuer.rotate(ec_key("ES256")), issuer.rotate(ec_key("ES384")), issuer.rotate(ed25519_key())
    for signing, algorithm in ((es256, "ES256"), (es384, "ES384"), (eddsa, "EdDSA")):
        key = await keys.key(configured(issuer), signing.kid)
        assert key is not None and key.algorithm_name == algorithm


async def test_each_issuer_has_its_own_keys_and_cooldown(session: aiohttp.ClientSession, clock: Clock) -> None:
    one, two = Issuer(), Issuer(key=rsa_key())
    keys = KeySets(session, clock=clock)
    async with one.serve(), two.serve():
        assert await keys.key(configured(one, name="one"), one.signing.kid) is not None
        clock.advance(30)
        assert await keys.key(configured(two, name="two"), one.signing.kid) is None  # not two's key
        assert await keys.key(configured(two, name="two"), two.signing.kid) is not None
        clock.advance(30)
        assert await keys.key(configured(one, name="one"), "unknown") is None  # one's cooldown is over, not two's
        assert await keys.key(configured(two, name="two"), "unknown") is None
        assert (one.requests, two.requests) == (["discovery", "jwks"] * 2, ["discovery", "jwks"])


async def test_the_issuer_serves_from_a_thread_too(session: aiohttp.ClientSession) -> None:
    """For a gateway subprocess or a blocking client: the same issuer on a loop of its own."""
    with Issuer().serve_in_thread() as issuer:
        assert await KeySets(session).key(configured(issuer), issuer.signing.kid) is not None


async def test_the_actions_endpoint_issues_an_id_token_for_the_audience_asked(
    issuer: Issuer, session: aiohttp.ClientSession, keys: KeySets
) -> None:
    """GitHub Actions' contract, as uv and the `id` library call it: GET with `audience=` appended to the URL's
    query and `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`; `{"value": <JWT>}` back."""
    bearer = {"Authorization": f"bearer {issuer.request_token}"}
    async with session.get(issuer.request_url + "&audience=upload-gateway", headers=bearer) as response:
        assert response.status == 200
        value = (await response.json())["value"]
    key = await keys.key(configured(issuer), jwt.get_unverified_header(value)["kid"])
    assert key is not None
    claims = jwt.decode(value, key=key, audience="upload-gateway", options={"require": ["jti"]})
    assert (claims["iss"], claims["repository"]) == (issuer.url, "octo-org/sampleproject")
    assert issuer.actions_audiences == ["upload-gateway"]
    for wrong in ({}, {"Authorization": "bearer nope"}, {"Authorization": f"basic {issuer.request_token}"}):
        async with session.get(issuer.request_url + "&audience=x", headers=wrong) as response:
            assert response.status == 401
    assert set(issuer.actions_environment()) == {
        "GITHUB_ACTIONS",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    }
