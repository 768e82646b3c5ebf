"""An upload's form as the gateway reads it: small text fields, and one `content` file streamed past.

Pure: the upload flow feeds it the body and gets back the file's bytes (views of the chunks, for the hashers
and the index). It adds to the strict multipart syntax (`multipart`) the rules of an upload form: one file,
text fields of bounded size and number, part headers written only in the plain way every client writes them.
"""

from __future__ import annotations

import re

from gateway.errors import GatewayError
from gateway.upload.multipart import Chunk, End, MultipartReader, PartEnd, PartStart, Segment, malformed

FILE_FIELD = "content"
# File parts a client may send besides the distribution; their bytes are dropped (PyPI ignores them too).
IGNORED_FILE_FIELDS = frozenset({"gpg_signature"})
MAX_FIELDS = 1000
MAX_FIELD_BYTES = 512 * 1024
MAX_FORM_BYTES = 1024 * 1024
PART_HEADERS = frozenset({"content-disposition", "content-type"})
# RFC 2046 boundary characters (without the space, which only a quoted boundary could carry).
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=?-]{1,70}")
_WORD = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# `form-data; name="x"; filename="y"`: a quoted value ends at the next quote (a backslash escapes nothing, and
# a filename with one is refused by the filename checks), or a bare token.
_PARAM = re.compile(rf'\s*;\s*({_WORD})\s*=\s*(?:"([^"\r\n]*)"|({_WORD}))')


def bad_form(message: str, reason: str = "bad_multipart") -> GatewayError:
    return GatewayError(400, message, reason)


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary from the request's Content-Type, or a 4xx that says what is wrong."""
    try:
        kind, params = _split_header(content_type or "", "Content-Type")
    except GatewayError:
        raise bad_form("Malformed multipart/form-data: missing or invalid boundary", "bad_boundary") from None
    if kind != "multipart/form-data":
        raise GatewayError(
            415 if kind else 400, "Upload must be multipart/form-data (as twine sends it)", "not_multipart"
        )
    boundary = params.get("boundary", "")
    if not _BOUNDARY.fullmatch(boundary):
        raise bad_form("Malformed multipart/form-data: missing or invalid boundary", "bad_boundary")
    return boundary.encode("ascii")


