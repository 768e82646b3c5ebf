"""The index behind the gateway, as the upload path talks to it: the upload POST, project listings, the probe.

The gateway talks to the index with its own service credential; client credentials never pass. Every
request to the index runs in one boundary, `Upstream.exchange`, where any failure becomes a 502 or 504 whose
message never names the index; its URL and the cause go to the log. The reads clients make are answered by
`gateway.reads`, through the same boundary. Where the index lives is `gateway.index_urls` (pure); what an answer
to an upload means is `gateway.upload.answers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from gateway.errors import GatewayError
from gateway.index_urls import UpstreamURLs
from gateway.metrics import Metrics
from gateway.reads.rewrite import links_of, root_projects
from gateway.upload import answers
from gateway.upload.answers import UpstreamAnswer
from gateway.upload.pump import UploadBody

CHUNK = 256 * 1024
log = logging.getLogger("gateway.upstream")


def aborting_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """Upstream sockets close with a reset (SO_LINGER 0), never a FIN.

    NOTE: pypiserver under gunicorn or wsgiref stores whatever arrived when a request body ends early with a
    FIN (bottle stops reading quietly), so an aborted upload would land truncated. A reset makes the index
    drop it. After a complete exchange the reset is harmless: the answer has been read.
    """
    family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


class IndexFault(GatewayError):
    """A failed exchange with the index, as the client sees it: a one-line message that never names the
    index. The request (`method`, `url`) and the `cause` are for the gateway's log; `kind` is the
    `upload_gateway_upstream_errors_total` label."""

    def __init__(self, status: int, message: str, reason: str, *, kind: str, method: str, url: str, cause: str) -> None:
        super().__init__(status, message, reason)
        self.kind = kind
        self.method = method
        self.url = url
        self.cause = cause


def index_fault(exc: aiohttp.ClientError | TimeoutError, method: str, url: str) -> IndexFault:
    """What any aiohttp client failure means for the client: 504 for a timeout, 502 for anything else (no
    connection, a reset, or an answer that is not HTTP: a malformed status line, garbage, a cut body)."""
    cause = _gist(f"{type(exc).__name__}: {exc}", 500)
    if isinstance(exc, TimeoutError):
        message = "The package index did not answer in time; try again later"
        return IndexFault(504, message, "upstream_timeout", kind="timeout", method=method, url=url, cause=cause)
    if isinstance(exc, aiohttp.ClientConnectorError):
        message = "The package index is unreachable; try again later"
        return IndexFault(502, message, "upstream_unreachable", kind="unreachable", method=method, url=url, cause=cause)
    message = "The package index sent no valid answer; try again later"
    return IndexFault(502, message, "upstream_protocol", kind="protocol", method=method, url=url, cause=cause)


def _refusal_behind(exc: BaseException) -> GatewayError | None:
    """The gateway's own refusal that aiohttp wrapped while it sent a request body: the client's fault (a
    truncated or invalid upload), not the index's."""
    cause = exc.__cause__
    for _ in range(4):
        if cause is None or isinstance(cause, GatewayError):
            return cause
        cause = cause.__cause__
    return None


