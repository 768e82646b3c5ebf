"""PyPI's upload checks (warehouse forklift/legacy.py and forms.py), in PyPI's order and with its messages.

Pure: it sees the form fields and the `content` part's filename and Content-Type, which twine sends before
the file's bytes, so an upload is decided before any of it goes upstream. Each refusal is a `GatewayError`
with a bounded `reason` code (docs/errors.md).
"""

from __future__ import annotations

import contextlib
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import get_type_hints

from packaging.metadata import RawMetadata
from packaging.utils import (
    InvalidName,
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from gateway.dist_metadata import (
    CORE_METADATA_URL,
    LOCAL_VERSION_URL,
    SUPPORTED_METADATA_VERSIONS,
    check_form_metadata,
)
from gateway.errors import GatewayError
from gateway.platform_tags import PlatformPolicy, check_platform_tags

PEP_527_URL = "https://www.python.org/dev/peps/pep-0527"
# PyPI writes `{filename}.metadata` next to a wheel: a 255-byte file name leaves 246 for the filename.
MAX_FILENAME_LENGTH = 246

_NAME_RULE = "Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'."
_REQUIRED = "This field is required."
_HEX_DIGITS = frozenset(string.hexdigits)
# What wheel and sdist names are made of (PEP 427, 625); packaging's parsers let spaces and ';' through.
_DIST_FILENAME_CHARS = re.compile(r"[A-Za-z0-9._!+-]+")
# digest algorithm -> (hex length, PyPI's label)
_DIGESTS: Mapping[str, tuple[int, str]] = MappingProxyType(
    {"md5": (32, "MD5"), "sha256": (64, "SHA256"), "blake2_256": (64, "BLAKE2")}
)
_EXTENSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {"sdist": frozenset({".zip", ".tar.gz"}), "bdist_wheel": frozenset({".whl"})}
)
# Core-metadata fields with one value (packaging's RawMetadata types them `str`); keywords travels as one
# comma-joined string. PyPI answers a repeat of any of them with "'{field}' has invalid data".
_SINGLE_METADATA = frozenset(key for key, kind in get_type_hints(RawMetadata).items() if kind is str) | {"keywords"}
# Other fields read as one value, where a second one would let the gateway and the index disagree.
_SINGLE_FIELDS = frozenset(
    {":action", "protocol_version", "filetype", "pyversion", "md5_digest", "sha256_digest", "blake2_256_digest"}
)


@dataclass(frozen=True)
class Upload:
    """What the rest of the gateway needs once an upload passed validation."""

    project: str  # normalized, from the filename: the project the index will file it under
    name: str
    version: str
    filename: str
    filetype: str
    digests: Mapping[str, str]  # algorithm ("md5", "sha256", "blake2_256") -> lowercase hex, as supplied
    license_files: tuple[str, ...] = ()  # License-File paths the archive must hold (PEP 639)
    description: str | None = None  # rendered as PyPI does once the uploader may upload
    description_content_type: str | None = None


def check_action(fields: Mapping[str, Sequence[str]], allowed_actions: frozenset[str]) -> str:
    """The request's `:action` if the gateway handles it: file_upload, or one the operator allowed."""
    values = fields.get(":action", ())
    if len(values) > 1:
        raise _duplicate(":action")
    action = values[0] if values else ""
    if not action:
        raise _refuse("Missing ':action' field; an upload sends ':action=file_upload'.", "invalid_action")
    if action == "file_upload" or action in allowed_actions:
        return action
    if action == "doc_upload":
        message = "Uploading documentation is no longer supported, we recommend using https://readthedocs.org/."
        raise GatewayError(410, message, "doc_upload_removed")
    if action in ("submit", "submit_pkg_info"):
        message = "Project pre-registration is no longer required or supported, upload your files instead."
        raise GatewayError(410, message, "submit_removed")
    accepted = ", ".join(sorted({"file_upload", *allowed_actions}))
    raise _refuse(f"Unsupported ':action' {_shown(action)}; this index accepts: {accepted}.", "invalid_action")


