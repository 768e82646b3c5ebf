"""A wheel, or a .zip sdist: judged on its central directory, the framing of its records (`zip_framing`) and a
few small members; its payload is never decompressed."""

from __future__ import annotations

import configparser
import csv
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.metadata import parse_email

from gateway.archive.shared import (
    MAX_MEMBER_READ,
    DistInfo,
    commonpath,
    corrupt,
    invalid,
    metadata_agrees,
    not_accepted,
    too_large,
    unsafe_path,
)
from gateway.archive.zip_framing import framing_error
from gateway.errors import GatewayError

# PyPI's zip-bomb rule: past 64 MiB uncompressed, at most 50 times the file's size.
COMPRESSION_RATIO_MIN_SIZE = 64 * 1024 * 1024
COMPRESSION_RATIO_THRESHOLD = 50
_SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# Small members sit side by side: one large buffer serves many headers per read.
_FRAMING_BUFFER = 256 * 1024
_ENCRYPTED = 0x1  # general-purpose flag bit 0
# RECORD may not list its own signatures.
_RECORD_EXEMPT = ("RECORD.jws", "RECORD.p7s")
_ENTRY_POINT_NAME = re.compile(r"[\w.-]+")
_SCRIPT_SECTIONS = ("console_scripts", "gui_scripts")


class ZipCheck:
    """A wheel, or a .zip sdist (which PyPI opens before refusing its name under PEP 625)."""

    def __init__(self, path: Path, filename: str, project: str, version: str, license_files: Sequence[str]) -> None:
        self.path = path
        self.filename = filename
        self.project = project
        self.version = version
        self.license_files = license_files

    def run(self) -> DistInfo:
        try:
            with zipfile.ZipFile(self.path) as archive:
                return self._checked(archive)
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            NotImplementedError,  # "zip file version 8.4"
            UnicodeDecodeError,  # a local header's name flagged UTF-8 that is not
        ) as exc:
            raise corrupt(exc) from None

    def _checked(self, archive: zipfile.ZipFile) -> DistInfo:
        infos = archive.infolist()
        if any(info.header_offset < 0 for info in infos):  # zipfile trusts the end record's offsets
            raise corrupt("a member starts before the archive")
        expanded = sum(info.file_size for info in infos)
        ratio = expanded / self.path.stat().st_size
        if expanded > COMPRESSION_RATIO_MIN_SIZE and ratio > COMPRESSION_RATIO_THRESHOLD:
            raise invalid(f"File exceeds compression ratio of {COMPRESSION_RATIO_THRESHOLD}", "compression_ratio")
        if any(info.compress_type not in _SUPPORTED_COMPRESSION for info in infos):
            raise invalid("File does not use a supported compression type", "unsupported_compression")
        names = archive.namelist()
        if self.filename.endswith(".zip"):
            return self._zip_sdist(archive, infos, names)
        return self._wheel(archive, infos, frozenset(names))

    def _zip_sdist(self, archive: zipfile.ZipFile, infos: Sequence[zipfile.ZipInfo], names: list[str]) -> DistInfo:
        root = commonpath(names)
        if root in (".", "/", ""):
            raise invalid("Incorrect number of top-level directories in sdist", "sdist_top_level")
        metadata_path = posixpath.join(root, "PKG-INFO")
        content = self._read(archive, metadata_path)
        if content is None:
            raise invalid(f"PKG-INFO not found at {metadata_path}", "missing_pkg_info")
        self._framing(archive)
        _safe_zip_members(infos)
        return DistInfo(root, metadata_path, content, parse_email(content)[0], frozenset(names), "")

    def _read(self, archive: zipfile.ZipFile, name: str) -> bytes | None:
        try:
            info = archive.getinfo(name)
        except KeyError:
            return None
        if info.flag_bits & _ENCRYPTED:
            raise not_accepted("ZIP", f"Member {name!r} is encrypted", "unsafe_member")
        if info.file_size > MAX_MEMBER_READ:
            raise too_large(name)
        return archive.read(info)

    def _framing(self, archive: zipfile.ZipFile) -> None:
        sizes = {info.orig_filename: (info.compress_size, info.file_size) for info in archive.infolist()}
        with self.path.open("rb", buffering=_FRAMING_BUFFER) as fp:
            problem = framing_error(fp, sizes)
        if problem:
            raise not_accepted("ZIP", problem, "zip_framing")

    def _wheel(self, archive: zipfile.ZipFile, infos: Sequence[zipfile.ZipInfo], names: frozenset[str]) -> DistInfo:
        parts = self.filename.split("-", 2)
        if len(parts) < 3:
            raise invalid("Unable to parse name and version from wheel filename", "unparsable_wheel_filename")
        root = _dist_info(f"{parts[0]}-{parts[1]}.dist-info", names)
        if self._read(archive, f"{root}/WHEEL") is None:
            raise invalid(f"WHEEL not found at {root}/WHEEL", "missing_wheel_file")
        self._framing(archive)
        for license_file in self.license_files:
            target = f"{root}/licenses/{license_file}"
            if target not in names:
                message = f"License-File {license_file} does not exist in distribution file {self.filename} at {target}"
                raise GatewayError(400, message, "missing_license_file")
        mismatch = self._record(archive, root, names)
        self._entry_points(archive, root)
        metadata_path = f"{root}/METADATA"
        content = self._read(archive, metadata_path)
        if content is None:
            message = f"Wheel '{self.filename}' does not contain the required METADATA file: {metadata_path}"
            raise GatewayError(400, message, "missing_metadata")
        _safe_zip_members(infos)
        raw = metadata_agrees(metadata_path, content, self.project, self.version)
        return DistInfo(root, metadata_path, content, raw, names, mismatch)

    def _record(self, archive: zipfile.ZipFile, root: str, names: frozenset[str]) -> str:
        """RECORD must be there and readable; how it differs from the members is reported, not refused."""
        record_path = f"{root}/RECORD"
        try:
            content = self._read(archive, record_path)
            rows = csv.reader((content or b"").decode("utf-8").splitlines())
            listed = {row[0].replace("\\", "/") for row in rows if row}
        except (UnicodeDecodeError, csv.Error):
            content = None
        if content is None:
            message = f"Wheel '{self.filename}' does not contain the required RECORD file: {record_path}"
            raise GatewayError(400, message, "missing_record")
        exempt = {f"{root}/{name}" for name in _RECORD_EXEMPT}
        present = {name for name in names if not name.endswith(("/", "\\")) and name not in exempt}
        unlisted, absent = sorted(present - listed), sorted(listed - present)
        parts = [f"RECORD does not list {unlisted}"] if unlisted else []
        parts += [f"RECORD lists absent {absent}"] if absent else []
        return "; ".join(parts)

    def _entry_points(self, archive: zipfile.ZipFile, root: str) -> None:
        content = self._read(archive, f"{root}/entry_points.txt")
        if content is not None and not _valid_entry_points(content):
            message = f"Wheel '{self.filename}' has invalid entry points defined in the entry_points.txt file"
            raise GatewayError(400, message, "invalid_entry_points")


