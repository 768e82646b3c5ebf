"""POST /legacy/: header checks (credentials, throttle, caps on uploads in flight), the flow, then the one place
that records, counts and audits an upload."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from gateway.authentication import Identity, invalid_auth
from gateway.credentials import Credentials, PasswordCredentials, TokenCredentials, parse_authorization
from gateway.errors import GatewayError, store_unavailable
from gateway.logs import FIELDS, client_of, redact
from gateway.services import Services, services
from gateway.store import StoredFile, StoreFailure
from gateway.upload.body_limits import file_too_large, max_body
from gateway.upload.context import Outcome
from gateway.upload.flow import UploadFlow
from gateway.upload.pump import ends_connection

# Refused before anything was checked, and what floods send: counted and logged, but not written one by one (a
# throttle's lock is audited once, as `upload.throttled`), so that a flood costs the store nothing.
log = logging.getLogger("gateway.upload")
UNAUDITED = frozenset({"throttled", "password_checks_busy", "uploads_busy"})


async def defer_continue(request: web.Request) -> None:
    """aiohttp's expect handler for the upload routes: say nothing yet; `upload` answers 100 Continue itself
    once the headers alone could not refuse the request, so a wrong password or an unknown, revoked or forged
    token never invites a body (a genuine token's caveats need the form's project, and are checked on it)."""


async def upload(request: web.Request) -> web.Response:
    svc = services(request)
    metrics = svc.metrics
    started = time.perf_counter()
    trail = request[FIELDS]
    outcome, reason = "failed", "internal_error"
    metrics.in_flight.inc()
    try:
        accepted = await _receive(request, svc, trail)
        outcome, reason = "accepted", accepted.reason
        metrics.upload_bytes.inc(accepted.size)
        metrics.upload_size.observe(accepted.size)
        trail["size"] = accepted.size
        response = web.Response(text="OK\n")
        if ends_connection(request):
            response.force_close()  # a pump read the body past aiohttp: the connection cannot carry another request
        return response
    except GatewayError as exc:
        outcome, reason = ("failed" if exc.status >= 500 else "rejected"), exc.reason
        trail["error"] = exc.message
        if reason not in UNAUDITED:
            await _audit_refusal(svc, outcome, reason, trail)
        raise
    except StoreFailure as exc:
        if exc.outage:  # counted as answered (`app.error_middleware`); nothing audited: the store is down
            reason = store_unavailable().reason
        raise
    finally:
        trail.update(outcome=outcome, reason=reason)
        metrics.in_flight.dec()
        metrics.uploads.labels(outcome, reason).inc()
        metrics.upload_duration.labels(outcome).observe(time.perf_counter() - started)


async def _receive(request: web.Request, svc: Services, trail: dict[str, Any]) -> Outcome:
    limits = svc.config.limits
    credentials = parse_authorization(request.headers.get("Authorization"))
    if isinstance(credentials, PasswordCredentials):
        # A token pasted as the user name stays out of the audit trail.
        trail["user"] = redact(credentials.username, svc.config.tokens.prefix)
    length = request.content_length
    if length is None:
        raise GatewayError(411, "Length Required: send the upload with a Content-Length header", "length_required")
    if length > max_body(limits):
        raise file_too_large(limits.max_file_size)
    slots = svc.upload_slots
    with slots.any():
        try:
            identity = await _authenticate(request, svc, credentials)
        except GatewayError:
            if isinstance(credentials, TokenCredentials):
                trail["token_id"], trail["user"] = await svc.authenticator.owner_of(credentials)
            raise
        trail.update(user=identity.user.name, token_id=identity.token_id)
        if identity.token is not None and identity.token.run:  # trusted publishing: the CI run that uploads
            trail.update(publisher=identity.user.id, run=dict(identity.token.run))
        with slots.of_user(identity.user.id, identity.user.name):
            await _continue(request)
            flow = UploadFlow(request, identity, svc.uploads, buffer=svc.config.upstream.buffer_uploads)
            try:
                try:
                    outcome = await flow.run()
                finally:
                    svc.metrics.upload_pumped_bytes.inc(flow.pumping.pumped)
                    if flow.decided is not None:
                        trail.update(project=flow.decided.project, file=flow.decided.filename or None)
                try:
                    await _record(svc, identity, outcome, trail)
                except BaseException:
                    await flow.holding.release()  # the record did not take them over
                    raise
                await svc.authenticator.touch(identity)
            finally:
                # After the record, so that a page read meanwhile cannot keep the file without its size and time;
                # only when the index got the whole request, so that a refusal cannot empty the cache.
                if flow.decided is not None and flow.index_touched:
                    svc.reads.purge(flow.decided.project)
    return outcome


async def _authenticate(request: web.Request, svc: Services, credentials: Credentials) -> Identity:
    """A token, or a password: refused on the headers when the policy forbids it for this user, then checked
    under the throttle (429 past its limits, before any hashing) on the bounded password pool."""
    if isinstance(credentials, TokenCredentials):
        return await svc.authenticator.authenticate(credentials)
    svc.authenticator.admit_password()
    user = await svc.store.get_user(credentials.username)
    svc.authorizer.allow_password(user)
    found = await svc.guard.attempt(
        credentials.username,
        client_of(request),
        lambda: svc.authenticator.verify(user, credentials.password),
        kind="upload",
        surface="upload",
        final=True,
    )
    if found is None:
        raise invalid_auth()
    return Identity(user=found)


async def _continue(request: web.Request) -> None:
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


async def _audit_refusal(svc: Services, outcome: str, reason: str, trail: dict[str, Any]) -> None:
    """The refusal's audit entry. With the database down it is left out (the request's log line still tells of
    it), so the client gets the refusal that names its mistake, not a 503 that invites a retry of it."""
    try:
        await svc.store.audit(f"upload.{outcome}", **_audit_fields(trail, reason))
    except StoreFailure as failure:
        if not failure.outage:
            raise
        log.warning("a refused upload was not audited: the database is unavailable", extra={"reason": reason})


async def _record(svc: Services, identity: Identity, outcome: Outcome, trail: dict[str, Any]) -> None:
    """What the index accepted, with the owner of a project it created, in one transaction."""
    upload = outcome.upload
    stored = StoredFile(
        filename=upload.filename,
        project=upload.project,
        size=outcome.size,
        sha256=outcome.digests.get("sha256", "") if outcome.reason == "ok" else "",
        blake2_256=outcome.digests.get("blake2_256", ""),
        user=identity.user.name,
        token_id=identity.token_id,
    )
    claim = identity.user if outcome.claim else None
    await svc.store.record_upload(
        stored,
        display_name=upload.name,
        claim=claim,
        reservation=outcome.reservation,
        audit=_audit_fields(trail, outcome.reason),
    )


def _audit_fields(trail: dict[str, Any], reason: str) -> dict[str, Any]:
    fields = {
        "user_name": trail.get("user"),
        "token_id": trail.get("token_id"),
        "project": trail.get("project"),
        "address": trail.get("client"),
        "filename": trail.get("file"),
        "reason": reason,
    }
    if "publisher" in trail:
        fields.update(publisher=trail["publisher"], run=trail["run"])
    return fields
