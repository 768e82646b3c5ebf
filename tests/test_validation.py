from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from gateway.errors import GatewayError
from gateway.validation import Upload, action_version, check_action, validate_upload
from tests.reasons import METADATA_REASONS
from tests.reasons import VALIDATION_REASONS as REASONS

MD5 = "c" * 32
SHA256 = "a" * 64
BLAKE2 = "b" * 64
OCTET = "application/octet-stream"
WHEEL = "Demo_Pkg-0.1.0-py3-none-any.whl"
SDIST = "demo_pkg-0.1.0.tar.gz"
CORE = "See https://packaging.python.org/specifications/core-metadata for more information."
LOCAL = (
    "See https://packaging.python.org/en/latest/specifications/version-specifiers/#local-version-identifiers"
    " for more information."
)
PEP_527 = "See https://www.python.org/dev/peps/pep-0527 for more information."
UNKNOWN_EXTENSION = (
    "Invalid file extension: Use .tar.gz, .whl or .zip extension. See https://www.python.org/dev/peps/pep-0527"
    " and https://peps.python.org/pep-0715/ for more information"
)
NAME_RULE = "Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'."
CONTROL = (
    "Cannot upload a file with non-printable characters (ordinals 0-31) or the DEL character (ordinal 127) in the name."
)
SLASH = "Cannot upload a file with '/' or '\\' in the name."

Fields = Mapping[str, Sequence[str]]
# What twine 7 sends for Demo-Pkg's wheel (peers.md §0).
WHEEL_FORM: Fields = {
    "metadata_version": ["2.4"],
    "name": ["Demo-Pkg"],
    "version": ["0.1.0"],
    "summary": ["A demo"],
    "pyversion": ["py3"],
    "filetype": ["bdist_wheel"],
    "sha256_digest": [SHA256],
    "blake2_256_digest": [BLAKE2],
    ":action": ["file_upload"],
    "protocol_version": ["1"],
}
SDIST_FORM: Fields = {**WHEEL_FORM, "filetype": ["sdist"], "pyversion": ["source"]}


@dataclass(frozen=True)
class Attempt:
    fields: Fields
    filename: str
    content_type: str | None

    def validate(self) -> Upload:
        return validate_upload(self.fields, filename=self.filename, content_type=self.content_type)


def _attempt(
    base: Fields, changes: Mapping[str, Sequence[str] | None], filename: str, content_type: str | None
) -> Attempt:
    fields = {key: value for key, value in base.items() if key not in changes}
    fields.update({key: value for key, value in changes.items() if value is not None})
    return Attempt(fields, filename, content_type)


def wheel(
    changes: Mapping[str, Sequence[str] | None] | None = None, filename: str = WHEEL, content_type: str | None = OCTET
) -> Attempt:
    """Twine's wheel upload with `changes` (None drops a field)."""
    return _attempt(WHEEL_FORM, changes or {}, filename, content_type)


def sdist(
    changes: Mapping[str, Sequence[str] | None] | None = None, filename: str = SDIST, content_type: str | None = OCTET
) -> Attempt:
    """Twine's sdist upload with `changes` (None drops a field)."""
    return _attempt(SDIST_FORM, changes or {}, filename, content_type)


def accepted(filename: str, filetype: str, *, version: str = "0.1.0", name: str = "Demo-Pkg", **digests: str) -> Upload:
    return Upload(
        project="demo-pkg",
        name=name,
        version=version,
        filename=filename,
        filetype=filetype,
        digests=digests or {"sha256": SHA256, "blake2_256": BLAKE2},
    )


