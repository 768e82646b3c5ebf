"""Who is uploading: parse the `Authorization` header and check it against the store.

Decided from the headers alone, before a byte of the body is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.errors import GatewayError
from gateway.store import Store, User

TOKEN_USERNAME = "__token__"  # noqa: S105 - the username twine sends with a token, not a secret
# One of OWASP's equivalent argon2id settings (12 MiB, 3 passes): ~40 ms here, and a small transient
# allocation per check, so concurrent password uploads do not balloon memory.
_HASHER = PasswordHasher(memory_cost=12288, time_cost=3, parallelism=1)
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a real password")


@dataclass(frozen=True)
class PasswordCredentials:
    username: str
    password: str


@dataclass(frozen=True)
class TokenCredentials:
    token: str


Credentials = PasswordCredentials | TokenCredentials


@dataclass(frozen=True)
class Identity:
    """An authenticated uploader; `token_id` is None when the password was used."""

    user: User
    token_id: str | None = None


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


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
    except (binascii.Error, UnicodeDecodeError):
        raise challenge("Malformed Basic credentials: send base64 of 'username:password'", "bad_credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise challenge("Malformed Basic credentials: send base64 of 'username:password'", "bad_credentials")
    if username == TOKEN_USERNAME:
        return TokenCredentials(password.strip())
    return PasswordCredentials(username, password)


class Authenticator:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def authenticate(self, credentials: Credentials) -> Identity:
        if isinstance(credentials, TokenCredentials):
            raise invalid_auth()
        user = await self._store.get_user(credentials.username)
        password_hash = user.password_hash if user else _DUMMY_HASH
        ok = await asyncio.to_thread(verify_password, password_hash, credentials.password)
        if user is None or not ok:
            raise invalid_auth()
        return Identity(user=user)


def invalid_auth() -> GatewayError:
    return GatewayError(
        403,
        "Invalid or non-existent authentication information. Check the username and password, "
        "or upload with an API token and username __token__",
        "invalid_credentials",
    )
