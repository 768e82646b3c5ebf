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

An action other than a file upload (`remove_pkg`, … when allowed) is spooled too, checked on the project's
rights and passed on re-encoded (`spooled`).

The handler records what was accepted; until then the store holds only the upload's claim on a new project and
its size reservation (`holding.Holding`), released whatever the outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway import policy
from gateway.archive import check_distribution
from gateway.authentication import Identity
from gateway.authorization import raise_if_denied
from gateway.description import check_description
from gateway.errors import GatewayError
from gateway.existing import already_exists, verdict
from gateway.proxy import log_fault
from gateway.upload import answers
from gateway.upload.answers import UpstreamAnswer
from gateway.upload.body_limits import MAX_HEAD_BYTES, fields_after_file, file_too_large, unexpected_end
from gateway.upload.context import Outcome, UploadContext
from gateway.upload.encoding import CanonicalBody, encode, fill, forwarded
from gateway.upload.filecopy import FileCopy
from gateway.upload.form import FormReader, boundary_of
from gateway.upload.hashing import DIGEST_FIELDS, Hashing, verify_digests
from gateway.upload.holding import Holding, claim_lifetime
from gateway.upload.multipart import Segment
from gateway.upload.pump import (
    Handoff,
    IndexGone,
    UploadBody,
)
from gateway.upload.pumping import Pumping
from gateway.upload.source import BodySource
from gateway.upload.spooled import action_body, action_of, from_spool
from gateway.validation import Upload, check_action, validate_upload

# How long a new project the index lists is given to be recorded by another upload of the same user (its record
# follows the index's answer by a store call), and how often the store is asked meanwhile.
OWN_RECORD_WAIT = 3.0
OWN_RECORD_POLL = 0.05


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


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
        self.pumping = Pumping(context, self.source, self.form)
        self.buffer = buffer
        self.decided: Upload | None = None  # what the request was found to be, once validated
        self.index_touched = False  # the index got the whole request, so it may have changed (its pages go stale)
        self._hashing: Hashing | None = None
        self._digests: dict[str, str] | None = None
        self._copy: FileCopy | None = None  # what the archive checks read (and a spooled upload is sent from)
        lifetime = claim_lifetime(
            upload_deadline=context.limits.clients.upload_deadline, upstream_timeout=context.upstream_timeout
        )
        self.holding = Holding(context.holds, identity.user, help_url=context.help_url, claim_lifetime=lifetime)

    async def run(self) -> Outcome:
        """The outcome; what the upload holds stays held only for a file the index stored (the record takes it)."""
        try:
            outcome = await self._run()
        except BaseException:
            await self.holding.release()
            raise
        finally:
            await self.pumping.stop()
            if self._hashing is not None:
                self._hashing.close()
            if self._copy is not None:
                self._copy.close()
        if outcome.reason != "ok":
            await self.holding.release()
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
        answer = await self._forward(from_spool(body, spool.reader()), body, self.form.file_size)
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
            await self.holding.claim(upload)
        found = await self.context.existing.lookup(upload.project, upload.filename, fresh=decided.claim)
        if decided.claim and found.project_listed:
            if not await self._recorded_meanwhile(upload):
                raise_if_denied(policy.unowned_project(upload.name, self.identity.user.name))
            found = await self.context.existing.lookup(upload.project, upload.filename, fresh=True)
        return found.sha256

    async def _recorded_meanwhile(self, upload: Upload) -> bool:
        """Whether the new project the index lists is this user's, recorded by another of their uploads that
        shares the claim (a wheel and an sdist at once): its file reached the index a moment before its record.
        A project the index had before is recorded by no one, and is refused after `OWN_RECORD_WAIT`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OWN_RECORD_WAIT
        while not await self.context.holds.is_owner(upload.project, self.identity.user.id):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(OWN_RECORD_POLL)
        return True

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
            await self.holding.reserve(upload, self.form.file_size, limit)

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
                if not pumped and self.pumping.pumpable():
                    pumped = True
                    handoff = Handoff()
                    yield handoff
                    if handoff.socket is not None:
                        try:
                            pending = await self.pumping.run(
                                handoff,
                                pending,
                                hashing=self._hashing,
                                copy=self._copy,
                                check=lambda: self._check_size(predicted),
                            )
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
            reservation=self.holding.reservation,
        )

    async def _act(self, spool: FileCopy) -> Outcome:
        """Checked on the project's rights (removing a release needs its owner), then re-encoded."""
        action, upload = action_of(self.form, self.context.allowed_actions)
        self.decided = upload
        await self.context.authorizer.authorize_action(self.identity, action, upload.project, upload.name)
        body, file_size = action_body(self.form, upload)
        answer = await self._forward(from_spool(body, spool.reader()), body, file_size)
        answers.raise_for(answer)
        self.context.existing.forget(upload.project)
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
