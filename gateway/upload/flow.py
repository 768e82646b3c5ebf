"""One upload, from its headers to the index's answer.

The handler has authenticated the request on its headers. The flow then:

1. reads the form until the file part starts (every client sends the metadata first);
2. decides on those fields: PyPI's checks, then who may upload what; it decides, it writes nothing;
3. sends the index a body of its own writing (`encoding`): the validated fields, then the file's bytes one chunk
   behind the client, hashed on the way. The last chunk and the closing delimiter go only once the whole form is
   in and agrees, every digest matches and the uploader is still allowed (read afresh); any other end cuts the
   index's request off with a reset (`upstream.aborting_socket`), so nothing is stored. A client that sends the
   file before its metadata, and every upload under `upstream.buffer_uploads` (an index with few workers must not
   wait on a slow client), is spooled whole to a temporary file and checked there; only then is the index's
   request opened, and the body re-encoded from the spool;
4. settles the index's answer: stored, already there, or refused.

The handler records what was accepted; until then the store holds only the upload's claim on a new project and
its size reservation (`Holds`), released whatever the outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Protocol

import aiohttp
from aiohttp import web

from gateway import policy
from gateway.archive import check_distribution
from gateway.authentication import Identity
from gateway.authorization import raise_if_denied
from gateway.config import LimitsConfig
from gateway.dist_metadata import PlatformPolicy, check_description
from gateway.errors import GatewayError
from gateway.existing import ExistingFiles, already_exists, verdict
from gateway.proxy import Upstream, log_fault
from gateway.upload import answers
from gateway.upload.answers import UpstreamAnswer
from gateway.upload.encoding import CanonicalBody, encode, fill, forwarded
from gateway.upload.filecopy import FileCopy
from gateway.upload.form import MAX_FORM_BYTES, FormReader, boundary_of
from gateway.upload.multipart import Segment
from gateway.upload.pace import Pace
from gateway.upload.pump import (
    POLL,
    Handoff,
    IndexGone,
    Pump,
    UploadBody,
    detach,
    detachable,
    hash_segments,
    shutting_down,
)
from gateway.validation import Upload, action_version, check_action, project_of, validate_upload

CHUNK = 256 * 1024
# Below this, hashing on the event loop is cheaper than a hop to a worker thread.
THREAD_FEED_MIN = 64 * 1024
MAX_OUTSTANDING = 8
# A remainder of at least this much goes through a pump's thread (below it, the hop costs more than it saves).
PUMP_MIN = 2**20
MAX_HEAD_BYTES = 2 * MAX_FORM_BYTES
DIGEST_FIELDS = {"md5_digest": "md5", "sha256_digest": "sha256", "blake2_256_digest": "blake2_256"}
_DOCS_ARCHIVE = re.compile(r"[A-Za-z0-9._+-]{1,200}\.zip")


class Authorizer(Protocol):
    async def authorize_upload(self, identity: Identity, upload: Upload) -> policy.Allowed: ...

    async def authorize_action(self, identity: Identity, action: str, project: str, display_name: str) -> None: ...

    async def confirm_upload(self, identity: Identity, upload: Upload, *, claim: bool) -> None: ...


class Holds(Protocol):
    """What an upload holds in the store while it runs: the claim of a new project (so two users can never both
    upload its first files) and a share of its project's size limit (so concurrent uploads cannot exceed it)."""

    async def hold_claim(self, project: str, user_id: str) -> bool: ...

    async def release_claim(self, project: str, user_id: str) -> None: ...

    async def reserve_size(self, upload_id: str, project: str, size: int, limit: int) -> bool: ...

    async def release_size(self, upload_id: str) -> None: ...


@dataclass(frozen=True)
class UploadContext:
    """What every upload needs, built once per app."""

    upstream: Upstream
    authorizer: Authorizer
    holds: Holds
    existing: ExistingFiles
    limits: LimitsConfig
    allowed_actions: frozenset[str]
    platform_tags: PlatformPolicy
    help_url: str
    pumps: Executor | None  # threads that move large files (`pump`); None keeps every upload on the loop
    upstream_timeout: float  # how long the index may take no bytes of an upload


