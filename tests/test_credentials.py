from __future__ import annotations

import base64

import pytest

from gateway.credentials import PasswordCredentials, TokenCredentials, parse_authorization
from gateway.errors import GatewayError
from gateway.store.records import TokenRow, User


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("alice:s3cret:with:colons"), PasswordCredentials("alice", "s3cret:with:colons")),
        (basic("__token__:pypi-abc "), TokenCredentials("pypi-abc")),
        ("token pypi-abc", TokenCredentials("pypi-abc")),
        ("Bearer pypi-abc", TokenCredentials("pypi-abc")),
        ("BEARER   pypi-abc", TokenCredentials("pypi-abc")),
    ],
)
def test_credentials(header: str, expected: object) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no_credentials"),
        ("", "no_credentials"),
        ("Digest abc", "bad_credentials"),
        ("Basic !!!", "bad_credentials"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "bad_credentials"),
        ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), "bad_credentials"),
        ("Basic \u00e9", "bad_credentials"),  # base64 raises ValueError, not binascii.Error, on non-ASCII text
        ("Basic YWxpY2U6\udce9", "bad_credentials"),  # a byte that is not UTF-8, as aiohttp decodes it
        ("Bearer", "bad_credentials"),
    ],
)
def test_missing_or_malformed_credentials_are_401_with_a_challenge(header: str | None, reason: str) -> None:
    with pytest.raises(GatewayError) as exc:
        parse_authorization(header)
    assert exc.value.status == 401 and exc.value.reason == reason
    assert exc.value.headers["WWW-Authenticate"].startswith("Basic ")


def test_no_secret_shows_in_the_repr_of_what_holds_it() -> None:
    """A traceback, a log line or a debugger shows these objects by their repr: the secret is not in it."""
    shown = [
        repr(PasswordCredentials("alice", "s3cret-password")),
        repr(TokenCredentials("pypi-s3cret-token")),
        repr(User(id="u1", name="alice", password_hash="$argon2id$s3cret-hash", created=0)),
        repr(
            TokenRow(
                id="t1",
                user_id="u1",
                description="ci",
                secret=b"s3cret-bytes",
                caveats=(),
                created=0.0,
                last_used=None,
                expires=None,
                revoked=None,
            )
        ),
    ]
    assert "alice" in shown[0] and "t1" in shown[3]  # still says what the object is
    assert not [text for text in shown if "s3cret" in text]