class Upstream:
    def __init__(
        self,
        urls: UpstreamURLs,
        session: aiohttp.ClientSession,
        *,
        upload_session: aiohttp.ClientSession,
        authorization: str | None,
        public_url: str,
        metrics: Metrics,
        max_page_size: int,
    ) -> None:
        """`session` for reads; `upload_session` for uploads only, so that stalled uploads never take the
        connections reads need."""
        self.urls = urls
        self.session = session
        self._upload_session = upload_session
        self._auth = {"Authorization": authorization} if authorization else {}
        self._public_url = public_url
        self._metrics = metrics
        self._max_page = max_page_size
        self._answering: bool | None = None

    @property
    def service_headers(self) -> dict[str, str]:
        """The gateway's own credential for the index, for the read path's allowlisted URLs only."""
        return dict(self._auth)

    @contextlib.asynccontextmanager
    async def exchange(self, route: str, method: str, url: str, *, report: bool = True) -> AsyncIterator[None]:
        """The one boundary every request to the index runs in: any aiohttp client failure or timeout becomes
        an `IndexFault` (502/504, one line, no URL), logged once with the URL and the cause and counted."""
        try:
            yield
        except (aiohttp.ClientError, TimeoutError) as exc:
            refusal = _refusal_behind(exc)
            if refusal is not None:
                raise refusal from None
            fault = index_fault(exc, method, url)
            if report:
                self._metrics.upstream_errors.labels(route, fault.kind).inc()
                log_fault(route, fault.reason, method, url, fault.cause)
            raise fault from None

    def failed(self, route: str, method: str, url: str, status: int) -> IndexFault:
        """The index answered one of the gateway's requests with an error status: logged, counted, returned."""
        kind = "status_5xx" if status >= 500 else "status_4xx"
        message = f"The package index failed (HTTP {status}); try again later"
        fault = IndexFault(502, message, "upstream_error", kind=kind, method=method, url=url, cause=f"HTTP {status}")
        self._metrics.upstream_errors.labels(route, kind).inc()
        log_fault(route, fault.reason, method, url, fault.cause)
        return fault

    async def ping(self) -> bool:
        """Is the index answering? Kept in `upload_gateway_upstream_up`; a change is logged once."""
        url = self.urls.simple
        try:
            async with (
                self.exchange("ping", "GET", url, report=False),
                self.session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)) as resp,
            ):
                problem = f"HTTP {resp.status}" if resp.status >= 500 else ""
        except IndexFault as fault:
            problem = fault.cause
        up = not problem
        if up != self._answering:
            if not up:
                log.warning("the package index is not answering", extra={"url": url, "cause": problem})
            elif self._answering is not None:
                log.info("the package index answers again", extra={"url": url})
        self._answering = up
        self._metrics.upstream_up.set(1 if up else 0)
        return up

    async def post_upload(self, body: UploadBody, *, length: int) -> UpstreamAnswer:
        """POST the gateway's own multipart body with its Content-Length (never chunked)."""
        headers = {"Content-Type": body.content_type, "Content-Length": str(length), **self._auth}
        url = self.urls.upload
        started = time.perf_counter()
        async with (
            self.exchange("upload", "POST", url),
            self._upload_session.post(url, data=body, headers=headers, allow_redirects=False) as resp,
        ):
            text = await resp.text(errors="replace")
            hide = self.urls.hide
            answer = UpstreamAnswer(
                resp.status, hide(resp.reason or "", self._public_url), hide(text[:4096], self._public_url)
            )
        self._metrics.upstream_duration.labels("upload").observe(time.perf_counter() - started)
        fault = answers.fault_of(answer)
        if fault is not None:
            kind, reason = fault
            self._metrics.upstream_errors.labels("upload", kind).inc()
            log_fault("upload", reason, "POST", url, f"HTTP {answer.status}: {_gist(text, 200)}")
        return answer

    async def simple_page(self, project: str) -> str | None:
        """The index's simple page for a project, or None when it has none (404, or a redirect elsewhere)."""
        url = self.urls.simple + project + "/"
        started = time.perf_counter()
        async with (
            self.exchange("simple", "GET", url),
            self.session.get(url, headers=self._auth, allow_redirects=False) as resp,
        ):
            self._metrics.upstream_duration.labels("simple").observe(time.perf_counter() - started)
            if resp.status == 404 or 300 <= resp.status < 400:
                return None
            if resp.status >= 400:
                raise self.failed("simple", "GET", url, resp.status)
            return await self._page_text(resp)

    async def _page_text(self, resp: aiohttp.ClientResponse) -> str:
        """A page read up to `reads.max_page_size` (a larger one is a 502, as on the read path)."""
        body = await read_up_to(resp, self._max_page + 1)
        if len(body) > self._max_page:
            raise GatewayError(
                502,
                f"The package index sent a page larger than reads.max_page_size ({self._max_page // 2**20} MiB)",
                "upstream_page_too_large",
            )
        return body.decode(resp.charset or "utf-8", "replace")

    async def projects(self) -> list[tuple[str, str]]:
        """Every project the index lists on its simple root: (PEP 503 name, the name as listed)."""
        url = self.urls.simple
        async with (
            self.exchange("simple", "GET", url),
            self.session.get(url, headers=self._auth, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                raise self.failed("simple", "GET", url, resp.status)
            page = await self._page_text(resp)
        return await asyncio.to_thread(lambda: root_projects(links_of(page)))


def log_fault(route: str, reason: str, method: str, url: str, cause: str) -> None:
    """The operator's one line for an index fault: the index's URL and the cause, never shown to clients."""
    log.warning("index fault on %s: %s", route, reason, extra={"method": method, "url": url, "cause": cause})


def _gist(text: str, limit: int) -> str:
    """The start of `text` on one line, for the log."""
    return " ".join(text.split())[:limit]


async def read_up_to(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first whole chunks once they reach `limit` bytes: ask for one more than is accepted to tell."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)
