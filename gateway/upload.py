"""The upload path (design.md §2): authenticate on headers, read the form while it streams, decide, then
stream the original bytes to the index with the same Content-Length, hashing them on the way.

The last chunk of the body is held back until the digests and sizes check out, so a tampered, oversized or
truncated upload never completes at the index: the gateway aborts the upstream request instead (with a
reset, see `proxy.aborting_socket`). Memory stays bounded by a few chunks; a client that sends the file
before its metadata is spooled to an anonymous temporary file.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import aiohttp
from aiohttp import web

from gateway import __version__
from gateway.auth import Identity
from gateway.config import LimitsConfig
from gateway.errors import GatewayError
from gateway.existing import ExistingFiles, already_exists, verdict
from gateway.form import DIGEST_FIELDS, MAX_FORM_BYTES, FormReader, boundary_of
from gateway.proxy import Upstream, UpstreamAnswer
from gateway.validation import Upload, check_action, project_of, validate_upload

CHUNK = 256 * 1024
# Below this, hashing on the event loop is cheaper than a hop to a worker thread.
THREAD_FEED_MIN = 64 * 1024
MAX_OUTSTANDING = 8
MAX_HEAD_BYTES = 2 * MAX_FORM_BYTES
_TAGS = re.compile(r"<[^>]+>")
_PRE = re.compile(r"<pre>(.*?)</pre>", re.DOTALL | re.IGNORECASE)

Authorize = Callable[[Identity, Upload], Awaitable[None]]
AuthorizeAction = Callable[[Identity, str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Accepted:
    """What an accepted upload was, for metrics, logs and the audit trail."""

    upload: Upload
    size: int
    digests: Mapping[str, str]
    reason: str


@dataclass(frozen=True)
class UploadContext:
    """What every upload needs, built once per app."""

    upstream: Upstream
    authorize: Authorize
    authorize_action: AuthorizeAction
    existing: ExistingFiles
    project_size: Callable[[str], Awaitable[int]]
    limits: LimitsConfig
    allowed_actions: frozenset[str]
    help_url: str


class BodyPump:
    """Reads the client's body chunk by chunk, parses it, and hashes the file without holding up the stream."""

    def __init__(self, request: web.Request, reader: FormReader, *, length: int, read_timeout: float) -> None:
        self._request = request
        self.reader = reader
        self.length = length
        self.received = 0
        self._timeout = read_timeout
        self._lanes: list[ThreadPoolExecutor] = []
        self._outstanding: deque[asyncio.Future[list[None]]] = deque()

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
        """Parse on the loop; hash in one thread per digest, in order, without waiting for it.

        sha256 and blake2b run side by side (hashlib releases the GIL on large buffers) while the next
        chunks are read and forwarded; at most MAX_OUTSTANDING chunks wait to be hashed.
        """
        segments = self.reader.parse(chunk)
        if not segments:
            return
        hashers = self.reader.hashers
        if not self._lanes and sum(len(segment) for segment in segments) < THREAD_FEED_MIN:
            for hasher in hashers:
                _update(hasher, segments)
            return
        if not self._lanes:
            self._lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest") for _ in hashers]
        loop = asyncio.get_running_loop()
        lanes = zip(self._lanes, hashers, strict=True)
        jobs = [loop.run_in_executor(lane, _update, hasher, segments) for lane, hasher in lanes]
        self._outstanding.append(asyncio.gather(*jobs))
        while len(self._outstanding) > MAX_OUTSTANDING:
            await self._outstanding.popleft()

    async def hexdigests(self) -> dict[str, str]:
        """The file's digests, once every chunk fed so far is hashed."""
        while self._outstanding:
            await self._outstanding.popleft()
        return self.reader.hexdigests()

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=False, cancel_futures=True)


def _update(hasher: Any, segments: list[memoryview]) -> None:
    for segment in segments:
        hasher.update(segment)


def max_body(limits: LimitsConfig) -> int:
    """The largest upload body: the file's limit plus room for the form around it."""
    return limits.max_file_size + MAX_HEAD_BYTES


def verify_digests(supplied: Mapping[str, str], computed: Mapping[str, str]) -> None:
    """Every digest the client supplied must match the bytes (PyPI's check), compared in constant time."""
    for name, value in supplied.items():
        if not hmac.compare_digest(value.lower(), computed.get(name, "")):
            raise GatewayError(
                400,
                "The digest supplied does not match a digest calculated from the uploaded file.",
                "digest_mismatch",
            )


def file_too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"File too large. Limit is {limit // 2**20} MiB per file", "file_too_large")


def upstream_message(text: str) -> str:
    """The index's own words, without HTML, on one bounded line."""
    pre = _PRE.search(text)
    plain = _TAGS.sub(" ", pre.group(1) if pre else text)
    return " ".join(plain.split())[:200]


def is_conflict(answer: UpstreamAnswer) -> bool:
    """pypiserver: 409, or 400 "already exists" for twine; devpi: 409; Gitea, GitLab: 400 "already…"."""
    return answer.status == 409 or (answer.status == 400 and "already" in (answer.reason + answer.text).lower())


