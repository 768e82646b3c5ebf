"""The index behind the gateway, as the upload path talks to it: the upload POST, project listings, the probe.

The gateway talks to the index with its own service credential; client credentials never pass. Reads that
clients make go through `gateway.reads` instead.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.reads.rewrite import links_of, root_projects

CHUNK = 256 * 1024


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


@dataclass(frozen=True)
class UpstreamAnswer:
    status: int
    reason: str
    text: str


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


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


class Upstream:
    def __init__(
        self,
        urls: UpstreamURLs,
        session: aiohttp.ClientSession,
        *,
        authorization: str | None,
        metrics: Metrics,
        max_page_size: int,
    ) -> None:
        self.urls = urls
        self.session = session
        self._auth = {"Authorization": authorization} if authorization else {}
        self._metrics = metrics
        self._max_page = max_page_size

    @property
    def service_headers(self) -> dict[str, str]:
        """The gateway's own credential for the index, for the read path's allowlisted URLs only."""
        return dict(self._auth)

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
            async with self.session.get(
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
        async with self.session.post(self.urls.upload, data=body, headers=headers, allow_redirects=False) as resp:
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
            async with self.session.get(
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
                return await self._page_text(resp)
        except aiohttp.ClientConnectionError as exc:
            raise self.unreachable("simple", exc) from None
        except TimeoutError:
            raise self.timed_out("simple") from None

    async def _page_text(self, resp: aiohttp.ClientResponse) -> str:
        """A page read up to `max_page_size` (a larger one is a 502, as on the read path)."""
        body = await _read_up_to(resp, self._max_page + 1)
        if len(body) > self._max_page:
            raise GatewayError(
                502,
                f"The package index sent a page larger than reads.max_page_size ({self._max_page // 2**20} MiB)",
                "upstream_page_too_large",
            )
        return body.decode(resp.charset or "utf-8", "replace")

    async def projects(self) -> list[tuple[str, str]]:
        """Every project the index lists on its simple root: (PEP 503 name, the name as listed)."""
        try:
            async with self.session.get(self.urls.simple, headers=self._auth, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise GatewayError(
                        502, f"The package index at {self.urls.base} failed (HTTP {resp.status})", "upstream_error"
                    )
                page = await self._page_text(resp)
        except aiohttp.ClientConnectionError as exc:
            raise self.unreachable("simple", exc) from None
        except TimeoutError:
            raise self.timed_out("simple") from None
        return await asyncio.to_thread(lambda: root_projects(links_of(page)))


async def _read_up_to(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body)
