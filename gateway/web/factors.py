"""Two-factor settings: an authenticator app (TOTP), security keys (WebAuthn), recovery codes.

Every change needs a recent confirmation of the password (`confirmed`), is made by `gateway.accounts` (as the
CLI's are) and goes to the audit table. Recovery codes are shown once, in the answer that made them, and kept only
as keyed hashes.
"""

from __future__ import annotations

import io
import time

import segno
from aiohttp import web

from gateway import accounts, twofactor
from gateway.errors import GatewayError
from gateway.logs import client_of
from gateway.services import services
from gateway.store import StoreError, User
from gateway.web import webauthn_flow
from gateway.web.common import (
    Account,
    attempt,
    confirmed,
    form,
    json_body,
    redirect,
    render,
    signed_in,
    state,
)
from gateway.web.sessions import flash

TOTP_SETUP = "totp_setup"  # the seed being enrolled (sealed: `_pending_seed`), until a code from it is entered
FACTORS_PATH = "/account/two-factor"
MAX_KEY_NAME = 64


@signed_in
async def overview(request: web.Request, account: Account) -> web.StreamResponse:
    store = services(request).store
    context = {
        "section": "two-factor",
        "keys": await store.webauthn_credentials(account.user.id),
        "recovery_left": await store.count_recovery_codes(account.user.id),
    }
    return await render(request, "two_factor.html", context, account=account)