def map_answer(answer: UpstreamAnswer, index: str) -> None:
    """Raise the client-facing error for an index answer that is neither a success nor a conflict."""
    if 200 <= answer.status < 300:
        return
    said = upstream_message(answer.text) or answer.reason
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

    def __init__(self, request: web.Request, identity: Identity, context: UploadContext) -> None:
        self.request = request
        self.identity = identity
        self.context = context
        self.upstream = context.upstream
        self.content_type = request.headers.get("Content-Type", "")
        self.pump = BodyPump(
            request,
            FormReader(boundary_of(self.content_type)),
            length=request.content_length or 0,
            read_timeout=context.limits.read_timeout,
        )
        self.user_agent = f"upload-gateway/{__version__}"
        self.digests: dict[str, str] = {}

    @property
    def reader(self) -> FormReader:
        return self.pump.reader

    async def run(self) -> Accepted:
        try:
            return await self._run()
        finally:
            self.pump.close()

    async def _run(self) -> Accepted:
        head = await self._read_head()
        fields = self.reader.fields
        if ":action" in fields and check_action(fields, self.context.allowed_actions) != "file_upload":
            return await self._other_action(head)
        if self.reader.content_started and self._metadata_known():
            upload = await self._decide()
            existing = await self.context.existing.sha256_of(upload.project, upload.filename)
            if existing is not None:
                await self._drain(upload)
                return self._duplicate(upload, existing)
            answer = await self._forward(self._streamed(head, upload))
        else:
            with tempfile.TemporaryFile() as spool:
                await self._spool(head, spool)
                upload = await self._decide()
                await self._check_file(upload)
                existing = await self.context.existing.sha256_of(upload.project, upload.filename)
                if existing is not None:
                    return self._duplicate(upload, existing)
                answer = await self._forward(_file_chunks(spool))
        return await self._settle(answer, upload)

    async def _other_action(self, head: list[bytes]) -> Accepted:
        """An action the operator allowed (remove_pkg, doc_upload): checked on the project's rights, then passed on."""
        with tempfile.TemporaryFile() as spool:
            await self._spool(head, spool)
            if not self.reader.finished:
                raise GatewayError(400, "Truncated multipart/form-data body", "truncated_body")
            fields = self.reader.fields
            action = check_action(fields, self.context.allowed_actions)
            project, name = project_of(fields)
            await self.context.authorize_action(self.identity, action, project, name)
            answer = await self._forward(_file_chunks(spool))
        map_answer(answer, self.upstream.urls.base)
        self.context.existing.forget(project)
        version = (fields.get("version") or [""])[0]
        upload = Upload(project=project, name=name, version=version, filename="", filetype=action, digests={})
        return Accepted(upload=upload, size=0, digests={}, reason=action)

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
        fields = self.reader.fields
        return all(name in fields for name in (":action", "name", "version")) and any(
            name in fields for name in DIGEST_FIELDS
        )

    async def _decide(self) -> Upload:
        fields = self.reader.fields
        check_action(fields, self.context.allowed_actions)
        if not self.reader.content_started:
            raise GatewayError(400, "Upload payload does not have a file.", "missing_content")
        upload = validate_upload(
            fields, filename=self.reader.filename or "", content_type=self.reader.file_content_type
        )
        await self.context.authorize(self.identity, upload)
        return upload

    async def _check_file(self, upload: Upload) -> None:
        """Once every byte is in: digests, the per-file limit and the project's total."""
        self.reader.finish()
        self.digests = await self.pump.hexdigests()
        verify_digests(upload.digests, self.digests)
        limits = self.context.limits
        if self.reader.file_size > limits.max_file_size:
            raise file_too_large(limits.max_file_size)
        if limits.max_project_size is not None:
            total = await self.context.project_size(upload.project) + self.reader.file_size
            if total > limits.max_project_size:
                raise GatewayError(
                    400,
                    f"Project size too large. Limit for project '{upload.name}' total size is "
                    f"{limits.max_project_size / 2**30:g} GiB. See {self.context.help_url}",
                    "project_too_large",
                )

    async def _spool(self, head: list[bytes], spool: IO[bytes]) -> None:
        for chunk in head:
            spool.write(chunk)
        while chunk := await self.pump.read():
            await self.pump.feed(chunk)
            spool.write(chunk)
        spool.seek(0)

    async def _drain(self, upload: Upload) -> None:
        """Read (and hash) the rest without forwarding it: the file is already on the index."""
        while chunk := await self.pump.read():
            await self.pump.feed(chunk)
        await self._check_file(upload)

    def _duplicate(self, upload: Upload, existing_sha256: str) -> Accepted:
        digests = self.digests
        verdict(
            existing_sha256,
            digests["sha256"],
            filename=upload.filename,
            blake2_256=digests["blake2_256"],
            help_url=self.context.help_url,
        )
        return Accepted(upload=upload, size=self.reader.file_size, digests=digests, reason="already_present")

    async def _streamed(self, head: list[bytes], upload: Upload) -> AsyncIterator[bytes]:
        """Forward what has been read, then the rest, one chunk behind; the last goes once the file checks out."""
        pending = b"".join(head)
        while chunk := await self.pump.read():
            await self.pump.feed(chunk)
            yield pending
            pending = chunk
        await self._check_file(upload)
        yield pending

    async def _forward(self, body: AsyncIterator[bytes]) -> UpstreamAnswer:
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
        except (aiohttp.ClientError, TimeoutError) as exc:
            if failure:
                raise failure[0] from None
            if isinstance(exc, TimeoutError):
                raise self.upstream.timed_out("upload") from None
            raise self.upstream.unreachable("upload", exc) from None
        if failure:
            raise failure[0]
        return answer

    async def _settle(self, answer: UpstreamAnswer, upload: Upload) -> Accepted:
        digests = self.digests
        if is_conflict(answer):
            self.context.existing.forget(upload.project)
            existing = await self.context.existing.sha256_of(upload.project, upload.filename)
            if existing is None:
                raise already_exists(upload.filename, digests["blake2_256"], self.context.help_url)
            return self._duplicate(upload, existing)
        map_answer(answer, self.upstream.urls.base)
        self.context.existing.add(upload.project, upload.filename, digests["sha256"])
        return Accepted(upload=upload, size=self.reader.file_size, digests=digests, reason="ok")


async def _file_chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool.read, CHUNK):
        yield chunk
