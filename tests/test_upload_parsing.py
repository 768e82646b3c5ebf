"""Whatever the bytes, parsing and validating an upload form ends in the gateway's own error, or an Upload."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.upload.form import FormReader
from gateway.validation import check_action, validate_upload
from tests.harness.forms import multipart, twine_fields

BOUNDARY = "b0undary"
NAMES = st.sampled_from(
    [
        "name",
        "version",
        ":action",
        "content",
        "sha256_digest",
        "blake2_256_digest",
        "md5_digest",
        "filetype",
        "pyversion",
        "metadata_version",
        "protocol_version",
        "gpg_signature",
        "x\r\ny",
        "ü",
    ]
)
TEXT = st.text(max_size=40) | st.sampled_from(["file_upload", "1", "2.1", "sdist", "bdist_wheel", "py3", "demo"])


def parse_and_validate(body: bytes, step: int) -> None:
    reader = FormReader(BOUNDARY.encode())
    try:
        for start in range(0, len(body), step):
            reader.feed(body[start : start + step])
        reader.finish()
        check_action(reader.fields, frozenset({"file_upload"}))
        validate_upload(reader.fields, filename=reader.filename or "", content_type=reader.file_content_type)
        assert reader.finished
    except GatewayError as exc:
        assert 400 <= exc.status < 500
        assert exc.reason and "\n" not in exc.message and "\r" not in exc.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 700))
def test_arbitrary_bytes(body: bytes, step: int) -> None:
    parse_and_validate(body, step)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(NAMES, TEXT), max_size=15),
    st.lists(st.tuples(NAMES, st.text(max_size=60), st.binary(max_size=200)), max_size=3),
    st.integers(1, 500),
    st.integers(0, 40),
)
def test_generated_forms(
    fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]], step: int, cut: int
) -> None:
    _, body = multipart(fields, files, boundary=BOUNDARY)
    parse_and_validate(body[: len(body) - cut], step)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(NAMES, TEXT | st.none(), max_size=6), st.binary(max_size=300), st.integers(1, 300))
def test_mutated_twine_forms(overrides: dict[str, str | None], data: bytes, step: int) -> None:
    filename = "demo-1.0-py3-none-any.whl"
    _, body = multipart(twine_fields(filename, data, **overrides), [("content", filename, data)], boundary=BOUNDARY)
    parse_and_validate(body, step)