def qr_svg(uri: str) -> str:
    """The otpauth:// URI as an inline SVG QR code: no image request, nothing for the CSP to allow."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", xmldecl=False, svgns=True, omitsize=True, border=2, light="#fff")
    return out.getvalue().decode()


def _pending_seed(request: web.Request, account: Account) -> str | None:
    """The seed this session is enrolling: kept sealed and bound to the user and the session (the database
    holds it only in that form), so one that was altered or moved from another row opens to nothing."""
    sealed, session_id = account.session.get(TOTP_SETUP), account.session.identity
    if not isinstance(sealed, str) or session_id is None:
        return None
    settings = services(request).token_settings
    try:
        return twofactor.unseal_pending_totp(settings.server_secret, account.user.id, str(session_id), sealed)
    except ValueError:
        return None


def _new_pending_seed(request: web.Request, account: Account) -> str:
    settings = services(request).token_settings
    secret = twofactor.new_totp_secret()
    account.session[TOTP_SETUP] = twofactor.seal_pending_totp(
        settings.server_secret, account.user.id, str(account.session.identity), secret
    )
    return secret


async def _totp_setup(request: web.Request, account: Account, *, error: str = "", status: int = 200) -> web.Response:
    secret = _pending_seed(request, account) or _new_pending_seed(request, account)
    settings = services(request).token_settings
    uri = accounts.totp_uri(settings, account.user.name, secret)
    context = {
        "section": "two-factor",
        "qr": qr_svg(uri),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "error": error,
    }
    return await render(request, "totp_setup.html", context, account=account, status=status)


@confirmed
async def totp_page(request: web.Request, account: Account) -> web.StreamResponse:
    if account.user.has_totp:
        flash(account.session, "An authenticator app is set up already: remove it first to set up another.")
        return redirect(FACTORS_PATH)
    return await _totp_setup(request, account)


@confirmed
async def totp_enable(request: web.Request, account: Account) -> web.StreamResponse:
    """Enabled only once a code from the new seed proves the app has it."""
    secret, user = _pending_seed(request, account), account.user
    if secret is None or user.has_totp:
        return redirect(FACTORS_PATH)
    code = (await form(request)).get("code", "")

    async def check() -> int | None:
        return twofactor.verify_totp(secret, code, now=time.time(), last_step=None)

    step = await attempt(request, user.name, check, what="totp_setup")
    if step is None:
        return await _totp_setup(request, account, error="That code is not right: check the app's clock.", status=400)
    svc = services(request)
    await accounts.enrol_totp(svc.store, svc.token_settings, user, secret, last_step=step, address=client_of(request))
    del account.session[TOTP_SETUP]
    return await _first_factor_done(request, account, "The authenticator app is set up.")


async def _first_factor_done(request: web.Request, account: Account, message: str) -> web.Response:
    """With no recovery codes yet, make them now: a lost phone or key must not lock the account."""
    store = services(request).store
    if await store.count_recovery_codes(account.user.id):
        flash(account.session, message)
        return redirect(FACTORS_PATH)
    return await _new_recovery_codes(request, account, message)


async def _new_recovery_codes(request: web.Request, account: Account, message: str = "") -> web.Response:
    svc = services(request)
    codes = await accounts.new_recovery_codes(svc.store, svc.token_settings, account.user, address=client_of(request))
    context = {"section": "two-factor", "codes": codes, "message": message}
    return await render(request, "recovery_codes.html", context, account=account)


async def _confirm_page(request: web.Request, account: Account, *, title: str, text: str, button: str) -> web.Response:
    context = {"section": "two-factor", "title": title, "text": text, "button": button, "cancel": FACTORS_PATH}
    return await render(request, "confirm_action.html", context, account=account)


@confirmed
async def recovery_codes_page(request: web.Request, account: Account) -> web.StreamResponse:
    store = services(request).store
    if await store.count_recovery_codes(account.user.id):
        text = "Your current recovery codes will stop working. The new ones are shown once."
    else:
        text = "Recovery codes sign you in when your app or key is lost. They are shown once: keep them safe."
    return await _confirm_page(request, account, title="Generate recovery codes", text=text, button="Generate codes")


@confirmed
async def recovery_codes(request: web.Request, account: Account) -> web.StreamResponse:
    if not account.user.has_2fa:
        raise GatewayError(400, "Add an authenticator app or a security key first", "no_2fa")
    return await _new_recovery_codes(request, account)


@confirmed
async def totp_remove_page(request: web.Request, account: Account) -> web.StreamResponse:
    if not account.user.has_totp:
        return redirect(FACTORS_PATH)
    return await _confirm_page(
        request,
        account,
        title="Remove the authenticator app",
        text="Codes from the app will no longer sign you in.",
        button="Remove the app",
    )


@confirmed
async def totp_remove(request: web.Request, account: Account) -> web.StreamResponse:
    store = services(request).store
    if account.user.has_totp:
        await accounts.remove_totp(store, account.user, address=client_of(request))
        flash(account.session, "The authenticator app was removed.")
    return redirect(FACTORS_PATH)


@confirmed
async def key_page(request: web.Request, account: Account) -> web.StreamResponse:
    return await render(request, "webauthn_setup.html", {"section": "two-factor"}, account=account)


def _key_name(raw: object) -> str:
    name = " ".join(str(raw or "").split())
    if not name or len(name) > MAX_KEY_NAME or not name.isprintable():
        raise GatewayError(400, f"Name the key with 1 to {MAX_KEY_NAME} characters", "bad_key_name")
    return name


@confirmed
async def key_options(request: web.Request, account: Account) -> web.StreamResponse:
    _key_name((await json_body(request)).get("name"))
    store = services(request).store
    existing = await store.webauthn_credentials(account.user.id)
    options, challenge = webauthn_flow.registration_options(state(request).relying_party, account.user, existing)
    webauthn_flow.remember_challenge(account.session, "register", challenge, time.time())
    return web.json_response(options)


@confirmed
async def key_add(request: web.Request, account: Account) -> web.StreamResponse:
    body = await json_body(request)
    name = _key_name(body.get("name"))
    challenge = webauthn_flow.take_challenge(account.session, "register", time.time())
    if challenge is None or not await webauthn_flow.spend(services(request).store, challenge, time.time()):
        return web.json_response({"error": "The request expired: try again"}, status=400)
    try:
        key = webauthn_flow.verify_registration(state(request).relying_party, body.get("credential"), challenge, name)
        store = services(request).store
        await accounts.add_security_key(store, account.user, key, address=client_of(request))
    except (GatewayError, StoreError) as exc:
        # Answered, not raised: the session must be saved, so the challenge is spent.
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"redirect": await _key_added(request, account, name)})


async def _key_added(request: web.Request, account: Account, name: str) -> str:
    store = services(request).store
    flash(account.session, f"The security key {name!r} is set up.")
    if await store.count_recovery_codes(account.user.id):
        return FACTORS_PATH
    return "/account/two-factor/recovery-codes"


async def _own_key(request: web.Request, user: User) -> str:
    store = services(request).store
    key_id = request.match_info["key_id"]
    if not any(key.id == key_id for key in await store.webauthn_credentials(user.id)):
        raise GatewayError(404, "No such security key on your account", "not_found")
    return key_id


@confirmed
async def key_remove_page(request: web.Request, account: Account) -> web.StreamResponse:
    await _own_key(request, account.user)
    return await _confirm_page(
        request,
        account,
        title="Remove the security key",
        text="This key will no longer sign you in.",
        button="Remove the key",
    )


@confirmed
async def key_remove(request: web.Request, account: Account) -> web.StreamResponse:
    store = services(request).store
    await accounts.remove_security_key(
        store, account.user, await _own_key(request, account.user), address=client_of(request)
    )
    flash(account.session, "The security key was removed.")
    return redirect(FACTORS_PATH)
