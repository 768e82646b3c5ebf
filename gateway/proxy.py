"""The index behind the gateway: URL mapping, link rewriting, streamed reads and the upload POST.

The gateway talks to the index with its own service credential; client credentials never pass. Every
request to the index runs in one boundary, `Upstream.exchange`, where any failure becomes a 502 or 504 whose
message never names the index; its URL and the cause go to the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp import web
from packaging.utils import InvalidName, canonicalize_name

from gateway.errors import GatewayError
from gateway.metrics import Metrics

CHUNK = 256 * 1024
MAX_REWRITE_BYTES = 32 * 1024 * 1024
REQUEST_HEADERS = ("accept", "if-none-match", "if-modified-since", "range", "user-agent")
RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "etag",
    "last-modified",
    "cache-control",
    "content-range",
    "accept-ranges",
    "content-disposition",
)
_HREF = re.compile(r"""(\b(?:href|src)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
log = logging.getLogger("gateway.upstream")
_REWRITABLE = ("text/html", "application/vnd.pypi.simple.v1+json", "application/json")


@dataclass(frozen=True)
class UpstreamURLs:
    """Where the index lives; every URL ends with '/'."""

    base: str
    upload: str
    simple: str

    @classmethod
    def build(cls, base: str, upload: str = "", simple: str = "") -> UpstreamURLs:
        base = _slash(base)
        return cls(base=base, upload=upload or base, simple=_slash(simple) if simple else base + "simple/")

    def for_path(self, path_qs: str) -> str:
        """The index URL for a gateway path: /simple/… maps onto the index's simple root, the rest onto its base."""
        if path_qs == "/simple" or path_qs.startswith("/simple?"):
            return self.simple + path_qs[len("/simple") :]
        if path_qs.startswith("/simple/"):
            return self.simple + path_qs[len("/simple/") :]
        return self.base + path_qs.lstrip("/")

    def to_public(self, url: str, public_url: str) -> str | None:
        """The gateway URL for an absolute index URL, or None when it points elsewhere."""
        if url.startswith(self.simple):
            return f"{public_url}/simple/{url[len(self.simple) :]}"
        if url.startswith(self.base):
            return f"{public_url}/{url[len(self.base) :]}"
        return None

    def hide(self, text: str, public_url: str) -> str:
        """The index's own words with every URL on its host shown as the gateway's: they reach clients."""
        origins = sorted({_origin(url) for url in (self.base, self.upload, self.simple)}, key=len, reverse=True)
        own = re.compile("(?:" + "|".join(map(re.escape, origins)) + r")[^\s\"'<>]*", re.IGNORECASE)
        return own.sub(lambda match: self.to_public(match.group(0), public_url) or public_url + "/", text)


@dataclass(frozen=True)
class UpstreamAnswer:
    status: int
    reason: str
    text: str


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def rewrite_html(text: str, page_url: str, urls: UpstreamURLs, public_url: str) -> str:
    """Point every link that resolves into the index at the gateway (path-absolute and relative alike)."""

    def replace(match: re.Match[str]) -> str:
        target = urls.to_public(urljoin(page_url, unescape(match.group(3))), public_url)
        return match.group(0) if target is None else f"{match.group(1)}{match.group(2)}{target}{match.group(2)}"

    return _HREF.sub(replace, text)


def rewrite_json(data: Any, page_url: str, urls: UpstreamURLs, public_url: str) -> Any:
    """PEP 691 and `/<project>/json` pages: rewrite `url` and `*_url` string values."""
    if isinstance(data, dict):
        return {
            key: _rewrite_value(value, page_url, urls, public_url)
            if isinstance(value, str) and (key == "url" or key.endswith("_url"))
            else rewrite_json(value, page_url, urls, public_url)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [rewrite_json(item, page_url, urls, public_url) for item in data]
    return data


def _rewrite_value(value: str, page_url: str, urls: UpstreamURLs, public_url: str) -> str:
    return urls.to_public(urljoin(page_url, value), public_url) or value


class _Anchors(HTMLParser):
    """The text of every <a> on a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._text is not None:
            self.texts.append("".join(self._text).strip())
            self._text = None


def simple_root_projects(page: str) -> list[tuple[str, str]]:
    """The projects a PEP 503 root page lists (the link text is the name), each once, valid names only."""
    parser = _Anchors()
    parser.feed(page)
    parser.close()
    projects: dict[str, str] = {}
    for text in parser.texts:
        try:
            projects.setdefault(canonicalize_name(text, validate=True), text)
        except InvalidName:
            continue
    return sorted(projects.items())


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


def route_of(path: str) -> str:
    """A bounded label for metrics."""
    if path.startswith("/simple"):
        return "simple"
    if path.startswith("/packages/"):
        return "packages"
    return "json" if path.endswith("/json") else "other"


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
        authorization: str | None,
        public_url: str,
        metrics: Metrics,
    ) -> None:
        self.urls = urls
        self._session = session
        self._auth = {"Authorization": authorization} if authorization else {}
        self._public_url = public_url
        self._metrics = metrics
        self._answering: bool | None = None

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
                self._session.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)) as resp,
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

    async def post_upload(
        self, body: AsyncIterable[bytes | memoryview], *, content_type: str, length: int
    ) -> UpstreamAnswer:
        """POST the gateway's own multipart body with its Content-Length (never chunked)."""
        headers = {"Content-Type": content_type, "Content-Length": str(length), **self._auth}
        url = self.urls.upload
        started = time.perf_counter()
        async with (
            self.exchange("upload", "POST", url),
            self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp,
        ):
            text = await resp.text(errors="replace")
            hide = self.urls.hide
            answer = UpstreamAnswer(
                resp.status, hide(resp.reason or "", self._public_url), hide(text[:4096], self._public_url)
            )
        self._metrics.upstream_duration.labels("upload").observe(time.perf_counter() - started)
        if answer.status >= 500 or answer.status in (401, 403):
            kind, reason = ("status_5xx", "upstream_error") if answer.status >= 500 else ("auth", "upstream_auth")
            self._metrics.upstream_errors.labels("upload", kind).inc()
            log_fault("upload", reason, "POST", url, f"HTTP {answer.status}: {_gist(text, 200)}")
        return answer

    async def simple_page(self, project: str) -> str | None:
        """The index's simple page for a project, or None when it has none (404, or a redirect elsewhere)."""
        url = self.urls.simple + project + "/"
        started = time.perf_counter()
        async with (
            self.exchange("simple", "GET", url),
            self._session.get(url, headers=self._auth, allow_redirects=False) as resp,
        ):
            self._metrics.upstream_duration.labels("simple").observe(time.perf_counter() - started)
            if resp.status == 404 or 300 <= resp.status < 400:
                return None
            if resp.status >= 400:
                raise self.failed("simple", "GET", url, resp.status)
            return await resp.text(errors="replace")

    async def projects(self) -> list[tuple[str, str]]:
        """Every project the index lists on its simple root: (PEP 503 name, the name as listed)."""
        url = self.urls.simple
        async with (
            self.exchange("simple", "GET", url),
            self._session.get(url, headers=self._auth, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                raise self.failed("simple", "GET", url, resp.status)
            page = await resp.text(errors="replace")
        return simple_root_projects(page)

    async def passthrough(self, request: web.Request) -> web.StreamResponse:
        """Relay a read. Only the exchange with the index runs inside `exchange`: a client that goes away while
        the answer is written is not an index fault."""
        route = route_of(request.path)
        url = self.urls.for_path(request.path_qs)
        headers = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
        started = time.perf_counter()
        async with contextlib.AsyncExitStack() as stack:
            async with self.exchange(route, request.method, url):
                resp = await stack.enter_async_context(
                    self._session.request(request.method, url, headers=headers | self._auth, allow_redirects=False)
                )
                self._metrics.upstream_duration.labels(route).observe(time.perf_counter() - started)
                if resp.status >= 500:
                    self._metrics.upstream_errors.labels(route, "status_5xx").inc()
                out_headers = self._response_headers(resp, url)
                rewrite = _rewriter(resp.content_type)
                first = b""
                if rewrite is not None and request.method == "GET" and (resp.content_length or 0) <= MAX_REWRITE_BYTES:
                    first = await _read_up_to(resp, MAX_REWRITE_BYTES + 1)
                    if len(first) <= MAX_REWRITE_BYTES:
                        out_headers.pop("content-length", None)
                        text = rewrite(
                            first.decode(resp.charset or "utf-8", "replace"), url, self.urls, self._public_url
                        )
                        return web.Response(status=resp.status, headers=out_headers, body=text.encode("utf-8"))
            return await self._stream(request, resp, out_headers, self._chunks(route, request.method, url, resp), first)

    def _response_headers(self, resp: aiohttp.ClientResponse, url: str) -> dict[str, str]:
        headers = {name: resp.headers[name] for name in RESPONSE_HEADERS if name in resp.headers}
        if "Location" in resp.headers:
            location = urljoin(url, resp.headers["Location"])
            headers["Location"] = self.urls.to_public(location, self._public_url) or location
        return headers

    async def _chunks(
        self, route: str, method: str, url: str, resp: aiohttp.ClientResponse
    ) -> AsyncGenerator[bytes, None]:
        async with self.exchange(route, method, url):
            async for chunk in resp.content.iter_chunked(CHUNK):
                yield chunk

    async def _stream(
        self,
        request: web.Request,
        resp: aiohttp.ClientResponse,
        headers: dict[str, str],
        chunks: AsyncGenerator[bytes, None],
        first: bytes,
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=resp.status, headers=headers)
        if first:
            out.headers.pop("content-length", None)
        await out.prepare(request)
        if first:
            await out.write(first)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    await out.write(chunk)
        except IndexFault:
            # The answer has begun and nothing can replace it: close the connection after what was sent (as nginx
            # does), so the client sees the answer incomplete (short of its Content-Length, or without its last chunk).
            if request.transport is not None:
                request.transport.close()
            return out
        await out.write_eof()
        return out


def log_fault(route: str, reason: str, method: str, url: str, cause: str) -> None:
    """The operator's one line for an index fault: the index's URL and the cause, never shown to clients."""
    log.warning("index fault on %s: %s", route, reason, extra={"method": method, "url": url, "cause": cause})


def _gist(text: str, limit: int) -> str:
    """The start of `text` on one line, for the log."""
    return " ".join(text.split())[:limit]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _read_up_to(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body)


def _rewriter(content_type: str) -> Callable[[str, str, UpstreamURLs, str], str] | None:
    if content_type not in _REWRITABLE:
        return None
    if content_type == "text/html":
        return rewrite_html
    return _rewrite_json_text


def _rewrite_json_text(text: str, page_url: str, urls: UpstreamURLs, public_url: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return json.dumps(rewrite_json(data, page_url, urls, public_url))
