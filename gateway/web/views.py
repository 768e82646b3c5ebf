"""Signing in (password, then a second factor), signing out, confirming the password again, and the projects page
(with links to the publishers pages, `gateway.web.publishers`, when trusted publishing is on).

API tokens never sign in here: nothing under /account/ reads the Authorization header.
"""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_session import Session, get_session

from gateway import accounts
from gateway.errors import GatewayError
from gateway.logs import client_of
from gateway.services import services
from gateway.store import User
from gateway.web import webauthn_flow
from gateway.web.common import (
    CONFIRMED_AT,
    Account,
    attempt,
    current_account,
    form,
    json_body,
    password_user,
    redirect,
    render,
    signed_in,
    state,
)
from gateway.web.security import safe_next, still_valid
from gateway.web.sessions import (
    PENDING_LIFETIME,
    SIGN_IN_EXPIRED,
    SIGNED_IN_AT,
    SIGNED_OUT,
    USER_ID,
    end_session,
    flash,
    fresh_session,
    notify,
)

PENDING = "pending"  # a right password waiting for its second factor: {"uid", "at", "next", "id"}
TWO_FACTOR_PATH = "/account/login/two-factor"


async def home(request: web.Request) -> web.StreamResponse:
    return redirect("/account/tokens")


async def login_page(request: web.Request) -> web.StreamResponse:
    if await current_account(request):
        return redirect(safe_next(request.query.get("next")))
    return await render(request, "login.html", {"next": safe_next(request.query.get("next"))})


