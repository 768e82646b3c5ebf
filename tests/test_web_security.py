"""The account pages' pure security rules: CSRF tokens, origins, redirects and timestamps (the throttle's are
in test_throttle.py)."""

from __future__ import annotations

import pytest

from gateway.web.security import (
    CONTENT_SECURITY_POLICY,
    csrf_matches,
    loopback_alias,
    new_csrf_token,
    origin_allowed,
    safe_next,
    still_valid,
)
from gateway.web.sessions import StoreSessionStorage
from gateway.web.webauthn_flow import RelyingParty, remember_challenge, take_challenge


def test_csrf_tokens_are_random_and_compared_exactly() -> None:
    token = new_csrf_token()
    assert len(token) >= 40 and token != new_csrf_token()
    assert csrf_matches(token, token)
    assert not csrf_matches(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not csrf_matches(token, token + "x")


@pytest.mark.parametrize(("expected", "given"), [(None, None), ("", ""), (None, "t"), ("t", None), ("t", ["t"])])
def test_a_missing_csrf_token_never_matches(expected: object, given: object) -> None:
    assert not csrf_matches(expected, given)


def test_origin_must_be_the_public_one_when_sent() -> None:
    public = "https://pypi.example.org:8443/base"
    assert origin_allowed(None, public)
    assert origin_allowed("https://pypi.example.org:8443", public)
    assert not origin_allowed("https://evil.example", public)
    assert not origin_allowed("http://pypi.example.org:8443", public)
    assert not origin_allowed("null", public)


@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:8080", "http://127.0.0.2:8080", "http://[::1]:8080", "http://gw.localhost:8080"],
)
def test_another_loopback_spelling_of_the_public_url_is_an_alias(origin: str) -> None:
    assert loopback_alias(origin, "http://localhost:8080")
    assert not origin_allowed(origin, "http://localhost:8080")  # an alias is told where to go, never accepted
    assert loopback_alias("http://localhost:8080", origin)  # and the other way round


@pytest.mark.parametrize(
    ("origin", "public"),
    [
        ("http://localhost:8080", "http://localhost:8080"),  # the public URL itself
        ("http://LOCALHOST:8080", "http://localhost:8080"),
        ("http://127.0.0.1:8081", "http://localhost:8080"),  # another port is another site on this machine
        ("http://127.0.0.1", "http://localhost:8080"),
        ("https://127.0.0.1:8080", "http://localhost:8080"),  # another scheme
        ("http://127.0.0.1:8080", "https://localhost:8080"),
        ("http://evil.example:8080", "http://localhost:8080"),  # not loopback
        ("http://localhost.evil.example:8080", "http://localhost:8080"),
        ("http://127.0.0.1.nip.io:8080", "http://localhost:8080"),
        ("http://10.0.0.1:8080", "http://10.0.0.2:8080"),
        ("http://127.0.0.1:8080", "https://pypi.example.org"),  # a public name is never redirected to
        ("http://127.0.0.1:443", "https://pypi.example.org"),
        ("null", "http://localhost:8080"),
        ("http://127.0.0.1:notaport", "http://localhost:8080"),
        ("http://127.0.0.1:99999", "http://localhost:8080"),
        ("", "http://localhost:8080"),
    ],
)
def test_anything_else_is_no_alias(origin: str, public: str) -> None:
    assert not loopback_alias(origin, public)


def test_default_ports_count_as_the_same_port() -> None:
    assert loopback_alias("http://127.0.0.1", "http://localhost:80")
    assert loopback_alias("http://127.0.0.1:80", "http://localhost")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/account/tokens", "/account/tokens"),
        ("/account/two-factor/totp", "/account/two-factor/totp"),
        (None, "/account/"),
        ("", "/account/"),
        ("https://evil.example/account/", "/account/"),
        ("//evil.example/account/", "/account/"),
        ("/account//evil.example", "/account/"),
        ("/account/\\evil", "/account/"),
        ("/simple/", "/account/"),
        ("/account/x\r\nSet-Cookie: a=b", "/account/"),
    ],
)
def test_safe_next_stays_on_the_account_pages(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_still_valid() -> None:
    assert still_valid(100.0, 60, 159.9)
    assert not still_valid(100.0, 60, 160.0)
    assert not still_valid(100.0, 60, 99.0)  # from the future: a clock step or a forged value
    assert not still_valid(None, 60, 100.0)
    assert not still_valid("100", 60, 100.0)
    assert not still_valid(True, 60, 1.0)


def test_the_policy_allows_nothing_inline_or_foreign() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'"


def test_relying_party_from_the_public_url() -> None:
    party = RelyingParty.for_public_url("https://pypi.example.org:8443/base")
    assert (party.id, party.origin) == ("pypi.example.org", "https://pypi.example.org:8443")


def test_a_challenge_answers_once_for_its_purpose_only() -> None:
    session: dict[str, object] = {}
    remember_challenge(session, "sign-in", b"\x01" * 32, 100.0)
    assert take_challenge(session, "sign-in", 101.0) == b"\x01" * 32
    assert take_challenge(session, "sign-in", 101.0) is None
    remember_challenge(session, "register", b"\x02" * 32, 100.0)
    assert take_challenge(session, "sign-in", 101.0) is None  # and it is spent
    remember_challenge(session, "sign-in", b"\x03" * 32, 100.0)
    assert take_challenge(session, "sign-in", 100.0 + 301) is None


@pytest.mark.parametrize("secure", [True, False])
def test_the_session_cookie_is_http_only_lax_and_secure_over_https(secure: bool) -> None:
    storage = StoreSessionStorage(lambda: None, lambda: b"s" * 32, secure=secure)
    params = storage.cookie_params
    assert params["httponly"] and params["samesite"] == "Lax" and params["path"] == "/account/"
    assert params["secure"] is secure and params["max_age"] is None
