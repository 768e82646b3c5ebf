"""`verify` against a real OIDC issuer on loopback, its keys fetched over a real socket: every refusal, and the
edges of the clock (`now` is passed in, so the tests move it; nothing here depends on the date)."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.config import OIDCConfig, OIDCIssuer
from gateway.oidc.keys import KeySets
from gateway.oidc.verify import LEEWAY, TokenRefused, verify
from tests.harness.oidc_issuer import (
    OMIT,
    Issuer,
    SigningKey,
    ec_key,
    ed25519_key,
    forgejo_claims,
    github_claims,
    gitlab_claims,
    rsa_key,
    unsigned_token,
)

NOW = 1_800_000_000.0  # any moment: tokens are made for it, and verified at it or around it


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    issuer = Issuer()
    async with issuer.serve():
        yield issuer


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def keys(clock: Clock) -> AsyncIterator[KeySets]:
    async with aiohttp.ClientSession() as session:
        keys = KeySets(session, clock=clock)
        yield keys
        await keys.close()


def config_for(
    issuer: Issuer, *, algorithms: tuple[str, ...] = ("RS256",), audience: str = "upload-gateway"
) -> OIDCConfig:
    return OIDCConfig(
        audience=audience,
        issuers=(OIDCIssuer(name="ci", url=issuer.url, kind="github", algorithms=algorithms),),
    )


async def refused(token: str, config: OIDCConfig, keys: KeySets, *, now: float = NOW) -> TokenRefused:
    with pytest.raises(TokenRefused) as refusal:
        await verify(token, config, keys, now=now)
    shown = f"{refusal.value} {refusal.value.description}"
    assert all(part not in shown for part in token.split(".") if part)
    return refusal.value


def invalid(refusal: TokenRefused, reason: str) -> bool:
    return (refusal.code, refusal.description, refusal.reason) == (
        "invalid-token",
        "malformed or invalid token",
        reason,
    )


@pytest.mark.parametrize(
    "claims", [github_claims(), forgejo_claims(), gitlab_claims()], ids=["github", "forgejo", "gitlab"]
)
async def test_a_valid_token_gives_its_issuer_and_claims(issuer: Issuer, keys: KeySets, claims: dict[str, Any]) -> None:
    token = issuer.token(claims, now=NOW)
    found, verified = await verify(token, config_for(issuer), keys, now=NOW)
    assert found == config_for(issuer).issuers[0]
    assert verified == {**claims, "iss": issuer.url, "aud": "upload-gateway", **_times(verified)}
    assert isinstance(verified["jti"], str) and verified["jti"]


def _times(claims: dict[str, Any]) -> dict[str, Any]:
    return {name: claims[name] for name in ("iat", "nbf", "exp", "jti")}


async def test_an_issuer_at_a_path_is_matched_exactly(keys: KeySets) -> None:
    """Forgejo's `iss` is https://host/api/actions; one with a trailing slash is another issuer."""
    issuer = Issuer(path="/api/actions")
    async with issuer.serve():
        config = config_for(issuer)
        assert (await verify(issuer.token(forgejo_claims(), now=NOW), config, keys, now=NOW))[0].url == issuer.url
        other = await refused(issuer.token(now=NOW, iss=issuer.url + "/"), config, keys)
        assert other.code == "invalid-payload" and other.reason == "unknown_issuer"


@pytest.mark.parametrize(
    ("audience", "accepted"),
    [
        ("upload-gateway", True),
        ("other-gateway", False),
        ("Upload-Gateway", False),
        (["upload-gateway"], False),  # strict: a list is refused even with only ours in it
        (["upload-gateway", "pypi"], False),
        ("", False),
        (OMIT, False),
    ],
)
async def test_the_audience_must_be_exactly_the_configured_one(
    issuer: Issuer, keys: KeySets, audience: object, accepted: bool
) -> None:
    token = issuer.token(now=NOW, aud=audience)
    if accepted:
        await verify(token, config_for(issuer), keys, now=NOW)
    else:
        refusal = await refused(token, config_for(issuer), keys)
        assert invalid(refusal, "audience") or invalid(refusal, "claims")


