"""What every account page shares: who is signed in, rendering, redirects, throttled checks and the password check.

The second factors' checks are `gateway.accounts`' (`totp_matches`, `use_recovery_code`), run under `attempt`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import Session, get_session

from gateway.errors import GatewayError
from gateway.logs import client_of, redact
from gateway.services import services
from gateway.store import User
from gateway.web.security import still_valid
from gateway.web.sessions import SIGNED_IN_AT, SIGNED_IN_LIFETIME, USER_ID, StoreSessionStorage, page
from gateway.web.webauthn_flow import RelyingParty

CONFIRMED_AT = "confirmed_at"
CONFIRM_LIFETIME = 600.0  # how long a re-entered password allows adding or removing factors and tokens
T = TypeVar("T")


@dataclass
class WebState:
    """What the account pages hold of their own (the gateway's are its `Services`): sessions (and the task
    purging them), the WebAuthn party."""

    sessions: StoreSessionStorage
    relying_party: RelyingParty
    purger: asyncio.Task[None] | None = None


WEB = web.AppKey("web", WebState)


def state(request: web.Request) -> WebState:
    return request.config_dict[WEB]


@dataclass(frozen=True)
class Account:
    """The signed-in user of a request, with their session."""

    user: User
    session: Session


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AccountHandler = Callable[[web.Request, Account], Awaitable[web.StreamResponse]]


async def current_account(request: web.Request) -> Account | None:
    session = await get_session(request)
    user_id = session.get(USER_ID)
    if not isinstance(user_id, str) or not still_valid(session.get(SIGNED_IN_AT), SIGNED_IN_LIFETIME, time.time()):
        return None
    user = await services(request).store.get_user_by_id(user_id)
    return Account(user, session) if user else None


def signed_in(handler: AccountHandler) -> Handler:
    """Pages for a signed-in user; anyone else signs in first and comes back."""

    @functools.wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        account = await current_account(request)
        if account is None:
            if wants_json(request):
                raise GatewayError(401, "Your session has ended: sign in again", "signed_out")
            return redirect(f"/account/login?next={quote(request.path)}")
        return await handler(request, account)

    return page


def confirmed(handler: AccountHandler) -> Handler:
    """Adding or removing factors and tokens: the password (or a code) must have been entered again lately."""

    @signed_in
    @functools.wraps(handler)
    async def page(request: web.Request, account: Account) -> web.StreamResponse:
        if not still_valid(account.session.get(CONFIRMED_AT), CONFIRM_LIFETIME, time.time()):
            if wants_json(request):
                raise GatewayError(403, "Confirm your password first: reload the page", "not_confirmed")
            return redirect(f"/account/confirm?next={quote(request.path)}")
        return await handler(request, account)

    return page


def when(stamp: float | None, *, zone: bool = True) -> str:
    """How times read on the pages (the `date` filter): UTC, to the minute; `zone=False` leaves out the " UTC"
    where the page says it once (the token table)."""
    return time.strftime("%Y-%m-%d %H:%M" + (" UTC" if zone else ""), time.gmtime(stamp)) if stamp is not None else ""


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def render(
    request: web.Request, template: str, context: dict[str, Any], *, account: Account | None = None, status: int = 200
) -> web.Response:
    session = account.session if account else await get_session(request)
    shown = page(request, session)
    common = {
        "csrf_token": shown.csrf,
        "flash": shown.messages,
        "user": account.user if account else None,
        "public_url": services(request).config.server.public_url,
    }
    response = aiohttp_jinja2.render_template(template, request, {**common, **context}, status=status)
    shown.keep(response, state(request).sessions)
    return response


async def form(request: web.Request) -> dict[str, str]:
    """The posted fields, text only, as typed (a password may begin or end with a space)."""
    return {name: value for name, value in (await request.post()).items() if isinstance(value, str)}


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "Expected a JSON object", "bad_request")
    return body


async def attempt(
    request: web.Request,
    account_name: str,
    check: Callable[[], Awaitable[T]],
    *,
    what: str,
    final: bool = True,
    hold: str | None = None,
) -> T:
    """Run a password or code check under the throttle (`gateway.guard`): counted before it runs, 429 with
    Retry-After past the limits. A success clears this account's streak from this address only when `final` (a
    right password before a second factor proves nothing yet); `hold` runs one check at a time per its key."""
    svc = services(request)
    address = client_of(request)
    result = await svc.guard.attempt(account_name, address, check, kind=what, surface="web", final=final, hold=hold)
    if not result:
        # A token pasted as the account name stays out of the trail, as on uploads.
        name = redact(account_name, svc.config.tokens.prefix)[:60]
        await svc.store.audit("web.attempt_failed", user_name=name, address=address, what=what)
    return result


async def password_user(request: web.Request, name: str, password: str) -> User | None:
    """The user when the password is theirs (as slow for unknown names as for wrong passwords)."""
    if not name or not password:
        return None
    return await services(request).authenticator.password_user(name, password)
