"""The aiohttp application: routes, the error middleware, and the lifecycle of what the gateway holds."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import __version__, accounts, error_pages
from gateway.authentication import Authenticator, TokenSettings
from gateway.authorization import Authorizer
from gateway.changes import FOLLOW_INTERVAL, FOLLOW_TRUST, Follower, Invalidations
from gateway.config import Config, ConfigError, token_location
from gateway.connections import body_deadline
from gateway.crypto import fingerprint, server_secret
from gateway.embedded import EmbeddedIndex
from gateway.errors import GatewayError, reason_phrase, store_unavailable
from gateway.existing import ExistingFiles
from gateway.guard import Guard
from gateway.index_urls import UpstreamURLs
from gateway.logs import access_middleware
from gateway.metrics import Metrics
from gateway.oidc import routes as oidc_routes
from gateway.oidc.exchange import TrustedPublishing
from gateway.oidc.keys import KeySets
from gateway.password_checks import PasswordChecks
from gateway.proxy import Upstream, aborting_socket
from gateway.read_access import ReadGuard
from gateway.reads.cache import PageCache
from gateway.reads.handler import Reads
from gateway.reads.paths import IndexLayout
from gateway.services import CONFIG, METRICS, SERVICES, Services, services
from gateway.store import Store, StoreFailure
from gateway.throttle import Rules
from gateway.upload.body_limits import max_body
from gateway.upload.context import UploadContext
from gateway.upload.handler import defer_continue, upload
from gateway.upload.pump import ends_connection
from gateway.upload.slots import UploadSlots
from gateway.web import application as account_pages

log = logging.getLogger("gateway")
PROBE_INTERVAL = 15.0
REFUSED_SHOWN = 10  # refused publishers named one by one at start; past that, a count
READ_CONNECTIONS = 100  # aiohttp's default; the embedded index (waitress) takes 100 connections in all


def render_error(exc: GatewayError, accept: str | None = None) -> web.Response:
    """The refusal with its message as the reason phrase (what twine prints) and in a body of the format the
    client accepts (`gateway.error_pages`): PyPI's HTML page, JSON, or one line of text."""
    # Messages may name what the request said (a path): no body may be taken for another type. The body depends
    # on Accept, so a cache in front must not serve one client's page to another that asked for JSON.
    headers = {"X-Content-Type-Options": "nosniff", **exc.headers}
    varies = [name.strip() for name in headers.get("Vary", "").split(",") if name.strip()]
    headers["Vary"] = ", ".join(varies if "accept" in map(str.lower, varies) else [*varies, "Accept"])
    reason = reason_phrase(exc.message)
    chosen = error_pages.choose(accept)
    if chosen == "json":
        # Exactly `application/json`, no charset: uv shows the error's `code` only then.
        headers["Content-Type"] = error_pages.JSON_TYPE
        body = error_pages.json_body(exc.status, exc.message, exc.reason, hint=exc.hint)
        return web.Response(status=exc.status, reason=reason, body=body, headers=headers)
    if chosen == "html":
        headers["Content-Security-Policy"] = error_pages.PAGE_POLICY
        text, content_type = error_pages.html_page(exc.status, exc.message, hint=exc.hint), "text/html"
    else:
        text, content_type = error_pages.text_body(exc.status, exc.message, hint=exc.hint), "text/plain"
    return web.Response(status=exc.status, reason=reason, text=text, content_type=content_type, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    accept = request.headers.get("Accept")
    try:
        return await handler(request)
    except GatewayError as exc:
        return _unread_body_closes(request, render_error(exc, accept))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _unread_body_closes(request, render_error(GatewayError(exc.status, exc.reason, "http_error"), accept))
    except StoreFailure as exc:
        if not exc.outage:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _unread_body_closes(request, render_error(_internal_error(), accept))
        log.warning("the store is unavailable on %s %s: %s", request.method, request.path, exc)
        return _unread_body_closes(request, render_error(store_unavailable(), accept))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _unread_body_closes(request, render_error(_internal_error(), accept))


def _internal_error() -> GatewayError:
    return GatewayError(500, "Internal error in the upload gateway", "internal_error")


def _unread_body_closes(request: web.Request, response: web.Response) -> web.Response:
    """A refusal before the body was read ends the connection: the rest of a refused upload is not read."""
    if ends_connection(request):
        response.force_close()
    return response


@web.middleware
async def identity_bodies_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Request bodies are never decompressed (the server runs with auto_decompress off): a compressed one would
    be checked in one form and could reach the index in another, and a small gzip bomb would hold the loop."""
    encodings = {value.strip().lower() for value in request.headers.getall("Content-Encoding", [])}
    if encodings - {"", "identity"}:
        raise GatewayError(
            415,
            "Content-Encoding is not accepted: send the request body uncompressed",
            "content_encoding",
        )
    return await handler(request)


async def read(request: web.Request) -> web.StreamResponse:
    return await services(request).reads.handle(request)


async def landing(request: web.Request) -> web.StreamResponse:
    return services(request).reads.landing(request)


async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    public_url = services(request).config.server.public_url
    raise GatewayError(
        405,
        f"Method Not Allowed: {request.method} {request.path[:200]} is not an upload URL; "
        f"upload to {public_url}/legacy/ (twine upload --repository-url {public_url}/legacy/)",
        "method_not_allowed",
        headers={"Allow": "GET, HEAD"},
    )


async def metrics_page(request: web.Request) -> web.Response:
    body = services(request).metrics.page()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    svc = services(request)
    await svc.store.ping()
    if not await svc.upstream.ping():
        raise GatewayError(503, "The package index is not answering; try again later", "upstream_unreachable")
    return web.Response(text="OK\n")


def _upstream_auth(config: Config, embedded: EmbeddedIndex | None) -> str | None:
    """The gateway's own `Authorization` header for the index (never a client's)."""
    if embedded is not None:
        return aiohttp.encode_basic_auth(embedded.username, embedded.password)
    upstream = config.upstream
    if not upstream.username:
        return None
    try:
        password = upstream.password_file.read_text().strip() if upstream.password_file else ""
    except OSError as exc:
        raise ConfigError(
            f"upstream.password_file: cannot read {upstream.password_file}: {exc.strerror or exc} (the file holds "
            "the password of the gateway's own account on the index)"
        ) from None
    return aiohttp.encode_basic_auth(upstream.username, password)


@contextlib.asynccontextmanager
async def open_index(config: Config, metrics: Metrics, shared: EmbeddedIndex | None = None) -> AsyncIterator[Upstream]:
    """The index as the gateway talks to it: the embedded pypiserver started (and stopped) with it, or the
    configured one, behind HTTP sessions (one for reads, one for uploads) that abort with a reset. `shared`: the
    embedded pypiserver the supervisor of several workers started, used as it is (and left running)."""
    owned = config.upstream.embedded and shared is None
    embedded = EmbeddedIndex(config.upstream.data_dir, max_body=max_body(config.limits)) if owned else shared

    def session(connections: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(socket_factory=aborting_socket, limit=connections),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=config.upstream.timeout),
            auto_decompress=False,
            # Pages are read and files relayed as the index's bytes: never offer to take them compressed.
            headers={"User-Agent": f"upload-gateway/{__version__}", "Accept-Encoding": "identity"},
        )

    # Uploads get a pool of their own, no larger than the uploads allowed in flight: however slowly their
    # clients send, the reads (installs) keep the connections of theirs.
    reads, uploads = session(READ_CONNECTIONS), session(config.limits.max_uploads)
    try:
        if embedded is not None:
            if owned:
                await embedded.start()
            urls = UpstreamURLs.build(embedded.url)
        else:
            urls = UpstreamURLs.build(config.upstream.url, config.upstream.upload_url, config.upstream.simple_url)
        yield Upstream(
            urls,
            reads,
            upload_session=uploads,
            authorization=_upstream_auth(config, embedded),
            public_url=config.server.public_url,
            metrics=metrics,
            max_page_size=config.reads.max_page_size,
        )
    finally:
        await reads.close()
        await uploads.close()
        if embedded is not None and owned:
            await embedded.stop()


async def lifecycle(
    app: web.Application, shared: EmbeddedIndex | None = None, *, start_warnings: bool = True
) -> AsyncIterator[None]:
    """Open what the gateway holds and set it as `app[SERVICES]`: aiohttp runs this half at start-up, before it
    freezes the app and makes its server. At teardown: the probe, the index, the read path, the password checks,
    the pumps, and the store last. `shared`: as in `open_index`; `start_warnings`: as in `create_app`."""
    config, metrics = app[CONFIG], app[METRICS]
    store = await Store.open(config.store.url, audit_file=config.logging.audit_file)
    settings = TokenSettings(
        prefix=config.tokens.prefix,
        location=token_location(config),
        server_secret=server_secret(config),
    )
    checks = PasswordChecks(
        workers=config.throttle.password_checks, queue=config.throttle.password_check_queue, metrics=metrics
    )
    # One thread per upload in flight at most: a pump waits on its client for most of its life.
    pumps = ThreadPoolExecutor(max_workers=config.limits.max_uploads, thread_name_prefix="pump")
    reads: Reads | None = None
    try:
        if not await store.bind_secret(fingerprint(settings.server_secret)):
            raise ConfigError(
                "tokens.secret_file: this is not the secret the store's tokens were made with: give every gateway "
                "on this store the same secret file (copy it from the first), or use this secret's own store"
            )
        if start_warnings:
            await _warn_of_refused_publishers(store, config)
        async with open_index(config, metrics, shared) as upstream, issuers_session() as issuers:
            app[SERVICES] = built = _services(config, metrics, store, settings, checks, pumps, upstream, issuers)
            reads = built.reads
            background = [asyncio.create_task(_probe(upstream), name="upstream-probe"), *_follow(built)]
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
    finally:
        if reads is not None:
            reads.close()
        checks.close()
        pumps.shutdown(wait=False, cancel_futures=True)
        await store.close()


async def _warn_of_refused_publishers(store: Store, config: Config) -> None:
    """Publishers the configuration no longer lets publish (their issuer's name gone, or pointed elsewhere),
    said at start: their CI jobs would otherwise only learn of it from a refused exchange."""
    refused = await accounts.refused_publishers(store, config.oidc)
    for publisher, why in refused[:REFUSED_SHOWN]:
        log.warning(
            "trusted publisher %s of %s is refused: %s (upload-gateway publisher list shows which)",
            publisher.id,
            publisher.project,
            why,
        )
    if len(refused) > REFUSED_SHOWN:
        log.warning(
            "%d more trusted publishers are refused: upload-gateway publisher list", len(refused) - REFUSED_SHOWN
        )


def _services(
    config: Config,
    metrics: Metrics,
    store: Store,
    settings: TokenSettings,
    checks: PasswordChecks,
    pumps: ThreadPoolExecutor,
    upstream: Upstream,
    issuers: aiohttp.ClientSession,
) -> Services:
    """Everything the handlers use, over the open store, password checks, pumps, index and the session that
    fetches the OIDC issuers' keys."""
    public_url = config.server.public_url
    authenticator = Authenticator(store, settings, metrics, checks)
    guard = Guard(store, Rules.of(config.throttle), metrics, server_secret=settings.server_secret)
    authorizer = Authorizer(store, authenticator, config.policy, public_url=public_url)
    read_guard = ReadGuard(config.reads.access, store, authenticator, metrics, guard=guard, public_url=public_url)
    help_url = f"{public_url}/account/projects"
    uploads = UploadContext(
        upstream=upstream,
        authorizer=authorizer,
        holds=store,
        existing=ExistingFiles(upstream.simple_page, store.file_sha256, help_url=help_url),
        limits=config.limits,
        allowed_actions=config.policy.allowed_actions,
        platform_tags=config.policy.platform_tags,
        help_url=help_url,
        pumps=pumps,
        upstream_timeout=config.upstream.timeout,
    )
    return Services(
        config=config,
        metrics=metrics,
        store=store,
        upstream=upstream,
        token_settings=settings,
        authenticator=authenticator,
        authorizer=authorizer,
        guard=guard,
        reads=_reads(config, upstream, store, metrics, read_guard),
        uploads=uploads,
        upload_slots=UploadSlots(per_user=config.limits.max_uploads_per_user, total=config.limits.max_uploads),
        trusted_publishing=TrustedPublishing(
            config.oidc,
            store,
            KeySets(issuers),
            settings,
            authenticator,
            project_listed=lambda name: _listed(upstream, name),
        ),
    )


async def _listed(upstream: Upstream, project: str) -> bool:
    return await upstream.simple_page(project) is not None


@contextlib.asynccontextmanager
async def issuers_session() -> AsyncIterator[aiohttp.ClientSession]:
    """Where the OIDC issuers' discovery documents and keys are fetched from: a session of its own, with short
    timeouts, so an issuer that hangs holds nothing of the index's."""
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10, sock_connect=5),
        headers={"User-Agent": f"upload-gateway/{__version__}"},
    )
    try:
        yield session
    finally:
        await session.close()


