"""A strict, streaming reader of multipart/form-data bodies: one reading only, or a refusal.

The gateway re-encodes every upload, so the index never parses the client's bytes; strictness is the second
wall. Whatever two multipart parsers could read differently is refused instead of guessed at: a preamble or an
epilogue, a line ending that is not CRLF, a repeated or folded part header, a boundary string anywhere but in a
well-formed delimiter, bytes after the closing delimiter. The file part can be gigabytes: its bytes come back as
views of the caller's chunks, found with `bytes.find`, never copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import GatewayError

MAX_HEADER_BLOCK = 8 * 1024
MAX_PART_HEADERS = 16
# RFC 7230 token characters: what a header name may be made of.
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

Segment = bytes | memoryview
Chunk = bytes | bytearray


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part's headers, names lower-cased, each once; `data_start`: where its data begins in the body."""

    headers: tuple[tuple[str, str], ...]
    data_start: int

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The part before it ended (its last data segment came just before)."""


@dataclass(frozen=True, slots=True)
class End:
    """The closing delimiter was read."""


Event = PartStart | PartEnd | End | bytes | memoryview


def malformed(what: str, reason: str = "bad_multipart") -> GatewayError:
    return GatewayError(400, f"Malformed multipart/form-data: {what}", reason)


class MultipartReader:
    """Feed it the body in chunks of any size; each call returns the events that chunk completed, in order.

    Data events are slices of the fed chunks (memoryviews, or small bytes for what straddles two chunks).
    `position` counts the bytes fed so far. A chunk may be the first `end` bytes of a buffer the caller reuses
    once it has consumed the events (`gateway.upload.pump` reads into two such buffers in turn).
    """

    def __init__(self, boundary: bytes) -> None:
        self._boundary = boundary
        self._open = b"--" + boundary + b"\r\n"
        # Bytes never released yet at the end of the data seen: a delimiter ("\r\n--" + boundary) and the two
        # bytes after it may start in them.
        self._keep = len(boundary) + 7
        self._state = "start"
        self._buffer = b""  # start: the opening delimiter so far; headers: the header block so far; body: the carry
        self._epilogue = b""
        self.position = 0

    @property
    def finished(self) -> bool:
        return self._state == "end"

    def feed(self, chunk: Chunk, end: int | None = None) -> list[Event]:
        size = len(chunk) if end is None else end
        events: list[Event] = []
        self.position += size
        base = self.position - size
        window = _Window(chunk, size)
        pos = 0
        while pos < size:
            if self._state == "body":
                pos = self._body(window, pos, events)
            elif self._state == "headers":
                pos = self._headers(window, pos, base, events)
            elif self._state == "start":
                pos = self._start(window, pos)
            else:
                self._after_end(bytes(chunk[pos:size]))
                pos = size
        return events

    def finish(self) -> None:
        """At the end of the body: anything but a complete form was truncated."""
        if self._state != "end":
            raise malformed("the body ended before the closing boundary", "truncated_body")

    def _start(self, window: _Window, pos: int) -> int:
        """The body must begin with the first delimiter line itself: no preamble."""
        need = len(self._open) - len(self._buffer)
        self._buffer += window.chunk[pos : min(pos + need, window.end)]
        if not self._open.startswith(self._buffer):
            raise malformed("the body must begin with the boundary delimiter (no preamble, CRLF line ends)")
        if len(self._buffer) < len(self._open):
            return window.end
        self._buffer = b""
        self._state = "headers"
        return pos + need

    def _headers(self, window: _Window, pos: int, base: int, events: list[Event]) -> int:
        block = self._buffer + window.chunk[pos : min(pos + MAX_HEADER_BLOCK + 4, window.end)]
        end = block.find(b"\r\n\r\n")
        if end == -1:
            if len(block) > MAX_HEADER_BLOCK:
                raise malformed("a part's headers are too long", "too_many_headers")
            _check_line_ends(block[:-1] if block.endswith(b"\r") else block)  # a CRLF may be half here
            self._buffer = block
            return window.end
        next_pos = pos + end + 4 - len(self._buffer)
        self._buffer = b""
        events.append(self._part_start(block[:end], base + next_pos))
        self._state = "body"
        return next_pos

    def _part_start(self, block: bytes, data_start: int) -> PartStart:
        _check_line_ends(block)
        if self._boundary in block:
            raise malformed("a part's headers contain the boundary", "bad_delimiter")
        headers: list[tuple[str, str]] = []
        for line in block.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                raise malformed("a part header is not 'Name: value' (folded or malformed)", "bad_part")
            key = name.decode("ascii").lower()
            if any(key == seen for seen, _ in headers):
                raise malformed(f"the part header {key!r} appears twice", "duplicate_header")
            if len(headers) >= MAX_PART_HEADERS:
                raise malformed("too many part headers", "too_many_headers")
            headers.append((key, _header_value(value)))
        return PartStart(tuple(headers), data_start)

    def _body(self, window: _Window, pos: int, events: list[Event]) -> int:
        """Release the part's data up to its delimiter, keeping back what may be the start of one.

        Positions below are in the window: the carry (bytes held from earlier chunks) followed by chunk[pos:].
        """
        carry = self._buffer
        window.carry, window.pos = carry, pos
        hit = window.find(self._boundary)
        if hit is None:
            self._release(window, window.length - self._keep, events)
            return window.end
        after = hit + len(self._boundary)
        if window.length < after + 2:
            self._release(window, hit - 4, events)
            return window.end
        if hit < 4 or window.slice(hit - 4, hit) != b"\r\n--":
            raise malformed("the boundary appears without a CRLF before its delimiter", "bad_delimiter")
        follow = window.slice(after, after + 2)
        if follow not in (b"\r\n", b"--"):
            raise malformed("a delimiter line must end right after the boundary (CRLF or '--')", "bad_delimiter")
        events.extend(window.segments(0, hit - 4))
        self._buffer = b""
        events.append(PartEnd())
        if follow == b"--":
            self._state = "end"
            events.append(End())
        else:
            self._state = "headers"
        return window.chunk_index(after + 2)

    def _release(self, window: _Window, upto: int, events: list[Event]) -> None:
        """Emit window bytes [0, upto) as data and keep the rest, at most `_keep` bytes, as the carry."""
        upto = max(upto, 0)
        events.extend(window.segments(0, upto))
        self._buffer = window.slice(upto, window.length)

    def _after_end(self, data: bytes) -> None:
        """After the closing delimiter only its CRLF may follow."""
        self._epilogue += data[:3]
        if not b"\r\n".startswith(self._epilogue):
            raise malformed("data after the closing boundary", "trailing_data")


def _check_line_ends(block: bytes) -> None:
    if block.count(b"\n") != block.count(b"\r\n") or block.count(b"\r") != block.count(b"\r\n"):
        raise malformed("part headers must end lines with CRLF (a bare LF or CR was sent)", "bad_line_end")


def _header_value(raw: bytes) -> str:
    """The value as text. Other control characters than CR and LF (which end lines) are the form's to judge: a
    filename with them gets PyPI's refusal."""
    try:
        return raw.decode("utf-8").strip(" \t")
    except UnicodeDecodeError:
        raise malformed("a part header is not valid UTF-8", "bad_encoding") from None


