"""The body the index receives, written by the gateway: never the client's bytes.

From the fields it validated and the file it checked, the gateway writes one canonical multipart/form-data body:
a fresh random boundary, the fields of PyPI's upload API each written once (repeatable ones in their order),
the file part with a Content-Disposition made from the validated filename, its bytes, the closing delimiter.
So the index can only read what the gateway read. Pure: no I/O.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import get_type_hints

from packaging.metadata import RawMetadata

# The form fields PyPI's legacy upload API reads (warehouse forklift/forms.py and metadata.py): the upload's
# own, then every core-metadata field by its form name. Anything else a client sends is not passed on.
CONTROL_FIELDS = (
    ":action",
    "protocol_version",
    "filetype",
    "pyversion",
    "md5_digest",
    "sha256_digest",
    "blake2_256_digest",
)
_FORM_NAMES = {"platforms": "platform", "supported_platforms": "supported_platform", "license_files": "license_file"}
METADATA_FIELDS = tuple(_FORM_NAMES.get(key, key) for key in get_type_hints(RawMetadata))
FORWARDED_FIELDS = (*CONTROL_FIELDS, *METADATA_FIELDS, "comment")
FILE_CONTENT_TYPE = "application/octet-stream"
# Fills the bytes a streamed upload still owes the index when its client sent parts after the file.
PADDING_FIELD = "upload_gateway_padding"
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9._+!-]{1,255}")


@dataclass(frozen=True, slots=True)
class CanonicalBody:
    """`head` + the file's bytes + `tail`, sent with `length(file_size)` as Content-Length."""

    boundary: str
    head: bytes
    tail: bytes

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def length(self, file_size: int) -> int:
        return len(self.head) + file_size + len(self.tail)


def forwarded(fields: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """The fields passed on, in a fixed order; a field the gateway does not know is dropped."""
    return [(name, value) for name in FORWARDED_FIELDS for value in fields.get(name, ())]


def encode(fields: Sequence[tuple[str, str]], *, filename: str | None) -> CanonicalBody:
    """The body around the file (`filename` None: a form without one, e.g. `:action=remove_pkg`).

    `filename` must be one the gateway validated: a distribution's name never needs quoting.
    """
    if filename is not None and not _SAFE_FILENAME.fullmatch(filename):
        raise ValueError(f"not a validated distribution filename: {filename!r}")
    while True:
        boundary = f"upload-gateway-{secrets.token_hex(16)}"
        parts = [_part(name, value.encode()) for name, value in fields]
        if not any(boundary.encode() in part for part in parts):  # 128 random bits: only a bug would repeat
            break
    delimiter = f"--{boundary}\r\n".encode()
    head = b"".join(delimiter + part + b"\r\n" for part in parts)
    if filename is None:
        return CanonicalBody(boundary, head + f"--{boundary}--\r\n".encode(), b"")
    file_headers = (
        f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'
        f"Content-Type: {FILE_CONTENT_TYPE}\r\n\r\n"
    ).encode()
    return CanonicalBody(boundary, head + delimiter + file_headers, f"\r\n--{boundary}--\r\n".encode())


def fill(boundary: str, fields: Sequence[tuple[str, str]], size: int) -> bytes | None:
    """Exactly `size` bytes of parts to write between the file and the closing delimiter: `fields`, then a padding
    part (ignored by every index) for the rest; None when they do not fit.

    For a streamed upload whose client sent parts after the file: its file ended early, and the index was
    promised `size` bytes more before the closing delimiter.
    """
    delimiter = f"\r\n--{boundary}\r\n".encode()
    if any(boundary.encode() in value.encode() for _, value in fields):
        return None
    parts = b"".join(delimiter + _part(name, value.encode()) for name, value in fields)
    padding = delimiter + _part(PADDING_FIELD, b"")
    room = size - len(parts) - len(padding)
    return None if room < 0 else parts + padding + b" " * room


def _part(name: str, value: bytes) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value
