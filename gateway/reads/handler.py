"""The read path's I/O: the allowlisted routes answered from the cache, the index, or the embedded index's files.

Every decision is made by the pure modules beside this one (`paths.decide`, `negotiate.choose`, `cache`); here
they meet the network. Pages are read from the index up to `reads.max_page_size` and rewritten in a worker
thread; concurrent requests for a page the cache lacks share one fetch. The service credential goes only to the
URLs `paths.decide` returned.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.proxy import Upstream, read_up_to
from gateway.read_access import OTHER, ROOT, ReadGrant, ReadGuard, ReadTarget, root_page
from gateway.reads.cache import KINDS, CacheKey, Page, PageCache, cache_key
from gateway.reads.landing import landing_page
from gateway.reads.negotiate import HTML, JSON_V1, Kind, Representation, choose
from gateway.reads.paths import FileRequest, IndexLayout, ProjectPage, ReadRoute, SimpleRoot, decide
from gateway.reads.render import Source, background_worker, render
from gateway.reads.rewrite import public_link
from gateway.reads.simple_json import root_json

CHUNK = 256 * 1024
IN_THREAD_BYTES = 1 << 20
# Pages may be shown by a browser on the gateway's origin (that of /account/): no script, no frames, no forms.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
FILE_CSP = "default-src 'none'; sandbox"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": PAGE_CSP}
PAGE_CACHE_CONTROL = "max-age=0, must-revalidate"
FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"
FILE_REQUEST_HEADERS = ("range", "if-range", "if-none-match", "if-modified-since", "user-agent")
FILE_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "etag",
    "last-modified",
    "content-range",
    "accept-ranges",
    "content-disposition",
)
_UPSTREAM_ACCEPT: dict[Kind, str] = {"html": HTML, "json": f"{JSON_V1}, {HTML};q=0.1"}

KnownFiles = Callable[[str], Awaitable[Mapping[str, tuple[int, float]]]]


@dataclass(frozen=True)
class Fetched:
    """An index page as read: its body (at most the page cap), its content type and charset, its validators."""

    status: int
    body: bytes
    content_type: str
    charset: str
    etag: str | None
    last_modified: str | None


class Reads:
    def __init__(
        self,
        layout: IndexLayout,
        upstream: Upstream,
        guard: ReadGuard,
        *,
        public_url: str,
        cache: PageCache,
        max_page_size: int,
        known_files: KnownFiles,
        metrics: Metrics,
        files_dir: Path | None = None,
    ) -> None:
        self.layout = layout
        self.cache = cache
        self._upstream = upstream
        self._guard = guard
        self._public_url = public_url
        self._max_page = max_page_size
        self._known_files = known_files
        self._metrics = metrics
        self._files_dir = files_dir
        self._fetches: dict[CacheKey, asyncio.Task[Page]] = {}
        # One process, at a lower priority, started now: large pages are rendered one at a time (so a hostile index
        # cannot take every core), and no request waits for an interpreter to start.
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=get_context("spawn"), initializer=background_worker, initargs=(os.getpid(),)
        )
        self._pool.submit(int)

    def purge(self, project: str) -> None:
        """An upload or removal through the gateway changed the project: its pages and the root go at once."""
        dropped = self.cache.purge(project)
        # A fetch in flight began before the change: readers from now on start their own rather than share it.
        for name in (project, None):
            for kind in KINDS:
                self._fetches.pop(cache_key(name, kind), None)
        self._metrics.read_cache_purges.inc()
        self._metrics.read_cache_bytes.set(self.cache.bytes)
        if dropped:
            self._metrics.read_cache_pages.set(len(self.cache))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = decide(request.raw_path, self.layout)
        # Who may read what (`reads.access`), decided before any cache lookup or index request: the cache below is
        # keyed by project and representation only, and serves whoever got past this.
        grant = await self._guard.authorize_target(request, read_target(route))
        if isinstance(route, FileRequest):
            self._metrics.reads.labels("file", "file").inc()
            if self._files_dir is not None and route.project is not None:
                return self._local_file(route, self._files_dir, grant)
            return await self._upstream_file(request, route, grant)
        if route.needs_redirect:
            raise web.HTTPMovedPermanently(location=self._public_url + route.location, headers=SECURITY_HEADERS)
        representation = choose(request.headers.get("Accept"), route.format)
        self._metrics.reads.labels("root" if isinstance(route, SimpleRoot) else "project", representation.kind).inc()
        if isinstance(route, SimpleRoot) and grant.projects is not None:
            return await self._filtered_root(grant, representation)
        page = await self._page(route, representation.kind)
        return self._page_response(request, page, representation, grant)

    async def _filtered_root(self, grant: ReadGrant, representation: Representation) -> web.Response:
        """The root for a project-scoped reader: only its projects, never cached (it is this reader's)."""
        names = await self._upstream.projects()
        if representation.kind == "json":
            body = root_json(listed for name, listed in names if grant.may_see(name))
        else:
            body = root_page(names, grant).encode()
        headers = {
            **SECURITY_HEADERS,
            "Vary": "Accept, Authorization",
            "Cache-Control": grant.cache_control("no-cache"),
            "Content-Type": representation.content_type + ("; charset=utf-8" if representation.kind == "html" else ""),
        }
        return web.Response(body=body, headers=headers)

    def landing(self, request: web.Request) -> web.Response:
        return web.Response(
            body=landing_page(self._public_url),
            content_type="text/html",
            charset="utf-8",
            headers=SECURITY_HEADERS,
        )

    def _page_response(
        self, request: web.Request, page: Page, representation: Representation, grant: ReadGrant
    ) -> web.Response:
        headers = {
            **SECURITY_HEADERS,
            "ETag": page.etag,
            "Vary": "Accept, Authorization" if grant.authenticated else "Accept",
            "Cache-Control": grant.cache_control(PAGE_CACHE_CONTROL),
        }
        if etag_matches(request.headers.get("If-None-Match"), page.etag):
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if representation.kind == "html" else None
        return web.Response(body=page.body, content_type=representation.content_type, charset=charset, headers=headers)

    async def _page(self, route: SimpleRoot | ProjectPage, kind: Kind) -> Page:
        key = cache_key(route.project if isinstance(route, ProjectPage) else None, kind)
        cached = self.cache.get(key)
        if cached is not None and self.cache.fresh(cached):
            self._metrics.read_cache_hits.labels(kind).inc()
            return cached
        fetch = self._fetches.get(key)
        if fetch is None:
            self._metrics.read_cache_misses.labels(kind).inc()
            fetch = asyncio.create_task(self._refresh(key, route, kind, cached), name=f"read {key}")
            self._fetches[key] = fetch
            fetch.add_done_callback(lambda done: self._fetched(key, done))
        else:
            self._metrics.read_cache_hits.labels(kind).inc()
        return await asyncio.shield(fetch)  # a client that goes away does not cancel the others' fetch

    def _fetched(self, key: CacheKey, done: asyncio.Task[Page]) -> None:
        if self._fetches.get(key) is done:  # not the fetch that replaced it after a purge
            del self._fetches[key]
        if not done.cancelled():
            done.exception()  # retrieved here too, for when every waiter went away

    async def _refresh(self, key: CacheKey, route: SimpleRoot | ProjectPage, kind: Kind, cached: Page | None) -> Page:
        generation = self.cache.generation(key)
        fetched = await self._fetch_page(route, kind, cached)
        now = self.cache.clock()
        if fetched.status == 304 and cached is not None:
            page = cached.confirmed(now)
        else:
            known = await self._known_files(route.project) if kind == "json" and isinstance(route, ProjectPage) else {}
            body, etag = await self._rendered(route, kind, fetched, known)
            page = Page(body, etag, fetched.etag, fetched.last_modified, now)
        self.cache.put(key, page, generation)
        self._metrics.read_cache_bytes.set(self.cache.bytes)
        self._metrics.read_cache_pages.set(len(self.cache))
        return page

    async def _fetch_page(self, route: SimpleRoot | ProjectPage, kind: Kind, cached: Page | None) -> Fetched:
        url = route.upstream_url
        headers = {"Accept": _UPSTREAM_ACCEPT[kind], **self._upstream.service_headers}
        if cached is not None and cached.upstream_etag:
            headers["If-None-Match"] = cached.upstream_etag
        if cached is not None and cached.upstream_last_modified:
            headers["If-Modified-Since"] = cached.upstream_last_modified
        started = time.perf_counter()
        async with (
            self._upstream.exchange("simple", "GET", url),
            self._upstream.session.get(url, headers=headers, allow_redirects=False) as resp,
        ):
            self._metrics.upstream_duration.labels("simple").observe(time.perf_counter() - started)
            if resp.status == 304 and cached is not None:
                return Fetched(304, b"", "", "", resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            if resp.status == 404 or 300 <= resp.status < 400:
                raise _no_project(route)
            if resp.status != 200:
                raise self._upstream.failed("simple", "GET", url, resp.status)
            _refuse_encoded(resp, "page")
            body = await read_up_to(resp, self._max_page + 1)
            if len(body) > self._max_page:
                raise GatewayError(
                    502,
                    f"The package index sent a page larger than reads.max_page_size "
                    f"({self._max_page // 2**20} MiB); it is not served",
                    "upstream_page_too_large",
                )
            return Fetched(
                200,
                body,
                resp.content_type,
                resp.charset or "utf-8",
                resp.headers.get("ETag"),
                resp.headers.get("Last-Modified"),
            )

    async def _rendered(
        self, route: SimpleRoot | ProjectPage, kind: Kind, fetched: Fetched, known: Mapping[str, tuple[int, float]]
    ) -> tuple[bytes, str]:
        """Small pages in a worker thread; large ones in a worker process, where their garbage collection and
        their hold on the interpreter lock cannot stall the event loop (a 30 MiB page takes seconds)."""
        source = Source(
            fetched.body,
            fetched.content_type,
            fetched.charset,
            route.upstream_url,
            route.project if isinstance(route, ProjectPage) else None,
            kind,
            known,
        )
        if len(fetched.body) <= IN_THREAD_BYTES:
            return await asyncio.to_thread(render, source, self.layout, self._public_url)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, render, source, self.layout, self._public_url)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _local_file(self, route: FileRequest, files_dir: Path, grant: ReadGrant) -> web.FileResponse:
        """A file of the embedded index, from its data directory (the kernel's sendfile), never outside it.

        Only a distribution's name (or its sidecar's) is looked up here; any other name goes to pypiserver, which
        serves only packages: the directory may hold the gateway's own state (`data_dir = "data"`)."""
        relative = route.path[len(self.layout.file_paths[0]) :]
        root = files_dir.resolve()
        path = (root / relative).resolve()
        if (
            any(part.startswith(".") for part in relative.split("/"))
            or not path.is_relative_to(root)
            or not path.is_file()
        ):
            raise _no_file(route)
        return web.FileResponse(
            path,
            headers={
                "Cache-Control": grant.cache_control(FILE_CACHE_CONTROL),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": FILE_CSP,
            },
        )

    async def _upstream_file(self, request: web.Request, route: FileRequest, grant: ReadGrant) -> web.StreamResponse:
        """A file relayed from the index. Only the exchange with the index runs inside `exchange`: a client that
        goes away while the file is written is not an index fault; an index that stops mid-file cuts the client's
        connection too, so the client sees the file incomplete, never a short file that looks whole."""
        url = route.upstream_url
        headers = {name: request.headers[name] for name in FILE_REQUEST_HEADERS if name in request.headers}
        started = time.perf_counter()
        async with self._upstream.exchange("packages", request.method, url):
            resp = await self._upstream.session.request(
                request.method, url, headers=headers | self._upstream.service_headers, allow_redirects=False
            )
            self._metrics.upstream_duration.labels("packages").observe(time.perf_counter() - started)
        try:
            out = web.StreamResponse(status=resp.status, headers=self._file_headers(resp, route, grant))
            await out.prepare(request)
            try:
                async with self._upstream.exchange("packages", request.method, url):
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        await out.write(chunk)
            except GatewayError:
                if request.transport is not None:
                    request.transport.close()
                return out
            await out.write_eof()
            return out
        finally:
            resp.release()

    def _file_headers(self, resp: aiohttp.ClientResponse, route: FileRequest, grant: ReadGrant) -> dict[str, str]:
        if resp.status == 404:
            raise _no_file(route)
        if resp.status >= 400 and resp.status not in (412, 416):
            raise self._upstream.failed("packages", "GET", route.upstream_url, resp.status)
        _refuse_encoded(resp, "file")
        headers = {name: resp.headers[name] for name in FILE_RESPONSE_HEADERS if name in resp.headers}
        headers |= {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": FILE_CSP}
        if 300 <= resp.status < 400 and resp.status != 304:
            location = public_link(resp.headers.get("Location", ""), route.upstream_url, self.layout, self._public_url)
            if not location:  # elsewhere on the index's host: not for clients to follow
                raise self._upstream.failed("packages", "GET", route.upstream_url, resp.status)
            headers["Location"] = location
        if resp.status in (200, 206, 304):
            headers["Cache-Control"] = grant.cache_control(FILE_CACHE_CONTROL)
        return headers


def read_target(route: ReadRoute) -> ReadTarget:
    """The allowlist's route as the access decision sees it; a file that names no project is `other` (only a reader
    of everything may fetch it)."""
    if isinstance(route, SimpleRoot):
        return ROOT
    if isinstance(route, ProjectPage):
        return ReadTarget("project", route.project)
    return ReadTarget("file", route.project) if route.project is not None else OTHER


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison of `If-None-Match` against the page's ETag (`*` matches any)."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def _refuse_encoded(resp: aiohttp.ClientResponse, what: str) -> None:
    """The gateway asks for identity: a page or file still sent compressed would be read, or relayed without its
    Content-Encoding, as other bytes than the index meant."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise GatewayError(
            502,
            f"The package index sent a {what} compressed ({encoding[:20]}) though asked for it uncompressed; "
            "it is not served",
            "upstream_bad_page",
        )


def _no_project(route: SimpleRoot | ProjectPage) -> GatewayError:
    if isinstance(route, SimpleRoot):
        return GatewayError(502, "The package index has no simple index at its configured URL", "upstream_error")
    return GatewayError(404, f"Not found: the index has no project '{route.project}'", "project_not_found")


def _no_file(route: FileRequest) -> GatewayError:
    return GatewayError(
        404, f"Not found: the index has no file '{route.filename}'; see /simple/ for what it has", "file_not_found"
    )
