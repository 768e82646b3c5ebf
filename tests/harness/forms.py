"""Build upload bodies the way twine does (fields first, then `content`), to send over raw sockets."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import parse_sdist_filename, parse_wheel_filename
from python_multipart.multipart import MultipartParser, parse_options_header


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


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    headers: dict[str, str]
    data: bytes


def read_multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a body as python-multipart (an independent parser) reads them: the tests' oracle."""
    _, params = parse_options_header(content_type)
    parts: list[Part] = []
    state: dict[str, Any] = {"name": b"", "value": b"", "headers": {}, "data": bytearray()}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["name"].decode().lower()] = state["value"].decode()
        state["name"] = state["value"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        headers = state["headers"]
        _, disposition = parse_options_header(headers.get("content-disposition", ""))
        filename = disposition.get(b"filename")
        parts.append(
            Part(
                name=disposition.get(b"name", b"").decode(),
                filename=filename.decode() if filename is not None else None,
                headers=headers,
                data=bytes(state["data"]),
            )
        )
        state.update(headers={}, data=bytearray())

    callbacks = {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    MultipartParser(params[b"boundary"], callbacks).write(body)  # type: ignore[arg-type]
    return parts