def _reads(config: Config, upstream: Upstream, store: Store, metrics: Metrics, guard: ReadGuard) -> Reads:
    """The read path over the same index session; the embedded index's files are served from its directory."""
    try:
        layout = IndexLayout.build(upstream.urls.base, upstream.urls.simple, config.reads.file_roots)
    except ValueError as exc:
        raise ConfigError(f"reads.file_roots / upstream.simple_url: {exc}") from None
    return Reads(
        layout,
        upstream,
        guard,
        public_url=config.server.public_url,
        cache=PageCache(config.reads.cache_size, config.reads.cache_ttl),
        max_page_size=config.reads.max_page_size,
        known_files=store.delivered_files,
        metrics=metrics,
        files_dir=config.upstream.data_dir if config.upstream.embedded and not config.reads.file_roots else None,
    )


def _follow(svc: Services) -> list[asyncio.Task[None]]:
    """The change log's follower over this process's caches, and on PostgreSQL the listener that wakes it."""
    authenticator = svc.authenticator
    # A project's change drops its cached pages. Not the upload path's listing of the index's files: a stale
    # "not listed" is safe there (the index refuses the file, and the gateway asks again), "listed" is always
    # confirmed afresh, and dropping it for every upload, this process's own included, made each small upload
    # fetch its project's page from the index.
    invalidations = Invalidations(
        token=authenticator.forget,
        user=authenticator.forget_user,
        project=svc.reads.purge,
        credentials=authenticator.forget_all,
    )
    metrics = svc.metrics
    follower = Follower(
        svc.store,
        invalidations,
        interval=FOLLOW_INTERVAL,
        trust=FOLLOW_TRUST,
        applied=lambda kind: metrics.changes_applied.labels(kind).inc(),
        failed=metrics.change_log_failures.inc,
    )
    tasks = [asyncio.create_task(follower.run(), name="change-follower")]
    if svc.store.listens():
        tasks.append(asyncio.create_task(svc.store.listen_for_changes(follower.wake), name="change-listener"))
    return tasks