async def test_another_configured_audience_is_required_instead(issuer: Issuer, keys: KeySets) -> None:
    config = config_for(issuer, audience="pypi-internal")
    await verify(issuer.token(now=NOW, aud="pypi-internal"), config, keys, now=NOW)
    assert invalid(await refused(issuer.token(now=NOW), config, keys), "audience")


@pytest.mark.parametrize(
    ("exp", "accepted"),
    [(NOW + 300, True), (NOW, True), (NOW - LEEWAY + 1, True), (NOW - LEEWAY, False), (NOW - 3600, False)],
    ids=["future", "now", "within-leeway", "at-leeway", "long-ago"],
)
async def test_an_expired_token_is_refused_past_the_leeway(
    issuer: Issuer, keys: KeySets, exp: float, accepted: bool
) -> None:
    token = issuer.token(now=NOW - 600, exp=int(exp))
    if accepted:
        await verify(token, config_for(issuer), keys, now=NOW)
    else:
        assert invalid(await refused(token, config_for(issuer), keys), "expired")


@pytest.mark.parametrize("claim", ["iat", "nbf"])
@pytest.mark.parametrize(
    ("offset", "accepted"), [(-60, True), (0, True), (LEEWAY, True), (LEEWAY + 1, False), (3600, False)]
)
async def test_a_token_not_yet_valid_is_refused_past_the_leeway(
    issuer: Issuer, keys: KeySets, claim: str, offset: int, accepted: bool
) -> None:
    moment: dict[str, Any] = {claim: int(NOW + offset)}
    token = issuer.token(now=NOW - 60, lifetime=7200, **moment)
    if accepted:
        await verify(token, config_for(issuer), keys, now=NOW)
    else:
        assert invalid(await refused(token, config_for(issuer), keys), "not_yet_valid")


async def test_the_clock_passed_in_decides_not_the_system_clock(issuer: Issuer, keys: KeySets) -> None:
    """A token of the real present, judged at a moment ten years on and ten years back."""
    token = issuer.token()
    await verify(token, config_for(issuer), keys, now=time.time())
    assert invalid(await refused(token, config_for(issuer), keys, now=time.time() + 10 * 365 * 86400), "expired")
    assert invalid(await refused(token, config_for(issuer), keys, now=time.time() - 10 * 365 * 86400), "not_yet_valid")


@pytest.mark.parametrize("claim", ["iat", "exp", "aud", "jti"])
async def test_each_required_claim_must_be_there(issuer: Issuer, keys: KeySets, claim: str) -> None:
    assert invalid(await refused(issuer.token(now=NOW, **{claim: OMIT}), config_for(issuer), keys), "claims")


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": str(int(NOW))},  # PyJWT takes a numeric string; a NumericDate is a JSON number
        {"exp": str(int(NOW + 300))},
        {"nbf": "soon"},
        {"iat": True},
        {"exp": None},
        {"jti": 42},
        {"jti": ""},
        {"jti": "j" * 257},
        {"sub": 7},
        {"exp": 10**400},  # a JSON integer no float holds: refused, not an OverflowError (a 500)
        {"iat": -(10**400)},
    ],
)
async def test_claims_of_the_wrong_type_are_refused(issuer: Issuer, keys: KeySets, claims: dict[str, Any]) -> None:
    assert invalid(await refused(issuer.token(now=NOW, **claims), config_for(issuer), keys), "claims")


async def test_fractional_times_are_numbers_too(issuer: Issuer, keys: KeySets) -> None:
    await verify(issuer.token(now=NOW, iat=NOW - 0.5, exp=NOW + 299.5), config_for(issuer), keys, now=NOW)


async def test_a_bad_signature_is_refused(issuer: Issuer, keys: KeySets) -> None:
    forger = rsa_key()
    impostor = SigningKey(forger.private, "RS256", kid=issuer.signing.kid)  # the issuer's kid, not its key
    assert invalid(await refused(issuer.token(now=NOW, key=impostor), config_for(issuer), keys), "signature")
    header, payload, signature = issuer.token(now=NOW).split(".")
    other_payload = issuer.token(now=NOW, repository="octo-org/other").split(".")[1]
    tampered = ".".join((header, other_payload, signature))
    assert invalid(await refused(tampered, config_for(issuer), keys), "signature")
    assert invalid(
        await refused(".".join((header, payload, signature[:-4] + "AAAA")), config_for(issuer), keys), "signature"
    )