def validate_upload(
    fields: Mapping[str, Sequence[str]],
    *,
    filename: str,
    content_type: str | None,
    platform_tags: PlatformPolicy = "pypi",
) -> Upload:
    """Check an upload as PyPI does, in its order; raise GatewayError(400, PyPI's message) for the first problem.

    `platform_tags`: "pypi" refuses wheels for platforms PyPI refuses (linux_x86_64, impossible macOS versions);
    "any" lets a private index take them.
    """
    _reject_duplicates(fields)
    if _field(fields, "protocol_version") not in (None, "1"):
        raise _refuse("Unknown protocol version.", "invalid_protocol_version")
    name, filetype, digests = _check_form(fields)
    version = _check_metadata(fields)
    metadata = check_form_metadata(fields)
    _check_filename(filename, filetype)
    if filetype == "bdist_wheel":
        check_platform_tags(filename, platform_tags)
    if _bad_content_type(content_type):
        raise _refuse("Invalid distribution file.", "invalid_content_type")
    check_dist = _check_sdist if filetype == "sdist" else _check_wheel
    project = check_dist(filename, name, version)
    if not _DIST_FILENAME_CHARS.fullmatch(filename):
        message = "a distribution's filename has only letters, digits and '.', '_', '-', '!', '+'"
        raise _refuse(f"Invalid distribution filename {_shown(filename)}: {message}", "invalid_filename")
    return Upload(
        project=project,
        name=name,
        version=str(version),
        filename=filename,
        filetype=filetype,
        digests=digests,
        license_files=tuple(metadata.license_files or ()),
        description=metadata.description,
        description_content_type=metadata.description_content_type,
    )


def _bad_content_type(content_type: str | None) -> bool:
    """PyPI refuses an empty or image/* type. A part with no Content-Type header at all (uv sends none) is
    what Warehouse's form parser reads as text/plain, which it accepts: so does the gateway."""
    if content_type is None:
        return False
    return not content_type.strip() or content_type.strip().lower().startswith("image/")


def action_version(fields: Mapping[str, Sequence[str]]) -> str:
    """The release an action (remove_pkg, doc_upload) is about, as a PEP 440 version the index can file it under."""
    _reject_duplicates(fields)
    return str(_parse_version(_field(fields, "version")))


def project_of(fields: Mapping[str, Sequence[str]]) -> tuple[str, str]:
    """(normalized, as given) project name of a form without a file, e.g. `:action=remove_pkg`."""
    _reject_duplicates(fields)
    name = _check_name(_field(fields, "name"))
    return canonicalize_name(name), name


def _refuse(message: str, reason: str) -> GatewayError:
    return GatewayError(400, message, reason)


def _shorten(value: str, limit: int = 60) -> str:
    """PyPI's way to echo a long value: its first and last `limit // 2` characters around '...'."""
    half = limit // 2
    return value if len(value) <= limit else f"{value[:half]}...{value[-half:]}"


def _shown(value: str | None) -> str:
    """A form value as PyPI quotes it (`!r`), shortened; repr also escapes anything unprintable."""
    return repr(value if value is None else _shorten(value))


def _duplicate(key: str) -> GatewayError:
    return _refuse(f"Field {key!r} was sent more than once; send it once.", "duplicate_field")


def _reject_duplicates(fields: Mapping[str, Sequence[str]]) -> None:
    """Refuse a repeated single-valued field up front: PyPI reads the first copy, an index may read the last."""
    for key, values in fields.items():
        if len(values) > 1 and key in _SINGLE_METADATA:
            raise _refuse(f"{key!r} has invalid data. See {CORE_METADATA_URL} for more information.", "duplicate_field")
        if len(values) > 1 and key in _SINGLE_FIELDS:
            raise _duplicate(key)


def _field(fields: Mapping[str, Sequence[str]], key: str) -> str | None:
    """A field's value after PyPI's `sanitize`: distutils' "UNKNOWN" placeholder is absent, NUL is escaped."""
    values = fields.get(key, ())
    if not values or values[0].strip() == "UNKNOWN":
        return None
    return values[0].replace("\x00", "\\x00")


def _check_form(fields: Mapping[str, Sequence[str]]) -> tuple[str, str, dict[str, str]]:
    """PyPI's UploadForm: name first, the other fields in sorted order, then pyversion and a digest."""
    name = _check_name(_field(fields, "name"))
    blake2_256 = _check_digest(fields, "blake2_256")
    filetype = _check_filetype(_field(fields, "filetype"))
    md5 = _check_digest(fields, "md5")
    sha256 = _check_digest(fields, "sha256")
    _check_pyversion(_field(fields, "pyversion"), filetype)
    supplied = {"md5": md5, "sha256": sha256, "blake2_256": blake2_256}
    digests = {algorithm: value for algorithm, value in supplied.items() if value}
    if not digests:
        raise _refuse("Error: Include at least one message digest.", "missing_digest")
    return name, filetype, digests


