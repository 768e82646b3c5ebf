"""What a spooled upload sends: the gateway's body read back from the spool (`from_spool`); for an action other
than a file upload (`remove_pkg`, … as `upload.allowed_actions` lets through), what it is (`action_of`) and the
form the index gets (`action_body`: `:action`, `name`, `version`, and a documentation archive under a plain
name)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import IO

from gateway.errors import GatewayError
from gateway.upload.encoding import CanonicalBody, encode
from gateway.upload.form import FormReader
from gateway.upload.multipart import Segment
from gateway.upload.pump import Handoff
from gateway.validation import Upload, action_version, check_action, project_of

CHUNK = 256 * 1024
_DOCS_ARCHIVE = re.compile(r"[A-Za-z0-9._+-]{1,200}\.zip")


def action_of(form: FormReader, allowed_actions: frozenset[str]) -> tuple[str, Upload]:
    """The action and what it names, once the whole form is in."""
    form.finish_form()
    fields = form.fields
    action = check_action(fields, allowed_actions)
    project, name = project_of(fields)
    version = action_version(fields)
    return action, Upload(project=project, name=name, version=version, filename="", filetype=action, digests={})


def action_body(form: FormReader, upload: Upload) -> tuple[CanonicalBody, int]:
    """The action's form re-encoded, and the length of the file it passes on (a documentation archive, or none)."""
    kept = [(":action", upload.filetype), ("name", upload.name), ("version", upload.version)]
    filename = document_name(form.filename) if form.file_started else None
    return encode(kept, filename=filename), form.file_size if filename else 0


def document_name(filename: str | None) -> str:
    """A documentation archive's name, passed on only when it is a plain file name."""
    if filename is None or not _DOCS_ARCHIVE.fullmatch(filename):
        raise GatewayError(400, "Name the documentation archive NAME-VERSION.zip", "invalid_filename")
    return filename


async def from_spool(body: CanonicalBody, spool: IO[bytes]) -> AsyncIterator[Segment | Handoff]:
    yield body.head
    if body.tail:
        while chunk := await asyncio.to_thread(spool.read, CHUNK):
            yield chunk
        yield body.tail