class _Window:
    """The carry (a few bytes kept from earlier chunks) followed by chunk[pos:end], read as one without copying."""

    __slots__ = ("carry", "chunk", "end", "pos", "view")

    def __init__(self, chunk: Chunk, end: int) -> None:
        self.chunk = chunk
        self.end = end
        self.view = memoryview(chunk)
        self.carry = b""
        self.pos = 0

    @property
    def length(self) -> int:
        return len(self.carry) + self.end - self.pos

    def chunk_index(self, at: int) -> int:
        """The chunk index of window position `at` (at or after the carry's end)."""
        return self.pos + at - len(self.carry)

    def find(self, needle: bytes) -> int | None:
        split = len(self.carry)
        if split:
            found = (self.carry + self.chunk[self.pos : min(self.pos + len(needle), self.end)]).find(needle)
            if found != -1:
                return found
        found = self.chunk.find(needle, self.pos, self.end)
        return None if found == -1 else split + found - self.pos

    def slice(self, start: int, stop: int) -> bytes:
        """A copy: it outlives the chunk's buffer."""
        split = len(self.carry)
        if stop <= split:
            return self.carry[start:stop]
        tail = bytes(self.chunk[self.pos + max(start - split, 0) : self.pos + stop - split])
        return self.carry[start:] + tail if start < split else tail

    def segments(self, start: int, stop: int) -> list[Segment]:
        split = len(self.carry)
        parts: list[Segment] = []
        if start < split and min(stop, split) > start:
            parts.append(self.carry[start : min(stop, split)])
        if stop > split:
            parts.append(self.view[self.pos + max(start - split, 0) : self.pos + stop - split])
        return parts
