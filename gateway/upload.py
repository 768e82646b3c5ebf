"""The upload path (design.md §2): authenticate on headers, read the form while it streams, decide, then
stream the original bytes to the index with the same Content-Length, hashing them on the way.

The last chunk of the body is held back until the digests match, so a tampered or truncated upload never
completes at the index: the gateway aborts the upstream request instead. Memory stays bounded by a few
chunks; a client that sends the file before its metadata is spooled to an anonymous temporary file.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO

import aiohttp
from aiohttp import web

from gateway import __version__
from gateway.auth import Identity
from gateway.errors import GatewayError
from gateway.form import MAX_FORM_BYTES, FormReader, boundary_of
from gateway.proxy import Upstream, UpstreamAnswer
from gateway.validation import Upload, check_action, validate_upload

CHUNK = 256 * 1024
# Below this, hashing on the event loop is cheaper than a hop to a worker thread.
THREAD_FEED_MIN = 64 * 1024
MAX_HEAD_BYTES = 2 * MAX_FORM_BYTES
_TAGS = re.compile(r"<[^>]+>")
_PRE = re.compile(r"<pre>(.*?)</pre>", re.DOTALL | re.IGNORECASE)

Authorize = Callable[[Identity, Upload], Awaitable[None]]


@dataclass(frozen=True)
class Accepted:
    """What an accepted upload was, for metrics, logs and the audit trail."""

    upload: Upload
    size: int
    reason: str


class BodyPump:
    """Reads the client's body chunk by chunk and feeds it to the form reader."""

    def __init__(self, request: web.Request, reader: FormReader, *, length: int, read_timeout: float) -> None:
        self._request = request
        self.reader = reader
        self.length = length
        self.received = 0
        self._timeout = read_timeout

    async def read(self) -> bytes:
        """The next chunk, or b"" once Content-Length bytes have arrived."""
        if self.received >= self.length:
            return b""
        try:
            async with asyncio.timeout(self._timeout):
                chunk = await self._request.content.readany()
        except TimeoutError:
            raise GatewayError(
                408, "Request timeout: the client stopped sending the upload; try again", "read_timeout"
            ) from None
        except (ConnectionError, aiohttp.ClientError, asyncio.IncompleteReadError):
            chunk = b""
        if not chunk:
            raise GatewayError(
                400, "Truncated upload: the body ended before Content-Length bytes arrived", "truncated_body"
            )
        self.received += len(chunk)
        return chunk

    async def feed(self, chunk: bytes) -> None:
        if len(chunk) >= THREAD_FEED_MIN:
            await asyncio.to_thread(self.reader.feed, chunk)
        else:
            self.reader.feed(chunk)

    async def finish(self) -> None:
        self.reader.finish()


def verify_digests(supplied: Mapping[str, str], computed: Mapping[str, str]) -> None:
    """Every digest the client supplied must match the bytes (PyPI's check), compared in constant time."""
    for name, value in supplied.items():
        if not hmac.compare_digest(value.lower(), computed.get(name, "")):
            raise GatewayError(
                400,
                "The digest supplied does not match a digest calculated from the uploaded file.",
                "digest_mismatch",
            )


def upstream_message(text: str) -> str:
    """The index's own words, without HTML, on one bounded line."""
    pre = _PRE.search(text)
    plain = _TAGS.sub(" ", pre.group(1) if pre else text)
    return " ".join(plain.split())[:200]


def map_answer(answer: UpstreamAnswer, upload: Upload, index: str) -> None:
    """Raise the client-facing error for an index answer that is not a success."""
    if 200 <= answer.status < 300:
        return
    said = upstream_message(answer.text) or answer.reason
    if answer.status == 409 or "already exist" in (answer.reason + answer.text).lower():
        raise GatewayError(400, f"File already exists ('{upload.filename}'): {said}", "file_exists")
    if answer.status in (401, 403):
        raise GatewayError(
            502,
            f"The package index at {index} refused the gateway's own credential (HTTP {answer.status}); "
            "an operator must check upstream.username and upstream.password_file",
            "upstream_auth",
        )
    if answer.status == 413:
        raise GatewayError(413, f"The package index refused the file as too large: {said}", "upstream_too_large")
    if answer.status >= 500:
        raise GatewayError(502, f"The package index at {index} failed (HTTP {answer.status})", "upstream_error")
    raise GatewayError(400, f"The package index refused the upload (HTTP {answer.status}): {said}", "upstream_refused")