@dataclass(frozen=True)
class Outcome:
    """What the index was given and kept: `reason` is `ok`, `already_present` or the action passed on.

    `claim`: the upload created a new project, which the handler records as the uploader's in the same
    transaction as the file.
    """

    upload: Upload
    size: int
    digests: Mapping[str, str]
    reason: str
    claim: bool = False
    upload_id: str = ""  # names the project-size reservation the record takes over


def fields_after_file() -> GatewayError:
    return GatewayError(
        400,
        "Form fields after the file: send every field before the 'content' part (as twine does)",
        "fields_after_file",
    )


def unexpected_end() -> GatewayError:
    return GatewayError(
        400,
        "The upload body does not end right after its last part: close it with CRLF '--boundary--' CRLF",
        "unexpected_layout",
    )


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


class BodySource:
    """The client's body, chunk by chunk: refused with a 408 when nothing comes for `limits.read_timeout`, or when
    it comes too slowly or for too long (`pace`). Read on the event loop (`read`), or, once `detach`ed, from the
    connection's socket in a pump's thread (`recv_into`)."""

    def __init__(self, request: web.Request, *, length: int, limits: LimitsConfig) -> None:
        self._request = request
        self.length = length
        self.received = 0
        self._timeout = limits.read_timeout
        self._loop = asyncio.get_running_loop()
        self._pace = Pace(limits.clients, started=self._loop.time())

    async def read(self) -> bytes:
        """The next chunk, or b"" once Content-Length bytes have arrived."""
        if self.received >= self.length:
            return b""
        started = self._loop.time()
        while True:
            patience = self._patience(self._loop.time(), started)
            try:
                async with asyncio.timeout(patience):
                    chunk = await self._request.content.readany()
                break
            except TimeoutError:
                continue
            except (ConnectionError, aiohttp.ClientError, asyncio.IncompleteReadError):
                chunk = b""
                break
        self._arrived(self._loop.time() - started, len(chunk))
        return chunk

    def detachable(self) -> bool:
        return detachable(self._request)

    def detach(self) -> tuple[socket.socket, bytes]:
        """The connection's socket for a pump's thread (`pump.detach`), and what aiohttp had read. A
        connection lost since the last read (while the index took the previous chunk) is a truncated upload, as
        `read` tells it: the client's doing, not the index's."""
        request = self._request
        transport = request.transport
        if transport is None or transport.is_closing() or request.content.exception() is not None:
            raise truncated_body()
        sock, buffered = detach(request)
        self.received += len(buffered)
        return sock, buffered

    def recv_into(self, sock: socket.socket, buffer: bytearray, want: int, stopped: threading.Event) -> int:
        """Like `read`, into `buffer` from the socket itself, in a pump's thread; the number of bytes."""
        started = time.monotonic()  # the event loop's clock (`loop.time()`), which the pace was started on
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while True:
            patience = self._patience(time.monotonic(), started)
            if stopped.is_set():
                raise shutting_down()
            try:
                size = sock.recv_into(buffer, want)
                break
            except BlockingIOError:
                poller.poll(min(patience, POLL) * 1000)
            except OSError:
                size = 0
                break
        self._arrived(time.monotonic() - started, size)
        return size

    def _patience(self, now: float, started: float) -> float:
        """How long a read begun at `started` may still wait; a 408 once it may not."""
        waiting = now - started
        self._pace.check(now, waiting)
        if waiting >= self._timeout:
            raise GatewayError(408, "Request timeout: the client stopped sending the upload; try again", "read_timeout")
        return min(self._timeout - waiting, self._pace.patience(now, waiting))

    def _arrived(self, waited: float, size: int) -> None:
        self._pace.arrived(waited, size)
        if not size:
            raise truncated_body()
        self.received += size


