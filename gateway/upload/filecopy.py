"""The copy of an upload's file that the archive checks read, written beside the stream.

The checks (`gateway.archive`) need the file on disk, but copying every byte of a large upload costs as much CPU
as a third of its hashing. A wheel is a zip: the checks read its central directory, its local headers and the
small members of its `.dist-info` directory, never the data of its other members. So for a wheel the copy
follows the local headers as they stream past and leaves a large member's data as a hole in a sparse file; what
it cannot follow (a data descriptor, anything unexpected) it copies from there on, whole. Any other file is copied
whole: a spooled upload is also sent on from its copy.

A copy starts in memory (a memfd, which the checks open by path like any file): creating and dropping a temporary
file costs a small upload more than its archive checks on a slow file system. Past IN_MEMORY_MAX bytes (holes
counted) it moves to a temporary file, so that the memory each upload in flight holds stays bounded.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from gateway.upload.multipart import Segment

LOCAL_HEADER = b"PK\x03\x04"
_HEADER = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, sizes, name/extra lengths
_DATA_DESCRIPTOR = 0x08
_ZIP64_EXTRA = 0x0001
_UNKNOWN_SIZE = 0xFFFFFFFF
# Members smaller than this are copied even outside .dist-info: holes that small save nothing.
HOLE_MIN = 256 * 1024
IN_MEMORY_MAX = 256 * 1024


class FileCopy:
    """A temporary file holding what the checks need: the whole file, or (`sparse`) a wheel's structure."""

    def __init__(self, *, sparse: bool) -> None:
        self._file: IO[bytes] = _in_memory()
        self._in_memory = True
        self._following = sparse
        self._size = 0
        self._next_header = 0  # stream offset of the next local header while following
        self._header = b""  # a local header so far, while it straddles segments
        self._skip_until = 0  # stream offset up to which member data is left out

    @property
    def size(self) -> int:
        return self._size

    @property
    def path(self) -> Path:
        """A path of its own to the (unnamed) file, so readers get their own file offset."""
        return Path(f"/proc/self/fd/{self._file.fileno()}")

    def write(self, segments: Sequence[Segment]) -> None:
        for segment in segments:
            self._write(segment)

    def reader(self) -> IO[bytes]:
        """The file from its start, for sending it on (a whole copy)."""
        self._finish()
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        self._file.close()

    def finish(self) -> None:
        """Give the file its full length even when it ends in a hole."""
        self._finish()

    def _finish(self) -> None:
        self._file.flush()
        if os.fstat(self._file.fileno()).st_size < self._size:
            self._file.truncate(self._size)

    def _write(self, data: Segment) -> None:
        start = self._size
        self._size += len(data)
        if self._in_memory and self._size > IN_MEMORY_MAX:
            self._to_disk()
        if not self._following:
            self._put(start, data)
            return
        position = start
        view = memoryview(data)
        while position < self._size:
            offset = position - start
            if position < self._skip_until:  # inside a member's data that is left out
                position = min(self._skip_until, self._size)
                continue
            if position < self._next_header:  # a member's data that is copied
                end = min(self._next_header, self._size)
                self._put(position, view[offset : end - start])
                position = end
                continue
            position = self._at_header(position, view[offset:])
            if self._gave_up():
                self._put(position, view[position - start :])
                return

    def _to_disk(self) -> None:
        disk = tempfile.TemporaryFile()
        self._file.seek(0)
        shutil.copyfileobj(self._file, disk)
        self._file.close()
        self._file, self._in_memory = disk, False

    def _at_header(self, position: int, rest: memoryview) -> int:
        """Take (and copy) the next bytes of the local header at `_next_header`; return where reading goes on.

        A header may straddle segments: it is gathered until its name and extra field are complete.
        """
        want = _HEADER.size - len(self._header)
        if want <= 0:
            want = _HEADER.size + self._names_length() - len(self._header)
        taken = bytes(rest[:want])
        self._put(position, taken)
        self._header += taken
        position += len(taken)
        if len(self._header) < _HEADER.size:
            return position
        if not self._header.startswith(LOCAL_HEADER):
            self._following = False  # the central directory (or anything else): copied whole from here on
            return position
        if len(self._header) == _HEADER.size + self._names_length():
            self._plan_member(position)
        return position

    def _gave_up(self) -> bool:
        """Whether the copy stopped following the zip (it copies everything from then on)."""
        return not self._following

    def _names_length(self) -> int:
        fields = _HEADER.unpack_from(self._header)
        return int(fields[9]) + int(fields[10])

    def _plan_member(self, data_start: int) -> None:
        """The member's data follows: where it ends (the next header), and whether it is left out."""
        _, _, flags, _, _, _, _, compressed, _, name_length, _ = _HEADER.unpack_from(self._header)
        name = self._header[_HEADER.size : _HEADER.size + name_length]
        extra = self._header[_HEADER.size + name_length :]
        self._header = b""
        if flags & _DATA_DESCRIPTOR:
            self._following = False  # its size comes after its data: nothing tells where the next header is
            return
        if compressed == _UNKNOWN_SIZE:
            found = _zip64_compressed_size(extra)
            if found is None:
                self._following = False
                return
            compressed = found
        self._next_header = data_start + compressed
        if compressed >= HOLE_MIN and b".dist-info/" not in name:
            self._skip_until = self._next_header

    def _put(self, position: int, data: Segment) -> None:
        if not data:
            return
        if self._file.tell() != position:
            self._file.seek(position)
        self._file.write(data)


def _in_memory() -> IO[bytes]:
    if not hasattr(os, "memfd_create"):  # not Linux
        return tempfile.TemporaryFile()
    return os.fdopen(os.memfd_create("upload-copy", os.MFD_CLOEXEC), "w+b")


def _zip64_compressed_size(extra: bytes) -> int | None:
    """The compressed size from a local header's zip64 extra field (APPNOTE 4.5.3), or None."""
    offset = 0
    while offset + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, offset)
        body = extra[offset + 4 : offset + 4 + length]
        if kind == _ZIP64_EXTRA:
            # The local header's zip64 record holds both sizes, uncompressed first.
            return int(struct.unpack_from("<Q", body, 8)[0]) if len(body) >= 16 else None
        offset += 4 + length
    return None
