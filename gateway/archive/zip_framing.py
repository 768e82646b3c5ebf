"""A ZIP archive's records must tell one story: what its local headers say is what its central directory says.

Installers read a wheel through the central directory, other tools stream its local headers; an archive on
which the two disagree (members hidden from one of them, duplicated, resized, sized by a trailing data
descriptor, data before the first record or after the last) can show a reviewer one set of files and install
another. PyPI refuses such archives (https://docs.pypi.org/archives); these are its rules, with its words.

The walk reads every record once and seeks past member data, so its cost grows with the number of members,
not with their size. Offsets and layouts are those of PKWARE's APPNOTE.TXT (sections 4.3.7 to 4.3.16).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import BinaryIO

LOCAL_HEADER = b"PK\x03\x04"
CENTRAL_HEADER = b"PK\x01\x02"
END_OF_DIRECTORY = b"PK\x05\x06"
ZIP64_END_OF_DIRECTORY = b"PK\x06\x06"
ZIP64_LOCATOR = b"PK\x06\x07"

_LOCAL = struct.Struct("<HHHHHIIIHH")  # version, flags, method, time, date, crc, csize, usize, name, extra
_CENTRAL = struct.Struct("<HHHHHHIIIHHHHHII")  # ... csize, usize, name, extra, comment, disk, attrs, offset
_END = struct.Struct("<HHHHIIH")  # disk, directory disk, entries here, entries, size, offset, comment
_ZIP64_END = struct.Struct("<QHHIIQQQQ")  # record size, versions, disks, entries here, entries, size, offset
_ZIP64_LOCATOR = struct.Struct("<IQI")  # disk, offset of the ZIP64 end record, disks
_EXTRA_HEADER = struct.Struct("<HH")
_ZIP64_RECORD_SIZE = 44  # a ZIP64 end record without extensible data
_CENTRAL_FIXED = 4 + _CENTRAL.size

ZIP64_EXTRA = 0x0001
UNICODE_PATH_EXTRA = 0x7075
# Extras whose repetition would let two readers pick different values.
_SINGLE_EXTRAS = frozenset({ZIP64_EXTRA, UNICODE_PATH_EXTRA})
_ZIP64_EXTRA_SIZES = frozenset({0, 8, 16, 24, 28})
_SENTINEL = 0xFFFFFFFF  # "the real value is in the ZIP64 extra"
_DATA_DESCRIPTOR_FLAG = 0x08
_STORED = 0
_UNPRINTABLE = frozenset(range(0x20)) | {0x7F}

MALFORMED = "Malformed zip file"


class _Refused(Exception):
    """The first framing problem, in PyPI's words."""


def framing_error(fp: BinaryIO, sizes: Mapping[str, tuple[int, int]]) -> str | None:
    """PyPI's reason to refuse the archive in `fp`, or None.

    `sizes` maps each central-directory name, decoded as Python's zipfile decodes it, to its (compressed,
    uncompressed) sizes: the local headers must agree with them.
    """
    fp.seek(0)
    try:
        _walk(_Records(fp), sizes)
    except _Refused as exc:
        return str(exc)
    return None


class _Records:
    def __init__(self, fp: BinaryIO) -> None:
        self._fp = fp

    @property
    def offset(self) -> int:
        return self._fp.tell()

    def take(self, size: int) -> bytes:
        data = self._fp.read(size)
        if len(data) != size:
            raise _Refused(MALFORMED)
        return data

    def unpack(self, layout: struct.Struct) -> tuple[int, ...]:
        return layout.unpack(self.take(layout.size))

    def skip(self, size: int) -> None:
        self._fp.seek(size, os.SEEK_CUR)

    def at_end(self) -> bool:
        here = self._fp.tell()
        return here == self._fp.seek(0, os.SEEK_END)


class _Directory:
    """What the central directory and its end records have said so far."""

    def __init__(self) -> None:
        self.start: int | None = None
        self.entries = 0
        self.size = 0
        self.zip64: tuple[int, int, int] | None = None  # (entries, size, offset) of the ZIP64 end record
        self.zip64_at: int | None = None
        self.located_at: int | None = None  # where the ZIP64 locator says that record is


def _walk(records: _Records, sizes: Mapping[str, tuple[int, int]]) -> None:
    local: set[bytes] = set()
    central: set[bytes] = set()
    directory = _Directory()
    while True:
        at = records.offset
        signature = records.take(4)
        if signature == LOCAL_HEADER:
            name = _local_file(records, sizes)
            if name in local:
                raise _Refused("Duplicate filename in local headers")
            local.add(name)
        elif signature == CENTRAL_HEADER:
            name, length = _central_entry(records)
            if directory.start is None:
                directory.start = at
            directory.entries += 1
            directory.size += length
            if name in central:
                raise _Refused("Duplicate filename in central directory")
            if name not in local:
                raise _Refused("Missing filename in local headers")
            central.add(name)
        elif signature == ZIP64_END_OF_DIRECTORY:
            directory.zip64_at = at
            directory.zip64 = _zip64_end(records)
        elif signature == ZIP64_LOCATOR:
            directory.located_at = records.unpack(_ZIP64_LOCATOR)[1]
        elif signature == END_OF_DIRECTORY:
            _end(records, directory, at)
            break
        else:
            raise _Refused("Unknown record signature")
    if not records.at_end():
        raise _Refused("Trailing data")