def _dist_info(expected: str, names: Iterable[str]) -> str:
    """The wheel's .dist-info directory as it is spelled in the archive: the gateway takes a filename whose
    project name differs only in case (older build tools wrote those), and so does pip, which looks for it so."""
    spelled = {name.split("/", 1)[0] for name in names if "/" in name}
    return next((top for top in sorted(spelled) if top.lower() == expected.lower()), expected)


def _safe_zip_members(infos: Sequence[zipfile.ZipInfo]) -> None:
    """No member may land outside the install directory; installers write no symlinks, so none may be one."""
    for info in infos:
        problem = unsafe_path(info.filename.replace("\\", "/"))  # Windows extractors split on either
        if problem is None and stat.S_ISLNK(info.external_attr >> 16):
            problem = "is a symbolic link"
        if problem is None and info.flag_bits & _ENCRYPTED:
            problem = "is encrypted"
        if problem:
            raise not_accepted("ZIP", f"Member {info.filename!r} {problem}", "unsafe_member")


def _valid_entry_points(content: bytes) -> bool:
    """The entry-points spec's INI file; script names become file names, so they stay plain."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # names are case-sensitive
    try:
        parser.read_string(content.decode("utf-8"))
    except (UnicodeDecodeError, configparser.Error):
        return False
    return all(
        _ENTRY_POINT_NAME.fullmatch(name)
        for section in _SCRIPT_SECTIONS
        if parser.has_section(section)
        for name in parser[section]
    )