class UploadFlow:
    """One upload request, from headers to the index's answer."""

    def __init__(
        self,
        request: web.Request,
        identity: Identity,
        *,
        upstream: Upstream,
        authorize: Authorize,
        allowed_actions: frozenset[str],
        read_timeout: float,
    ) -> None:
        self.request = request
        self.identity = identity
        self.upstream = upstream
        self.authorize = authorize
        self.allowed_actions = allowed_actions
        length = request.content_length or 0
        self.content_type = request.headers.get("Content-Type", "")
        self.pump = BodyPump(
            request, FormReader(boundary_of(self.content_type)), length=length, read_timeout=read_timeout
        )
        self.user_agent = f"upload-gateway/{__version__}"

    @property
    def reader(self) -> FormReader:
        return self.pump.reader

    async def run(self) -> Accepted:
        head = await self._read_head()
        if self.reader.content_started and self._metadata_known():
            upload = await self._decide()
            await self._forward(self._streamed(head, upload), upload)
        else:
            with tempfile.TemporaryFile() as spool:
                await self._spool(head, spool)
                upload = await self._decide()
                verify_digests(upload.digests, self.reader.hexdigests())
                await self._forward(_file_chunks(spool), upload)
        return Accepted(upload=upload, size=self.reader.file_size, reason="ok")

    async def _read_head(self) -> list[bytes]:
        """Read until the file part starts: by then twine has sent every metadata field."""
        head: list[bytes] = []
        size = 0
        while not self.reader.content_started and not self.reader.finished and size < MAX_HEAD_BYTES:
            chunk = await self.pump.read()
            if not chunk:
                break
            await self.pump.feed(chunk)
            head.append(chunk)
            size += len(chunk)
        return head

    def _metadata_known(self) -> bool:
        return all(name in self.reader.fields for name in (":action", "name", "version"))

    async def _decide(self) -> Upload:
        fields = self.reader.fields
        check_action(fields, self.allowed_actions)
        if not self.reader.content_started:
            raise GatewayError(400, "Upload payload does not have a file.", "missing_content")
        upload = validate_upload(
            fields, filename=self.reader.filename or "", content_type=self.reader.file_content_type
        )
        await self.authorize(self.identity, upload)
        return upload

    async def _spool(self, head: list[bytes], spool: IO[bytes]) -> None:
        for chunk in head:
            spool.write(chunk)
        while chunk := await self.pump.read():
            await self.pump.feed(chunk)
            spool.write(chunk)
        await self.pump.finish()
        spool.seek(0)

    async def _streamed(self, head: list[bytes], upload: Upload) -> AsyncIterator[bytes]:
        """Forward what has been read, then the rest, one chunk behind, hashing the next while one is sent."""
        pending = b"".join(head)
        while chunk := await self.pump.read():
            feeding = asyncio.ensure_future(self.pump.feed(chunk))
            try:
                yield pending
            finally:
                await feeding
            pending = chunk
        await self.pump.finish()
        verify_digests(upload.digests, self.reader.hexdigests())
        yield pending

    async def _forward(self, body: AsyncIterator[bytes], upload: Upload) -> None:
        failure: list[GatewayError] = []

        async def guarded() -> AsyncIterator[bytes]:
            try:
                async for chunk in body:
                    yield chunk
            except GatewayError as exc:
                failure.append(exc)
                raise

        try:
            answer = await self.upstream.post_upload(
                guarded(), content_type=self.content_type, length=self.pump.length, user_agent=self.user_agent
            )
        except (aiohttp.ClientError, TimeoutError, GatewayError) as exc:
            if failure:
                raise failure[0] from None
            if isinstance(exc, GatewayError):
                raise
            if isinstance(exc, TimeoutError):
                raise self.upstream.timed_out("upload") from None
            raise self.upstream.unreachable("upload", exc) from None
        if failure:
            raise failure[0]
        map_answer(answer, upload, self.upstream.urls.base)


async def _file_chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool.read, CHUNK):
        yield chunk
