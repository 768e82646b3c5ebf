"""The body the index receives is the gateway's own: read back, it gives exactly the fields and file validated."""

from __future__ import annotations

import pytest

from gateway.upload.encoding import FORWARDED_FIELDS, PADDING_FIELD, encode, fill, forwarded
from gateway.upload.form import FormReader, boundary_of


def read_back(content_type: str, raw: bytes) -> tuple[FormReader, bytes]:
    reader = FormReader(boundary_of(content_type))
    data = b"".join(bytes(segment) for segment in reader.feed(raw))
    reader.finish_form()
    return reader, data


def test_fields_and_file_read_back_exactly() -> None:
    fields = {
        "version": ["1.0"],
        "name": ["Demo-Pkg"],
        ":action": ["file_upload"],
        "classifiers": ["B :: two", "A :: one"],
        "description": ["line one\r\n--not a boundary\r\nline three"],
        "x-client-extension": ["dropped"],
        "attestations": ["[]"],
    }
    kept = forwarded(fields)
    body = encode(kept, filename="demo_pkg-1.0-py3-none-any.whl")
    data = b"\x00\xff" * 1000
    reader, file_bytes = read_back(body.content_type, body.head + data + body.tail)
    assert file_bytes == data
    assert reader.filename == "demo_pkg-1.0-py3-none-any.whl"
    assert reader.file_content_type == "application/octet-stream"
    assert reader.fields == {key: values for key, values in fields.items() if key in FORWARDED_FIELDS}
    assert "x-client-extension" not in reader.fields and "attestations" not in reader.fields
    assert [name for name, _ in kept] == [":action", "name", "version", "description", "classifiers", "classifiers"]
    assert [value for name, value in kept if name == "classifiers"] == ["B :: two", "A :: one"], "order is kept"
    assert body.length(len(data)) == len(body.head) + len(data) + len(body.tail)


def test_a_fresh_boundary_each_time() -> None:
    first = encode([("name", "a")], filename=None)
    second = encode([("name", "a")], filename=None)
    assert first.boundary != second.boundary
    assert len(first.boundary) >= 40


def test_a_form_without_a_file_is_complete_in_its_head() -> None:
    body = encode([(":action", "remove_pkg"), ("name", "demo"), ("version", "1.0")], filename=None)
    reader, _ = read_back(body.content_type, body.head)
    assert reader.finished and reader.fields[":action"] == ["remove_pkg"] and body.tail == b""


@pytest.mark.parametrize("filename", ['a".whl', "a\r\nb.whl", "../a.whl", "a b.whl", ""])
def test_only_validated_filenames_are_written(filename: str) -> None:
    with pytest.raises(ValueError):
        encode([], filename=filename)


@pytest.mark.parametrize("owed", [300, 301, 5000])
def test_fill_owes_exactly_and_reads_back_as_the_fields_and_an_ignored_padding(owed: int) -> None:
    body = encode([("name", "demo")], filename="demo-1.0.tar.gz")
    trailer = fill(body.boundary, [("comment", "after the file")], owed)
    assert trailer is not None and len(trailer) == owed
    reader, data = read_back(body.content_type, body.head + b"file" + trailer + body.tail)
    assert data == b"file"
    assert reader.fields["comment"] == ["after the file"]
    assert set(reader.fields) == {"name", "comment", PADDING_FIELD}


def test_fill_refuses_what_does_not_fit() -> None:
    body = encode([], filename=None)
    assert fill(body.boundary, [("comment", "x" * 300)], 100) is None
    assert fill(body.boundary, [], 10) is None
    assert fill(body.boundary, [("comment", body.boundary)], 10_000) is None
