"""What the zip and the tar checks share: what they read (`DistInfo`), the refusals in PyPI's words, member
paths that would land outside the archive, and the file's metadata agreeing with its filename."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.metadata import RawMetadata, parse_email
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gateway.errors import GatewayError

ARCHIVES_URL = "https://docs.pypi.org/archives"
# The largest METADATA, PKG-INFO, WHEEL, RECORD or entry_points.txt read into memory; real ones are far
# smaller (twine could not even send a description that long: the form is limited to 1 MiB).
MAX_MEMBER_READ = 32 * 1024 * 1024
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class DistInfo:
    """What the checks read from the file, for the metadata checks and for serving its metadata."""

    root: str  # the sdist's top-level directory, or the wheel's `{name}-{version}.dist-info`
    metadata_path: str  # PKG-INFO or METADATA, named as in the archive
    metadata_bytes: bytes
    metadata: RawMetadata  # its fields as packaging reads them, not validated
    names: frozenset[str]  # every member's name
    record_mismatch: str  # a wheel's members RECORD misses or lists in vain; PyPI only emails this


def invalid(detail: str, reason: str, *, hint: str = "") -> GatewayError:
    return GatewayError(400, f"Invalid distribution file. {detail}", reason, hint=hint)


def corrupt(problem: BaseException | str) -> GatewayError:
    """PyPI has no words for an archive its readers give up on: its message ends in a literal 'None'."""
    detail = str(problem) or type(problem).__name__
    return invalid("None", "corrupt_archive", hint=f"The archive could not be read: {detail}")


def not_accepted(kind: str, detail: str, reason: str) -> GatewayError:
    return invalid(f"{kind} archive not accepted: {detail}. See {ARCHIVES_URL} for more information", reason)


def commonpath(names: Iterable[str]) -> str:
    """The archive's single top directory as PyPI computes it; '' when there is none."""
    listed = list(names)
    try:
        return posixpath.commonpath(listed) if listed else ""
    except ValueError:  # absolute and relative names mixed: no single top directory either
        return ""


def unsafe_path(name: str) -> str | None:
    """Why extracting a member named `name` could write outside the archive's directory, if it could."""
    if name.startswith("/") or _WINDOWS_DRIVE.match(name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' path component"
    return None


def within(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def metadata_agrees(path: str, content: bytes, project: str, version: str) -> RawMetadata:
    """The file's own metadata must be for the project and version the filename claims (PyPI does not check)."""
    raw, _ = parse_email(content)
    name = raw.get("name")
    if not name or canonicalize_name(name) != canonicalize_name(project):
        found = repr(name) if name else "no Name"
        raise invalid(f"{path} names {found}, not the project {project!r}", "metadata_mismatch")
    try:
        agrees = Version(raw.get("version", "")) == Version(version)
    except InvalidVersion:
        agrees = False
    if not agrees:
        found = repr(raw["version"]) if raw.get("version") else "no Version"
        raise invalid(f"{path} has {found}, not the version {version!r}", "metadata_mismatch")
    return raw


def too_large(name: str) -> GatewayError:
    return invalid(f"{name} is larger than {MAX_MEMBER_READ // 2**20} MiB", "member_too_large")
