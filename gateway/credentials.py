"""What a request presents as credentials, read from its `Authorization` header alone: a password or a token.

No credentials, or unreadable ones, are a 401 with a Basic challenge. Pure: whether they are valid is
`gateway.authentication`'s question.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from gateway.errors import GatewayError

TOKEN_USERNAME = "__token__"  # noqa: S105 - the username twine sends with a token, not a secret


@dataclass(frozen=True)
class PasswordCredentials:
    username: str
    password: str = field(repr=False)  # kept out of any traceback or log line that shows the object


@dataclass(frozen=True)
class TokenCredentials:
    token: str = field(repr=False)


Credentials = PasswordCredentials | TokenCredentials


def challenge(message: str, reason: str) -> GatewayError:
    return GatewayError(401, message, reason, headers={"WWW-Authenticate": 'Basic realm="upload-gateway"'})


def parse_authorization(header: str | None) -> Credentials:
    """Basic `user:password` or `__token__:<token>` (twine), or `token <t>` / `Bearer <t>`."""
    if not header or not header.strip():
        raise challenge(
            "Authentication required: upload with an API token (username __token__) or your username and password",
            "no_credentials",
        )
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme in ("token", "bearer") and value:
        return TokenCredentials(value)
    if scheme != "basic":
        raise challenge(f"Unsupported authorization scheme {scheme[:20]!r}: use HTTP Basic", "bad_credentials")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and base64's own for text that is not ASCII
        raise challenge("Malformed Basic credentials: send base64 of 'username:password'", "bad_credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise challenge("Malformed Basic credentials: send base64 of 'username:password'", "bad_credentials")
    if username == TOKEN_USERNAME:
        return TokenCredentials(password.strip())
    return PasswordCredentials(username, password)
