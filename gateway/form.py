"""Incremental reading of an upload's multipart body: keep the small fields, hash the file as it passes.

No I/O here: the upload handler feeds it the bytes it forwards. Parsing is python-multipart's; this
module only adds the limits and the rules of an upload form (one `content` file, small text fields).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.errors import GatewayError

FILE_FIELD = "content"
# Fields a client may send as files; their bytes are passed on, not kept.
IGNORED_FILE_FIELDS = frozenset({"gpg_signature", "attestations"})
MAX_FIELDS = 1000
MAX_FIELD_BYTES = 512 * 1024
MAX_FORM_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024
DIGEST_FIELDS = {"md5_digest": "md5", "sha256_digest": "sha256", "blake2_256_digest": "blake2_256"}


def bad_form(message: str, reason: str = "bad_multipart") -> GatewayError:
    return GatewayError(400, message, reason)


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary from the request's Content-Type, or a 400 that says what is wrong."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        raise GatewayError(
            415 if ctype else 400,
            "Upload must be multipart/form-data (as twine sends it)",
            "not_multipart",
        )
    boundary = params.get(b"boundary", b"")
    if not boundary or len(boundary) > 70 or not all(32 < byte < 127 for byte in boundary):
        raise bad_form("Malformed multipart/form-data: missing or invalid boundary", "bad_boundary")
    return boundary


def _new_hashers(algorithms: set[str]) -> dict[str, Any]:
    factories: dict[str, Callable[[], Any]] = {
        "md5": lambda: hashlib.md5(usedforsecurity=False),
        "sha256": hashlib.sha256,
        "blake2_256": lambda: hashlib.blake2b(digest_size=32),
    }
    return {name: factories[name]() for name in sorted(algorithms)}


class FormReader:
    """Feed it the body in chunks; it knows the fields seen so far, the file's name, size and digests."""

    def __init__(self, boundary: bytes) -> None:
        self.fields: dict[str, list[str]] = {}
        self.filename: str | None = None
        self.file_content_type: str | None = None
        self.file_size = 0
        self.content_started = False
        self.finished = False
        self._hashers: dict[str, Any] = {}
        self._file_data: list[memoryview] = []
        self._form_bytes = 0
        self._field_count = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part: str = ""
        self._part_kind = "field"
        self._value = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_size=MAX_HEADER_BYTES,
        )

    def feed(self, data: bytes) -> None:
        for segment in self.parse(data):
            for hasher in self._hashers.values():
                hasher.update(segment)

    def parse(self, data: bytes) -> list[memoryview]:
        """Parse `data`; return the file's bytes in it, for the caller to hash (in parallel, see `hashers`)."""
        if self.finished:
            if data.strip(b"\r\n-"):
                raise bad_form("Malformed multipart/form-data: data after the closing boundary")
            return []
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise bad_form(f"Malformed multipart/form-data: {_describe(exc)}") from None
        segments, self._file_data = self._file_data, []
        return segments

    @property
    def hashers(self) -> list[Any]:
        return list(self._hashers.values())

    def finish(self) -> None:
        """Called at the end of the body: a form that never closed was truncated."""
        if not self.finished:
            raise bad_form("Truncated multipart/form-data body: the closing boundary never arrived", "truncated_body")
        if not self.content_started:
            raise bad_form("Upload payload does not have a file.", "missing_content")

    def hexdigests(self) -> dict[str, str]:
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._value = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._header_name.strip().lower()
        if len(self._headers) >= 16:
            raise bad_form("Malformed multipart/form-data: too many part headers", "too_many_headers")
        self._headers[name] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise bad_form("Malformed multipart/form-data: a part has no Content-Disposition name", "bad_part")
        self._part = _text(params[b"name"], "field name")
        self._field_count += 1
        if self._field_count > MAX_FIELDS:
            raise bad_form(f"Too many form fields: at most {MAX_FIELDS} are accepted", "too_many_fields")
        if self._part == FILE_FIELD:
            self._start_content(params)
        elif b"filename" in params and self._part not in IGNORED_FILE_FIELDS:
            raise bad_form(f"{self._part[:40]}: Should not be a tuple.", "field_is_file")
        else:
            self._part_kind = "ignored" if self._part in IGNORED_FILE_FIELDS else "field"

    def _start_content(self, params: dict[bytes, bytes]) -> None:
        if self.content_started:
            raise bad_form("Upload payload has more than one file: send one 'content' part", "duplicate_field")
        if b"filename" not in params:
            raise bad_form("The 'content' part has no filename: send the distribution file as a file", "bad_part")
        self.filename = _text(params[b"filename"], "filename")
        ctype = self._headers.get(b"content-type")
        self.file_content_type = _text(ctype, "content type") if ctype is not None else None
        supplied = {DIGEST_FIELDS[name] for name in self.fields if name in DIGEST_FIELDS}
        # Digests that arrive after the file cannot be known yet: compute all of them then.
        self._hashers = _new_hashers(supplied | {"sha256", "blake2_256"} if supplied else set(DIGEST_FIELDS.values()))
        self.content_started = True
        self._part_kind = "content"

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part_kind == "content":
            self.file_size += end - start
            self._file_data.append(memoryview(data)[start:end])
        elif self._part_kind == "field":
            self._form_bytes += end - start
            if self._form_bytes > MAX_FORM_BYTES or len(self._value) + end - start > MAX_FIELD_BYTES:
                raise bad_form("Form fields too large: metadata is limited to 1 MiB", "form_too_large")
            self._value += data[start:end]

    def _on_part_end(self) -> None:
        if self._part_kind == "field":
            self.fields.setdefault(self._part, []).append(_text(bytes(self._value), f"field {self._part[:40]!r}"))
        self._part_kind = "field"

    def _on_end(self) -> None:
        self.finished = True


def _text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_form(f"The {what} is not valid UTF-8", "bad_encoding") from None
    if "\x00" in text:
        raise bad_form(f"The {what} contains a NUL byte", "bad_encoding")
    return text


def _describe(exc: MultipartParseError) -> str:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return message[:120]