VALID = [
    pytest.param(wheel(), accepted(WHEEL, "bdist_wheel"), id="twine-wheel"),
    pytest.param(wheel(content_type=None), accepted(WHEEL, "bdist_wheel"), id="uv-wheel-without-content-type"),
    pytest.param(
        wheel(filename="demo_pkg-0.1.0-py3-none-any.whl"),
        accepted("demo_pkg-0.1.0-py3-none-any.whl", "bdist_wheel"),
        id="normalized-wheel",
    ),
    pytest.param(sdist(), accepted(SDIST, "sdist"), id="sdist"),
    pytest.param(sdist({"pyversion": None}), accepted(SDIST, "sdist"), id="sdist-without-pyversion"),
    pytest.param(sdist({"pyversion": [""]}), accepted(SDIST, "sdist"), id="sdist-empty-pyversion"),
    pytest.param(sdist({"pyversion": ["UNKNOWN"]}), accepted(SDIST, "sdist"), id="sdist-unknown-pyversion"),
    pytest.param(
        wheel({"sha256_digest": [SHA256.upper()], "blake2_256_digest": ["B" * 64]}),
        accepted(WHEEL, "bdist_wheel"),
        id="uppercase-hex",
    ),
    pytest.param(
        wheel({"sha256_digest": None, "blake2_256_digest": None, "md5_digest": [MD5.upper()]}),
        accepted(WHEEL, "bdist_wheel", md5=MD5),
        id="md5-only",
    ),
    pytest.param(
        wheel({"sha256_digest": [""]}), accepted(WHEEL, "bdist_wheel", blake2_256=BLAKE2), id="empty-digest-is-absent"
    ),
    pytest.param(wheel({"protocol_version": None}), accepted(WHEEL, "bdist_wheel"), id="no-protocol-version"),
    pytest.param(wheel({"metadata_version": ["1.0"]}), accepted(WHEEL, "bdist_wheel"), id="metadata-1.0"),
    pytest.param(wheel({"metadata_version": ["2.5"]}), accepted(WHEEL, "bdist_wheel"), id="metadata-2.5"),
    pytest.param(
        wheel({"version": ["0.1.0.RC1"]}, filename="demo_pkg-0.1.0rc1-py3-none-any.whl"),
        accepted("demo_pkg-0.1.0rc1-py3-none-any.whl", "bdist_wheel", version="0.1.0rc1"),
        id="version-normalized",
    ),
    pytest.param(
        wheel(filename="demo_pkg-0.1.0-1-py3-none-any.whl"),
        accepted("demo_pkg-0.1.0-1-py3-none-any.whl", "bdist_wheel"),
        id="wheel-build-tag",
    ),
    pytest.param(
        wheel({"version": ["1!0.1.0"]}, filename="demo_pkg-1!0.1.0-2x-py2.py3-none-any.whl"),
        accepted("demo_pkg-1!0.1.0-2x-py2.py3-none-any.whl", "bdist_wheel", version="1!0.1.0"),
        id="wheel-epoch-build-tag-compressed-tags",
    ),
    pytest.param(
        wheel(
            {"pyversion": ["cp312"]},
            filename="demo_pkg-0.1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            content_type="application/zip; charset=binary",
        ),
        accepted("demo_pkg-0.1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "bdist_wheel"),
        id="platform-wheel",
    ),
    pytest.param(
        sdist({"version": ["1.0-1"]}, filename="demo_pkg-1.0.post1.tar.gz"),
        accepted("demo_pkg-1.0.post1.tar.gz", "sdist", version="1.0.post1"),
        id="sdist-post-release",
    ),
    pytest.param(
        sdist({"name": ["demo.pkg"]}), accepted(SDIST, "sdist", name="demo.pkg"), id="name-with-dot-normalizes"
    ),
    pytest.param(
        wheel({"classifiers": ["Typing :: Typed", "Private :: Do Not Upload"], "summary": ["UNKNOWN"]}),
        accepted(WHEEL, "bdist_wheel"),
        id="repeated-multi-valued-field",
    ),
]


@pytest.mark.parametrize(("attempt", "expected"), VALID)
def test_accepted(attempt: Attempt, expected: Upload) -> None:
    assert attempt.validate() == expected


INVALID = [
    # protocol and duplicates
    pytest.param(wheel({"protocol_version": ["2"]}), "invalid_protocol_version", "Unknown protocol version."),
    pytest.param(wheel({"protocol_version": [""]}), "invalid_protocol_version", "Unknown protocol version."),
    pytest.param(
        wheel({"name": ["Demo-Pkg", "evil"]}), "duplicate_field", f"'name' has invalid data. {CORE}", id="dup-name"
    ),
    pytest.param(
        wheel({"version": ["0.1.0", "0.1.0"]}), "duplicate_field", f"'version' has invalid data. {CORE}", id="dup-ver"
    ),
    pytest.param(
        wheel({"summary": ["a", "b"]}), "duplicate_field", f"'summary' has invalid data. {CORE}", id="dup-summary"
    ),
    pytest.param(
        wheel({"sha256_digest": [SHA256, "f" * 64]}),
        "duplicate_field",
        "Field 'sha256_digest' was sent more than once; send it once.",
        id="dup-digest",
    ),
    pytest.param(
        wheel({":action": ["file_upload", "remove_pkg"]}),
        "duplicate_field",
        "Field ':action' was sent more than once; send it once.",
        id="dup-action",
    ),
    # name
    pytest.param(
        wheel({"name": None}), "invalid_name", f"'' is an invalid value for Name. Error: This field is required. {CORE}"
    ),
    pytest.param(
        wheel({"name": ["UNKNOWN"]}),
        "invalid_name",
        f"'' is an invalid value for Name. Error: This field is required. {CORE}",
        id="name-unknown-placeholder",
    ),
    pytest.param(
        wheel({"name": ["-demo"]}), "invalid_name", f"'-demo' is an invalid value for Name. Error: {NAME_RULE} {CORE}"
    ),
    pytest.param(
        wheel({"name": ["démo"]}), "invalid_name", f"'démo' is an invalid value for Name. Error: {NAME_RULE} {CORE}"
    ),
    pytest.param(
        wheel({"name": ["demo\x00"]}),
        "invalid_name",
        f"'demo\\\\x00' is an invalid value for Name. Error: {NAME_RULE} {CORE}",
        id="name-nul-escaped-like-pypi",
    ),
    pytest.param(
        wheel({"name": ["a" * 70 + "!"]}),
        "invalid_name",
        f"'{'a' * 30}...{'a' * 29}!' is an invalid value for Name. Error: {NAME_RULE} {CORE}",
        id="name-long-truncated",
    ),
    pytest.param(
        wheel({"name": ["x\r\nSet-Cookie: a=b"]}),
        "invalid_name",
        f"'x\\r\\nSet-Cookie: a=b' is an invalid value for Name. Error: {NAME_RULE} {CORE}",
        id="name-crlf-escaped",
    ),
    # the rest of the form, in PyPI's order
    pytest.param(
        wheel({"filetype": None}), "invalid_filetype", "Invalid value for filetype. Error: This field is required."
    ),
    pytest.param(
        wheel({"filetype": ["bdist_egg"]}),
        "invalid_filetype",
        "Invalid value for filetype. Error: Use a known file type.",
    ),
    pytest.param(
        wheel({"sha256_digest": ["a" * 63]}),
        "invalid_digest",
        "Invalid value for sha256_digest. Error: Use a valid, hex-encoded, SHA256 message digest.",
        id="sha256-short",
    ),
    pytest.param(
        wheel({"sha256_digest": ["g" * 64]}),
        "invalid_digest",
        "Invalid value for sha256_digest. Error: Use a valid, hex-encoded, SHA256 message digest.",
        id="sha256-not-hex",
    ),
    pytest.param(
        wheel({"blake2_256_digest": [" " + BLAKE2[1:]]}),
        "invalid_digest",
        "Invalid value for blake2_256_digest. Error: Use a valid, hex-encoded, BLAKE2 message digest.",
        id="blake2-space",
    ),
    pytest.param(
        wheel({"md5_digest": [SHA256]}),
        "invalid_digest",
        "Invalid value for md5_digest. Error: Use a valid, hex-encoded, MD5 message digest.",
        id="md5-too-long",
    ),
    pytest.param(
        wheel({"name": ["-"], "blake2_256_digest": ["x"]}),
        "invalid_name",
        f"'-' is an invalid value for Name. Error: {NAME_RULE} {CORE}",
        id="name-before-digest",
    ),
    pytest.param(
        wheel({"blake2_256_digest": ["x"], "filetype": ["egg"]}),
        "invalid_digest",
        "Invalid value for blake2_256_digest. Error: Use a valid, hex-encoded, BLAKE2 message digest.",
        id="blake2-before-filetype",
    ),
    pytest.param(
        wheel({"filetype": ["egg"], "sha256_digest": ["x"]}),
        "invalid_filetype",
        "Invalid value for filetype. Error: Use a known file type.",
        id="filetype-before-sha256",
    ),
    pytest.param(
        wheel({"pyversion": None}),
        "invalid_pyversion",
        "Invalid value for pyversion. Error: Python version is required for binary distribution uploads.",
    ),
    pytest.param(
        sdist({"pyversion": ["py3"]}),
        "invalid_pyversion",
        "Invalid value for pyversion. Error: Use 'source' as Python version for an sdist.",
    ),
    pytest.param(
        wheel({"sha256_digest": None, "blake2_256_digest": None}),
        "missing_digest",
        "Error: Include at least one message digest.",
    ),
    pytest.param(
        wheel({"sha256_digest": [""], "blake2_256_digest": ["UNKNOWN"]}),
        "missing_digest",
        "Error: Include at least one message digest.",
        id="empty-digests",
    ),
    pytest.param(
        wheel({"sha256_digest": None, "blake2_256_digest": None, "pyversion": None}),
        "invalid_pyversion",
        "Invalid value for pyversion. Error: Python version is required for binary distribution uploads.",
        id="pyversion-before-digest",
    ),
    # metadata, after the form
    pytest.param(
        wheel({"metadata_version": None}), "invalid_metadata_version", f"None is not a valid metadata version. {CORE}"
    ),
    pytest.param(
        wheel({"metadata_version": ["2.0"]}),
        "invalid_metadata_version",
        f"'2.0' is not a valid metadata version. {CORE}",
    ),
    pytest.param(
        wheel({"metadata_version": ["3.0"], "filetype": ["egg"]}),
        "invalid_filetype",
        "Invalid value for filetype. Error: Use a known file type.",
        id="form-before-metadata",
    ),
    pytest.param(
        wheel({"metadata_version": ["9.9"], "version": ["bad"]}),
        "invalid_metadata_version",
        f"'9.9' is not a valid metadata version. {CORE}",
        id="metadata-version-before-version",
    ),
    pytest.param(wheel({"version": None}), "invalid_version", f"'version' is a required field. {CORE}"),
    pytest.param(wheel({"version": [""]}), "invalid_version", f"'version' is a required field. {CORE}"),
    pytest.param(wheel({"version": ["1.0-foo"]}), "invalid_version", f"'1.0-foo' is invalid for 'version'. {CORE}"),
    pytest.param(
        wheel({"version": ["v" * 100]}),
        "invalid_version",
        f"'{'v' * 30}...{'v' * 30}' is invalid for 'version'. {CORE}",
        id="version-long-truncated",
    ),
    pytest.param(
        wheel({"version": ["0.1.0+local"]}, filename="demo_pkg-0.1.0+local-py3-none-any.whl"),
        "local_version",
        f"The use of local versions in '0.1.0+local' is not allowed. {LOCAL}",
    ),
    # filename safety
    pytest.param(wheel(filename="demo_pkg-0.1.0-py3-none-any.whl\n"), "unsafe_filename", CONTROL, id="newline"),
    pytest.param(wheel(filename="demo_pkg\r-0.1.0-py3-none-any.whl"), "unsafe_filename", CONTROL, id="cr"),
    pytest.param(wheel(filename="demo_pkg\x00-0.1.0-py3-none-any.whl"), "unsafe_filename", CONTROL, id="nul"),
    pytest.param(wheel(filename="demo_pkg-0.1.0-py3-none-any.whl\x7f"), "unsafe_filename", CONTROL, id="del"),
    pytest.param(sdist(filename="../demo_pkg-0.1.0.tar.gz"), "unsafe_filename", SLASH, id="parent-dir"),
    pytest.param(sdist(filename="/tmp/demo_pkg-0.1.0.tar.gz"), "unsafe_filename", SLASH, id="absolute-posix"),
    pytest.param(sdist(filename="C:\\demo_pkg-0.1.0.tar.gz"), "unsafe_filename", SLASH, id="absolute-windows"),
    pytest.param(
        sdist(filename="..demo_pkg-0.1.0.tar.gz"),
        "unsafe_filename",
        "Cannot upload a file with '..' in the name.",
        id="dot-dot",
    ),
    pytest.param(
        sdist(filename="demo_pkg-0.1.0.tar.gz\u202e"),
        "unsafe_filename",
        "Cannot upload a file with non-ASCII characters in the name.",
        id="bidi-override",
    ),
    pytest.param(
        sdist(filename="démo_pkg-0.1.0.tar.gz"),
        "unsafe_filename",
        "Cannot upload a file with non-ASCII characters in the name.",
        id="non-ascii",
    ),
    pytest.param(
        wheel(filename="d" * 300 + "-0.1.0-py3-none-any.whl"),
        "filename_too_long",
        f"Filename is too long: '{'d' * 30}...{'d' * 7}-0.1.0-py3-none-any.whl'",
        id="too-long",
    ),
    # extension and content type
    pytest.param(wheel(filename="demo_pkg-0.1.0.exe"), "invalid_extension", UNKNOWN_EXTENSION, id="exe"),
    pytest.param(wheel(filename=".whl"), "invalid_extension", UNKNOWN_EXTENSION, id="bare-extension"),
    pytest.param(wheel(filename=""), "invalid_extension", UNKNOWN_EXTENSION, id="empty-filename"),
    pytest.param(
        wheel(filename=SDIST),
        "invalid_extension",
        f"Invalid file extension: Extension .tar.gz is invalid for filetype bdist_wheel. {PEP_527}",
        id="sdist-file-as-wheel",
    ),
    pytest.param(
        sdist(filename="demo_pkg-0.1.0-py3-none-any.whl"),
        "invalid_extension",
        f"Invalid file extension: Extension .whl is invalid for filetype sdist. {PEP_527}",
        id="wheel-file-as-sdist",
    ),
    pytest.param(
        wheel(filename="Demo_Pkg-0.1.0-py3-none-any.WHL"),
        "invalid_extension",
        f"Invalid file extension: Extension .WHL is invalid for filetype bdist_wheel. {PEP_527}",
        id="uppercase-extension",
    ),
    pytest.param(wheel(content_type=""), "invalid_content_type", "Invalid distribution file.", id="empty-type"),
    pytest.param(wheel(content_type="Image/PNG"), "invalid_content_type", "Invalid distribution file.", id="image"),
    # sdist filename
    pytest.param(
        sdist(filename="demo_pkg.tar.gz"),
        "invalid_filename",
        "Invalid source distribution filename: demo_pkg.tar.gz",
    ),
    pytest.param(
        sdist(filename="other-0.1.0.tar.gz"), "name_mismatch", "Start filename for 'Demo-Pkg' with 'demo_pkg'."
    ),
    pytest.param(
        sdist(filename="Demo-Pkg-0.1.0.tar.gz"),
        "unnormalized_filename",
        "Filename 'Demo-Pkg-0.1.0.tar.gz' is invalid, should be 'demo_pkg-0.1.0.tar.gz'.",
    ),
    pytest.param(
        sdist(filename="demo_pkg-0.1.tar.gz"),
        "unnormalized_filename",
        "Filename 'demo_pkg-0.1.tar.gz' is invalid, should be 'demo_pkg-0.1.0.tar.gz'.",
        id="sdist-version-unnormalized",
    ),
    pytest.param(
        sdist({"version": ["1.0-1"]}, filename="demo_pkg-1.0-1.tar.gz"),
        "unnormalized_filename",
        "Filename 'demo_pkg-1.0-1.tar.gz' is invalid, should be 'demo_pkg-1.0.post1.tar.gz'.",
        id="sdist-legacy-post-release",
    ),
    pytest.param(
        sdist(filename="demo_pkg-0.2.0.tar.gz"),
        "version_mismatch",
        "Filename 'demo_pkg-0.2.0.tar.gz' is invalid, should be 'demo_pkg-0.1.0.tar.gz'.",
        id="sdist-version",
    ),
    pytest.param(
        sdist(filename="demo_pkg-0.1.0.zip"),
        "invalid_extension",
        "Filename 'demo_pkg-0.1.0.zip' is invalid, should be 'demo_pkg-0.1.0.tar.gz'.",
        id="zip-sdist",
    ),
    # wheel filename
    pytest.param(
        wheel(filename="Demo_Pkg-0.1.0-py3-none.whl"),
        "invalid_filename",
        "Invalid wheel filename (wrong number of parts): 'Demo_Pkg-0.1.0-py3-none'",
    ),
    pytest.param(
        wheel(filename="Demo_Pkg-x.y-py3-none-any.whl"),
        "invalid_filename",
        "Invalid wheel filename (invalid version): 'Demo_Pkg-x.y-py3-none-any'",
    ),
    pytest.param(
        wheel({"name": ["myproj"], "version": ["2"]}, filename="myproj-v2-1-py3-none-any.whl"),
        "ambiguous_filename",
        "Invalid wheel filename (the version must start with a digit): 'myproj-v2-1-py3-none-any.whl';"
        " rename it 'myproj-2-1-py3-none-any.whl'.",
        id="wheel-version-v-prefix-is-another-project-to-pypiserver",
    ),
    pytest.param(
        wheel(filename="Demo_Pkg-V0.1.0-cp312-abi3-win_amd64.whl"),
        "ambiguous_filename",
        "Invalid wheel filename (the version must start with a digit): 'Demo_Pkg-V0.1.0-cp312-abi3-win_amd64.whl';"
        " rename it 'Demo_Pkg-0.1.0-cp312-abi3-win_amd64.whl'.",
        id="wheel-version-uppercase-v",
    ),
    pytest.param(
        wheel(filename="demo_pkg- 0.1.0-py3-none-any.whl"),
        "ambiguous_filename",
        "Invalid wheel filename (the version must start with a digit): 'demo_pkg- 0.1.0-py3-none-any.whl';"
        " rename it 'demo_pkg-0.1.0-py3-none-any.whl'.",
        id="wheel-version-leading-space",
    ),
    pytest.param(
        wheel(filename="demo_pkg-0.1.0-1 x-py3-none-any.whl"),
        "invalid_filename",
        "Invalid distribution filename 'demo_pkg-0.1.0-1 x-py3-none-any.whl': a distribution's filename has only "
        "letters, digits and '.', '_', '-', '!', '+'",
        id="wheel-build-tag-with-a-space",
    ),
    pytest.param(
        wheel(filename="demo_pkg-0.1.0-1;x-py3-none-any.whl"),
        "invalid_filename",
        "Invalid distribution filename 'demo_pkg-0.1.0-1;x-py3-none-any.whl': a distribution's filename has only "
        "letters, digits and '.', '_', '-', '!', '+'",
        id="wheel-tag-with-a-semicolon",
    ),
    pytest.param(
        wheel({"version": ["0.1"]}),
        "version_mismatch",
        "Version in filename should be '0.1' not '0.1.0'.",
        id="wheel-version-equal-by-pep440-but-written-otherwise",
    ),
    pytest.param(
        wheel(filename="other-v9-py3-none-any.whl"),
        "ambiguous_filename",
        "Invalid wheel filename (the version must start with a digit): 'other-v9-py3-none-any.whl';"
        " rename it 'other-9-py3-none-any.whl'.",
        id="ambiguous-before-name-mismatch",
    ),
    pytest.param(
        wheel(filename="other-0.1.0-py3-none-any.whl"),
        "name_mismatch",
        "Start filename for 'Demo-Pkg' with 'demo_pkg'.",
        id="wheel-other-project",
    ),
    pytest.param(
        wheel(filename="demo.pkg-0.1.0-py3-none-any.whl"),
        "unnormalized_filename",
        "Filename 'demo.pkg-0.1.0-py3-none-any.whl' should contain the normalized project name 'demo_pkg',"
        " not 'demo.pkg'.",
    ),
    pytest.param(
        wheel(filename="demo_pkg-0.2.0-py3-none-any.whl"),
        "version_mismatch",
        "Version in filename should be '0.1.0' not '0.2.0'.",
    ),
]


@pytest.mark.parametrize(("attempt", "reason", "message"), INVALID)
def test_refused(attempt: Attempt, reason: str, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        attempt.validate()
    assert (caught.value.status, caught.value.reason, caught.value.message) == (400, reason, message)


NO_ACTIONS: frozenset[str] = frozenset()

ACTIONS = [
    pytest.param({":action": ["file_upload"]}, NO_ACTIONS, "file_upload", id="file-upload"),
    pytest.param({":action": ["remove_pkg"]}, frozenset({"remove_pkg"}), "remove_pkg", id="allowed"),
    pytest.param({":action": ["doc_upload"]}, frozenset({"doc_upload"}), "doc_upload", id="allowed-doc-upload"),
]


@pytest.mark.parametrize(("fields", "allowed", "expected"), ACTIONS)
def test_action_accepted(fields: Fields, allowed: frozenset[str], expected: str) -> None:
    assert check_action(fields, allowed) == expected


REFUSED_ACTIONS = [
    pytest.param(
        {}, NO_ACTIONS, 400, "invalid_action", "Missing ':action' field; an upload sends ':action=file_upload'."
    ),
    pytest.param(
        {":action": [""]},
        frozenset({""}),
        400,
        "invalid_action",
        "Missing ':action' field; an upload sends ':action=file_upload'.",
        id="empty",
    ),
    pytest.param(
        {":action": ["remove_pkg"]},
        NO_ACTIONS,
        400,
        "invalid_action",
        "Unsupported ':action' 'remove_pkg'; this index accepts: file_upload.",
    ),
    pytest.param(
        {":action": ["File_Upload"]},
        frozenset({"verify"}),
        400,
        "invalid_action",
        "Unsupported ':action' 'File_Upload'; this index accepts: file_upload, verify.",
    ),
    pytest.param(
        {":action": ["x" * 61 + "\r\n"]},
        NO_ACTIONS,
        400,
        "invalid_action",
        f"Unsupported ':action' '{'x' * 30}...{'x' * 28}\\r\\n'; this index accepts: file_upload.",
        id="long-action",
    ),
    pytest.param(
        {":action": ["doc_upload"]},
        NO_ACTIONS,
        410,
        "doc_upload_removed",
        "Uploading documentation is no longer supported, we recommend using https://readthedocs.org/.",
    ),
    pytest.param(
        {":action": ["submit"]},
        NO_ACTIONS,
        410,
        "submit_removed",
        "Project pre-registration is no longer required or supported, upload your files instead.",
    ),
    pytest.param(
        {":action": ["submit_pkg_info"]},
        NO_ACTIONS,
        410,
        "submit_removed",
        "Project pre-registration is no longer required or supported, upload your files instead.",
    ),
    pytest.param(
        {":action": ["file_upload", "file_upload"]},
        NO_ACTIONS,
        400,
        "duplicate_field",
        "Field ':action' was sent more than once; send it once.",
    ),
]


@pytest.mark.parametrize(("fields", "allowed", "status", "reason", "message"), REFUSED_ACTIONS)
def test_action_refused(fields: Fields, allowed: frozenset[str], status: int, reason: str, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        check_action(fields, allowed)
    assert (caught.value.status, caught.value.reason, caught.value.message) == (status, reason, message)


def test_every_reason_is_documented_and_produced() -> None:
    produced = {case.values[1] for case in INVALID} | {case.values[3] for case in REFUSED_ACTIONS}
    assert produced == set(REASONS)
    assert all(description and "\n" not in description for description in REASONS.values())


def _well_formed(exc: GatewayError) -> None:
    raw = str(exc)
    assert exc.reason in {**REASONS, **METADATA_REASONS}
    assert exc.status in (400, 410)
    assert "\r" not in raw and "\n" not in raw
    assert len(raw) <= 600  # every echoed value is shortened, none is passed on whole


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except GatewayError as exc:
        _well_formed(exc)
        return exc


FIELD_NAMES = st.sampled_from([*WHEEL_FORM, "md5_digest", "keywords", "classifiers", "comment"]) | st.text(max_size=8)
FIELD_VALUES = st.sampled_from(
    [*(value for values in SDIST_FORM.values() for value in values), "", "UNKNOWN", MD5, "0.1"]
) | st.text(max_size=80)
ARBITRARY_FIELDS = st.dictionaries(FIELD_NAMES, st.lists(FIELD_VALUES, max_size=3), max_size=12)
# Mostly-valid forms reach the later checks: twine's form with a few fields replaced or dropped.
NEAR_VALID_FIELDS = st.builds(
    lambda base, changes, dropped: {key: value for key, value in {**base, **changes}.items() if key not in dropped},
    st.sampled_from([WHEEL_FORM, SDIST_FORM]),
    ARBITRARY_FIELDS,
    st.sets(st.sampled_from(list(WHEEL_FORM)), max_size=2),
)
NAME_PARTS = st.sampled_from(["Demo_Pkg", "demo_pkg", "demo.pkg", "demo-pkg", "other", ""]) | st.text(max_size=12)
VERSION_PARTS = st.sampled_from(["0.1.0", "0.1", "1.0-1", "0.1.0+local", "x"]) | st.text(max_size=8)
SUFFIXES = st.sampled_from([".tar.gz", ".zip", "-py3-none-any.whl", "-1-py3-none-any.whl", ".WHL", ".exe", ""])
FILENAMES = (
    st.builds("{}-{}{}".format, NAME_PARTS, VERSION_PARTS, SUFFIXES)
    | st.sampled_from([WHEEL, SDIST])
    | st.text(max_size=300)
)
CONTENT_TYPES = st.none() | st.sampled_from([OCTET, "image/png", ""]) | st.text(max_size=20)


@settings(max_examples=1000, deadline=None, database=None)
@given(
    fields=ARBITRARY_FIELDS | NEAR_VALID_FIELDS,
    filename=FILENAMES,
    content_type=CONTENT_TYPES,
    allowed=st.frozensets(st.sampled_from(["remove_pkg", "doc_upload", "verify"]) | st.text(max_size=10), max_size=3),
)
def test_only_gateway_errors_come_out(
    fields: Fields, filename: str, content_type: str | None, allowed: frozenset[str]
) -> None:
    _outcome(lambda: check_action(fields, allowed))
    upload = _outcome(lambda: validate_upload(fields, filename=filename, content_type=content_type))
    if isinstance(upload, Upload):
        assert upload.filename == filename and filename.isascii() and filename.isprintable()
        assert upload.project == canonicalize_name(upload.name)
        assert upload.digests and all(value == value.lower() for value in upload.digests.values())


@pytest.mark.parametrize(
    ("version", "expected"), [("1.0", "1.0"), ("01.0", "1.0"), ("1.0-rc1", "1.0rc1"), ("1.0.post1", "1.0.post1")]
)
def test_an_action_names_its_release_by_its_normalized_version(version: str, expected: str) -> None:
    assert action_version({":action": ["remove_pkg"], "name": ["demo"], "version": [version]}) == expected


@pytest.mark.parametrize("fields", [{"version": ["x y"]}, {}, {"version": ["1", "2"]}])
def test_an_action_without_a_valid_version_is_refused(fields: Fields) -> None:
    with pytest.raises(GatewayError) as caught:
        action_version(fields)
    assert caught.value.status == 400 and caught.value.reason in ("invalid_version", "duplicate_field")