async def _probe(upstream: Upstream) -> None:
    """Keep `upload_gateway_upstream_up` current, so an idle gateway can alert on a dead index."""
    while True:
        await upstream.ping()
        await asyncio.sleep(PROBE_INTERVAL)


# How the HTTP server runs the app (`serve`, and the tests' in-process servers): request bodies are never
# decompressed (see `identity_bodies_only`).
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}


def create_app(
    config: Config,
    *,
    metrics: Metrics | None = None,
    shared: EmbeddedIndex | None = None,
    start_warnings: bool = True,
) -> web.Application:
    """The gateway's app. A worker of `serve --workers N` passes its `Metrics` (written to the workers' shared
    files) and the embedded index the supervisor started; otherwise the app has a registry of its own.
    `start_warnings`: whether it warns at start of what the configuration refuses (trusted publishers whose
    issuer changed): of N workers, the first one's first start does, not each worker at each restart."""
    app = web.Application(
        middlewares=[
            access_middleware(config.server.trusted_proxies),
            error_middleware,
            identity_bodies_only,
            body_deadline(config.limits.clients),
        ]
    )
    app[CONFIG] = config
    app[METRICS] = Metrics() if metrics is None else metrics
    app.cleanup_ctx.append(functools.partial(lifecycle, shared=shared, start_warnings=start_warnings))
    for path in ("/", "/legacy/", "/legacy"):
        app.router.add_post(path, upload, expect_handler=defer_continue)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/", landing)
    oidc_routes.setup(app)
    app.router.add_get("/{tail:.*}", read)
    app.router.add_route("*", "/{tail:.*}", method_not_allowed)
    account_pages.setup(app)  # /account/ wins over the catch-all GET: a sub-app's prefix is matched first
    return app
