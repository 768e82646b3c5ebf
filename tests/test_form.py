from __future__ import annotations

import hashlib

import pytest

from gateway.errors import GatewayError
from gateway.upload.form import FormReader, boundary_of
from tests.harness.forms import multipart, twine_fields

DATA = b"wheel bytes " * 5000
FILENAME = "Demo_Pkg-0.1.0-py3-none-any.whl"


def read(body: bytes, boundary: bytes, step: int) -> FormReader:
    reader, _ = read_file(body, boundary, step)
    return reader


def read_file(body: bytes, boundary: bytes, step: int) -> tuple[FormReader, bytes]:
    """The reader after the whole body, and the file's bytes as it handed them back."""
    reader = FormReader(boundary)
    data = bytearray()
    for start in range(0, len(body), step):
        for segment in reader.feed(body[start : start + step]):
            data += segment
    reader.finish()
    return reader, bytes(data)


@pytest.mark.parametrize("step", [1, 7, 1000, 10**6])
@pytest.mark.parametrize("files_first", [False, True])
def test_fields_file_and_digests_whatever_the_chunking(step: int, files_first: bool) -> None:
    ctype, body = multipart(
        twine_fields(FILENAME, DATA, name="Demo-Pkg"), [("content", FILENAME, DATA)], files_first=files_first
    )
    reader, data = read_file(body, boundary_of(ctype), step)
    assert reader.fields["name"] == ["Demo-Pkg"]
    assert reader.fields[":action"] == ["file_upload"]
    assert reader.filename == FILENAME
    assert reader.file_content_type == "application/octet-stream"
    assert reader.file_size == len(DATA)
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert hashlib.blake2b(data, digest_size=32).hexdigest() == hashlib.blake2b(DATA, digest_size=32).hexdigest()
    assert body[reader.file_offset : reader.file_offset + len(DATA)] == DATA


def test_content_starts_after_the_fields_twine_sends() -> None:
    ctype, body = multipart(twine_fields(FILENAME, DATA), [("content", FILENAME, DATA)])
    reader = FormReader(boundary_of(ctype))
    reader.feed(body[: body.index(b"wheel bytes")])
    assert reader.file_started and not reader.finished
    assert {"sha256_digest", "blake2_256_digest", "name", "version", ":action"} <= set(reader.fields)


def test_repeated_fields_are_kept_in_order() -> None:
    ctype, body = multipart([("classifiers", "A"), ("classifiers", "B")], [("content", FILENAME, b"x")])
    assert read(body, boundary_of(ctype), 10).fields["classifiers"] == ["A", "B"]


@pytest.mark.parametrize(
    ("content_type", "status", "reason"),
    [
        (None, 400, "not_multipart"),
        ("application/json", 415, "not_multipart"),
        ("multipart/form-data", 400, "bad_boundary"),
        ("multipart/form-data; boundary=", 400, "bad_boundary"),
        ("multipart/form-data; boundary=" + "x" * 71, 400, "bad_boundary"),
    ],
)
def test_bad_content_types(content_type: str | None, status: int, reason: str) -> None:
    with pytest.raises(GatewayError) as exc:
        boundary_of(content_type)
    assert (exc.value.status, exc.value.reason) == (status, reason)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'--b\r\nContent-Disposition: form-data; name="content"; filename="x.whl"\r\n\r\nabc', "truncated_body"),
        (b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--\r\n', "missing_content"),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n", "bad_part"),
        (b'--b\r\nContent-Disposition: form-data; name="content"\r\n\r\nx\r\n--b--\r\n', "bad_part"),
        (b'--b\r\nContent-Disposition: form-data; name="name"; filename="f"\r\n\r\nx\r\n--b--\r\n', "field_is_file"),
        (b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\xfe\r\n--b--\r\n', "bad_encoding"),
        (b'--b\r\nContent-Disposition: form-data; name="n\x00"\r\n\r\nx\r\n--b--\r\n', "bad_encoding"),
        (b"garbage without a boundary", "bad_multipart"),
    ],
)
def test_malformed_bodies_are_400(body: bytes, reason: str) -> None:
    with pytest.raises(GatewayError) as exc:
        read(body, b"b", 5)
    assert exc.value.status == 400
    assert exc.value.reason == reason


def test_two_files_are_refused() -> None:
    ctype, body = multipart([], [("content", "a.whl", b"1"), ("content", "b.whl", b"2")])
    with pytest.raises(GatewayError) as exc:
        read(body, boundary_of(ctype), 100)
    assert exc.value.reason == "duplicate_field"


def test_field_limits() -> None:
    ctype, body = multipart([("f", "v")] * 1001, [("content", FILENAME, b"x")])
    with pytest.raises(GatewayError) as exc:
        read(body, boundary_of(ctype), 4096)
    assert exc.value.reason == "too_many_fields"
    ctype, body = multipart([("description", "x" * (600 * 1024))], [("content", FILENAME, b"x")])
    with pytest.raises(GatewayError) as exc:
        read(body, boundary_of(ctype), 4096)
    assert exc.value.reason == "form_too_large"
