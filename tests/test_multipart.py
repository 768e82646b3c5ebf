"""The strict multipart reader: one reading of a body whatever its chunking, and a refusal for anything two
parsers could read differently."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser

from gateway.errors import GatewayError
from gateway.upload.multipart import End, MultipartReader, PartEnd, PartStart
from tests.harness.forms import multipart

B = b"b0undary"


def events(body: bytes, step: int) -> list[object]:
    """Events of reading `body` in chunks of `step`, with adjacent data joined (chunking must not matter)."""
    reader = MultipartReader(B)
    out: list[object] = []
    for start in range(0, len(body), step):
        collect(out, reader.feed(body[start : start + step]))
    reader.finish()
    return [event for event in out if event != b""]


def collect(out: list[object], fed: list[object]) -> None:
    """Append the events to `out` as `events` returns them: data joined, headers, and the other events' names."""
    for event in fed:
        if isinstance(event, bytes | memoryview):
            if out and isinstance(out[-1], bytes):
                out[-1] += bytes(event)
            else:
                out.append(bytes(event))
        elif isinstance(event, PartStart):
            out.append(event.headers)
        else:
            out.append(type(event).__name__)


def part(headers: bytes, value: bytes) -> bytes:
    return b"--" + B + b"\r\n" + headers + b"\r\n\r\n" + value + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + B + b"--\r\n"


DISPOSITION = b'Content-Disposition: form-data; name="x"'
GOOD = body(part(DISPOSITION, b"value"), part(b'Content-Disposition: form-data; name="content"', b"\r\n--b0und"))


@pytest.mark.parametrize("step", [1, 2, 3, 7, 11, 64, 10**6])
def test_the_same_events_whatever_the_chunking(step: int) -> None:
    assert events(GOOD, step) == [
        (("content-disposition", 'form-data; name="x"'),),
        b"value",
        "PartEnd",
        (("content-disposition", 'form-data; name="content"'),),
        b"\r\n--b0und",
        "PartEnd",
        "End",
    ]


def test_data_comes_back_as_views_of_the_chunk() -> None:
    reader = MultipartReader(B)
    chunk = part(DISPOSITION, b"v" * 100_000)
    data = [event for event in reader.feed(chunk) if isinstance(event, bytes | memoryview)]
    assert any(isinstance(event, memoryview) and event.obj is chunk for event in data)


def test_a_part_start_knows_where_its_data_begins() -> None:
    reader = MultipartReader(B)
    starts = [event for event in reader.feed(GOOD) if isinstance(event, PartStart)]
    assert [GOOD[start.data_start : start.data_start + 5] for start in starts] == [b"value", b"\r\n--b"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"preamble\r\n" + GOOD, "bad_multipart"),
        (b"\r\n" + GOOD, "bad_multipart"),
        (GOOD + b"epilogue", "trailing_data"),
        (GOOD[:-2], None),  # the closing delimiter's CRLF may be left out
        (GOOD + b"\r\n", "trailing_data"),
        (body(part(DISPOSITION, b"a\n--" + B + b"\r\n" + DISPOSITION + b"\r\n\r\nb")), "bad_delimiter"),
        (body(part(DISPOSITION, b"a\r\n--" + B + b"junk\r\n")), "bad_delimiter"),
        (body(part(DISPOSITION, b"mentions " + B + b" inside")), "bad_delimiter"),
        (body(part(DISPOSITION.replace(b"\r\n", b"\n") + b"\nX-A: b", b"v")), "bad_line_end"),
        (b"--" + B + b"\r\n" + DISPOSITION + b"\n\n" + b"v\r\n--" + B + b"--\r\n", "bad_line_end"),
        (body(part(DISPOSITION + b"\rX-A: b", b"v")), "bad_line_end"),
        (body(part(DISPOSITION + b"\r\n" + DISPOSITION, b"v")), "duplicate_header"),
        (body(part(DISPOSITION + b"\r\ncontent-disposition: form-data; name=y", b"v")), "duplicate_header"),
        (body(part(DISPOSITION + b"\r\n  folded", b"v")), "bad_part"),
        (body(part(b"No colon here", b"v")), "bad_part"),
        (body(part(b"X-Long: " + b"a" * 9000, b"v")), "too_many_headers"),
        (body(part(b"".join(b"X-%d: v\r\n" % i for i in range(17)) + DISPOSITION, b"v")), "too_many_headers"),
        (body(part(b"X-B: " + B, b"v")), "bad_delimiter"),
        (body(part(b"X-Bad: \xff", b"v")), "bad_encoding"),
        (part(DISPOSITION, b"never closed"), "truncated_body"),
    ],
)
@pytest.mark.parametrize("step", [1, 5, 10**6])
def test_anything_read_two_ways_is_refused(raw: bytes, reason: str | None, step: int) -> None:
    if reason is None:
        assert events(raw, step)[-1] == "End"
        return
    with pytest.raises(GatewayError) as exc:
        events(raw, step)
    assert (exc.value.status, exc.value.reason) == (400, reason)


