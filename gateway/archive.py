"""The distribution file itself, checked before the index may keep it: PyPI's `_is_valid_dist_file` and the
wheel checks that follow it, in PyPI's order and words, then what an index in front of pip needs on top
(members outside the archive, links, device files, metadata naming another project).

Pure and synchronous: it reads a complete file on disk, so the caller runs it in a thread once the digests
matched. A wheel is judged on its central directory, the framing of its records and a few small members; its
payload is never decompressed. A gzip stream has no index, so an sdist is inflated once, front to back, keeping
nothing but the member headers and PKG-INFO (PyPI inflates it whole too, to list its members).
"""

from __future__ import annotations

import configparser
import csv
import gzip
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Literal

from packaging.metadata import RawMetadata, parse_email
from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from gateway.errors import GatewayError
from gateway.zip_framing import framing_error

ARCHIVES_URL = "https://docs.pypi.org/archives"
# PyPI's zip-bomb rule: past 64 MiB uncompressed, at most 50 times the file's size.
COMPRESSION_RATIO_MIN_SIZE = 64 * 1024 * 1024
COMPRESSION_RATIO_THRESHOLD = 50
# The largest METADATA, PKG-INFO, WHEEL, RECORD or entry_points.txt read into memory; real ones are far
# smaller (twine could not even send a description that long: the form is limited to 1 MiB).
MAX_MEMBER_READ = 32 * 1024 * 1024
_SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_DRAIN_CHUNK = 1024 * 1024
# Small members sit side by side: one large buffer serves many headers per read.
_FRAMING_BUFFER = 256 * 1024
_ENCRYPTED = 0x1  # general-purpose flag bit 0
# RECORD may not list its own signatures.
_RECORD_EXEMPT = ("RECORD.jws", "RECORD.p7s")
_ENTRY_POINT_NAME = re.compile(r"[\w.-]+")
_SCRIPT_SECTIONS = ("console_scripts", "gui_scripts")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"

REASONS: Mapping[str, str] = MappingProxyType(
    {
        "polyglot_archive": "Upload the archive your build tool made: this file reads both as a zip and as a tar.",
        "not_a_zip": "Upload a real wheel (.whl) or .zip file, as built.",
        "not_a_tar": "Upload a real gzip-compressed tar (.tar.gz), as built.",
        "corrupt_archive": "The archive is truncated or corrupt (PyPI's message ends in 'None'): rebuild it.",
        "compression_ratio": "Past 64 MiB uncompressed an archive may expand at most 50 times (zip bombs do more).",
        "unsupported_compression": "Build the wheel with stored or deflated members only (no bzip2, lzma or zstd).",
        "zip_framing": "Rebuild the wheel with a standard tool: its ZIP records disagree (docs.pypi.org/archives).",
        "sparse_member": "Rebuild the sdist without GNU or pax sparse members (see docs.pypi.org/archives).",
        "unsafe_member": "Rebuild the archive: no absolute paths, '..', links out of it, device files or zip symlinks.",
        "member_too_large": "METADATA, PKG-INFO, WHEEL, RECORD and entry_points.txt may be at most 32 MiB each.",
        "sdist_top_level": "Put every file of the sdist under one top-level directory, as build tools do.",
        "sdist_directory_name": "Name the sdist's top-level directory '{name}-{version}', like the file.",
        "missing_pkg_info": "Build the sdist with a tool that writes PKG-INFO in its top-level directory.",
        "unparsable_wheel_filename": "Upload the wheel under the name its build tool gave it.",
        "missing_wheel_file": "Build the wheel with a tool that writes {name}-{version}.dist-info/WHEEL.",
        "missing_license_file": "Include every License-File the metadata names, or drop it from the metadata.",
        "missing_record": "Build the wheel with a tool that writes a readable {name}-{version}.dist-info/RECORD.",
        "invalid_entry_points": "Make entry_points.txt valid INI, script names of letters, digits, '.', '_' and '-'.",
        "missing_metadata": "Build the wheel with a tool that writes {name}-{version}.dist-info/METADATA.",
        "metadata_mismatch": "The file's METADATA or PKG-INFO must name the project and version of its filename.",
    }
)


