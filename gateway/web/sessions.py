"""Server-side sessions for the account pages, kept in the store.

The cookie carries a random id and nothing else; the store keeps only a keyed hash of it (key derived from the
server secret), so a copy of the database alone cannot be replayed as a cookie. Deleting the row ends the session
everywhere at once: a cookie from before signing out is worth nothing after it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, get_session, new_session

from gateway import crypto
from gateway.store import Store
from gateway.web.security import ACCOUNT_ROOT, new_csrf_token

COOKIE_NAME = "gateway_session"
SIGNED_IN_LIFETIME = 12 * 3600.0  # then sign in again, whatever the activity
ANONYMOUS_LIFETIME = 3600.0  # a login form left open, a pending second factor
# Session keys.
USER_ID = "uid"
SIGNED_IN_AT = "signed_in_at"
CSRF = "csrf"
FLASH = "flash"

StoreGetter = Callable[[], Store]
SecretGetter = Callable[[], bytes]


class StoreSessionStorage(AbstractStorage):
    """aiohttp-session storage on `Store`; `secret_of()` gives the server secret once the gateway has started."""

    def __init__(self, store_of: StoreGetter, secret_of: SecretGetter, *, secure: bool) -> None:
        super().__init__(cookie_name=COOKIE_NAME, path=ACCOUNT_ROOT, secure=secure, httponly=True, samesite="Lax")
        self._store_of = store_of
        self._secret_of = secret_of

    def _key(self, cookie: str) -> str:
        return crypto.keyed_hash(crypto.subkey(self._secret_of(), "session"), cookie)

    async def load_session(self, request: web.Request) -> Session:
        cookie = self.load_cookie(request)
        if cookie:
            data = await self._store_of().web_session(self._key(cookie), time.time())
            if data is not None:
                return Session(cookie, data=json.loads(data), new=False)
        return Session(None, data=None, new=True)

    async def save_session(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        store, now = self._store_of(), time.time()
        if session.empty:
            if session.identity is not None:
                await self.drop(str(session.identity))
            self.save_cookie(response, "")
            return
        if session.identity is None:
            session.set_new_identity(secrets.token_urlsafe(32))
            await store.purge_web_sessions(now)
        cookie = str(session.identity)
        await store.save_web_session(
            self._key(cookie), json.dumps(self._get_session_data(session)), _expiry(session, now)
        )
        if session.new:
            self.save_cookie(response, cookie)

    async def drop(self, cookie: str) -> None:
        await self._store_of().delete_web_session(self._key(cookie))


def _expiry(session: Session, now: float) -> float:
    signed_in_at = session.get(SIGNED_IN_AT)
    if session.get(USER_ID) and isinstance(signed_in_at, int | float):
        return float(signed_in_at) + SIGNED_IN_LIFETIME
    return now + ANONYMOUS_LIFETIME


async def fresh_session(request: web.Request, storage: StoreSessionStorage) -> Session:
    """End the current session (its row goes) and start another: used when who is signed in changes."""
    old = await get_session(request)
    if old.identity is not None:
        await storage.drop(str(old.identity))
    session = await new_session(request)
    session[CSRF] = new_csrf_token()
    return session


def csrf_token(session: Session) -> str:
    token = session.get(CSRF)
    if not isinstance(token, str):
        token = session[CSRF] = new_csrf_token()
    return token


def flash(session: Session, message: str) -> None:
    session[FLASH] = [*session.get(FLASH, []), message]


def take_flash(session: Session) -> list[str]:
    return [str(message) for message in session.pop(FLASH, [])]
