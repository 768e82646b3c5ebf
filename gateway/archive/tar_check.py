"""A .tar.gz sdist, and the probe that tells a tar from other files. A gzip stream has no index, so an sdist is
inflated once, front to back, keeping nothing but the member headers and PKG-INFO (PyPI inflates it whole too,
to list its members)."""

from __future__ import annotations

import gzip
import posixpath
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal

from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import Version

from gateway.archive.shared import (
    ARCHIVES_URL,
    MAX_MEMBER_READ,
    DistInfo,
    commonpath,
    corrupt,
    invalid,
    metadata_agrees,
    not_accepted,
    too_large,
    unsafe_path,
    within,
)
from gateway.errors import GatewayError

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_DRAIN_CHUNK = 1024 * 1024


def is_tarfile(file: BinaryIO) -> bool:
    """Plain, gzip, bzip2 or xz tar, as `tarfile.is_tarfile` tells. A gzip or bzip2 reader refuses a stream
    without its magic bytes before reading further, so without them only the plain and xz readers are tried
    (xz's auto-detection also takes the legacy .lzma format, which has no magic): a wheel's probe costs a
    third of the four readers'."""
    magic = file.read(3)
    file.seek(0)
    try:
        if magic.startswith(_GZIP_MAGIC) or magic == _BZIP2_MAGIC:
            return tarfile.is_tarfile(file)
        return opens_as(file, "r:xz") or opens_as(file, "r:")
    except (EOFError, zlib.error, gzip.BadGzipFile):  # a stream that breaks within its first header
        return False


def opens_as(file: BinaryIO, mode: Literal["r:xz", "r:"]) -> bool:
    file.seek(0)
    try:
        tarfile.open(fileobj=file, mode=mode).close()
    except tarfile.TarError:
        return False
    return True


class TarCheck:
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
            raise corrupt(exc) from None
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
            raise invalid(
                f"tar archive not accepted: Sparse members are not allowed. See {ARCHIVES_URL} for more information",
                "sparse_member",
            )
        by_name = {member.name: member for member in members}  # the last of a name wins, as when extracting
        root = commonpath(by_name)
        if root in (".", "/", ""):
            raise invalid("Incorrect number of top-level directories in sdist", "sdist_top_level")
        metadata_path = posixpath.join(root, "PKG-INFO")
        pkg_info = by_name.get(metadata_path)
        if pkg_info is None:
            raise invalid(f"PKG-INFO not found at {metadata_path}", "missing_pkg_info")
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
                raise not_accepted("tar", problem, "unsafe_member")
        self._directory_name(root)
        if not pkg_info.isreg():
            raise invalid(f"PKG-INFO at {metadata_path} is not a regular file", "missing_pkg_info")
        if pkg_info.size > MAX_MEMBER_READ:
            raise too_large(metadata_path)
        content = self._pkg_info or b""
        raw = metadata_agrees(metadata_path, content, self.project, self.version)
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
            raise invalid(message, "sdist_directory_name")


def _first_component(name: str) -> str:
    """The top directory a member name implies, spelled as `posixpath.commonpath` would return it."""
    parts = [part for part in name.split("/") if part and part != "."]
    head = parts[0] if parts else ""
    return "/" + head if name.startswith("/") else head


def _unsafe_tar_member(member: tarfile.TarInfo, root: str) -> str | None:
    """What the tarfile 'data' filter (which the sdist spec asks extractors to use) would refuse."""
    problem = unsafe_path(member.name)
    if problem is None and not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        problem = "is a device, FIFO or other special file"
    if problem is None and (member.issym() or member.islnk()):
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        if member.linkname.startswith("/") or not within(target, root):
            problem = f"links outside the sdist ({member.linkname!r})"
    return f"Member {member.name!r} {problem}" if problem else None


def _drain(tar: tarfile.TarFile) -> None:
    """Inflate what follows the tar's end marker, so a truncated or corrupt gzip trailer is refused."""
    while tar.fileobj.read(_DRAIN_CHUNK):
        pass