@dataclass(frozen=True)
class DistInfo:
    """What the checks read from the file, for the metadata checks and for serving its metadata."""

    root: str  # the sdist's top-level directory, or the wheel's `{name}-{version}.dist-info`
    metadata_path: str  # PKG-INFO or METADATA, named as in the archive
    metadata_bytes: bytes
    metadata: RawMetadata  # its fields as packaging reads them, not validated
    names: frozenset[str]  # every member's name
    record_mismatch: str  # a wheel's members RECORD misses or lists in vain; PyPI only emails this


def check_distribution(
    path: Path,
    *,
    filename: str,
    filetype: str,
    project: str,
    version: str,
    license_files: Sequence[str] = (),
) -> DistInfo:
    """Check the file at `path`, uploaded as `filename`, as PyPI does; raise GatewayError(400) for the first problem.

    `filename` has passed the form checks (gateway.validation), so its extension fits `filetype`; `project`
    and `version` are the form's. `license_files` are the form's License-File values, which PyPI looks for
    in the archive.
    """
    with path.open("rb") as probed:  # opened once for both probes: the tar probe alone opens a path four times
        is_zip = zipfile.is_zipfile(probed)
        probed.seek(0)
        is_tar = _is_tarfile(probed)
    if is_zip and is_tar:
        raise _invalid("File is both a zip and a tar file", "polyglot_archive")
    if filename.endswith((".whl", ".zip")):
        if not is_zip:
            raise _invalid("File is not a zipfile", "not_a_zip")
        return _ZipCheck(path, filename, project, version, license_files).run()
    if not filename.endswith(".tar.gz"):
        raise ValueError(f"not a distribution filename: {filename!r}")
    if not is_tar:
        raise _invalid("File is not a tarfile", "not_a_tar")
    return _TarCheck(path, filename, filetype, project, version, license_files).run()


def _is_tarfile(file: BinaryIO) -> bool:
    """Plain, gzip, bzip2 or xz tar, as `tarfile.is_tarfile` tells. A gzip or bzip2 reader refuses a stream
    without its magic bytes before reading further, so without them only the plain and xz readers are tried
    (xz's auto-detection also takes the legacy .lzma format, which has no magic): a wheel's probe costs a
    third of the four readers'."""
    magic = file.read(3)
    file.seek(0)
    try:
        if magic.startswith(_GZIP_MAGIC) or magic == _BZIP2_MAGIC:
            return tarfile.is_tarfile(file)
        return _opens_as(file, "r:xz") or _opens_as(file, "r:")
    except (EOFError, zlib.error, gzip.BadGzipFile):  # a stream that breaks within its first header
        return False


def _opens_as(file: BinaryIO, mode: Literal["r:xz", "r:"]) -> bool:
    file.seek(0)
    try:
        tarfile.open(fileobj=file, mode=mode).close()
    except tarfile.TarError:
        return False
    return True


def _invalid(detail: str, reason: str, *, hint: str = "") -> GatewayError:
    return GatewayError(400, f"Invalid distribution file. {detail}", reason, hint=hint)


def _corrupt(problem: BaseException | str) -> GatewayError:
    """PyPI has no words for an archive its readers give up on: its message ends in a literal 'None'."""
    detail = str(problem) or type(problem).__name__
    return _invalid("None", "corrupt_archive", hint=f"The archive could not be read: {detail}")


def _not_accepted(kind: str, detail: str, reason: str) -> GatewayError:
    return _invalid(f"{kind} archive not accepted: {detail}. See {ARCHIVES_URL} for more information", reason)


def _commonpath(names: Iterable[str]) -> str:
    """The archive's single top directory as PyPI computes it; '' when there is none."""
    listed = list(names)
    try:
        return posixpath.commonpath(listed) if listed else ""
    except ValueError:  # absolute and relative names mixed: no single top directory either
        return ""


