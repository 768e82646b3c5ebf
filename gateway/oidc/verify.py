"""An OIDC ID token verified as Warehouse verifies it, against the issuers of `[oidc]`: which issuer (its unverified
`iss`, exactly one configured URL), its key (`kid`, from `KeySets`), then PyJWT's `jwt.decode` with Warehouse's
options: the issuer's algorithms only, `iss iat exp aud` required, one audience exactly (`strict_aud`), 30 s of
leeway. Also required: a `jti` (the exchange spends it once).

The times (`exp`, `iat`, `nbf`) are checked here against the `now` passed in, with the same leeway and the same
comparisons as PyJWT's, because PyJWT reads the system clock and the exchange's clock must be one tests can move;
PyJWT's own time checks are off.

A refusal is a `TokenRefused` in Warehouse's words (`code`, `description`: what the client is shown) and a bounded
`reason` for logs and metrics. Nothing of the token is in either but the unknown issuer's URL, which the client
sent itself, shown printable and shortened.
"""

from __future__ import annotations

import math
from typing import Any

import jwt
from jwt.types import Options

from gateway.config import OIDCConfig, OIDCIssuer
from gateway.oidc.keys import KeySets

LEEWAY = 30  # seconds, Warehouse's `_JWT_LEEWAY`
MAX_JTI = 256  # characters of a `jti` (GitHub's and GitLab's are UUIDs): it is stored until the token expires
SHOWN_ISSUER = 200  # characters of an unknown issuer's URL in the refusal

MALFORMED = "malformed JWT"
INVALID = "malformed or invalid token"

_OPTIONS: Options = {
    "verify_signature": True,
    "require": ["iss", "iat", "exp", "aud", "jti"],
    "verify_iss": True,
    "verify_aud": True,
    "strict_aud": True,  # one audience, a string: a token made out to several is refused
    "verify_jti": True,
    "verify_sub": True,
    # checked against `now` by `_check_times`
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "enforce_minimum_key_length": True,  # an RSA key under 2048 bits refuses the token instead of warning
}

# PyJWT's refusals after the signature, as bounded reasons; any other PyJWTError is "invalid".
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "signature"),
    (jwt.InvalidAlgorithmError, "algorithm"),
    (jwt.InvalidKeyError, "key"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.MissingRequiredClaimError, "claims"),
    (jwt.InvalidIssuerError, "claims"),
    (jwt.exceptions.InvalidJTIError, "claims"),
    (jwt.exceptions.InvalidSubjectError, "claims"),
)


class TokenRefused(Exception):
    """Why a token was refused: `code` and `description` as Warehouse words them (`invalid-payload`,
    `invalid-token`), `reason` one of a fixed set of snake_case words (malformed, unknown_issuer, no_key_id,
    algorithm, unknown_key, key, signature, audience, claims, expired, not_yet_valid, invalid)."""

    def __init__(self, code: str, description: str, *, reason: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.reason = reason


async def verify(token: str, config: OIDCConfig, keys: KeySets, *, now: float) -> tuple[OIDCIssuer, dict[str, Any]]:
    """The issuer and the claims of `token` when it is valid at `now` (seconds since the epoch); else TokenRefused."""
    if not token.isascii():  # a compact JWT is ASCII; PyJWT's encode("utf-8") raises on a lone surrogate
        raise TokenRefused("invalid-payload", MALFORMED, reason="malformed")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("invalid-payload", MALFORMED, reason="malformed") from None
    url = unverified.get("iss")
    if not isinstance(url, str) or not url:
        raise TokenRefused("invalid-payload", MALFORMED, reason="malformed")
    issuer = config.issuer_at(url)
    if issuer is None:
        raise TokenRefused(
            "invalid-payload", f"unknown trusted publishing issuer '{shown_issuer(url)}'", reason="unknown_issuer"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("no_key_id")
    if header.get("alg") not in issuer.algorithms:
        raise _invalid("algorithm")
    key = await keys.key(issuer, kid)
    if key is None:
        raise _invalid("unknown_key")
    if header.get("alg") != key.algorithm_name:  # a key signs with one algorithm (its JWK's `alg`, or its type's)
        raise _invalid("algorithm")
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=list(issuer.algorithms),
            options=_OPTIONS,
            audience=config.audience,
            issuer=issuer.url,
        )
    except jwt.PyJWTError as exc:
        raise _invalid(next((reason for kind, reason in _REASONS if isinstance(exc, kind)), "invalid")) from None
    _check_times(claims, now)
    jti = claims["jti"]
    if not jti or len(jti) > MAX_JTI:
        raise _invalid("claims")
    return issuer, claims


def _check_times(claims: dict[str, Any], now: float) -> None:
    """PyJWT's checks of `iat`, `nbf` and `exp`, on `now`: expired when `exp <= now - LEEWAY`, not yet valid when
    `iat` or `nbf` is after `now + LEEWAY`. The times must be JSON numbers that a float holds (PyJWT also takes
    numeric strings; an integer past a float's range would raise OverflowError further on)."""
    times = {name: _numeric_date(claims[name]) for name in ("iat", "exp", "nbf") if name in claims}
    if times["exp"] <= now - LEEWAY:
        raise _invalid("expired")
    if times["iat"] > now + LEEWAY or times.get("nbf", now) > now + LEEWAY:
        raise _invalid("not_yet_valid")


def _numeric_date(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid("claims")
    try:
        number = float(value)
    except OverflowError:
        raise _invalid("claims") from None
    if not math.isfinite(number):
        raise _invalid("claims")
    return number


def _invalid(reason: str) -> TokenRefused:
    return TokenRefused("invalid-token", INVALID, reason=reason)


def shown_issuer(url: str) -> str:
    """An issuer URL a client sent, as a refusal may show it: printable characters only, at most SHOWN_ISSUER."""
    printable = "".join(ch for ch in url if ch.isprintable())
    return printable if len(printable) <= SHOWN_ISSUER else printable[: SHOWN_ISSUER - 1] + "…"
