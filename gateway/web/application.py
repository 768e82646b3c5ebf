"""The account pages as a sub-application mounted at /account/.

Its sessions (and the purge of expired ones), the one address it answers at, CSRF checks, HTML error pages (with
the navigation for whoever is signed in) and security headers apply there only. Its error pages are its own:
a refusal raised under /account/ never reaches the gateway-wide `app.render_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import STORAGE_KEY, get_session, session_middleware

from gateway.errors import GatewayError
from gateway.services import CONFIG, SERVICES, services
from gateway.store import Store, User
from gateway.web import api_tokens, factors, publishers, views
from gateway.web.common import WEB, WebState, current_account, wants_json, when
from gateway.web.security import ACCOUNT_ROOT, SECURITY_HEADERS, csrf_matches, loopback_alias, origin_allowed
from gateway.web.sessions import CSRF, StoreSessionStorage, expected_csrf, purge_expired
from gateway.web.webauthn_flow import RelyingParty

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    """Mount the account pages on the gateway's app. Its sessions read the gateway's `Services` when used: on
    requests, and from the sub-app's start-up on (which runs after `app.lifecycle` has set them)."""
    public_url = app[CONFIG].server.public_url

    def store_of() -> Store:
        return app[SERVICES].store

    def secret_of() -> bytes:
        return app[SERVICES].token_settings.server_secret

    async def start_purging(account: web.Application) -> None:
        account[WEB].purger = asyncio.create_task(purge_expired(app[SERVICES].store), name="session-purge")

    sessions = StoreSessionStorage(store_of, secret_of, secure=public_url.startswith("https://"))
    account = web.Application(middlewares=[error_pages, one_address, session_middleware(sessions), csrf_check])
    account[WEB] = WebState(sessions, RelyingParty.for_public_url(public_url))
    templates = aiohttp_jinja2.setup(account, loader=jinja2.PackageLoader("gateway.web", "templates"), autoescape=True)
    templates.filters["date"] = when
    account.on_response_prepare.append(security_headers)
    account.on_startup.append(start_purging)
    account.on_shutdown.append(_stop_purging)
    _routes(account.router)
    app.add_subapp("/account/", account)


async def _stop_purging(account: web.Application) -> None:
    """At shutdown, so before the store closes (at cleanup)."""
    purger = account[WEB].purger
    if purger is not None:
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger


def _routes(router: web.UrlDispatcher) -> None:
    get, post = router.add_get, router.add_post
    get("/", views.home)
    get("/login", views.login_page)
    post("/login", views.login)
    get("/login/two-factor", views.second_factor_page)
    post("/login/two-factor", views.second_factor)
    post("/login/webauthn/options", views.webauthn_login_options)
    post("/login/webauthn", views.webauthn_login)
    get("/logout", views.logout_page)
    post("/logout", views.logout)
    get("/confirm", views.confirm_page)
    post("/confirm", views.confirm)
    get("/projects", views.projects)
    get("/projects/{project}/publishers", publishers.publishers_page)
    post("/projects/{project}/publishers", publishers.add)
    get("/projects/{project}/publishers/{publisher_id}/remove", publishers.remove_page)
    post("/projects/{project}/publishers/{publisher_id}/remove", publishers.remove)
    get("/publishers/pending", publishers.pending_page)
    post("/publishers/pending", publishers.add_pending)
    get("/publishers/pending/{publisher_id}/remove", publishers.remove_pending_page)
    post("/publishers/pending/{publisher_id}/remove", publishers.remove_pending)
    get("/two-factor", factors.overview)
    get("/two-factor/totp", factors.totp_page)
    post("/two-factor/totp", factors.totp_enable)
    get("/two-factor/totp/remove", factors.totp_remove_page)
    post("/two-factor/totp/remove", factors.totp_remove)
    get("/two-factor/webauthn", factors.key_page)
    post("/two-factor/webauthn", factors.key_add)
    post("/two-factor/webauthn/options", factors.key_options)
    get("/two-factor/webauthn/{key_id}/remove", factors.key_remove_page)
    post("/two-factor/webauthn/{key_id}/remove", factors.key_remove)
    get("/two-factor/recovery-codes", factors.recovery_codes_page)
    post("/two-factor/recovery-codes", factors.recovery_codes)
    get("/tokens", api_tokens.tokens_page)
    get("/tokens/new", api_tokens.new_token_page)
    post("/tokens/new", api_tokens.new_token)
    get("/tokens/created", api_tokens.created_page)
    get("/tokens/{token_id}/revoke", api_tokens.revoke_page)
    post("/tokens/{token_id}/revoke", api_tokens.revoke)
    router.add_static("/static/", STATIC, append_version=False)


@web.middleware
async def one_address(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The pages live at the public URL only: its cookies and security keys belong to that host name. A page asked
    for at another loopback spelling of it (127.0.0.1 when it says localhost) is sent there; a form posted there
    is told where to go, before anything in it is read."""
    public_url = services(request).config.server.public_url
    if loopback_alias(f"{request.scheme}://{request.host}", public_url):
        if request.method in ("GET", "HEAD"):
            path = request.raw_path if request.raw_path.startswith("/") else ACCOUNT_ROOT  # not an absolute-form URL
            raise web.HTTPTemporaryRedirect(public_url + path)
        raise GatewayError(403, wrong_address(public_url, f"{request.scheme}://{request.host}"), "wrong_address")
    return await handler(request)


def wrong_address(public_url: str, used: str) -> str:
    return f"Open the account pages at {public_url}/account/ (not {used}): sign-in and security keys work there only"


@web.middleware
async def csrf_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every POST carries the CSRF token (a form field, or a header from our script) and no foreign Origin.

    The token is the stored session's; a visitor with none (the sign-in form) sends back the one in their cookie.
    """
    if request.method == "POST":
        origin, public_url = request.headers.get("Origin"), services(request).config.server.public_url
        if not origin_allowed(origin, public_url):
            if origin is not None and loopback_alias(origin, public_url):
                raise GatewayError(403, wrong_address(public_url, origin), "wrong_address")
            raise GatewayError(403, "This request came from another site", "csrf")
        given: object = request.headers.get("X-CSRF-Token")
        if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            given = (await request.post()).get("csrf_token")
        if not csrf_matches(expected_csrf(request, await get_session(request)), given):
            raise GatewayError(403, "This form has expired or did not come from this site: reload the page", "csrf")
    return await handler(request)


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals as a page (or JSON for our script) with the right status, e.g. 429 with its Retry-After."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return await _error(request, exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await _error(request, exc.status, exc.reason, {})


async def _error(request: web.Request, status: int, message: str, headers: dict[str, str]) -> web.StreamResponse:
    if wants_json(request):
        return web.json_response({"error": message}, status=status, headers=headers)
    user, csrf = await _viewer(request)
    context = {
        "status": status,
        "phrase": _phrase(status),
        "message": message,
        "user": user,
        "flash": [],
        "csrf_token": csrf,
    }
    response = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    response.headers.update(headers)
    return response


async def _viewer(request: web.Request) -> tuple[User | None, str]:
    """Who is signed in, for the navigation of an error page, and their session's CSRF token for its sign-out
    form. Nobody when the error came before the session was read, or the store cannot say; the session is only
    read here, never changed."""
    if request.get(STORAGE_KEY) is None:
        return None, ""
    try:
        account = await current_account(request)
    except GatewayError:
        return None, ""
    csrf = account.session.get(CSRF) if account else None
    return (account.user, csrf) if account and isinstance(csrf, str) else (None, "")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        if not (name == "Cache-Control" and request.path.startswith("/account/static/")):
            response.headers[name] = value