async def test_an_unknown_kid_refreshes_the_keys_once_then_waits_the_cooldown(
    issuer: Issuer, keys: KeySets, clock: Clock
) -> None:
    await verify(issuer.token(now=NOW), config_for(issuer), keys, now=NOW)
    assert issuer.requests == ["discovery", "jwks"]
    clock.now += 60
    unknown = rsa_key()
    for _ in range(3):
        assert invalid(await refused(issuer.token(now=NOW, key=unknown), config_for(issuer), keys), "unknown_key")
    assert issuer.requests == ["discovery", "jwks"] * 2  # one refresh for the three
    issuer.rotate(unknown)
    assert invalid(await refused(issuer.token(now=NOW), config_for(issuer), keys), "unknown_key")  # cooldown
    clock.now += 60
    await verify(issuer.token(now=NOW), config_for(issuer), keys, now=NOW)
    assert issuer.requests == ["discovery", "jwks"] * 3


async def test_a_rotated_key_is_fetched_when_a_token_first_names_it(
    issuer: Issuer, keys: KeySets, clock: Clock
) -> None:
    await verify(issuer.token(now=NOW), config_for(issuer), keys, now=NOW)
    issuer.rotate()
    clock.now += 60
    await verify(issuer.token(now=NOW), config_for(issuer), keys, now=NOW)


async def test_an_issuer_that_went_down_still_verifies_with_the_keys_held(keys: KeySets, clock: Clock) -> None:
    issuer = Issuer()
    async with issuer.serve() as server:
        config = config_for(issuer)
        await verify(issuer.token(now=NOW), config, keys, now=NOW)
        await server.close()
        clock.now += 3600
        await verify(issuer.token(now=NOW), config, keys, now=NOW)
        assert invalid(await refused(issuer.token(now=NOW, key=rsa_key()), config, keys), "unknown_key")


@pytest.mark.parametrize(
    "header",
    [{"alg": "none"}, {"alg": "HS256"}, {"alg": "none", "kid": None}, {"alg": "RS256", "kid": ""}],
    ids=["none", "hs256", "none-no-kid", "empty-kid"],
)
async def test_unsigned_and_hmac_tokens_are_refused(issuer: Issuer, keys: KeySets, header: dict[str, Any]) -> None:
    """`none` and HS256 with the issuer's public key as the secret (the algorithm-confusion attack)."""
    public_pem = issuer.signing.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"iss": issuer.url, "aud": "upload-gateway", "iat": NOW, "exp": NOW + 300, "jti": "x", **github_claims()}
    header = {"typ": "JWT", "kid": issuer.signing.kid, **header}
    if header["kid"] is None:
        del header["kid"]
    token = unsigned_token(header, claims, hmac_key=public_pem if header["alg"] == "HS256" else None)
    refusal = await refused(token, config_for(issuer, algorithms=("RS256", "ES256")), keys)
    assert invalid(refusal, "algorithm") or invalid(refusal, "no_key_id")
    assert issuer.requests == []  # refused before any key was looked up


async def test_a_token_without_a_kid_is_refused(issuer: Issuer, keys: KeySets) -> None:
    assert invalid(await refused(issuer.token(now=NOW, header={"kid": OMIT}), config_for(issuer), keys), "no_key_id")


async def test_only_the_issuers_algorithms_are_taken(issuer: Issuer, keys: KeySets) -> None:
    rs512 = issuer.rotate(rsa_key("RS512"))
    token = issuer.token(now=NOW)
    assert invalid(await refused(token, config_for(issuer), keys), "algorithm")
    await verify(token, config_for(issuer, algorithms=("RS256", "RS512")), keys, now=NOW)
    assert rs512.algorithm == "RS512"