def _local_file(records: _Records, sizes: Mapping[str, tuple[int, int]]) -> bytes:
    """Check one local header against the central directory and step over its data; return its raw name."""
    _, flags, method, _, _, _, csize, usize, name_length, extra_length = records.unpack(_LOCAL)
    name = records.take(name_length)
    extra = records.take(extra_length)
    if _unprintable(name):
        raise _Refused("Invalid character in filename")
    for kind, data in _extras(extra):
        if kind == ZIP64_EXTRA:
            csize, usize = _zip64_sizes(data, method, csize, usize)
        elif kind == UNICODE_PATH_EXTRA:
            _check_unicode_path(data[5:])  # after a version byte and the CRC of the header's name
    if flags & _DATA_DESCRIPTOR_FLAG:
        raise _Refused("ZIP contains a data descriptor")
    try:
        expected = sizes.get(name.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Refused("Filename not unicode") from None
    if expected is None:
        raise _Refused("Filename not in central directory")
    if expected[0] != csize:
        raise _Refused("Mis-matched data size")
    if expected[1] != usize:
        raise _Refused("Mis-matched file size")
    records.skip(csize)
    return name


def _extras(extra: bytes) -> list[tuple[int, bytes]]:
    fields: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    position = 0
    while position < len(extra):
        if len(extra) - position < _EXTRA_HEADER.size:
            raise _Refused(MALFORMED)
        kind, size = _EXTRA_HEADER.unpack_from(extra, position)
        position += _EXTRA_HEADER.size
        if position + size > len(extra):
            raise _Refused(MALFORMED)
        if kind in seen and kind in _SINGLE_EXTRAS:
            raise _Refused("Invalid duplicate extra in local file")
        seen.add(kind)
        fields.append((kind, extra[position : position + size]))
        position += size
    return fields


def _zip64_sizes(data: bytes, method: int, csize: int, usize: int) -> tuple[int, int]:
    """The (compressed, uncompressed) sizes once a local header's ZIP64 extra is applied."""
    if len(data) not in _ZIP64_EXTRA_SIZES:
        raise _Refused(MALFORMED)
    if not data:
        if _SENTINEL in (csize, usize):
            raise _Refused(MALFORMED)
        return csize, usize
    if len(data) == 8:
        # One size only: it can stand for both only when the data is stored, not compressed.
        if method != _STORED:
            raise _Refused(MALFORMED)
        (size,) = struct.unpack_from("<Q", data)
        return _wide(csize, size), _wide(usize, size)
    wide_usize, wide_csize = struct.unpack_from("<QQ", data)
    return _wide(csize, wide_csize), _wide(usize, wide_usize)


def _wide(narrow: int, wide: int) -> int:
    """A ZIP64 value stands for a header field only where that field says so (the sentinel), as zipfile reads
    the central directory; otherwise a streaming reader takes the 32-bit field, and so does this check."""
    return wide if narrow == _SENTINEL else narrow


def _check_unicode_path(name: bytes) -> None:
    if _unprintable(name):
        raise _Refused("Invalid character in filename")
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("Filename not valid UTF-8") from None


def _central_entry(records: _Records) -> tuple[bytes, int]:
    """A central-directory entry's raw name and the bytes it takes."""
    fields = records.unpack(_CENTRAL)
    name_length, extra_length, comment_length = fields[9], fields[10], fields[11]
    if comment_length:
        raise _Refused("Comment in central directory")
    name = records.take(name_length)
    records.skip(extra_length)
    if _unprintable(name):
        raise _Refused("Invalid character in filename")
    return name, _CENTRAL_FIXED + name_length + extra_length


def _zip64_end(records: _Records) -> tuple[int, int, int]:
    record_size, _, _, _, _, entries_here, entries, size, offset = records.unpack(_ZIP64_END)
    if entries_here != entries:
        raise _Refused(MALFORMED)
    if record_size != _ZIP64_RECORD_SIZE:
        raise _Refused("ZIP64 extensible data not allowed")
    return entries, size, offset


def _end(records: _Records, directory: _Directory, at: int) -> None:
    """The end record closes the archive: it, or the ZIP64 record it defers to, must describe the directory."""
    _, _, entries_here, entries, size, offset, comment_length = records.unpack(_END)
    if entries_here != entries:
        raise _Refused(MALFORMED)
    records.skip(comment_length)
    if directory.zip64 is not None:
        if directory.located_at is None or directory.located_at != directory.zip64_at:
            raise _Refused(MALFORMED)
        entries, size, offset = directory.zip64
    elif directory.located_at is not None:
        raise _Refused(MALFORMED)
    start = directory.start
    if start is None:  # no entries: the directory is empty and starts where the end records do
        start = at if directory.zip64_at is None else directory.zip64_at
    if entries != directory.entries:
        raise _Refused("Mismatched central directory records")
    if offset != start:
        raise _Refused("Mismatched central directory offset")
    if size != directory.size:
        raise _Refused("Mismatched central directory size")


def _unprintable(name: bytes) -> bool:
    return not _UNPRINTABLE.isdisjoint(name)
