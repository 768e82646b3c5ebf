"""Pure security decisions for the account pages: CSRF tokens, redirects, response headers (the sign-in
throttle's rules are `gateway.throttle`'s).

No I/O here, so every rule is unit-tested on its own (tests/test_web_security.py).
"""

from __future__ import annotations

import hmac
import ipaddress
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


def loopback_alias(origin: str, public_url: str) -> bool:
    """`origin` names the public URL's loopback address another way (127.0.0.1 for localhost, or ::1): the same
    scheme and port, both hosts loopback, the spellings different. It reached this very gateway, but cookies and
    security keys belong to one host name, so the pages send it to the public URL; it is never let in as that."""
    try:
        given, public = urlsplit(origin), urlsplit(public_url)
        given_port, public_port = _port(given.scheme, given.port), _port(public.scheme, public.port)
    except ValueError:  # a port that is no number, or out of range
        return False
    return (
        given.scheme == public.scheme
        and given_port is not None
        and given_port == public_port
        and given.hostname is not None
        and public.hostname is not None
        and given.hostname != public.hostname
        and _loopback(given.hostname)
        and _loopback(public.hostname)
    )


def _port(scheme: str, port: int | None) -> int | None:
    return port if port is not None else {"http": 80, "https": 443}.get(scheme)


def _loopback(host: str) -> bool:
    """localhost and its subdomains (RFC 6761: always this machine), 127.0.0.0/8 and ::1."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