def _split_header(value: str, what: str) -> tuple[str, dict[str, str]]:
    """`type; key=value; …` read strictly: each parameter once, values quoted plainly or bare tokens."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    rest = ";" + rest if rest or value.endswith(";") else ""
    position = 0
    while position < len(rest.rstrip()):
        match = _PARAM.match(rest, position)
        if match is None:
            raise malformed(f"cannot read the parameters of {what} {value[:80]!r}", "bad_part")
        key = match.group(1).lower()
        if key in params:
            raise malformed(f"{what} names {key!r} twice", "bad_part")
        params[key] = match.group(2) if match.group(2) is not None else match.group(3)
        position = match.end()
    return kind.strip().lower(), params


class FormReader:
    """Feed it the body in chunks; it keeps the fields and hands back the file's bytes.

    `file_offset` is where the file's bytes start in the body; `fields_after_file` tells that the client sent
    more parts after the file (which a streamed upload cannot have decided on).
    """

    def __init__(self, boundary: bytes) -> None:
        self.boundary = boundary
        self._parser = MultipartReader(boundary)
        self.fields: dict[str, list[str]] = {}
        self.filename: str | None = None
        self.file_content_type: str | None = None
        self.file_size = 0
        self.file_offset = 0
        self.file_started = False
        self.file_ended = False
        self.fields_after_file = False
        self.trailing: list[tuple[str, str]] = []  # the fields that came after the file, in order
        self._form_bytes = 0
        self._field_count = 0
        self._part = ""
        self._kind = "field"
        self._value = bytearray()

    @property
    def finished(self) -> bool:
        return self._parser.finished

    @property
    def position(self) -> int:
        return self._parser.position

    def feed(self, chunk: Chunk, end: int | None = None) -> list[Segment]:
        """Read `chunk` (its first `end` bytes); return the file's bytes in it (for the caller to hash and pass
        on before it reuses the chunk's buffer)."""
        file_data: list[Segment] = []
        for event in self._parser.feed(chunk, end):
            if isinstance(event, bytes | memoryview):
                if self._kind == "content":
                    self.file_size += len(event)
                    file_data.append(event)
                elif self._kind == "field":
                    self._field_data(event)
            elif isinstance(event, PartStart):
                self._part_start(event)
            elif isinstance(event, PartEnd):
                self._part_end()
            else:
                assert isinstance(event, End)
        return file_data

    def finish_form(self) -> None:
        """At the end of the body: a form that never closed was truncated."""
        self._parser.finish()

    def finish(self) -> None:
        """At the end of an upload's body: also, a form without a file is no upload."""
        self._parser.finish()
        if not self.file_started:
            raise bad_form("Upload payload does not have a file.", "missing_content")

    def _part_start(self, part: PartStart) -> None:
        unexpected = [name for name, _ in part.headers if name not in PART_HEADERS]
        if unexpected:
            raise malformed(f"unexpected part header {unexpected[0][:40]!r}", "bad_part")
        disposition, params = _split_header(part.get("content-disposition") or "", "Content-Disposition")
        if disposition != "form-data" or "name" not in params or set(params) - {"name", "filename"}:
            raise malformed("a part needs Content-Disposition: form-data; name=NAME (and only a filename)", "bad_part")
        self._part = _text(params["name"].encode(), "field name")
        if not self._part.isprintable():
            raise malformed(f"the field name {self._part[:40]!r} has control characters", "bad_part")
        self._field_count += 1
        if self._field_count > MAX_FIELDS:
            raise bad_form(f"Too many form fields: at most {MAX_FIELDS} are accepted", "too_many_fields")
        self.fields_after_file = self.fields_after_file or self.file_ended
        if self._part == FILE_FIELD:
            self._start_file(params, part)
        elif "filename" in params and self._part not in IGNORED_FILE_FIELDS:
            raise bad_form(f"{self._part[:40]}: Should not be a tuple.", "field_is_file")
        else:
            self._kind = "ignored" if "filename" in params else "field"
            content_type = (part.get("content-type") or "text/plain").lower()
            if self._kind == "field" and not content_type.startswith("text/plain"):
                raise bad_form(f"The field {self._part[:40]!r} must be text, not {content_type[:40]!r}", "bad_part")

    def _start_file(self, params: dict[str, str], part: PartStart) -> None:
        if self.file_started:
            raise bad_form("Upload payload has more than one file: send one 'content' part", "duplicate_field")
        if "filename" not in params:
            raise bad_form("The 'content' part has no filename: send the distribution file as a file", "bad_part")
        self.filename = params["filename"]  # any character: the filename checks refuse unsafe ones in PyPI's words
        self.file_content_type = part.get("content-type")
        self.file_started = True
        self.file_offset = part.data_start
        self._kind = "content"

    def _field_data(self, data: Segment) -> None:
        self._form_bytes += len(data)
        if self._form_bytes > MAX_FORM_BYTES or len(self._value) + len(data) > MAX_FIELD_BYTES:
            raise bad_form("Form fields too large: metadata is limited to 1 MiB", "form_too_large")
        self._value += data

    def _part_end(self) -> None:
        if self._kind == "field":
            value = _text(bytes(self._value), f"field {self._part[:40]!r}")
            self.fields.setdefault(self._part, []).append(value)
            if self.file_ended:
                self.trailing.append((self._part, value))
        elif self._kind == "content":
            self.file_ended = True
        self._kind, self._value = "field", bytearray()


def _text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_form(f"The {what} is not valid UTF-8", "bad_encoding") from None
    if "\x00" in text:
        raise bad_form(f"The {what} contains a NUL byte", "bad_encoding")
    return text
