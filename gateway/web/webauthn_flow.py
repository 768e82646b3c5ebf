"""Security keys (WebAuthn) as a second factor, with the `webauthn` library: options out, signed answers back.

A challenge is random, kept in the server-side session for one purpose, and taken out when it is answered, so it
is good for one answer within a few minutes; `spend` also records it as used in the store, so that a session
replayed to two replicas at once cannot answer it twice. User verification is not asked for: the key is the second
factor after the password, as on PyPI.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gateway.errors import GatewayError
from gateway.store import User, WebAuthnCredential
from gateway.web.security import still_valid

if TYPE_CHECKING:
    from gateway.store import Store

CHALLENGE = "webauthn"
CHALLENGE_LIFETIME = 300.0
# What a malformed answer from a browser can raise inside the library besides its own errors.
_BAD_ANSWER = (WebAuthnException, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class RelyingParty:
    """The site keys are bound to: the public URL's host (the RP ID) and origin."""

    id: str
    name: str
    origin: str

    @classmethod
    def for_public_url(cls, url: str) -> RelyingParty:
        parts = urlsplit(url)
        return cls(id=parts.hostname or "localhost", name="upload-gateway", origin=f"{parts.scheme}://{parts.netloc}")


def registration_options(
    rp: RelyingParty, user: User, existing: list[WebAuthnCredential]
) -> tuple[dict[str, Any], bytes]:
    """Options for navigator.credentials.create(), as JSON-ready data, and their challenge."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_name=user.name,
        user_id=uuid.UUID(user.id).bytes,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(key.id)) for key in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.DISCOURAGED,
        ),
    )
    return options_to_json_dict(options), options.challenge


def verify_registration(rp: RelyingParty, answer: object, challenge: bytes, name: str) -> WebAuthnCredential:
    """The new key from the browser's answer; 400 when it does not verify."""
    if not isinstance(answer, dict):
        raise GatewayError(400, "The security key's answer is missing", "webauthn_invalid")
    try:
        verified = verify_registration_response(
            credential=answer, expected_challenge=challenge, expected_rp_id=rp.id, expected_origin=rp.origin
        )
    except _BAD_ANSWER as exc:
        raise GatewayError(400, f"The security key's answer was not accepted: {exc}", "webauthn_invalid") from None
    return WebAuthnCredential(
        id=bytes_to_base64url(verified.credential_id),
        name=name,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        created=time.time(),
    )


def authentication_options(rp: RelyingParty, keys: list[WebAuthnCredential]) -> tuple[dict[str, Any], bytes]:
    """Options for navigator.credentials.get() naming the user's keys, and their challenge."""
    options = generate_authentication_options(
        rp_id=rp.id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(key.id)) for key in keys],
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    return options_to_json_dict(options), options.challenge


def verify_authentication(
    rp: RelyingParty, answer: object, challenge: bytes, keys: list[WebAuthnCredential]
) -> tuple[WebAuthnCredential, int] | None:
    """The key that signed the challenge and its new signature counter, or None when nothing verifies."""
    if not isinstance(answer, dict):
        return None
    key = next((key for key in keys if key.id == answer.get("id")), None)
    if key is None:
        return None
    try:
        verified = verify_authentication_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=key.sign_count,
        )
    except _BAD_ANSWER:
        return None
    return key, verified.new_sign_count


def remember_challenge(session: MutableMapping[str, Any], purpose: str, challenge: bytes, now: float) -> None:
    session[CHALLENGE] = {"purpose": purpose, "challenge": bytes_to_base64url(challenge), "at": now}


def take_challenge(session: MutableMapping[str, Any], purpose: str, now: float) -> bytes | None:
    """The challenge issued for `purpose`, once: it leaves the session whether or not the answer verifies."""
    stored = session.pop(CHALLENGE, None)
    if not isinstance(stored, dict) or stored.get("purpose") != purpose:
        return None
    if not still_valid(stored.get("at"), CHALLENGE_LIFETIME, now):
        return None
    return base64url_to_bytes(str(stored["challenge"]))


async def spend(store: Store, challenge: bytes, now: float) -> bool:
    """Whether this is the challenge's first answer anywhere (every process and replica share the store)."""
    key = hashlib.sha256(challenge).hexdigest()
    return await store.use_once(CHALLENGE, key, expires=now + CHALLENGE_LIFETIME)
