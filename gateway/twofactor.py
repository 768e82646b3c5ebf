"""TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps) and single-use recovery codes."""

from __future__ import annotations

import base64
import hmac
import re
import secrets

import pyotp

from gateway import crypto

TOTP_DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODE_BYTES = 8
_CODE = re.compile(rf"[0-9]{{{TOTP_DIGITS}}}")


def new_totp_secret() -> str:
    """A base32 seed of 160 bits, the size RFC 4226 recommends and authenticator apps expect."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans (as a QR code) or imports."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS).provisioning_uri(name=account, issuer_name=issuer)


def verify_totp(secret: str, code: str, *, now: float, last_step: int | None) -> int | None:
    """Return the time step `code` matches (the caller stores it), or None.

    One step of clock drift either way is tolerated. A step at or before `last_step` never matches,
    so each code is accepted once only, even while it is still on the user's screen.
    """
    code = "".join(code.split())
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS)
    current = totp.timecode(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if (last_step is None or step > last_step) and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes(count: int = 8) -> list[str]:
    """Codes of 64 random bits, shown as `xxxx-xxxx-xxxx-xxxx` so they are easy to copy by hand."""
    return [_recovery_code() for _ in range(count)]


def _recovery_code() -> str:
    raw = secrets.token_hex(RECOVERY_CODE_BYTES)
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalize_recovery_code(code: str) -> str:
    """The canonical form to hash and compare: case, spaces and dashes do not matter when typing a code."""
    return "".join(code.split()).replace("-", "").lower()


def seal_totp(server_secret: bytes, user_id: str, totp_secret: str) -> bytes:
    """The TOTP seed as stored: sealed with a key from the server secret and bound to its user."""
    return crypto.seal(crypto.subkey(server_secret, "totp-seal"), totp_secret.encode(), context=user_id.encode())


def unseal_totp(server_secret: bytes, user_id: str, sealed: bytes) -> str:
    return crypto.unseal(crypto.subkey(server_secret, "totp-seal"), sealed, context=user_id.encode()).decode()


def seal_pending_totp(server_secret: bytes, user_id: str, session_id: str, totp_secret: str) -> str:
    """A seed being enrolled, as the web session keeps it until a code proves it (text, for the session's JSON).

    Sealed under its own key, so the database never holds it in clear, and bound to the user and the session, so
    copied into another session's row it does not open.
    """
    sealed = crypto.seal(_pending_key(server_secret), totp_secret.encode(), context=_pending(user_id, session_id))
    return base64.b64encode(sealed).decode()


def unseal_pending_totp(server_secret: bytes, user_id: str, session_id: str, sealed: str) -> str:
    """Reverse `seal_pending_totp`; ValueError when it was altered or sealed for another user or session."""
    blob = base64.b64decode(sealed, validate=True)  # binascii.Error is a ValueError
    return crypto.unseal(_pending_key(server_secret), blob, context=_pending(user_id, session_id)).decode()


def _pending_key(server_secret: bytes) -> bytes:
    return crypto.subkey(server_secret, "totp-pending")


def _pending(user_id: str, session_id: str) -> bytes:
    return f"{user_id}\0{session_id}".encode()


def recovery_code_hash(server_secret: bytes, code: str) -> str:
    """Keyed, so the database alone cannot test guesses against stored codes."""
    return crypto.keyed_hash(crypto.subkey(server_secret, "recovery-codes"), normalize_recovery_code(code))
