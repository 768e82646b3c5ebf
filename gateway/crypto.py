"""The server secret and the keys derived from it.

The secret lives outside the database (a file), so a copy of the database alone can neither mint nor verify
tokens, nor read sealed TOTP seeds, nor check recovery codes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.config import Config, ConfigError

SECRET_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
_SUBKEY_LABEL = b"upload-gateway/subkey/"


def server_secret(config: Config) -> bytes:
    """The secret outside the database that tokens and sealed TOTP seeds need (created on first use)."""
    try:
        return load_or_create_secret(config.tokens.secret_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tokens.secret_file: {exc}") from None


def load_or_create_secret(path: Path) -> bytes:
    """Read the server secret, creating it on first start so `serve` works with no setup."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        return _create_secret(path)
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"secret file {path} holds {len(secret)} bytes, at least {SECRET_BYTES} are needed")
    return secret


def _create_secret(path: Path) -> bytes:
    """Write a fresh secret that is never seen half-written; if another process wins the race, use its secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secret)
            file.flush()
            os.fsync(file.fileno())
        os.link(tmp, path)  # unlike rename, never replaces a secret another process just created
    except FileExistsError:
        return load_or_create_secret(path)
    finally:
        os.unlink(tmp)
    return secret


def subkey(secret: bytes, purpose: str) -> bytes:
    """Derive an independent key per purpose, so no key can be turned against another use."""
    return hmac.digest(secret, _SUBKEY_LABEL + purpose.encode(), hashlib.sha256)


def fingerprint(secret: bytes) -> str:
    """What the store keeps of the server secret, to tell a gateway started with another one: a subkey no token,
    seal or hash uses, so it reveals nothing those could be checked or forged with."""
    return subkey(secret, "store-fingerprint").hex()


def seal(key: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt and authenticate `plaintext`, bound to `context` (e.g. the owner's id) so it cannot be moved."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def unseal(key: bytes, blob: bytes, *, context: bytes) -> bytes:
    """Reverse `seal`; raise ValueError when the blob was altered, sealed with another key or for another context."""
    if len(blob) < NONCE_BYTES + _TAG_BYTES:
        raise ValueError("sealed data is truncated")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
    except InvalidTag:
        raise ValueError("sealed data does not authenticate (tampered, other key or other context)") from None


def keyed_hash(key: bytes, value: str) -> str:
    """Hex HMAC-SHA256 of `value`: what is stored for recovery codes, so the database alone cannot test guesses."""
    return hmac.digest(key, value.encode(), hashlib.sha256).hex()
