"""Trusted publishers on the account pages (issue #19): a project's owners list, add and remove its publishers,
and anyone signed in registers pending publishers for project names to come (owned by them once the first publish
creates the project).

Only owners see or change a project's publishers (as on PyPI, whose "Publishing" page is the owners'): a
maintainer, or a user with no role, gets the same 404 as for a project that does not exist, so the page tells no
one which publishers another project trusts. A removal is looked up among the publishers of the project named in
its path, after the owner check, so an id of another project's publisher finds nothing. Adding and removing
need the password confirmed lately (`confirmed`), as creating and revoking tokens do: a publisher mints them.

Fields are checked by `accounts.publisher_fields_of` (the CLI's rules); its one-line refusals become the form's
error. The form shows the fields of one issuer's kind at a time: the issuer is chosen first (`?issuer=`), since the
pages run no inline script.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from packaging.utils import canonicalize_name

from gateway import accounts, policy
from gateway.authorization import raise_if_denied
from gateway.config import OIDCIssuer
from gateway.errors import GatewayError
from gateway.services import services
from gateway.store import PendingPublisher, Project, StoreError
from gateway.store.publishers import principal_name
from gateway.web.common import Account, confirmed, form, redirect, render, signed_in, when
from gateway.web.sessions import flash

PENDING_PATH = "/account/publishers/pending"
NEEDS = {  # what each kind of publisher needs, in terms of the form
    "github": "the repository (OWNER/REPO), the owner's id and the workflow file",
    "forgejo": "the repository (OWNER/REPO), the owner's id and the workflow file",
    "gitlab": "the namespace, the project path and the CI config file",
    "generic": "the subject",
}
FIELDS = ("repository", "owner_id", "workflow", "namespace", "project_path", "ci_config", "subject", "environment")
PENDING_NAME = 100  # characters of a pending project's name


def publishers_path(project: str) -> str:
    return f"/account/projects/{project}/publishers"


async def _owned(request: web.Request, account: Account) -> Project:
    """The project of the path, when the signed-in user owns it; 404 otherwise (also for a maintainer)."""
    name = canonicalize_name(request.match_info["project"])
    project, role, _ = await services(request).store.project_access(name, account.user.id)
    if project is None or role != "owner":
        raise GatewayError(404, "No such project among those you own", "not_found")
    return project


def _issuer(request: web.Request, name: str | None) -> OIDCIssuer:
    """The configured issuer chosen (the first when none is); 404 when trusted publishing is off."""
    oidc = services(request).config.oidc
    if not oidc.issuers:
        raise GatewayError(404, "Trusted publishing is off: the gateway has no [[oidc.issuers]]", "not_found")
    chosen = oidc.issuer_named(name) if name else oidc.issuers[0]
    if chosen is None:
        raise GatewayError(400, "Choose an issuer from the list", "bad_issuer")
    return chosen


def _fields(request: web.Request, issuer: OIDCIssuer, given: dict[str, str]) -> dict[str, str]:
    """The publisher's fields as `accounts` validates them; its refusal as the form's one line (400)."""
    values = {name: given.get(name, "").strip() for name in FIELDS}
    claims = [line.strip() for line in given.get("claims", "").splitlines() if line.strip()]
    try:
        return accounts.publisher_fields_of(
            services(request).config.oidc,
            issuer.name,
            repository=values["repository"],
            owner_id=values["owner_id"],
            workflow=values["workflow"],
            namespace=values["namespace"],
            project_path=values["project_path"],
            ci_config=values["ci_config"],
            subject=values["subject"],
            claims=claims,
            environment=values["environment"],
        )
    except accounts.MissingFields as exc:
        raise GatewayError(400, f"A {exc.kind} publisher needs {NEEDS[exc.kind]}", "bad_publisher") from None
    except ValueError as exc:
        raise GatewayError(400, str(exc), "bad_publisher") from None


async def _page(
    request: web.Request,
    account: Account,
    project: Project,
    *,
    issuer: OIDCIssuer,
    error: str = "",
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    rows = await accounts.list_publishers(services(request).store, project.name, services(request).config.oidc)
    context = {
        "section": "projects",
        "project": project,
        "publishers": [row for row in rows if not row["pending"]],
        "issuers": services(request).config.oidc.issuers,
        "issuer": issuer,
        "action": publishers_path(project.name),
        "error": error,
        "values": values or {},
    }
    return await render(request, "publishers.html", context, account=account, status=status)


@signed_in
async def publishers_page(request: web.Request, account: Account) -> web.StreamResponse:
    project = await _owned(request, account)
    return await _page(request, account, project, issuer=_issuer(request, request.query.get("issuer")))


@confirmed
async def add(request: web.Request, account: Account) -> web.StreamResponse:
    project = await _owned(request, account)
    given = await form(request)
    issuer = _issuer(request, given.get("issuer"))
    svc = services(request)
    try:
        fields = _fields(request, issuer, given)
        added = await accounts.add_publisher(
            svc.store, svc.config.oidc, project.name, issuer.name, fields, by=account.user.name
        )
    except (GatewayError, StoreError) as exc:
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        return await _page(request, account, project, issuer=issuer, error=message, values=given, status=400)
    description = accounts.describe_publisher(added.kind, added.fields)
    flash(account.session, f"{project.display_name} may now be published by {description}.")
    return redirect(publishers_path(project.name))


@confirmed
async def remove_page(request: web.Request, account: Account) -> web.StreamResponse:
    project = await _owned(request, account)
    row = await _publisher_of(request, project, request.match_info["publisher_id"])
    context = {
        "section": "projects",
        "title": "Remove the trusted publisher",
        "text": (
            f"{row['description']} ({row['issuer']}) can no longer publish {project.display_name}, and every token "
            "it was given is revoked at once."
        ),
        "button": "Remove the publisher and revoke its tokens",
        "cancel": publishers_path(project.name),
    }
    return await render(request, "confirm_action.html", context, account=account)


@confirmed
async def remove(request: web.Request, account: Account) -> web.StreamResponse:
    project = await _owned(request, account)
    row = await _publisher_of(request, project, request.match_info["publisher_id"])
    svc = services(request)
    if await svc.store.remove_publisher(row["id"], by=account.user.name) is not None:
        svc.authenticator.forget_user(principal_name(row["id"]))
    flash(account.session, f"{row['description']} no longer publishes {project.display_name}; its tokens are revoked.")
    return redirect(publishers_path(project.name))


async def _publisher_of(request: web.Request, project: Project, publisher_id: str) -> dict[str, Any]:
    """The publisher with this id among `project`'s (never another project's)."""
    rows = await accounts.list_publishers(services(request).store, project.name, services(request).config.oidc)
    found = next((row for row in rows if row["id"] == publisher_id and not row["pending"]), None)
    if found is None:
        raise GatewayError(404, f"No such publisher of {project.display_name}", "not_found")
    return found


# --- Pending publishers: for a project name that does not exist yet ---


async def _own_pending(request: web.Request, account: Account) -> list[PendingPublisher]:
    """The signed-in user's pending publishers not expired."""
    store = services(request).store
    return [p for p in await store.pending_publishers_of(time.time()) if p.added_by == account.user.id]