def _check_name(value: str | None) -> str:
    if not value:
        raise _invalid_name("", _REQUIRED)
    try:
        canonicalize_name(value, validate=True)
    except InvalidName as exc:
        raise _invalid_name(value, _NAME_RULE) from exc
    return value


def _invalid_name(value: str, error: str) -> GatewayError:
    message = (
        f"{_shown(value)} is an invalid value for Name. Error: {error} See {CORE_METADATA_URL} for more information."
    )
    return _refuse(message, "invalid_name")


def _check_digest(fields: Mapping[str, Sequence[str]], algorithm: str) -> str | None:
    """The digest as lowercase hex, or None when not supplied (an empty value counts as not supplied)."""
    key = f"{algorithm}_digest"
    value = _field(fields, key)
    if not value:
        return None
    length, label = _DIGESTS[algorithm]
    if len(value) != length or not _HEX_DIGITS.issuperset(value):
        error = f"Use a valid, hex-encoded, {label} message digest."
        raise _refuse(f"Invalid value for {key}. Error: {error}", "invalid_digest")
    return value.lower()


def _check_filetype(value: str | None) -> str:
    if value and value in _EXTENSIONS:
        return value
    error = "Use a known file type." if value else _REQUIRED
    raise _refuse(f"Invalid value for filetype. Error: {error}", "invalid_filetype")


def _check_pyversion(value: str | None, filetype: str) -> None:
    if filetype == "sdist" and value not in (None, "", "source"):
        error = "Use 'source' as Python version for an sdist."
    elif filetype != "sdist" and not value:
        error = "Python version is required for binary distribution uploads."
    else:
        return
    raise _refuse(f"Invalid value for pyversion. Error: {error}", "invalid_pyversion")


def _check_metadata(fields: Mapping[str, Sequence[str]]) -> Version:
    """PyPI's core-metadata checks of the form: metadata version, then version; an empty value is absent."""
    metadata_version = _field(fields, "metadata_version") or None
    if metadata_version not in SUPPORTED_METADATA_VERSIONS:
        message = f"{_shown(metadata_version)} is not a valid metadata version"
        raise _refuse(f"{message}. See {CORE_METADATA_URL} for more information.", "invalid_metadata_version")
    version = _parse_version(_field(fields, "version"))
    if version.local:
        message = f"The use of local versions in '{_shorten(str(version))}' is not allowed."
        raise _refuse(f"{message} See {LOCAL_VERSION_URL} for more information.", "local_version")
    return version


def _parse_version(value: str | None) -> Version:
    if not value:
        raise _refuse(
            f"'version' is a required field. See {CORE_METADATA_URL} for more information.", "invalid_version"
        )
    try:
        return Version(value)
    except InvalidVersion as exc:
        message = f"{_shown(value)} is invalid for 'version'. See {CORE_METADATA_URL} for more information."
        raise _refuse(message, "invalid_version") from exc


def _check_filename(filename: str, filetype: str) -> None:
    """PyPI's `_validate_filename`, plus non-ASCII, '..' and length: no valid dist name has them."""
    if any(ord(char) < 32 or ord(char) == 127 for char in filename):
        message = "non-printable characters (ordinals 0-31) or the DEL character (ordinal 127)"
        raise _refuse(f"Cannot upload a file with {message} in the name.", "unsafe_filename")
    if "/" in filename or "\\" in filename:
        raise _refuse("Cannot upload a file with '/' or '\\' in the name.", "unsafe_filename")
    if not filename.isascii():
        raise _refuse("Cannot upload a file with non-ASCII characters in the name.", "unsafe_filename")
    if ".." in filename:
        raise _refuse("Cannot upload a file with '..' in the name.", "unsafe_filename")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise _refuse(f"Filename is too long: '{_shorten(filename)}'", "filename_too_long")
    _check_extension(filename, filetype)


def _check_extension(filename: str, filetype: str) -> None:
    extension = _extension(filename)
    if extension is None:
        message = "Use .tar.gz, .whl or .zip extension. See https://www.python.org/dev/peps/pep-0527"
        raise _refuse(
            f"Invalid file extension: {message} and https://peps.python.org/pep-0715/ for more information",
            "invalid_extension",
        )
    if extension not in _EXTENSIONS[filetype]:
        message = f"Extension {extension} is invalid for filetype {filetype}. See {PEP_527_URL} for more information."
        raise _refuse(f"Invalid file extension: {message}", "invalid_extension")


