"""Build upload bodies the way twine does (fields first, then `content`), to send over raw sockets."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import parse_sdist_filename, parse_wheel_filename


def twine_fields(filename: str, data: bytes, **overrides: str | None) -> list[tuple[str, str]]:
    """The metadata fields twine 7 sends for a file; an override of None drops that field."""
    if filename.endswith(".whl"):
        name, version, _, _ = parse_wheel_filename(filename)
        filetype, pyversion = "bdist_wheel", "py3"
    else:
        name, version = parse_sdist_filename(filename)
        filetype, pyversion = "sdist", "source"
    fields: dict[str, str | None] = {
        "name": str(name),
        "version": str(version),
        "filetype": filetype,
        "pyversion": pyversion,
        "metadata_version": "2.1",
        "summary": "test package",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
        ":action": "file_upload",
        "protocol_version": "1",
    }
    fields.update(overrides)
    return [(key, value) for key, value in fields.items() if value is not None]


def multipart(
    fields: Sequence[tuple[str, str]],
    files: Sequence[tuple[str, str, bytes]] = (),
    *,
    boundary: str | None = None,
    files_first: bool = False,
) -> tuple[str, bytes]:
    """(Content-Type, body) for form `fields` and `files` given as (field, filename, bytes)."""
    boundary = boundary or secrets.token_hex(16)
    field_parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
        for key, value in fields
    ]
    file_parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for key, filename, data in files
    ]
    parts = file_parts + field_parts if files_first else field_parts + file_parts
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


def upload_body(path: Path, *, files_first: bool = False, **overrides: str | None) -> tuple[str, bytes]:
    data = path.read_bytes()
    return multipart(
        twine_fields(path.name, data, **overrides), [("content", path.name, data)], files_first=files_first
    )