def truncated_body() -> GatewayError:
    return GatewayError(400, "Truncated upload: the body ended before Content-Length bytes arrived", "truncated_body")


class Hashing:
    """The file's digests, computed beside the stream: one ordered thread per digest, never holding it up.

    sha256 and blake2b run side by side (hashlib releases the GIL on large buffers) while the next chunks are read
    and forwarded; at most MAX_OUTSTANDING chunks wait to be hashed.
    """

    def __init__(self, algorithms: set[str]) -> None:
        factories: dict[str, Callable[[], Any]] = {
            "md5": lambda: hashlib.md5(usedforsecurity=False),
            "sha256": hashlib.sha256,
            "blake2_256": lambda: hashlib.blake2b(digest_size=32),
        }
        self._hashers = {name: factories[name]() for name in sorted(algorithms)}
        self._lanes: list[ThreadPoolExecutor] = []
        self._outstanding: deque[asyncio.Future[list[None]]] = deque()

    async def feed(self, segments: Sequence[Segment]) -> None:
        if not segments:
            return
        hashers = list(self._hashers.values())
        if not self._lanes and sum(len(segment) for segment in segments) < THREAD_FEED_MIN:
            for hasher in hashers:
                hash_segments(hasher, segments)
            return
        if not self._lanes:
            self._lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest") for _ in hashers]
        loop = asyncio.get_running_loop()
        lanes = zip(self._lanes, hashers, strict=True)
        jobs = [loop.run_in_executor(lane, hash_segments, hasher, segments) for lane, hasher in lanes]
        self._outstanding.append(asyncio.gather(*jobs))
        while len(self._outstanding) > MAX_OUTSTANDING:
            await self._outstanding.popleft()

    async def settled(self) -> list[Any]:
        """The hash states, once every segment fed so far is in them, for a pump to update directly."""
        while self._outstanding:
            await self._outstanding.popleft()
        return list(self._hashers.values())

    async def hexdigests(self) -> dict[str, str]:
        """The digests, once every segment fed so far is hashed."""
        while self._outstanding:
            await self._outstanding.popleft()
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=False, cancel_futures=True)


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


@dataclass(frozen=True)
class Decided:
    upload: Upload
    claim: bool