def test_control_characters_in_header_values_are_the_forms_to_judge() -> None:
    """The reader passes them on (CR and LF end lines): the filename checks refuse them in PyPI's words."""
    got = events(body(part(DISPOSITION + b"\r\nX-Odd: a\x01b", b"v")), 5)
    assert got[0] == (("content-disposition", 'form-data; name="x"'), ("x-odd", "a\x01b"))


def _python_multipart(raw: bytes) -> list[tuple[str, bytes]]:
    """(Content-Disposition, value) per part, as python-multipart reads the same body."""
    parts: list[tuple[str, bytes]] = []
    state: dict[str, bytes] = {"name": b"", "value": b"", "disposition": b""}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if state["name"].lower() == b"content-disposition":
            state["disposition"] += data[start:end]

    def on_header_end() -> None:
        state["name"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_part_end() -> None:
        parts.append((state["disposition"].decode(), state["value"]))
        state.update(value=b"", disposition=b"")

    parser = MultipartParser(
        B,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(raw)
    return parts


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.from_regex(r"[a-z_:]{1,12}", fullmatch=True), st.binary(max_size=300)),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 400),
)
def test_well_formed_bodies_read_as_python_multipart_reads_them(fields: list[tuple[str, bytes]], step: int) -> None:
    raw = b"".join(
        part(f'Content-Disposition: form-data; name="{name}"'.encode(), value)
        for name, value in fields
        if B not in value
    )
    raw = body(raw) if raw else body(part(DISPOSITION, b""))
    mine = events(raw, step)
    expected = _python_multipart(raw)
    values = [event for event in mine if isinstance(event, bytes)]
    dispositions = [dict(event)["content-disposition"] for event in mine if isinstance(event, tuple)]
    assert dispositions == [disposition for disposition, _ in expected]
    assert values == [value for _, value in expected if value]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 300))
def test_arbitrary_bytes_end_in_a_4xx_or_a_form(raw: bytes, step: int) -> None:
    try:
        events(body(raw) if raw.startswith(b"--") else raw, step)
    except GatewayError as exc:
        assert exc.status == 400 and "\n" not in exc.message


def test_forms_as_the_tests_write_them_are_read() -> None:
    ctype, raw = multipart([("name", "demo"), ("version", "1.0")], [("content", "demo-1.0.tar.gz", b"bytes")])
    reader = MultipartReader(ctype.split("boundary=")[1].encode())
    got = reader.feed(raw)
    assert sum(isinstance(event, PartStart) for event in got) == 3
    assert sum(isinstance(event, PartEnd) for event in got) == 3
    assert isinstance(got[-1], End) and reader.finished


def events_in_buffers(raw: bytes, step: int) -> list[object]:
    """`events`, read as a pump reads (gateway.upload.pump): into two buffers in turn, each chunk's events
    consumed only after the next chunk is read into the other buffer, then that buffer scribbled over. The
    reader must keep no view of a buffer past its turn."""
    reader = MultipartReader(B)
    buffers = (bytearray(step), bytearray(step))
    out: list[object] = []
    held: list[object] = []
    turn = 0
    for start in range(0, len(raw), step):
        piece = raw[start : start + step]
        buffer = buffers[turn]
        buffer[: len(piece)] = piece
        fresh = list(reader.feed(buffer, len(piece)))
        collect(out, held)
        buffers[1 - turn][:] = b"\xff" * step
        held, turn = fresh, 1 - turn
    collect(out, held)
    reader.finish()
    return [event for event in out if event != b""]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500), st.integers(1, 200), st.booleans())
def test_reused_buffers_read_as_fresh_chunks(raw: bytes, step: int, framed: bool) -> None:
    raw = body(part(DISPOSITION, raw)) if framed and B not in raw else raw
    try:
        expected: object = events(raw, step)
    except GatewayError as exc:
        expected = (exc.status, exc.reason)
    try:
        got: object = events_in_buffers(raw, step)
    except GatewayError as exc:
        got = (exc.status, exc.reason)
    assert got == expected


@pytest.mark.parametrize("step", [1, 5, 64, 4096])
def test_reused_buffers_read_a_whole_form(step: int) -> None:
    assert events_in_buffers(GOOD, step) == events(GOOD, step)