async def login(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    name, target = fields.get("username", "").strip()[:100], safe_next(fields.get("next"))
    authenticator = services(request).authenticator
    authenticator.admit_password()  # a full password pool answers 503 before anything is counted
    user = await attempt(
        request, name, lambda: password_user(request, name, fields.get("password", "")), what="password", final=False
    )
    if user is None:
        context = {"next": target, "username": name, "error": "Wrong user name or password."}
        return await render(request, "login.html", context, status=401)
    if not user.has_2fa:
        await services(request).guard.completed(name, client_of(request))
        return await _signed_in(request, user, target, method="password")
    session = await get_session(request)
    session[PENDING] = {"uid": user.id, "at": time.time(), "next": target, "id": secrets.token_urlsafe(16)}
    return redirect(TWO_FACTOR_PATH)


@dataclass(frozen=True)
class Pending:
    """A right password waiting for its second factor; `hold` lets its codes be checked one at a time."""

    user: User
    hold: str


async def _pending_user(request: web.Request) -> Pending | None:
    """Who passed the password step lately in this session, if anyone."""
    pending = (await get_session(request)).get(PENDING)
    if not isinstance(pending, dict) or not still_valid(pending.get("at"), PENDING_LIFETIME, time.time()):
        return None
    if not isinstance(pending.get("id"), str):
        return None
    store = services(request).store
    user = await store.get_user_by_id(str(pending.get("uid")))
    return Pending(user, f"sign-in:{pending['id']}") if user else None


async def _restart(request: web.Request) -> web.Response:
    response = redirect("/account/login")
    notify(response, state(request).sessions, SIGN_IN_EXPIRED)
    return response


async def second_factor_page(request: web.Request) -> web.StreamResponse:
    pending = await _pending_user(request)
    if pending is None:
        return await _restart(request)
    return await render(request, "login_two_factor.html", {"pending": pending.user})


async def second_factor(request: web.Request) -> web.StreamResponse:
    """A code from the authenticator app, or a recovery code (which then is used up)."""
    pending = await _pending_user(request)
    if pending is None:
        return await _restart(request)
    user = pending.user
    fields = await form(request)
    recovery = fields.get("recovery_code", "").strip()
    svc = services(request)
    if recovery:
        check = functools.partial(accounts.use_recovery_code, svc.store, svc.token_settings, user, recovery)
    else:
        check = functools.partial(_totp_matches, request, user, fields.get("code", ""))
    ok = await attempt(request, user.name, check, what="recovery" if recovery else "totp", hold=pending.hold)
    if not ok:
        error = "That recovery code is wrong or was used already." if recovery else "That code is wrong or was used."
        return await render(request, "login_two_factor.html", {"pending": user, "error": error}, status=401)
    target = _pending_next(await get_session(request))
    if not recovery:
        return await _signed_in(request, user, target, method="totp")
    return await _signed_in(
        request, user, target, method="recovery", notice=recovery_notice(await svc.store.count_recovery_codes(user.id))
    )


async def _totp_matches(request: web.Request, user: User, code: str) -> bool:
    svc = services(request)
    return await accounts.totp_matches(svc.store, svc.token_settings, user, code, now=time.time())


def recovery_notice(left: int) -> str:
    """Said after a recovery code signed in: that one is spent, how many remain, and where to make new ones."""
    if left == 0:
        return "You signed in with your last recovery code: generate new ones now under Two-factor."
    codes = "code is" if left == 1 else "codes are"
    return f"You signed in with a recovery code, which is now used up: {left} recovery {codes} left (see Two-factor)."


def _pending_next(session: Session) -> str:
    pending = session.get(PENDING)
    return safe_next(pending.get("next") if isinstance(pending, dict) else None)


async def webauthn_login_options(request: web.Request) -> web.StreamResponse:
    pending = await _pending_user(request)
    if pending is None:
        raise GatewayError(401, "Your sign-in took too long: enter your password again", "signed_out")
    store = services(request).store
    keys = await store.webauthn_credentials(pending.user.id)
    if not keys:
        raise GatewayError(400, "This account has no security key", "webauthn_none")
    options, challenge = webauthn_flow.authentication_options(state(request).relying_party, keys)
    webauthn_flow.remember_challenge(await get_session(request), "sign-in", challenge, time.time())
    return web.json_response(options)


async def webauthn_login(request: web.Request) -> web.StreamResponse:
    pending = await _pending_user(request)
    if pending is None:
        raise GatewayError(401, "Your sign-in took too long: enter your password again", "signed_out")
    user = pending.user
    answer = (await json_body(request)).get("credential")
    session = await get_session(request)
    challenge, target = webauthn_flow.take_challenge(session, "sign-in", time.time()), _pending_next(session)
    signed = await attempt(
        request, user.name, lambda: _key_signed(request, user, answer, challenge), what="webauthn", hold=pending.hold
    )
    if not signed:
        # Answered, not raised: the session must be saved, so the challenge is spent.
        return web.json_response(
            {"error": "The security key was not accepted: try again or use another factor"}, status=401
        )
    await _signed_in(request, user, target, method="webauthn")
    return web.json_response({"redirect": target})


async def _key_signed(request: web.Request, user: User, answer: Any, challenge: bytes | None) -> bool:
    store = services(request).store
    if challenge is None or not await webauthn_flow.spend(store, challenge, time.time()):
        return False
    web_state = state(request)
    keys = await store.webauthn_credentials(user.id)
    found = webauthn_flow.verify_authentication(web_state.relying_party, answer, challenge, keys)
    if found is None:
        return False
    await store.use_webauthn_credential(found[0].id, found[1])
    return True


async def _signed_in(request: web.Request, user: User, target: str, *, method: str, notice: str = "") -> web.Response:
    """Both factors passed: a new session (a new id, so none from before can ride on it) for this user."""
    web_state = state(request)
    store = services(request).store
    session = await fresh_session(request, web_state.sessions)
    session[USER_ID], session[SIGNED_IN_AT] = user.id, time.time()
    if notice:
        flash(session, notice)
    await store.audit("web.signed_in", user_name=user.name, address=client_of(request), method=method)
    return redirect(target)


async def logout_page(request: web.Request) -> web.StreamResponse:
    account = await current_account(request)
    if account is None:
        return redirect("/account/login")
    return await render(request, "logout.html", {}, account=account)


async def logout(request: web.Request) -> web.StreamResponse:
    """The session's row goes, so its cookie is refused from now on, wherever it was copied; none takes its place."""
    account = await current_account(request)
    web_state = state(request)
    store = services(request).store
    await end_session(request, web_state.sessions)
    response = redirect("/account/login")
    if account is not None:
        await store.audit("web.signed_out", user_name=account.user.name, address=client_of(request))
        notify(response, web_state.sessions, SIGNED_OUT)
    return response


@signed_in
async def confirm_page(request: web.Request, account: Account) -> web.StreamResponse:
    return await render(request, "confirm.html", {"next": safe_next(request.query.get("next"))}, account=account)


@signed_in
async def confirm(request: web.Request, account: Account) -> web.StreamResponse:
    """The password again (or a code from the app) before adding or removing factors and tokens."""
    fields = await form(request)
    user, target = account.user, safe_next(fields.get("next"))
    code = fields.get("code", "").strip()
    if code:
        ok = await attempt(request, user.name, lambda: _totp_matches(request, user, code), what="confirm_totp")
    else:
        ok = bool(
            await attempt(
                request,
                user.name,
                lambda: password_user(request, user.name, fields.get("password", "")),
                what="confirm",
            )
        )
    if not ok:
        context = {"next": target, "error": "That is not right: try again."}
        return await render(request, "confirm.html", context, account=account, status=401)
    account.session[CONFIRMED_AT] = time.time()
    store = services(request).store
    await store.audit(
        "web.confirmed", user_name=user.name, address=client_of(request), method="totp" if code else "password"
    )
    return redirect(target)


@signed_in
async def projects(request: web.Request, account: Account) -> web.StreamResponse:
    store = services(request).store
    rows = await store.projects_of(account.user)
    context = {"section": "projects", "projects": rows, "publishing": services(request).config.oidc.enabled}
    return await render(request, "projects.html", context, account=account)