class UploadFlow:
    """One upload request, from the first byte of its body to the index's answer."""

    def __init__(self, request: web.Request, identity: Identity, context: UploadContext, *, buffer: bool) -> None:
        self.identity = identity
        self.context = context
        self.upstream = context.upstream
        self.form = FormReader(boundary_of(request.headers.get("Content-Type")))
        self.source = BodySource(request, length=request.content_length or 0, limits=context.limits)
        self.buffer = buffer
        self.decided: Upload | None = None  # what the request was found to be, once validated
        self.index_touched = False  # the index got the whole request, so it may have changed (its pages go stale)
        self.pumped = 0  # body bytes a pump's thread read
        self._hashing: Hashing | None = None
        self._digests: dict[str, str] | None = None
        self._claimed: str | None = None
        self._reserved = False
        self._copy: FileCopy | None = None  # what the archive checks read (and a spooled upload is sent from)
        self._pumping: tuple[Pump, asyncio.Future[list[Segment]]] | None = None
        self.upload_id = str(uuid.uuid4())

    async def run(self) -> Outcome:
        """The outcome; what the upload holds stays held only for a file the index stored (the record takes it)."""
        try:
            outcome = await self._run()
        except BaseException:
            await self._release()
            raise
        finally:
            await self._stop_pump()
            if self._hashing is not None:
                self._hashing.close()
            if self._copy is not None:
                self._copy.close()
        if outcome.reason != "ok":
            await self._release()
        return outcome

    async def _run(self) -> Outcome:
        early = await self._read_head()
        fields = self.form.fields
        streamable = ":action" not in fields or check_action(fields, self.context.allowed_actions) == "file_upload"
        fields_first = self.form.file_started and not self.form.fields_after_file and self._metadata_known()
        if streamable and fields_first:
            if not self.buffer:
                return await self._streamed(early)
            await self._refuse_early()
        self._copy = spool = FileCopy(sparse=False)
        spool.write(early)
        await self._read_rest(spool)
        if check_action(self.form.fields, self.context.allowed_actions) != "file_upload":
            return await self._act(spool)
        return await self._spooled(spool)

    async def _streamed(self, early: list[Segment]) -> Outcome:
        """Decide on the fields before the file, then pass the file on while it arrives."""
        decided = await self._decide()
        existing = await self._existing(decided)
        if existing is not None:
            await self._read_rest(None)
            self._whole_form_agrees(decided)
            return await self._duplicate(decided.upload, existing)
        self._copy = FileCopy(sparse=decided.upload.filename.endswith(".whl"))
        self._copy.write(early)
        answer = await self._forward(*self._stream(early, decided))
        return await self._settle(answer, decided)

    async def _spooled(self, spool: FileCopy) -> Outcome:
        """The whole body was read first (the file kept on disk): the decision is on the complete form."""
        decided = await self._decide()
        await self._check_file(decided.upload)
        existing = await self._existing(decided)
        if existing is not None:
            return await self._duplicate(decided.upload, existing)
        await self._confirm(decided)
        body = encode(self._forwarded(decided.upload), filename=decided.upload.filename)
        answer = await self._forward(_from_spool(body, spool.reader()), body, self.form.file_size)
        return await self._settle(answer, decided)

    async def _refuse_early(self) -> None:
        """A buffered upload is refused on the fields before the file as a streamed one is, before its file is
        spooled; it is decided on again once complete."""
        self.decided = self._validated()
        await self.context.authorizer.authorize_upload(self.identity, self.decided)

    async def _read_head(self) -> list[Segment]:
        """Read until the file part starts (every client sends the fields it sends first); the file's first bytes."""
        early: list[Segment] = []
        while not self.form.file_started and not self.form.finished and self.source.received < MAX_HEAD_BYTES:
            chunk = await self.source.read()
            if not chunk:
                break
            early += await self._feed(chunk, None)
        return early

    async def _read_rest(self, copy: FileCopy | None) -> None:
        while chunk := await self.source.read():
            await self._feed(chunk, copy)

    async def _feed(self, chunk: bytes, copy: FileCopy | None) -> list[Segment]:
        """Parse a chunk; hash the file's bytes in it (and keep them in the copy, if any)."""
        segments = self.form.feed(chunk)
        if segments:
            if self._hashing is None:
                self._hashing = Hashing(self._algorithms())
            await self._hashing.feed(segments)
            if copy is not None:
                copy.write(segments)
        return segments

    def _algorithms(self) -> set[str]:
        """sha256 and blake2b always (duplicates are answered on them), md5 when sent; all three when the digests
        may still come after the file."""
        supplied = {DIGEST_FIELDS[name] for name in self.form.fields if name in DIGEST_FIELDS}
        return supplied | {"sha256", "blake2_256"} if supplied else set(DIGEST_FIELDS.values())

    def _metadata_known(self) -> bool:
        fields = self.form.fields
        return all(name in fields for name in (":action", "name", "version")) and any(
            name in fields for name in DIGEST_FIELDS
        )

    async def _decide(self) -> Decided:
        if not self.form.file_started:
            raise GatewayError(400, "Upload payload does not have a file.", "missing_content")
        upload = self._validated()
        self.decided = upload
        allowed = await self.context.authorizer.authorize_upload(self.identity, upload)
        check_description(upload.description, upload.description_content_type)
        return Decided(upload, allowed.claim)

    def _validated(self) -> Upload:
        return validate_upload(
            self.form.fields,
            filename=self.form.filename or "",
            content_type=self.form.file_content_type,
            platform_tags=self.context.platform_tags,
        )

    async def _existing(self, decided: Decided) -> str | None:
        """The sha256 of the file if the index has it already. Only one user at a time may be creating a new
        project, and it must not be on the index at all."""
        upload = decided.upload
        if decided.claim:
            if not await self.context.holds.hold_claim(upload.project, self.identity.user.id):
                raise_if_denied(policy.claim_in_progress(upload.name))
            self._claimed = upload.project
        found = await self.context.existing.lookup(upload.project, upload.filename, fresh=decided.claim)
        if decided.claim and found.project_listed:
            raise_if_denied(policy.unowned_project(upload.name, self.identity.user.name))
        return found.sha256

    async def _release(self) -> None:
        holds = self.context.holds
        if self._claimed is not None:
            claimed, self._claimed = self._claimed, None
            await asyncio.shield(holds.release_claim(claimed, self.identity.user.id))
        if self._reserved:
            self._reserved = False
            await asyncio.shield(holds.release_size(self.upload_id))

    async def _check_file(self, upload: Upload) -> dict[str, str]:
        """Once every byte is in: the form complete, the digests, the per-file limit and the project's total."""
        if self._digests is not None:
            return self._digests
        self.form.finish()
        if self._hashing is None:  # an empty file
            self._hashing = Hashing(self._algorithms())
        digests = await self._hashing.hexdigests()
        verify_digests(upload.digests, digests)
        if self.form.file_size > self.context.limits.max_file_size:
            raise file_too_large(self.context.limits.max_file_size)
        self._digests = digests
        return digests

    async def _confirm(self, decided: Decided) -> None:
        """Right before the index may keep the file: still allowed (a role removed, a token revoked or a claim
        lost while the file arrived stops it here), and the project's size limit holds with the uploads
        in flight counted in."""
        upload = decided.upload
        if self._copy is not None:
            await asyncio.to_thread(_check_archive, self._copy, upload)
        await self.context.authorizer.confirm_upload(self.identity, upload, claim=decided.claim)
        limit = self.context.limits.max_project_size
        if limit is not None:
            if not await self.context.holds.reserve_size(self.upload_id, upload.project, self.form.file_size, limit):
                raise GatewayError(
                    400,
                    f"Project size too large. Limit for project '{upload.name}' total size is "
                    f"{limit / 2**30:g} GiB. See {self.context.help_url}",
                    "project_too_large",
                )
            self._reserved = True

    def _forwarded(self, upload: Upload) -> list[tuple[str, str]]:
        """The form as the index gets it: what was validated, with the action and version as the gateway read
        them (an index may file the upload under the version string it is given)."""
        return forwarded({**self.form.fields, ":action": ["file_upload"], "version": [upload.version]})

    async def _duplicate(self, upload: Upload, existing_sha256: str) -> Outcome:
        digests = await self._check_file(upload)
        verdict(
            existing_sha256,
            digests["sha256"],
            filename=upload.filename,
            blake2_256=digests["blake2_256"],
            help_url=self.context.help_url,
        )
        return Outcome(upload=upload, size=self.form.file_size, digests=digests, reason="already_present")

    def _stream(
        self, early: list[Segment], decided: Decided
    ) -> tuple[AsyncIterator[Segment | Handoff], CanonicalBody, int]:
        """The index's body while the client's arrives; its length is known before the first byte goes.

        The file's length follows from the request's Content-Length: what came before the file's bytes, then
        the bytes, then the closing delimiter. A body that holds more parts after the file (uv sends
        `attestations` last) ends the file early; then the complete form is decided on, and the bytes still owed
        to the index are the fields it passes on from those parts and a padding part (`encoding.fill`).
        """
        closing = len(b"\r\n--" + self.form.boundary + b"--\r\n")
        predicted = self.source.length - self.form.file_offset - closing
        body = encode(self._forwarded(decided.upload), filename=decided.upload.filename)
        return self._stream_file(early, body, decided, predicted), body, max(predicted, 0)

    async def _stream_file(
        self, early: list[Segment], body: CanonicalBody, decided: Decided, predicted: int
    ) -> AsyncIterator[Segment | Handoff]:
        """Nothing goes before the second chunk of the file arrives, so a body that came whole is checked whole;
        then always one chunk behind, the last held back until every check has passed."""
        self._check_size(predicted)
        pending: list[Segment] = [body.head, *early]
        pumped = False
        while chunk := await self.source.read():
            segments = await self._feed(chunk, self._copy)
            self._check_size(predicted)
            if segments:
                for segment in pending:
                    yield segment
                pending = segments
                if not pumped and self._pumpable():
                    pumped = True
                    handoff = Handoff()
                    yield handoff
                    if handoff.socket is not None:
                        try:
                            pending = await self._pump(handoff, pending, predicted)
                        except IndexGone:
                            return  # the index stopped reading: its answer (read next) tells why
        self.form.finish()
        trailer = self._trailer(decided, body, predicted)
        await self._check_file(decided.upload)
        await self._confirm(decided)
        for segment in pending:
            yield segment
        if trailer:
            yield trailer
        yield body.tail

    def _check_size(self, predicted: int) -> None:
        if predicted < 0 or self.form.file_size > predicted:
            raise unexpected_end()

    def _trailer(self, decided: Decided, body: CanonicalBody, predicted: int) -> bytes:
        """What goes between the file and the closing delimiter: nothing, unless parts came after the file."""
        owed = predicted - self.form.file_size
        if not self.form.fields_after_file:
            if owed:
                raise unexpected_end()
            return b""
        self._whole_form_agrees(decided)
        trailer = fill(body.boundary, forwarded(_grouped(self.form.trailing)), owed)
        if trailer is None:
            raise fields_after_file()
        return trailer

    def _whole_form_agrees(self, decided: Decided) -> None:
        """Parts after the file may not change what was decided on the parts before it."""
        if not self.form.fields_after_file:
            return
        fields = self.form.fields
        if check_action(fields, self.context.allowed_actions) != "file_upload":
            raise fields_after_file()
        if self._validated() != decided.upload:
            raise fields_after_file()

    async def _forward(
        self, body: AsyncIterator[Segment | Handoff], encoded: CanonicalBody, file_size: int
    ) -> UpstreamAnswer:
        """POST the gateway's body. A refusal that stops it before its end aborts the index's request with a
        reset, and is what the caller sees. So is an answer the index gives before it has the whole body (gunicorn
        answers 500 when it kills a worker that took too long): the index's fault, not the client's."""
        length = encoded.length(file_size)
        payload = UploadBody(body, content_type=encoded.content_type)
        try:
            answer = await self.upstream.post_upload(payload, length=length)
        except GatewayError:
            if payload.failure is not None:
                raise payload.failure from None
            self.index_touched = payload.sent == length  # a fault after the whole request: it may have been stored
            raise
        if payload.failure is not None:
            raise payload.failure
        self.index_touched = True
        if payload.sent < length:
            answers.raise_for(answer)
            early = answers.answered_early(answer)
            log_fault("upload", early.reason, "POST", self.upstream.urls.upload, f"HTTP {answer.status} early")
            raise early
        return answer

    def _pumpable(self) -> bool:
        """Whether the rest of the body is worth a pump's thread: a large remainder, over plain sockets."""
        return (
            self.context.pumps is not None
            and self.source.length - self.source.received >= PUMP_MIN
            and self.source.detachable()
        )

    async def _pump(self, handoff: Handoff, pending: list[Segment], predicted: int) -> list[Segment]:
        """The rest of the body through a pump's thread (`pump`); what is not sent yet (the last chunk)."""
        assert handoff.socket is not None and self.context.pumps is not None and self._hashing is not None
        index = handoff.socket
        try:
            client, buffered = self.source.detach()
        except BaseException:
            index.close()
            raise
        pump = Pump(
            client=client,
            index=index,
            source=self.source,
            form=self.form,
            hashers=[],
            copy=self._copy,
            check=lambda: self._check_size(predicted),
            write_timeout=self.context.upstream_timeout,
        )
        try:
            segments = self.form.feed(buffered) if buffered else []
            self._check_size(predicted)
            pump.hashers = await self._hashing.settled()
            if segments:
                for hasher in pump.hashers:
                    hash_segments(hasher, segments)
                if self._copy is not None:
                    self._copy.write(segments)
                pending = [*pending, *segments]
        except BaseException:
            client.close()
            index.close()
            raise
        started = self.source.received  # before the thread starts: it counts what it reads there
        job = asyncio.get_running_loop().run_in_executor(self.context.pumps, pump.run, pending)
        self._pumping = (pump, job)
        try:
            return await asyncio.shield(job)
        finally:
            try:
                await self._stop_pump()
            finally:
                handoff.sent = pump.sent
                self.pumped = self.source.received - started

    async def _stop_pump(self) -> None:
        """Wait for the pump's thread to end, telling it to stop if it still runs (the gateway stopping, or the
        index's request given up while its body was sent): nothing it uses may be closed under it."""
        if self._pumping is None:
            return
        pump, job = self._pumping
        cancelled = False
        while not job.done():
            pump.stopped.set()  # seen within POLL seconds
            try:
                await asyncio.shield(asyncio.wait([job]))
            except asyncio.CancelledError:
                cancelled = True  # aiohttp cancels a writer more than once: the thread is waited for all the same
        if not job.cancelled():
            job.exception()  # retrieved here, raised (if it is still wanted) where the job was awaited
        self._pumping = None
        if cancelled:
            raise asyncio.CancelledError

    async def _settle(self, answer: UpstreamAnswer, decided: Decided) -> Outcome:
        upload = decided.upload
        digests = await self._check_file(upload)
        if answers.settle(answer) == "conflict":
            self.context.existing.forget(upload.project)
            found = await self.context.existing.lookup(upload.project, upload.filename)
            if found.sha256 is None:
                raise already_exists(upload.filename, digests["blake2_256"], self.context.help_url)
            return await self._duplicate(upload, found.sha256)
        self.context.existing.add(upload.project, upload.filename, digests["sha256"])
        return Outcome(
            upload=upload,
            size=self.form.file_size,
            digests=digests,
            reason="ok",
            claim=decided.claim,
            upload_id=self.upload_id,
        )

    async def _act(self, spool: FileCopy) -> Outcome:
        """Checked on the project's rights (removing a release needs its owner), then re-encoded."""
        self.form.finish_form()
        fields = self.form.fields
        action = check_action(fields, self.context.allowed_actions)
        project, name = project_of(fields)
        version = action_version(fields)
        upload = Upload(project=project, name=name, version=version, filename="", filetype=action, digests={})
        self.decided = upload
        await self.context.authorizer.authorize_action(self.identity, action, project, name)
        kept = [(":action", action), ("name", name), ("version", version)]
        filename = _document_name(self.form.filename) if self.form.file_started else None
        body = encode(kept, filename=filename)
        answer = await self._forward(_from_spool(body, spool.reader()), body, self.form.file_size if filename else 0)
        answers.raise_for(answer)
        self.context.existing.forget(project)
        return Outcome(upload=upload, size=0, digests={}, reason=action)


def _check_archive(copy: FileCopy, upload: Upload) -> None:
    """The distribution file itself (in a thread: it reads the file and, for an sdist, inflates it)."""
    copy.finish()
    check_distribution(
        copy.path,
        filename=upload.filename,
        filetype=upload.filetype,
        project=upload.name,
        version=upload.version,
        license_files=upload.license_files,
    )


def _document_name(filename: str | None) -> str:
    """A documentation archive's name, passed on only when it is a plain file name."""
    if filename is None or not _DOCS_ARCHIVE.fullmatch(filename):
        raise GatewayError(400, "Name the documentation archive NAME-VERSION.zip", "invalid_filename")
    return filename


async def _from_spool(body: CanonicalBody, spool: IO[bytes]) -> AsyncIterator[Segment | Handoff]:
    yield body.head
    if body.tail:
        while chunk := await asyncio.to_thread(spool.read, CHUNK):
            yield chunk
        yield body.tail
