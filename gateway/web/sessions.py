"""Sessions for the account pages: kept in the store once there is someone to keep them for, cookies before.

The session cookie carries a random id and nothing else; the store keeps only a keyed hash of it (key derived
from the server secret), so a copy of the database alone cannot be replayed as a cookie. Deleting the row ends
the session everywhere at once: a cookie from before signing out is worth nothing after it, and a request that
read the session before changes its row only while it is there (it never stores it again).

A row is stored only once a password was right (a pending second factor) or someone is signed in. A visitor
with no session keeps their state in cookies: the sign-in form's CSRF token (a double-submit cookie, checked
against the form field) and a notice for the next page ("You have signed out"). Expired rows are purged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, get_session, new_session

from gateway import crypto
from gateway.store import Store, StoreFailure
from gateway.web.security import ACCOUNT_ROOT, new_csrf_token, well_formed_token

COOKIE_NAME = "gateway_session"
CSRF_COOKIE = "gateway_csrf"  # the sign-in form's token, for a visitor with no session
NOTICE_COOKIE = "gateway_notice"  # a message for the next page, for a visitor with no session
SIGNED_IN_LIFETIME = 12 * 3600.0  # then sign in again, whatever the activity
PENDING_LIFETIME = 300.0  # a right password waiting for its second factor: the only other session stored
PURGE_INTERVAL = 300.0
PURGE_BATCH = 500
# Session keys.
USER_ID = "uid"
SIGNED_IN_AT = "signed_in_at"
CSRF = "csrf"
FLASH = "flash"
# What a notice cookie may say: a code, so nobody can make the pages show a text of their own.
SIGNED_OUT = "signed_out"
SIGN_IN_EXPIRED = "expired"
NOTICES = {
    SIGNED_OUT: "You have signed out.",
    SIGN_IN_EXPIRED: "Your sign-in took too long: enter your password again.",
}

StoreGetter = Callable[[], Store]
SecretGetter = Callable[[], bytes]
log = logging.getLogger("gateway")


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
            # Every stored session has a CSRF token. A pending second factor keeps the one its sign-in form
            # carried (checked on this very POST), so pages already open stay valid; signing in makes a new one.
            session.setdefault(CSRF, visitor_csrf(request) or new_csrf_token())
        cookie = str(session.identity)
        key, data, expires = self._key(cookie), json.dumps(self._get_session_data(session)), _expiry(session, now)
        if session.new:
            await store.save_web_session(key, data, expires)
            self.save_cookie(response, cookie)
        elif not await store.update_web_session(key, data, expires):
            # Ended while this request ran (in any process): it stays ended, and its cookie goes.
            self.save_cookie(response, "")

    async def drop(self, cookie: str) -> None:
        await self._store_of().delete_web_session(self._key(cookie))

    def set_visitor_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        """A cookie beside the session's, with its attributes: /account/ only, HttpOnly, Lax, Secure under https."""
        params = self.cookie_params
        response.set_cookie(
            name,
            value,
            path=params["path"],
            secure=params["secure"],
            httponly=params["httponly"],
            samesite=params["samesite"],
        )

    def forget_visitor_cookie(self, response: web.StreamResponse, name: str) -> None:
        params = self.cookie_params
        response.del_cookie(name, path=params["path"], secure=params["secure"], samesite=params["samesite"])


def _expiry(session: Session, now: float) -> float:
    signed_in_at = session.get(SIGNED_IN_AT)
    if session.get(USER_ID) and isinstance(signed_in_at, int | float):
        return float(signed_in_at) + SIGNED_IN_LIFETIME
    return now + PENDING_LIFETIME


async def end_session(request: web.Request, storage: StoreSessionStorage) -> None:
    """The current session's row goes now, and its cookie with the answer; nothing is stored in its place."""
    session = await get_session(request)
    if session.identity is not None:
        await storage.drop(str(session.identity))
    session.invalidate()


async def fresh_session(request: web.Request, storage: StoreSessionStorage) -> Session:
    """End the current session and start another: used when who is signed in changes."""
    await end_session(request, storage)
    session = await new_session(request)
    session[CSRF] = new_csrf_token()
    return session


def stored(session: Session) -> bool:
    """Whether the session has (or will have, at the end of this request) a row; a visitor's has not."""
    return session.identity is not None or not session.empty


def expected_csrf(request: web.Request, session: Session) -> object:
    """The token a POST must carry: its stored session's own, or for a visitor the one in their CSRF cookie."""
    return session.get(CSRF) if session.identity is not None else visitor_csrf(request)


def visitor_csrf(request: web.Request) -> str | None:
    value = request.cookies.get(CSRF_COOKIE)
    return value if well_formed_token(value) else None


def csrf_token(session: Session) -> str:
    token = session.get(CSRF)
    if not isinstance(token, str):
        token = session[CSRF] = new_csrf_token()
    return token


@dataclass(frozen=True)
class Page:
    """What a rendered page takes from the session or, for a visitor with none, from their cookies."""

    csrf: str
    messages: list[str]
    new_visitor_token: bool
    notice_shown: bool

    def keep(self, response: web.StreamResponse, storage: StoreSessionStorage) -> None:
        """A new visitor token goes into its cookie (the form field's double); a notice shown is forgotten."""
        if self.new_visitor_token:
            storage.set_visitor_cookie(response, CSRF_COOKIE, self.csrf)
        if self.notice_shown:
            storage.forget_visitor_cookie(response, NOTICE_COOKIE)


def page(request: web.Request, session: Session) -> Page:
    if stored(session):
        csrf, new = csrf_token(session), False
    else:
        visitor = visitor_csrf(request)
        csrf, new = visitor or new_csrf_token(), visitor is None
    notice = NOTICES.get(request.cookies.get(NOTICE_COOKIE, ""))
    messages = take_flash(session) + ([notice] if notice else [])
    return Page(csrf, messages, new, NOTICE_COOKIE in request.cookies)


def notify(response: web.StreamResponse, storage: StoreSessionStorage, notice: str) -> None:
    """A message for the next page without storing anything: a cookie naming one of `NOTICES`."""
    storage.set_visitor_cookie(response, NOTICE_COOKIE, notice)


def flash(session: Session, message: str) -> None:
    session[FLASH] = [*session.get(FLASH, []), message]


def take_flash(session: Session) -> list[str]:
    return [str(message) for message in session.pop(FLASH, [])]


async def purge_expired(store: Store, *, interval: float = PURGE_INTERVAL) -> None:
    """Delete expired rows (web sessions, a batch at a time; spent one-time things such as OIDC `jti`s; pending
    publishers past their 30 days) at start and every `interval` seconds while the gateway runs."""
    while True:
        try:
            while await store.purge_web_sessions(time.time(), limit=PURGE_BATCH) == PURGE_BATCH:
                await asyncio.sleep(0)
            await store.purge_used(time.time())
            await store.purge_pending_publishers(time.time())
        except (StoreFailure, ValueError) as exc:  # busy, closing: the next round will do
            log.warning("could not purge expired rows: %s", exc)
        await asyncio.sleep(interval)
