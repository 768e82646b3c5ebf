"""API tokens: list, add (shown once, with the .pypirc and twine snippet), revoke after a confirmation.

Adding is POST-redirect-GET: the form's answer redirects to the page that shows the new token, so reloading that
page never makes another. Between the two the token waits in the session sealed, bound to the user, the session
and the token's id (so the database never holds it in a usable form), and the page takes it out as it shows it:
shown once, never in a URL.

A token may also read a private index when its form's "may read" box is ticked (the store keeps the grant).

A revocation is dropped from this process's verification cache at once (`Authenticator.forget`); other processes
re-read token rows within seconds.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from gateway import accounts, crypto
from gateway.errors import GatewayError
from gateway.services import services
from gateway.store import Project, TokenRow, User
from gateway.web.common import Account, confirmed, form, redirect, render, signed_in, when
from gateway.web.sessions import flash

TOKENS_PATH = "/account/tokens"
CREATED_PATH = "/account/tokens/created"
WAITING = "new_token"  # {"id", "sealed"}: the token just made, until the page after the redirect shows it
SHOWN_ONCE = (
    "A new token is shown once, right after it is made, and not again: if you did not copy it, revoke it and "
    "add another."
)
MAX_DESCRIPTION = 100


def _row(row: TokenRow, user: User, now: float) -> dict[str, Any]:
    expired = row.expires is not None and row.expires <= now
    return {
        "id": row.id,
        "description": row.description,
        "scope": accounts.scope_of(row, user.id),
        "created": when(row.created, zone=False),
        "last_used": when(row.last_used, zone=False) or "never",
        "expires": when(row.expires, zone=False) or "never",
        "revoked": when(row.revoked, zone=False),
        "state": "revoked" if row.revoked else "expired" if expired else "active",
    }


@signed_in
async def tokens_page(request: web.Request, account: Account) -> web.StreamResponse:
    store = services(request).store
    now = time.time()
    rows = [_row(row, account.user, now) for row, _ in await store.list_tokens(account.user)]
    return await render(request, "tokens.html", {"section": "tokens", "tokens": rows}, account=account)


async def _new_form(
    request: web.Request, account: Account, *, error: str = "", values: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    store = services(request).store
    context = {
        "section": "tokens",
        "projects": [project for project, _ in await store.projects_of(account.user)],
        "expiries": accounts.expiry_choices(services(request).config.tokens.max_lifetime),
        "error": error,
        "values": values or {},
    }
    return await render(request, "token_new.html", context, account=account, status=status)


@confirmed
async def new_token_page(request: web.Request, account: Account) -> web.StreamResponse:
    return await _new_form(request, account)


@confirmed
async def new_token(request: web.Request, account: Account) -> web.StreamResponse:
    """Made here, shown by the page this redirects to (`created_page`)."""
    fields = await form(request)
    try:
        description, projects, expires_at = await _token_request(request, account.user, fields)
    except GatewayError as exc:
        return await _new_form(request, account, error=exc.message, values=fields, status=400)
    svc = services(request)
    token, row = await accounts.create_token(
        svc.store,
        svc.token_settings,
        account.user,
        description=description,
        projects=projects,
        expires_at=expires_at,
        permissions=accounts.token_permissions(read=fields.get("read") == "on"),
    )
    context = _shown_once_context(account, row.id)
    account.session[WAITING] = {"id": row.id, "sealed": _seal(svc.token_settings.server_secret, context, token)}
    return redirect(CREATED_PATH)


@signed_in
async def created_page(request: web.Request, account: Account) -> web.StreamResponse:
    """The new token, once: it leaves the session with this answer, so a reload finds nothing to show."""
    svc = services(request)
    waiting = account.session.pop(WAITING, None)
    row = await svc.store.get_token(str(waiting.get("id"))) if isinstance(waiting, dict) else None
    token = None
    if isinstance(waiting, dict) and row is not None and row.user_id == account.user.id and row.revoked is None:
        token = _unseal(svc.token_settings.server_secret, _shown_once_context(account, row.id), waiting.get("sealed"))
    if row is None or token is None:
        flash(account.session, SHOWN_ONCE)
        return redirect(TOKENS_PATH)
    public_url = services(request).config.server.public_url
    context = {
        "section": "tokens",
        "token": token,
        "row": _row(row, account.user, time.time()),
        "upload_url": f"{public_url}/legacy/",
        "install_url": _install_url(public_url),
        "may_read": "read" in row.permissions,
    }
    return await render(request, "token_created.html", context, account=account)


def _shown_once_context(account: Account, token_id: str) -> bytes:
    return f"{account.user.id}\0{account.session.identity}\0{token_id}".encode()


def _seal(server_secret: bytes, context: bytes, token: str) -> str:
    sealed = crypto.seal(crypto.subkey(server_secret, "token-shown-once"), token.encode(), context=context)
    return base64.b64encode(sealed).decode()


def _unseal(server_secret: bytes, context: bytes, sealed: object) -> str | None:
    """None when it was altered, or sealed for another user, session or token."""
    if not isinstance(sealed, str):
        return None
    try:
        blob = base64.b64decode(sealed, validate=True)
        return crypto.unseal(crypto.subkey(server_secret, "token-shown-once"), blob, context=context).decode()
    except ValueError:
        return None


def _install_url(public_url: str) -> str:
    """The index URL with the token's credentials in it, as pip, uv and poetry take it (TOKEN is a placeholder)."""
    scheme, _, rest = public_url.partition("://")
    return f"{scheme}://__token__:TOKEN@{rest}/simple/"


async def _token_request(
    request: web.Request, user: User, fields: dict[str, str]
) -> tuple[str, list[Project], int | None]:
    description = " ".join(fields.get("description", "").split())
    if not description or len(description) > MAX_DESCRIPTION or not description.isprintable():
        raise GatewayError(400, f"Describe the token in 1 to {MAX_DESCRIPTION} characters", "bad_description")
    scope = fields.get("scope", "")
    store = services(request).store
    try:
        projects = await accounts.token_projects(store, user, [scope] if scope else [])
    except accounts.NoRole:
        raise GatewayError(400, "Choose one of your projects, or all projects", "bad_scope") from None
    max_lifetime = services(request).config.tokens.max_lifetime
    expiry = fields.get("expires", "")
    if expiry not in dict(accounts.expiry_choices(max_lifetime)):
        raise GatewayError(400, "Choose an expiry from the list", "bad_expiry")
    return description, projects, accounts.token_expiry(expiry, max_lifetime, time.time())


def _not_found() -> GatewayError:
    return GatewayError(404, "No such token on your account", "not_found")


@confirmed
async def revoke_page(request: web.Request, account: Account) -> web.StreamResponse:
    store = services(request).store
    row = await accounts.own_token(store, account.user, request.match_info["token_id"])
    if row is None:
        raise _not_found()
    if row.revoked is not None:
        return redirect(TOKENS_PATH)
    context = {
        "section": "tokens",
        "title": "Revoke the token",
        "text": f"“{row.description}” ({accounts.scope_of(row, account.user.id)}) stops working at once, for good.",
        "button": "Revoke the token",
        "cancel": TOKENS_PATH,
    }
    return await render(request, "confirm_action.html", context, account=account)


@confirmed
async def revoke(request: web.Request, account: Account) -> web.StreamResponse:
    svc = services(request)
    row = await accounts.revoke_token(
        svc.store, request.match_info["token_id"], by=account.user.name, owner=account.user
    )
    if row is None:
        raise _not_found()
    svc.authenticator.forget(row.id)
    flash(account.session, f"The token “{row.description}” is revoked.")
    return redirect(TOKENS_PATH)
