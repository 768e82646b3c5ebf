"""Pure security decisions for the account pages: CSRF tokens, sign-in throttling, redirects, response headers.

No I/O here, so every rule is unit-tested on its own (tests/test_web_security.py).
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
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


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class Throttle:
    """Wrong passwords and codes, counted in a row per key (an account, an address).

    After `limit` failures in a row a key is locked for `base_delay` seconds, doubling with each further failure
    up to `max_delay`; a success clears it, and a key that has failed nothing for `forget_after` starts afresh.
    Memory is bounded: the least recently failed keys are dropped first.
    """

    def __init__(
        self,
        *,
        limit: int = 5,
        base_delay: float = 60.0,
        max_delay: float = 3600.0,
        forget_after: float = 86400.0,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, keys: list[str], now: float) -> int | None:
        """Seconds to wait before the next attempt may be checked, or None when none of the keys is locked."""
        waits = [self._wait(key, now) for key in keys]
        longest = max(waits, default=0.0)
        return math.ceil(longest) if longest > 0 else None

    def _wait(self, key: str, now: float) -> float:
        failures = self._current(key, now)
        return max(0.0, failures.locked_until - now) if failures else 0.0

    def _current(self, key: str, now: float) -> _Failures | None:
        failures = self._keys.get(key)
        if failures is not None and now - failures.last > self.forget_after:
            del self._keys[key]
            return None
        return failures

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            failures = self._current(key, now) or _Failures()
            failures.count += 1
            failures.last = now
            if failures.count >= self.limit:
                failures.locked_until = now + min(self.max_delay, self.base_delay * 2 ** (failures.count - self.limit))
            self._keys[key] = failures
            self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._keys.pop(key, None)


def throttle_keys(account: str, address: str | None) -> list[str]:
    """Accounts by case-folded name (unknown names too, so the answer never tells whether one exists)."""
    return [f"account:{account.casefold()}", f"address:{address or 'unknown'}"]
