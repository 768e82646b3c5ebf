"""Pure security decisions for the account pages: CSRF tokens, redirects, response headers (the sign-in
throttle's rules are `gateway.throttle`'s).

No I/O here, so every rule is unit-tested on its own (tests/test_web_security.py).
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import urlsplit

ACCOUNT_ROOT = "/account/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 random bytes, base64url
# Scripts and styles come from our own static files only: no inline code, no other origin, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def well_formed_token(value: object) -> bool:
    """Shaped as `new_csrf_token` makes them: what a visitor's CSRF cookie must hold to be taken as their token."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def csrf_matches(expected: object, given: object) -> bool:
    """The form's token equals the expected one (the session's, or a visitor's cookie's); a missing or empty
    token on either side never matches."""
    if not isinstance(expected, str) or not isinstance(given, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def origin_allowed(origin: str | None, public_url: str) -> bool:
    """Browsers send Origin on every POST: a cross-site one is refused even with a token. Other clients send none."""
    if origin is None:
        return True
    return origin == origin_of(public_url)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def safe_next(target: str | None) -> str:
    """Where to go after signing in or confirming: a path of the account pages only, never another site."""
    if not target or not target.startswith(ACCOUNT_ROOT) or "//" in target or "\\" in target:
        return ACCOUNT_ROOT
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ch.isspace() or not ch.isprintable() for ch in target):
        return ACCOUNT_ROOT
    return target


def still_valid(since: object, lifetime: float, now: float) -> bool:
    """A timestamp kept in the session (sign-in, confirmation, pending second factor) is recent enough."""
    return isinstance(since, int | float) and not isinstance(since, bool) and since <= now < since + lifetime