async def _pending_page(
    request: web.Request,
    account: Account,
    *,
    issuer: OIDCIssuer,
    error: str = "",
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    waiting = [
        {
            "id": p.id,
            "project": p.display_name,
            "issuer": p.issuer,
            "description": accounts.describe_publisher(p.kind, p.fields),
            "expires": p.expires,
            "refused": accounts.publisher_refused(services(request).config.oidc, p),
        }
        for p in await _own_pending(request, account)
    ]
    context = {
        "section": "projects",
        "pending": waiting,
        "pending_form": True,
        "issuers": services(request).config.oidc.issuers,
        "issuer": issuer,
        "action": PENDING_PATH,
        "error": error,
        "values": values or {},
    }
    return await render(request, "publishers_pending.html", context, account=account, status=status)


@signed_in
async def pending_page(request: web.Request, account: Account) -> web.StreamResponse:
    return await _pending_page(request, account, issuer=_issuer(request, request.query.get("issuer")))


@confirmed
async def add_pending(request: web.Request, account: Account) -> web.StreamResponse:
    given = await form(request)
    issuer = _issuer(request, given.get("issuer"))
    display_name = given.get("name", "").strip()
    svc = services(request)
    try:
        if not display_name or len(display_name) > PENDING_NAME or not display_name.isprintable():
            raise GatewayError(400, f"Name the project to come in 1 to {PENDING_NAME} characters", "bad_name")
        raise_if_denied(
            policy.pending_publisher(
                svc.config.policy.new_projects, display_name=display_name, user_name=account.user.name
            )
        )
        fields = _fields(request, issuer, given)
        waiting = await accounts.add_pending_publisher(
            svc.store,
            svc.config.oidc,
            canonicalize_name(display_name),
            display_name,
            issuer.name,
            fields,
            account.user,
        )
    except (GatewayError, StoreError) as exc:
        message, status = (exc.message, exc.status) if isinstance(exc, GatewayError) else (str(exc), 400)
        return await _pending_page(request, account, issuer=issuer, error=message, values=given, status=status)
    description = accounts.describe_publisher(waiting.kind, waiting.fields)
    flash(
        account.session,
        f"The first publish of {display_name} by {description} creates it, owned by you; until then this pending "
        f"publisher expires {when(waiting.expires)}.",
    )
    return redirect(PENDING_PATH)


async def _pending_of(request: web.Request, account: Account, publisher_id: str) -> PendingPublisher:
    found = next((p for p in await _own_pending(request, account) if p.id == publisher_id), None)
    if found is None:
        raise GatewayError(404, "No such pending publisher of yours", "not_found")
    return found


@confirmed
async def remove_pending_page(request: web.Request, account: Account) -> web.StreamResponse:
    waiting = await _pending_of(request, account, request.match_info["publisher_id"])
    description = accounts.describe_publisher(waiting.kind, waiting.fields)
    context = {
        "section": "projects",
        "title": "Remove the pending publisher",
        "text": f"{description} ({waiting.issuer}) will not create {waiting.display_name}.",
        "button": "Remove the pending publisher",
        "cancel": PENDING_PATH,
    }
    return await render(request, "confirm_action.html", context, account=account)


@confirmed
async def remove_pending(request: web.Request, account: Account) -> web.StreamResponse:
    waiting = await _pending_of(request, account, request.match_info["publisher_id"])
    if await services(request).store.remove_publisher(waiting.id, by=account.user.name) is None:
        # Gone meanwhile: most likely its first exchange made it a publisher of the project it created.
        flash(
            account.session,
            f"The pending publisher of {waiting.display_name} was gone already: if its first publish created "
            f"{waiting.display_name} meanwhile, remove the publisher it became on that project's publishers page.",
        )
        return redirect(PENDING_PATH)
    flash(account.session, f"The pending publisher of {waiting.display_name} is removed.")
    return redirect(PENDING_PATH)
