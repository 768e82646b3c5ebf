"""The index behind the gateway: URL mapping, link rewriting, streamed reads and the upload POST.

The gateway talks to the index with its own service credential; client credentials never pass.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

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
    ) -> None:
        """`session` for reads; `upload_session` for uploads only, so that stalled uploads never take the
        connections reads need."""
        self.urls = urls
        self._session = session
        self._upload_session = upload_session
        self._auth = {"Authorization": authorization} if authorization else {}
        self._public_url = public_url
        self._metrics = metrics

    def unreachable(self, route: str, exc: BaseException) -> GatewayError:
        self._metrics.upstream_errors.labels(route, "unreachable").inc()
        return GatewayError(
            502,
            f"The package index at {self.urls.base} is unreachable ({type(exc).__name__}); try again later",
            "upstream_unreachable",
        )

    def timed_out(self, route: str) -> GatewayError:
        self._metrics.upstream_errors.labels(route, "timeout").inc()
        return GatewayError(504, f"The package index at {self.urls.base} did not answer in time", "upstream_timeout")

    async def ping(self) -> bool:
        """Is the index answering? Also kept in `upload_gateway_upstream_up`."""
        try:
            async with self._session.get(
                self.urls.simple, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                up = resp.status < 500
        except (aiohttp.ClientError, TimeoutError):
            up = False
        self._metrics.upstream_up.set(1 if up else 0)
        return up

    async def post_upload(
        self, body: AsyncIterable[bytes | memoryview], *, content_type: str, length: int
    ) -> UpstreamAnswer:
        """POST the gateway's own multipart body with its Content-Length (never chunked)."""
        headers = {"Content-Type": content_type, "Content-Length": str(length), **self._auth}
        started = time.perf_counter()
        async with self._upload_session.post(
            self.urls.upload, data=body, headers=headers, allow_redirects=False
        ) as resp:
            text = await resp.text(errors="replace")
            answer = UpstreamAnswer(resp.status, resp.reason or "", text[:4096])
        self._metrics.upstream_duration.labels("upload").observe(time.perf_counter() - started)
        if answer.status >= 500 or answer.status in (401, 403):
            self._metrics.upstream_errors.labels("upload", "status_5xx" if answer.status >= 500 else "auth").inc()
        return answer

    async def simple_page(self, project: str) -> str | None:
        """The index's simple page for a project, or None when it has none (404, or a redirect elsewhere)."""
        started = time.perf_counter()
        try:
            async with self._session.get(
                self.urls.simple + project + "/", headers=self._auth, allow_redirects=False
            ) as resp:
                self._metrics.upstream_duration.labels("simple").observe(time.perf_counter() - started)
                if resp.status == 404 or 300 <= resp.status < 400:
                    return None
                if resp.status >= 400:
                    if resp.status >= 500:
                        self._metrics.upstream_errors.labels("simple", "status_5xx").inc()
                    raise GatewayError(
                        502, f"The package index at {self.urls.base} failed (HTTP {resp.status})", "upstream_error"
                    )
                return await resp.text(errors="replace")
        except aiohttp.ClientConnectionError as exc:
            raise self.unreachable("simple", exc) from None
        except TimeoutError:
            raise self.timed_out("simple") from None

    async def projects(self) -> list[tuple[str, str]]:
        """Every project the index lists on its simple root: (PEP 503 name, the name as listed)."""
        try:
            async with self._session.get(self.urls.simple, headers=self._auth, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise GatewayError(
                        502, f"The package index at {self.urls.base} failed (HTTP {resp.status})", "upstream_error"
                    )
                page = await resp.text(errors="replace")
        except aiohttp.ClientConnectionError as exc:
            raise self.unreachable("simple", exc) from None
        except TimeoutError:
            raise self.timed_out("simple") from None
        return simple_root_projects(page)

    async def passthrough(self, request: web.Request) -> web.StreamResponse:
        route = route_of(request.path)
        url = self.urls.for_path(request.path_qs)
        headers = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
        started = time.perf_counter()
        try:
            async with self._session.request(
                request.method, url, headers=headers | self._auth, allow_redirects=False
            ) as resp:
                self._metrics.upstream_duration.labels(route).observe(time.perf_counter() - started)
                if resp.status >= 500:
                    self._metrics.upstream_errors.labels(route, "status_5xx").inc()
                return await self._relay(request, resp, url)
        except aiohttp.ClientConnectionError as exc:
            raise self.unreachable(route, exc) from None
        except TimeoutError:
            raise self.timed_out(route) from None

    async def _relay(self, request: web.Request, resp: aiohttp.ClientResponse, url: str) -> web.StreamResponse:
        headers = {name: resp.headers[name] for name in RESPONSE_HEADERS if name in resp.headers}
        if "Location" in resp.headers:
            location = urljoin(url, resp.headers["Location"])
            headers["Location"] = self.urls.to_public(location, self._public_url) or location
        rewrite = _rewriter(resp.content_type)
        if rewrite is not None and request.method == "GET" and (resp.content_length or 0) <= MAX_REWRITE_BYTES:
            body = await _read_up_to(resp, MAX_REWRITE_BYTES + 1)
            if len(body) <= MAX_REWRITE_BYTES:
                headers.pop("content-length", None)
                text = rewrite(body.decode(resp.charset or "utf-8", "replace"), url, self.urls, self._public_url)
                return web.Response(status=resp.status, headers=headers, body=text.encode("utf-8"))
            return await self._stream(request, resp, headers, first=body)
        return await self._stream(request, resp, headers)

    async def _stream(
        self, request: web.Request, resp: aiohttp.ClientResponse, headers: dict[str, str], first: bytes = b""
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=resp.status, headers=headers)
        if first:
            out.headers.pop("content-length", None)
        await out.prepare(request)
        if first:
            await out.write(first)
        async for chunk in resp.content.iter_chunked(CHUNK):
            await out.write(chunk)
        await out.write_eof()
        return out


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