def _unsafe_path(name: str) -> str | None:
    """Why extracting a member named `name` could write outside the archive's directory, if it could."""
    if name.startswith("/") or _WINDOWS_DRIVE.match(name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' path component"
    return None


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def _metadata_agrees(path: str, content: bytes, project: str, version: str) -> RawMetadata:
    """The file's own metadata must be for the project and version the filename claims (PyPI does not check)."""
    raw, _ = parse_email(content)
    name = raw.get("name")
    if not name or canonicalize_name(name) != canonicalize_name(project):
        found = repr(name) if name else "no Name"
        raise _invalid(f"{path} names {found}, not the project {project!r}", "metadata_mismatch")
    try:
        agrees = Version(raw.get("version", "")) == Version(version)
    except InvalidVersion:
        agrees = False
    if not agrees:
        found = repr(raw["version"]) if raw.get("version") else "no Version"
        raise _invalid(f"{path} has {found}, not the version {version!r}", "metadata_mismatch")
    return raw


def _too_large(name: str) -> GatewayError:
    return _invalid(f"{name} is larger than {MAX_MEMBER_READ // 2**20} MiB", "member_too_large")


class _ZipCheck:
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
            raise _corrupt(exc) from None

    def _checked(self, archive: zipfile.ZipFile) -> DistInfo:
        infos = archive.infolist()
        if any(info.header_offset < 0 for info in infos):  # zipfile trusts the end record's offsets
            raise _corrupt("a member starts before the archive")
        expanded = sum(info.file_size for info in infos)
        ratio = expanded / self.path.stat().st_size
        if expanded > COMPRESSION_RATIO_MIN_SIZE and ratio > COMPRESSION_RATIO_THRESHOLD:
            raise _invalid(f"File exceeds compression ratio of {COMPRESSION_RATIO_THRESHOLD}", "compression_ratio")
        if any(info.compress_type not in _SUPPORTED_COMPRESSION for info in infos):
            raise _invalid("File does not use a supported compression type", "unsupported_compression")
        names = archive.namelist()
        if self.filename.endswith(".zip"):
            return self._zip_sdist(archive, infos, names)
        return self._wheel(archive, infos, frozenset(names))

    def _zip_sdist(self, archive: zipfile.ZipFile, infos: Sequence[zipfile.ZipInfo], names: list[str]) -> DistInfo:
        root = _commonpath(names)
        if root in (".", "/", ""):
            raise _invalid("Incorrect number of top-level directories in sdist", "sdist_top_level")
        metadata_path = posixpath.join(root, "PKG-INFO")
        content = self._read(archive, metadata_path)
        if content is None:
            raise _invalid(f"PKG-INFO not found at {metadata_path}", "missing_pkg_info")
        self._framing(archive)
        _safe_zip_members(infos)
        return DistInfo(root, metadata_path, content, parse_email(content)[0], frozenset(names), "")

    def _read(self, archive: zipfile.ZipFile, name: str) -> bytes | None:
        try:
            info = archive.getinfo(name)
        except KeyError:
            return None
        if info.flag_bits & _ENCRYPTED:
            raise _not_accepted("ZIP", f"Member {name!r} is encrypted", "unsafe_member")
        if info.file_size > MAX_MEMBER_READ:
            raise _too_large(name)
        return archive.read(info)

    def _framing(self, archive: zipfile.ZipFile) -> None:
        sizes = {info.orig_filename: (info.compress_size, info.file_size) for info in archive.infolist()}
        with self.path.open("rb", buffering=_FRAMING_BUFFER) as fp:
            problem = framing_error(fp, sizes)
        if problem:
            raise _not_accepted("ZIP", problem, "zip_framing")

    def _wheel(self, archive: zipfile.ZipFile, infos: Sequence[zipfile.ZipInfo], names: frozenset[str]) -> DistInfo:
        parts = self.filename.split("-", 2)
        if len(parts) < 3:
            raise _invalid("Unable to parse name and version from wheel filename", "unparsable_wheel_filename")
        root = _dist_info(f"{parts[0]}-{parts[1]}.dist-info", names)
        if self._read(archive, f"{root}/WHEEL") is None:
            raise _invalid(f"WHEEL not found at {root}/WHEEL", "missing_wheel_file")
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
        raw = _metadata_agrees(metadata_path, content, self.project, self.version)
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
        problem = _unsafe_path(info.filename.replace("\\", "/"))  # Windows extractors split on either
        if problem is None and stat.S_ISLNK(info.external_attr >> 16):
            problem = "is a symbolic link"
        if problem is None and info.flag_bits & _ENCRYPTED:
            problem = "is encrypted"
        if problem:
            raise _not_accepted("ZIP", f"Member {info.filename!r} {problem}", "unsafe_member")


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


class _TarCheck:
    """A .tar.gz sdist: every header is read (PyPI lists every name), member data is skipped, PKG-INFO kept."""

    def __init__(
        self, path: Path, filename: str, filetype: str, project: str, version: str, license_files: Sequence[str]
    ) -> None:
        self.path = path
        self.filename = filename
        self.filetype = filetype
        self.project = project
        self.version = version
        self.license_files = license_files
        self._candidate = ""  # the only name PKG-INFO can have if the archive has one top directory
        self._pkg_info: bytes | None = None

    def run(self) -> DistInfo:
        try:
            with tarfile.open(self.path, "r:gz") as tar:
                members = self._scan(tar)
                _drain(tar)
        except (tarfile.ReadError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise _corrupt(exc) from None
        return self._checked(members)

    def _scan(self, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
        """One pass over the stream; PKG-INFO is read when the pass reaches it, so nothing is inflated twice."""
        for member in tar:
            if not self._candidate:
                self._candidate = posixpath.join(_first_component(member.name), "PKG-INFO")
            if member.name == self._candidate and member.isreg() and member.size <= MAX_MEMBER_READ:
                extracted = tar.extractfile(member)
                self._pkg_info = extracted.read() if extracted else None
        return tar.getmembers()

    def _checked(self, members: Sequence[tarfile.TarInfo]) -> DistInfo:
        if any(member.issparse() for member in members):
            raise _invalid(
                f"tar archive not accepted: Sparse members are not allowed. See {ARCHIVES_URL} for more information",
                "sparse_member",
            )
        by_name = {member.name: member for member in members}  # the last of a name wins, as when extracting
        root = _commonpath(by_name)
        if root in (".", "/", ""):
            raise _invalid("Incorrect number of top-level directories in sdist", "sdist_top_level")
        metadata_path = posixpath.join(root, "PKG-INFO")
        pkg_info = by_name.get(metadata_path)
        if pkg_info is None:
            raise _invalid(f"PKG-INFO not found at {metadata_path}", "missing_pkg_info")
        if self.filetype == "sdist":
            for license_file in self.license_files:
                target = posixpath.join(root, license_file)
                if target not in by_name:
                    message = (
                        f"License-File {license_file} does not exist in distribution file {self.filename} at {target}"
                    )
                    raise GatewayError(400, message, "missing_license_file")
        for member in members:
            problem = _unsafe_tar_member(member, root)
            if problem:
                raise _not_accepted("tar", problem, "unsafe_member")
        self._directory_name(root)
        if not pkg_info.isreg():
            raise _invalid(f"PKG-INFO at {metadata_path} is not a regular file", "missing_pkg_info")
        if pkg_info.size > MAX_MEMBER_READ:
            raise _too_large(metadata_path)
        content = self._pkg_info or b""
        raw = _metadata_agrees(metadata_path, content, self.project, self.version)
        return DistInfo(root, metadata_path, content, raw, frozenset(by_name), "")

    def _directory_name(self, root: str) -> None:
        """The sdist spec names the top directory like the file; PyPI does not check, installers rely on it."""
        expected = f"{canonicalize_name(self.project).replace('-', '_')}-{Version(self.version)}"
        try:
            name, version = parse_sdist_filename(f"{root}.tar.gz")
        except InvalidSdistFilename:
            name, version = canonicalize_name(root), None
        if name != canonicalize_name(self.project) or version != Version(self.version):
            message = f"The sdist's top-level directory {root!r} should be {expected!r}"
            raise _invalid(message, "sdist_directory_name")


def _first_component(name: str) -> str:
    """The top directory a member name implies, spelled as `posixpath.commonpath` would return it."""
    parts = [part for part in name.split("/") if part and part != "."]
    head = parts[0] if parts else ""
    return "/" + head if name.startswith("/") else head


def _unsafe_tar_member(member: tarfile.TarInfo, root: str) -> str | None:
    """What the tarfile 'data' filter (which the sdist spec asks extractors to use) would refuse."""
    problem = _unsafe_path(member.name)
    if problem is None and not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        problem = "is a device, FIFO or other special file"
    if problem is None and (member.issym() or member.islnk()):
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        if member.linkname.startswith("/") or not _within(target, root):
            problem = f"links outside the sdist ({member.linkname!r})"
    return f"Member {member.name!r} {problem}" if problem else None


def _drain(tar: tarfile.TarFile) -> None:
    """Inflate what follows the tar's end marker, so a truncated or corrupt gzip trailer is refused."""
    while tar.fileobj.read(_DRAIN_CHUNK):
        pass