async def test_a_token_must_use_the_algorithm_of_its_key(issuer: Issuer, keys: KeySets, clock: Clock) -> None:
    """A token claiming PS256 under an RS256 key's id is refused, both algorithms allowed; a key with no `alg`
    takes PyJWT's default for its type (RSA: RS256)."""
    both = config_for(issuer, algorithms=("RS256", "PS256"))
    pss = SigningKey(issuer.signing.private, "PS256", kid=issuer.signing.kid)
    assert invalid(await refused(issuer.token(now=NOW, key=pss), both, keys), "algorithm")
    bare = issuer.rotate(rsa_key(declare_alg=False))
    clock.now += 60
    await verify(issuer.token(now=NOW), both, keys, now=NOW)
    bare_pss = SigningKey(bare.private, "PS256", kid=bare.kid)
    assert invalid(await refused(issuer.token(now=NOW, key=bare_pss), both, keys), "algorithm")


@pytest.mark.parametrize(
    "make", [lambda: ec_key("ES256"), lambda: ec_key("ES384"), ed25519_key, lambda: rsa_key("PS256")]
)
async def test_other_asymmetric_algorithms_when_configured(keys: KeySets, make: Any) -> None:
    key = make()
    issuer = Issuer(key=key)
    async with issuer.serve():
        await verify(issuer.token(now=NOW), config_for(issuer, algorithms=(key.algorithm,)), keys, now=NOW)
        assert invalid(await refused(issuer.token(now=NOW), config_for(issuer), keys), "algorithm")


async def test_a_weak_rsa_key_is_refused(keys: KeySets) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns when the harness signs with it
        issuer = Issuer(key=rsa_key(bits=1024))
        async with issuer.serve():
            assert invalid(await refused(issuer.token(now=NOW), config_for(issuer), keys), "key")


async def test_an_unknown_issuer_is_named_printable_and_short(issuer: Issuer, keys: KeySets) -> None:
    elsewhere = "https://ci.example.org/\x1b[31m\u202e" + "a" * 300
    refusal = await refused(issuer.token(now=NOW, iss=elsewhere), config_for(issuer), keys)
    assert (refusal.code, refusal.reason) == ("invalid-payload", "unknown_issuer")
    shown = "https://ci.example.org/[31m" + "a" * 300
    assert refusal.description == f"unknown trusted publishing issuer '{shown[:199]}…'"
    assert refusal.description.isprintable()
    short = await refused(issuer.token(now=NOW, iss="https://gitlab.com"), config_for(issuer), keys)
    assert short.description == "unknown trusted publishing issuer 'https://gitlab.com'"
    none = await refused(issuer.token(now=NOW), OIDCConfig(), keys)
    assert none.description == f"unknown trusted publishing issuer '{issuer.url}'"
    assert issuer.requests == []


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.W10.c2ln",  # the payload is a JSON array
        unsigned_token({"alg": "RS256", "kid": 7}, {"iss": "https://x"}),  # a kid that is not a string
        "\ud800.e30.c2ln",  # a lone surrogate (JSON can carry one): PyJWT's encode("utf-8") raises, not refuses
        "eyJhbGciOiJSUzI1NiJ9.é.c2ln",
    ],
)
async def test_a_malformed_token_is_invalid_payload(issuer: Issuer, keys: KeySets, token: str) -> None:
    with pytest.raises(TokenRefused) as refusal:
        await verify(token, config_for(issuer), keys, now=NOW)
    assert (refusal.value.code, refusal.value.description) == ("invalid-payload", "malformed JWT")


@pytest.mark.parametrize("iss", [OMIT, "", 7, ["https://x"], None])
async def test_a_token_without_a_string_issuer_is_malformed(issuer: Issuer, keys: KeySets, iss: object) -> None:
    refusal = await refused(issuer.token(now=NOW, iss=iss), config_for(issuer), keys)
    assert (refusal.code, refusal.description, refusal.reason) == ("invalid-payload", "malformed JWT", "malformed")


async def test_nothing_of_a_token_reaches_the_logs(
    issuer: Issuer, keys: KeySets, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.fault = "unavailable"
    with caplog.at_level(logging.DEBUG):
        token = issuer.token(now=NOW)
        await refused(token, config_for(issuer), keys)
        issuer.fault = None
        clock.now += 60
        await verify(token, config_for(issuer), keys, now=NOW)
    assert "OIDC issuer ci" in caplog.text
    for part in token.split("."):
        assert part not in caplog.text