def _extension(filename: str) -> str | None:
    """The extension as written, found case-insensitively like PyPI (so '.WHL' is then refused as such)."""
    for known in (".tar.gz", ".zip", ".whl"):
        if len(filename) > len(known) and filename[-len(known) :].lower() == known:
            return filename[-len(known) :]
    return None


def _start_filename(name: str, project: str) -> GatewayError:
    message = f"Start filename for {_shown(name)} with {_shown(project.replace('-', '_'))}."
    return _refuse(message, "name_mismatch")


def _check_sdist(filename: str, name: str, version: Version) -> NormalizedName:
    """The sdist's name must be the project's, and the filename exactly `{name}-{version}.tar.gz` (PEP 625)."""
    project = canonicalize_name(name)
    try:
        file_name, file_version = _sdist_parts(filename, project, version)
    except InvalidSdistFilename as exc:
        raise _refuse(f"Invalid source distribution filename: {filename}", "invalid_filename") from exc
    if canonicalize_name(file_name) != project:
        raise _start_filename(name, project)
    expected = f"{project.replace('-', '_')}-{version}.tar.gz"
    if filename != expected:
        message = f"Filename {filename!r} is invalid, should be {_shorten(expected, MAX_FILENAME_LENGTH)!r}."
        raise _refuse(message, _pep_625_reason(filename, file_version, version))
    return canonicalize_name(file_name)


def _sdist_parts(filename: str, project: str, version: Version) -> tuple[str, Version]:
    """packaging's split, redone like PyPI when a post-release's version may hold a '-' ('foo-1.0-1.tar.gz')."""
    file_name, file_version = parse_sdist_filename(filename)
    if not version.is_postrelease or file_name == project or filename.count("-") < 2:
        return file_name, file_version
    name_part = filename.rpartition("-")[0].rpartition("-")[0]
    with contextlib.suppress(InvalidVersion):
        file_version = Version(filename[len(name_part) + 1 : -len(".tar.gz")])
    return name_part, file_version


def _pep_625_reason(filename: str, file_version: Version, version: Version) -> str:
    """PyPI has one message for every PEP 625 failure; the reason says which part is wrong."""
    if not filename.endswith(".tar.gz"):
        return "invalid_extension"
    return "version_mismatch" if file_version != version else "unnormalized_filename"


def _check_wheel(filename: str, name: str, version: Version) -> NormalizedName:
    """PyPI's wheel filename checks: parsable, unambiguous, the project's name, normalized, the form's version.

    Unlike PyPI the escaped name may differ in case ('Demo_Pkg-0.1.0-py3-none-any.whl'): build backends
    wrote such names until 2025 and installers accept them.
    """
    try:
        file_name, file_version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise _refuse(str(exc), "invalid_filename") from exc
    _check_unambiguous_wheel(filename, file_version)
    project = canonicalize_name(name)
    if file_name != project:
        raise _start_filename(name, project)
    escaped, expected = filename.split("-", 1)[0], project.replace("-", "_")
    if escaped.lower() != expected:
        message = f"Filename {filename!r} should contain the normalized project name {_shown(expected)}"
        raise _refuse(f"{message}, not {escaped!r}.", "unnormalized_filename")
    # Equal as PEP 440 versions is not enough ('1' and '1.0.0'): an index files the upload under the version
    # string it is given (devpi the form's, pypiserver the filename's), so both must be the same release.
    if str(file_version) != str(version):
        message = f"Version in filename should be {_shown(str(version))} not {_shown(str(file_version))}."
        raise _refuse(message, "version_mismatch")
    return file_name


def _check_unambiguous_wheel(filename: str, file_version: Version) -> None:
    """The version part must start with a digit, as every build tool writes it.

    packaging reads `myproj-v2-1-py3-none-any.whl` as project myproj, version v2 (= 2), build tag 1, but
    pypiserver, which files uploads by filename, takes the name up to the first '-' followed by a digit:
    project `myproj-v2`, version 1. A user allowed to upload to myproj would land a file in someone else's
    project. With a digit there, the escaped name (which has no '-') is the first part for every parser
    (tests/test_filename_agreement.py).
    """
    parts = filename.split("-")
    if parts[1][:1].isdigit():
        return
    parts[1] = str(file_version)
    renamed = "-".join(parts)
    message = f"Invalid wheel filename (the version must start with a digit): {filename!r}; rename it {renamed!r}."
    raise _refuse(message, "ambiguous_filename")
