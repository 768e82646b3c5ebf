"""Every refusal in Warehouse's tests/unit/forklift/test_legacy.py (pypi/warehouse 6b62157) that does not hinge
on PyPI's own state, as data to drive through the real gateway: the form (twine's, with a few fields
changed), the file, and the status and message PyPI answers. `SKIPPED` lists the others, each with why.

The ids are Warehouse's test names and parametrize ids. Where Warehouse's test stubs out its archive check, or
its file is a placeholder, the file here is a real one that fails only the check under test. `differs` says
where the gateway answers otherwise on purpose (see gateway/validation.py).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tests.archives import core_metadata, sdist_files, tar_gz, tar_member, wheel_files, zip_bytes

NAME = "example"
VERSION = "1.0"
CORE = "See https://packaging.python.org/specifications/core-metadata for more information."
PEP_527 = "See https://www.python.org/dev/peps/pep-0527 for more information."
ARCHIVES = "See https://docs.pypi.org/archives for more information"
UNKNOWN_EXTENSION = (
    "Invalid file extension: Use .tar.gz, .whl or .zip extension. See https://www.python.org/dev/peps/pep-0527"
    " and https://peps.python.org/pep-0715/ for more information"
)
CONTROL = (
    "Cannot upload a file with non-printable characters (ordinals 0-31) or the DEL character (ordinal 127) in the name."
)
DESCRIPTION_HELP = "See https://pypi.org/help/#description-content-type for more information."
MD5_FORMAT = "the gateway checks an md5_digest's form (32 hex digits) with the other digests; PyPI does not"


@dataclass(frozen=True)
class Case:
    """One Warehouse refusal: `fields` change twine's form (a tuple of values replaces a field, None drops it)."""

    id: str
    fields: Mapping[str, tuple[str, ...] | None]
    filename: str
    build: Callable[[], bytes] | None  # the file's bytes; None sends no file part
    status: int
    message: str
    note: str = ""
    content_type: str | None = "application/octet-stream"
    differs: str = ""  # why the gateway answers otherwise, when it does on purpose
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # fields appended after twine's


@dataclass(frozen=True)
class Skipped:
    id: str
    reason: str


def form_fields(case: Case, data: bytes) -> list[tuple[str, str]]:
    """Twine's form for `data` under `case.filename`, with the case's changes (digests are of `data`)."""
    wheel = case.filename.endswith(".whl")
    base: dict[str, tuple[str, ...]] = {
        "metadata_version": ("2.1",),
        "name": (NAME,),
        "version": (VERSION,),
        "filetype": ("bdist_wheel" if wheel else "sdist",),
        "pyversion": ("py3" if wheel else "source",),
        "summary": ("A test",),
        "sha256_digest": (hashlib.sha256(data).hexdigest(),),
        "blake2_256_digest": (hashlib.blake2b(data, digest_size=32).hexdigest(),),
        ":action": ("file_upload",),
        "protocol_version": ("1",),
    }
    for key, values in case.fields.items():
        if values is None:
            base.pop(key, None)
        else:
            base[key] = values
    for key, values in case.extra.items():
        base[key] = base.get(key, ()) + values
    return [(key, value) for key, values in base.items() for value in values]


def _sdist(name: str = NAME, version: str = VERSION, **files: bytes) -> Callable[[], bytes]:
    def build() -> bytes:
        return tar_gz({**sdist_files(name, version), **{f"{_top(name, version)}/{k}": v for k, v in files.items()}})

    return build


def _zip_sdist(name: str = NAME, version: str = VERSION) -> Callable[[], bytes]:
    return lambda: zip_bytes(sdist_files(name, version))


def _wheel(
    name: str = NAME, version: str = VERSION, *, drop: tuple[str, ...] = (), **files: bytes
) -> Callable[[], bytes]:
    def build() -> bytes:
        info = f"{_top(name, version)}.dist-info"
        members = {key: value for key, value in wheel_files(name, version).items() if key.rsplit("/", 1)[1] not in drop}
        members.update({f"{info}/{key}": value for key, value in files.items()})
        return zip_bytes(members)

    return build


def _top(name: str, version: str) -> str:
    return f"{name.lower().replace('-', '_').replace('.', '_')}-{version}"


def _bytes(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _zip(files: Mapping[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Callable[[], bytes]:
    return lambda: zip_bytes(files, method=method)


def _truncated_plain_tar() -> bytes:
    return tar_gz({"example.txt": b"Hello, World!"}, mode="w")[:-10]


def _zlib_error() -> bytes:
    plain = tar_gz({"package/data": b"x"}, mode="w")
    return gzip.compress(plain[: tarfile.BLOCKSIZE], mtime=0) + bytes.fromhex("1f8b080000000000000307")


def _sparse(tar_format: int) -> Callable[[], bytes]:
    def build() -> bytes:
        top = _top(NAME, VERSION)
        if tar_format == tarfile.PAX_FORMAT:
            headers = {"GNU.sparse.map": "0,1", "GNU.sparse.size": "10"}
            sparse = tar_member(f"{top}/sparse.dat", b"x", pax_headers=headers)
        else:
            sparse = tar_member(f"{top}/sparse.dat", type=tarfile.GNUTYPE_SPARSE)
        return tar_gz([tar_member(f"{top}/PKG-INFO", core_metadata(NAME, VERSION)), sparse], tar_format=tar_format)

    return build


def _polyglot() -> bytes:
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as archive:
        member, data = tar_member("package/PKG-INFO", b"this is the package info")
        archive.addfile(member, io.BytesIO(data))
    return tar.getvalue() + zip_bytes({"PKG-INFO": b"this is the package info"})


SDIST = f"{NAME}-{VERSION}.tar.gz"
WHEEL = f"{NAME}-{VERSION}-py3-none-any.whl"
ZIP = f"{NAME}-{VERSION}.zip"
T = "TestFileValidation::"
U = "TestFileUpload::"
ARCHIVE_FIRST = (
    "needs the archive check before the sdist filename check (.zip sdists reach it): validate_upload refuses "
    "'.zip' early today with the PEP 625 message"
)

_LICENSE_AT = {
    "sdist": f"{SDIST} at {NAME}-{VERSION}/LICENSE",
    "bdist_wheel": f"{WHEEL} at {NAME}-{VERSION}.dist-info/licenses/LICENSE",
}

CASES: list[Case] = [
    # _is_valid_dist_file, driven through an upload of a file that fails only it
    Case(
        f"{T}test_bails_with_invalid_zipfile[test.zip-sdist]",
        {},
        ZIP,
        _bytes(b"this isn't a valid zip file"),
        400,
        "Invalid distribution file. File is not a zipfile",
        differs=ARCHIVE_FIRST,
    ),
    Case(
        f"{T}test_bails_with_invalid_zipfile[test.whl-bdist_wheel]",
        {},
        WHEEL,
        _bytes(b"this isn't a valid zip file"),
        400,
        "Invalid distribution file. File is not a zipfile",
    ),
    Case(
        f"{T}test_bails_with_invalid_tarfile[test.tar.gz]",
        {},
        SDIST,
        _bytes(b"Definitely not a valid tar file."),
        400,
        "Invalid distribution file. File is not a tarfile",
    ),
    Case(
        f"{T}test_bails_with_valid_tarfile_that_raises_exception[test.tar.gz]",
        {},
        SDIST,
        _truncated_plain_tar,
        400,
        "Invalid distribution file. None",
        "an uncompressed tar, truncated; PyPI's message ends in 'None'",
    ),
    Case(
        f"{T}test_bails_with_tarfile_that_raises_zlib_error",
        {},
        SDIST,
        _zlib_error,
        400,
        "Invalid distribution file. None",
    ),
    Case(
        f"{T}test_tarfile_validation_invalid[gz]",
        {},
        SDIST,
        lambda: tar_gz({"package/__init__.py": b"Dummy data file.", "package/module.py": b"Dummy data file."}),
        400,
        "Invalid distribution file. PKG-INFO not found at package/PKG-INFO",
    ),
    Case(
        f"{T}test_zip_no_pkg_info",
        {},
        ZIP,
        _zip({"package/something.txt": b"Just a placeholder file", "package/else.txt": b"Just a placeholder file"}),
        400,
        "Invalid distribution file. PKG-INFO not found at package/PKG-INFO",
        differs=ARCHIVE_FIRST,
    ),
    *(
        Case(
            f"{T}test_zipfile_unsupported_compression[{label}]",
            {},
            ZIP,
            lambda method=method: zip_bytes([("test-1.0/1.txt", b"1"), ("test-1.0/3.txt", b"3")], method=method),
            400,
            "Invalid distribution file. File does not use a supported compression type",
            differs=ARCHIVE_FIRST,
        )
        for method, label in ((zipfile.ZIP_BZIP2, "12"), (zipfile.ZIP_LZMA, "14"))
    ),
    Case(
        f"{T}test_zipfile_exceeds_compression_threshold",
        {},
        WHEEL,
        lambda: zip_bytes({**wheel_files(NAME, VERSION), "1.dat": b"0" * 65 * 2**20}),
        400,
        "Invalid distribution file. File exceeds compression ratio of 50",
        "Warehouse's test uses a .zip; a wheel takes the same branch and the gateway's early filename checks",
    ),
    Case(
        f"{T}test_wheel_no_wheel_file",
        {},
        WHEEL,
        _wheel(drop=("WHEEL",)),
        400,
        f"Invalid distribution file. WHEEL not found at {NAME}-{VERSION}.dist-info/WHEEL",
    ),
    Case(
        f"{T}test_invalid_wheel_filename",
        {},
        "cheese.whl",
        _wheel(),
        400,
        "Invalid distribution file. Unable to parse name and version from wheel filename",
        differs="the gateway parses the wheel filename before the body: "
        "'Invalid wheel filename (wrong number of parts): 'cheese''",
    ),
    Case(
        f"{T}test_incorrect_number_of_top_level_directories_sdist_tar",
        {},
        SDIST,
        lambda: tar_gz({**sdist_files(NAME, VERSION), "notpackage/test.txt": b"x"}),
        400,
        "Invalid distribution file. Incorrect number of top-level directories in sdist",
    ),
    Case(
        f"{T}test_incorrect_number_of_top_level_directories_sdist_zip",
        {},
        ZIP,
        lambda: zip_bytes({**sdist_files(NAME, VERSION), "notpackage/test.txt": b"2"}),
        400,
        "Invalid distribution file. Incorrect number of top-level directories in sdist",
        differs=ARCHIVE_FIRST,
    ),
    Case(
        f"{T}test_sparse_member_in_tarball[scan-pax]",
        {},
        SDIST,
        _sparse(tarfile.PAX_FORMAT),
        400,
        f"Invalid distribution file. tar archive not accepted: Sparse members are not allowed. {ARCHIVES}",
    ),
    Case(
        f"{T}test_sparse_member_in_tarball[scan-gnu]",
        {},
        SDIST,
        _sparse(tarfile.GNU_FORMAT),
        400,
        f"Invalid distribution file. tar archive not accepted: Sparse members are not allowed. {ARCHIVES}",
    ),
    Case(
        f"{T}test_tarfile_zipfile_polyglot[package.tar.gz]",
        {},
        SDIST,
        _polyglot,
        400,
        "Invalid distribution file. File is both a zip and a tar file",
        "one test, looping over both filenames",
    ),
    Case(
        f"{T}test_tarfile_zipfile_polyglot[package.zip]",
        {},
        ZIP,
        _polyglot,
        400,
        "Invalid distribution file. File is both a zip and a tar file",
        differs=ARCHIVE_FIRST,
    ),
    # the upload view
    *(
        Case(
            f"{U}test_fails_invalid_version[{value}]",
            {"protocol_version": (value,)},
            SDIST,
            _sdist(),
            400,
            "Unknown protocol version.",
        )
        for value in ("2", "3", "-1", "0", "dog", "cat")
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data0]",
        {"metadata_version": None},
        SDIST,
        _sdist(),
        400,
        f"None is not a valid metadata version. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data1]",
        {"metadata_version": ("-1",)},
        SDIST,
        _sdist(),
        400,
        f"'-1' is not a valid metadata version. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data2]",
        {"name": None},
        SDIST,
        _sdist(),
        400,
        f"'' is an invalid value for Name. Error: This field is required. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data3]",
        {"name": ("foo-",)},
        SDIST,
        _sdist(),
        400,
        "'foo-' is an invalid value for Name. Error: Start and end with a letter or numeral containing only ASCII "
        f"numeric and '.', '_' and '-'. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data4]",
        {"version": ("",)},
        SDIST,
        _sdist(),
        400,
        f"'version' is a required field. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data5]",
        {"version": ("dog",)},
        SDIST,
        _sdist(),
        400,
        f"'dog' is invalid for 'version'. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data6]",
        {"version": ("1.0.dev.a1",)},
        SDIST,
        _sdist(),
        400,
        f"'1.0.dev.a1' is invalid for 'version'. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data7]",
        {"filetype": None},
        SDIST,
        _sdist(),
        400,
        "Invalid value for filetype. Error: This field is required.",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data8]",
        {"filetype": ("bdist_wheel",), "pyversion": None},
        SDIST,
        _sdist(),
        400,
        "Invalid value for pyversion. Error: Python version is required for binary distribution uploads.",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data9]",
        {"filetype": ("bdist_wat",), "pyversion": ("1.0",)},
        SDIST,
        _sdist(),
        400,
        "Invalid value for filetype. Error: Use a known file type.",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data10]",
        {"pyversion": ("1.0",)},
        SDIST,
        _sdist(),
        400,
        "Invalid value for pyversion. Error: Use 'source' as Python version for an sdist.",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data11]",
        {"sha256_digest": None, "blake2_256_digest": None},
        SDIST,
        _sdist(),
        400,
        "Error: Include at least one message digest.",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data12]",
        {"sha256_digest": ("an invalid sha256 digest",), "blake2_256_digest": None},
        SDIST,
        _sdist(),
        400,
        "Invalid value for sha256_digest. Error: Use a valid, hex-encoded, SHA256 message digest.",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data13]",
        {"summary": ("A" * 513,)},
        SDIST,
        _sdist(),
        400,
        f"'summary' field must be 512 characters or less. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data14]",
        {"summary": ("A\nB",)},
        SDIST,
        _sdist(),
        400,
        f"'summary' must be a single line. {CORE}",
    ),
    Case(
        f"{U}test_fails_invalid_post_data[post_data15]",
        {"version": ("1.0+local",)},
        SDIST,
        _sdist(),
        400,
        "The use of local versions in '1.0+local' is not allowed. See https://packaging.python.org/en/latest/"
        "specifications/version-specifiers/#local-version-identifiers for more information.",
    ),
    Case(
        f"{U}test_fails_invalid_render[text/x-rst]",
        {
            "metadata_version": ("2.1",),
            "description": (".. invalid-directive::",),
            "description_content_type": ("text/x-rst",),
        },
        SDIST,
        _sdist(),
        400,
        f"The description failed to render for 'text/x-rst'. {DESCRIPTION_HELP}",
        "PyPI's help URL; Warehouse's test stubs it as /the/help/url/",
    ),
    Case(
        f"{U}test_fails_invalid_render[None]",
        {"description": (".. invalid-directive::",)},
        SDIST,
        _sdist(),
        400,
        f"The description failed to render in the default format of reStructuredText. {DESCRIPTION_HELP}",
    ),
    Case(f"{U}test_upload_fails_without_file", {}, SDIST, None, 400, "Upload payload does not have a file."),
    Case(
        f"{U}test_upload_fails_invalid_content_type[None]",
        {},
        SDIST,
        _sdist(),
        400,
        "Invalid distribution file.",
        content_type=None,
        differs="a file part without Content-Type is accepted: uv sends none, and Warehouse's form parser reads "
        "such a part as text/plain (gateway/validation.py _bad_content_type)",
    ),
    Case(
        f"{U}test_upload_fails_invalid_content_type[image/foobar]",
        {},
        SDIST,
        _sdist(),
        400,
        "Invalid distribution file.",
        content_type="image/foobar",
    ),
    Case(
        f"{U}test_upload_fails_with_legacy_type",
        {"filetype": ("bdist_dumb",), "pyversion": ("2.7",)},
        SDIST,
        _sdist(),
        400,
        "Invalid value for filetype. Error: Use a known file type.",
    ),
    Case(
        f"{U}test_upload_fails_with_legacy_ext",
        {},
        f"{NAME}-{VERSION}.tar.bz2",
        _bytes(b"BZh91AY&SY"),
        400,
        UNKNOWN_EXTENSION,
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_classifier",
        {},
        SDIST,
        _sdist(),
        400,
        f"'Invalid :: Classifier' is not a valid classifier. {CORE}",
        extra={"classifiers": ("Invalid :: Classifier",)},
    ),
    Case(
        f"{U}test_upload_fails_with_deprecated_classifier[deprecated_classifiers0-400 The classifier ...]",
        {},
        SDIST,
        _sdist(),
        400,
        "The classifier 'Natural Language :: Ukranian' has been deprecated, use one of "  # codespell:ignore
        f"['Natural Language :: Ukrainian'] instead. {CORE}",
        "a real deprecated classifier with a replacement; Warehouse's test patches in 'AA :: BB'",
        extra={"classifiers": ("Natural Language :: Ukranian",)},
    ),  # codespell:ignore
    Case(
        f"{U}test_upload_fails_with_deprecated_classifier[deprecated_classifiers1-400 The classifier ...]",
        {},
        SDIST,
        _sdist(),
        400,
        f"The classifier 'Topic :: Communications :: Chat :: AOL Instant Messenger' has been deprecated. {CORE}",
        "a real deprecated classifier without replacement",
        extra={"classifiers": ("Topic :: Communications :: Chat :: AOL Instant Messenger",)},
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_digest[digests0]",
        {"sha256_digest": None, "blake2_256_digest": None, "md5_digest": ("bad",)},
        SDIST,
        _sdist(),
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
        differs=MD5_FORMAT,
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_digest[digests1]",
        {"sha256_digest": ("bad" * 21 + "b",), "blake2_256_digest": None},
        SDIST,
        _sdist(),
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_digest[digests2]",
        {"sha256_digest": ("bad" * 21 + "b",), "blake2_256_digest": None, "md5_digest": ("bad",)},
        SDIST,
        _sdist(),
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
        differs=MD5_FORMAT,
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_digest[digests3]",
        {"sha256_digest": ("bad" * 21 + "b",), "blake2_256_digest": None},
        SDIST,
        _sdist(),
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
        "Warehouse adds the file's real md5; the gateway's form keeps the file's real blake2b out, as here",
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_digest[digests4]",
        {"md5_digest": ("bad",), "blake2_256_digest": None},
        SDIST,
        _sdist(),
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
        differs=MD5_FORMAT,
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_file",
        {},
        ZIP,
        _bytes(b"a"),
        400,
        "Invalid distribution file. File is not a zipfile",
        differs=ARCHIVE_FIRST,
    ),
    Case(
        f"{U}test_upload_fails_end_of_file_error",
        {
            "metadata_version": ("1.1",),
            "name": ("malformed",),
            "version": ("1.1",),
            "summary": ("This is my summary!",),
        },
        "malformed-1.1.tar.gz",
        _bytes(b"\x8b\x08\x00\x00\x00\x00\x00\x00\xff"),
        400,
        "Invalid distribution file. File is not a tarfile",
    ),
    *(
        Case(
            f"{U}test_upload_fails_with_wrong_filename_project_name[{pattern}-{filetype}-{project}]",
            {
                "name": (project,),
                "filetype": (filetype,),
                "pyversion": ("1.0" if filetype == "bdist_wheel" else "source",),
            },
            pattern.format(version=VERSION),
            _wheel(project) if filetype == "bdist_wheel" else _sdist(project),
            400,
            f"Start filename for {project!r} with {project.replace('-.', '-').replace('-', '_')!r}.",
        )
        for pattern, filetype, project in (
            ("nope-{version}.tar.gz", "sdist", "something_else"),
            ("nope-{version}-py3-none-any.whl", "bdist_wheel", "something_else"),
            ("nope-{version}.tar.gz", "sdist", "no"),
            ("nope-{version}-py3-none-any.whl", "bdist_wheel", "no"),
            ("no-way-{version}.tar.gz", "sdist", "no"),
            ("no_way-{version}-py3-none-any.whl", "bdist_wheel", "no"),
            ("foobar-{version}-py3-none-any.whl", "bdist_wheel", "foo-.bar"),
        )
    ),
    Case(
        f"{U}test_upload_fails_with_wrong_filename_version[wutang-6.6.6.tar.gz-...]",
        {"name": ("wutang",), "version": ("1.2.3",)},
        "wutang-6.6.6.tar.gz",
        _sdist("wutang", "1.2.3"),
        400,
        "Filename 'wutang-6.6.6.tar.gz' is invalid, should be 'wutang-1.2.3.tar.gz'.",
    ),
    Case(
        f"{U}test_upload_fails_with_wrong_filename_version[wutang-6.6.6-py3-none-any.whl-...]",
        {"name": ("wutang",), "version": ("1.2.3",), "pyversion": ("1.0",)},
        "wutang-6.6.6-py3-none-any.whl",
        _wheel("wutang", "1.2.3"),
        400,
        "Version in filename should be '1.2.3' not '6.6.6'.",
    ),
    *(
        Case(
            f"{U}test_upload_fails_with_invalid_filetype[{filetype}-{extension}]",
            {"filetype": (filetype,), "pyversion": ("1.0" if filetype == "bdist_wheel" else "source",)},
            f"{NAME}-{VERSION}{extension}",
            _bytes(b"a"),
            400,
            f"Invalid file extension: Extension {extension} is invalid for filetype {filetype}. {PEP_527}",
        )
        for filetype, extension in (("sdist", ".whl"), ("bdist_wheel", ".tar.gz"), ("bdist_wheel", ".zip"))
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_extension",
        {},
        f"{NAME}-{VERSION}.tar.wat",
        _bytes(b"a"),
        400,
        UNKNOWN_EXTENSION,
    ),
    *(
        Case(
            f"{U}test_upload_fails_with_unsafe_filename[{character}]",
            {},
            f"{character}{NAME}-{VERSION}.tar.gz",
            _sdist(),
            400,
            "Cannot upload a file with '/' or '\\' in the name.",
            "multipart clients may strip a path from the filename; send it as written",
        )
        for character in ("/", "\\")
    ),
    *(
        Case(
            f"{U}test_upload_fails_with_disallowed_in_filename[{character.encode('unicode_escape').decode()}]",
            {},
            f"{NAME}{character}-{VERSION}.tar.wat",
            _bytes(b"a"),
            400,
            CONTROL,
            "sent raw in the part header" if character in "\r\n\x00" else "",
            differs="a bare CR or LF in a part header is refused as a malformed line end before the filename is read"
            if character in "\r\n"
            else "",
        )
        for character in [*(chr(x) for x in range(32)), chr(127)]
    ),
    *(
        Case(
            f"{U}test_upload_fails_with_invalid_filename[{filename}]",
            {
                "name": ("foo",),
                "pyversion": ("cp34",) if filename.endswith(".whl") else ("source",),
                "filetype": ("bdist_wheel",) if filename.endswith(".whl") else ("sdist",),
            },
            filename,
            _wheel("foo") if filename.endswith(".whl") else _sdist("foo"),
            400,
            message,
        )
        for filename, message in (
            ("foo-1.0.whl", "Invalid wheel filename (wrong number of parts): 'foo-1.0'"),
            ("foo-1.0-q-py3-none-any.whl", "Invalid build number: q in 'foo-1.0-q-py3-none-any'"),
            (
                "foo-0.0.4test1-py3-none-any.whl",
                "Invalid wheel filename (invalid version): 'foo-0.0.4test1-py3-none-any'",
            ),
            ("something.tar.gz", "Invalid source distribution filename: something.tar.gz"),
        )
    ),
    *(
        Case(
            f"{U}test_upload_fails_with_unsupported_wheel_plat[{platform}]",
            {"pyversion": ("cp34",)},
            f"{NAME}-{VERSION}-cp34-none-{platform}.whl",
            _wheel(),
            400,
            f"Binary wheel '{NAME}-{VERSION}-cp34-none-{platform}.whl' has an unsupported platform tag "
            f"'{platform.split('.')[0]}'.",
            'accepted under policy.platform_tags = "any"',
        )
        for platform in (
            "linux_x86_64",
            "linux_x86_64.win32",
            "macosx_9_2_x86_64",
            "macosx_11_2_arm64",
            "macosx_16_2_arm64",
            "macosx_10_15_amd64",
            "macosx_27_0_arm64",
        )
    ),
    Case(
        f"{U}test_upload_fails_with_missing_record_wheel",
        {"pyversion": ("cp34",)},
        f"{NAME}-{VERSION}-cp34-none-any.whl",
        _wheel(drop=("RECORD",)),
        400,
        f"Wheel '{NAME}-{VERSION}-cp34-none-any.whl' does not contain the required RECORD file: "
        f"{NAME}-{VERSION}.dist-info/RECORD",
        "the wheel has the WHEEL file the real archive check wants",
    ),
    Case(
        f"{U}test_upload_fails_with_invalid_entrypoints_wheel",
        {"pyversion": ("cp34",)},
        f"{NAME}-{VERSION}-cp34-none-any.whl",
        _wheel(**{"entry_points.txt": b"[console_scripts]\n/bin/evil = evil:main\n"}),
        400,
        f"Wheel '{NAME}-{VERSION}-cp34-none-any.whl' has invalid entry points defined in the entry_points.txt file",
    ),
    Case(
        f"{U}test_upload_fails_with_missing_metadata_wheel",
        {"pyversion": ("cp34",)},
        f"{NAME}-{VERSION}-cp34-none-any.whl",
        _wheel(drop=("METADATA",)),
        400,
        f"Wheel '{NAME}-{VERSION}-cp34-none-any.whl' does not contain the required METADATA file: "
        f"{NAME}-{VERSION}.dist-info/METADATA",
    ),
    Case(
        f"{U}test_upload_fails_pep427[Some_Thing-...]",
        {"name": ("Some_Thing",)},
        "Some_Thing-1.0-py3-none-any.whl",
        _wheel("Some_Thing"),
        400,
        "Filename 'Some_Thing-1.0-py3-none-any.whl' should contain the normalized project name 'some_thing', "
        "not 'Some_Thing'.",
        differs="the gateway lets the escaped name differ in case: build backends wrote such names until 2025 "
        "(gateway/validation.py _check_wheel)",
    ),
    Case(
        f"{U}test_upload_fails_pep427[some.thing-...]",
        {"name": ("some.thing",)},
        "some.thing-1.0-py3-none-any.whl",
        _wheel("some.thing"),
        400,
        "Filename 'some.thing-1.0-py3-none-any.whl' should contain the normalized project name 'some_thing', "
        "not 'some.thing'.",
    ),
    *(
        Case(
            f"{U}test_upload_fails_pep625[{filename}-{version}-{expected}]",
            {"name": ("some_thing",), "version": (version,)},
            filename,
            _zip_sdist("some_thing", version) if filename.endswith(".zip") else _sdist("some_thing", version),
            400,
            f"Filename {filename!r} is invalid, should be {expected!r}.",
        )
        for filename, version, expected in (
            ("some_thing-1.0.post9.zip", "1.0.post9", "some_thing-1.0.post9.tar.gz"),
            ("some-thing-1.0.post9.tar.gz", "1.0.post9", "some_thing-1.0.post9.tar.gz"),
            ("some-thing-1.0-9.tar.gz", "1.0.post9", "some_thing-1.0.post9.tar.gz"),
            ("some_thing-1.0-9.tar.gz", "1.0.post9", "some_thing-1.0.post9.tar.gz"),
            ("some_thing-1.02.3.tar.gz", "1.2.3", "some_thing-1.2.3.tar.gz"),
            ("Some_Thing-1.0.tar.gz", "1.0", "some_thing-1.0.tar.gz"),
            ("some_thing-1.o-9.tar.gz", "1.0.post9", "some_thing-1.0.post9.tar.gz"),
        )
    ),
    *(
        Case(
            f"{U}test_upload_fails_missing_license_file_metadata_2_4[{version}-1.0-{filetype}-{mime}]",
            {"metadata_version": ("2.4",), "version": (version,), "summary": ("This is my summary!",)},
            WHEEL if filetype == "bdist_wheel" else SDIST,
            _wheel(**{"licenses/LICENSE.MIT": b"MIT"}) if filetype == "bdist_wheel" else _sdist(),
            400,
            f"License-File LICENSE does not exist in distribution file {_LICENSE_AT[filetype]}",
            "Warehouse's sdist is a fake_package-1.0/ tree; here the directory is named like the file",
            extra={"license_expression": ("MIT OR Apache-2.0",), "license_file": ("LICENSE", "LICENSE.MIT")},
        )
        for version in ("1.0", "v1.0")
        for filetype, mime in (("sdist", "application/tar"), ("bdist_wheel", "application/zip"))
    ),
    Case(
        f"{U}test_upload_fails_when_license_and_license_expression_are_present",
        {"metadata_version": ("2.4",), "summary": ("This is my summary!",)},
        WHEEL,
        _wheel(),
        400,
        "License is deprecated when License-Expression is present. Only License-Expression should be present. " + CORE,
        extra={"license_expression": ("MIT OR Apache-2.0",), "license": ("MIT LICENSE or Apache-2.0 License",)},
    ),
    Case(
        "test_submit",
        {":action": ("submit",)},
        SDIST,
        _sdist(),
        410,
        "Project pre-registration is no longer required or supported, upload your files instead.",
    ),
    Case(
        "test_doc_upload",
        {":action": ("doc_upload",)},
        SDIST,
        _sdist(),
        410,
        "Uploading documentation is no longer supported, we recommend using https://readthedocs.org/.",
    ),
]

_DB = "PyPI's database state"
SKIPPED: list[Skipped] = [
    Skipped(f"{T}test_open_dist_file_rejects_unsupported_extension", "internal helper; the extension check runs first"),
    Skipped(f"{T}test_yara_match_in_wheel", "YARA malware rules (PyPI's scanner, monkeypatched)"),
    Skipped(f"{T}test_yara_match_in_tarball", "YARA malware rules (PyPI's scanner, monkeypatched)"),
    Skipped(f"{T}test_sparse_member_in_tarball[no-scan-pax]", "PyPI's scan-disabling admin flag; same as scan-pax"),
    Skipped(f"{T}test_sparse_member_in_tarball[no-scan-gnu]", "PyPI's scan-disabling admin flag; same as scan-gnu"),
    *(
        Skipped(
            f"TestIsDuplicateFile::{name}",
            f"{_DB}: earlier files (the gateway's own answer: docs/errors.md file_exists)",
        )
        for name in ("test_is_duplicate_false_same_blake2", "test_is_duplicate_false")
    ),
    *(
        Skipped(f"{U}test_fails_with_invalid_names[{name}]", "PyPI's prohibited project names")
        for name in ("requirements.txt", "rrequirements.txt")
    ),
    *(
        Skipped(f"{U}test_fails_with_ultranormalized_names[{name}]", f"{_DB}: an existing project 'toasting'")
        for name in ("toast1ng", "toastlng", "t0asting", "toast-ing", "toast.ing", "toast_ing")
    ),
    *(
        Skipped(f"{U}test_fails_with_stdlib_names[{name}]", "PyPI's project-creation policy (stdlib module names)")
        for name in (
            "xml",
            "XML",
            "pickle",
            "PiCKle",
            "main",
            "future",
            "al",
            "uU",
            "test",
            "encodings.utf_8_sig",
            "distutils.command.build_clib",
            "xmlrpc",
            "xmlrpc.server",
            "xml.etree",
            "xml.etree.ElementTree",
            "xml.parsers",
            "xml.parsers.expat",
            "xml.parsers.expat.errors",
            "encodings.idna",
            "encodings",
            "CGIHTTPServer",
            "cgihttpserver",
        )
    ),
    Skipped(f"{U}test_upload_fails_for_second_sdist", f"{_DB}: one sdist per release"),
    Skipped(f"{U}test_upload_fails_with_too_large_file", "per-project upload limit; the gateway has its own 413"),
    Skipped(f"{U}test_upload_fails_with_too_large_project_size_default_limit", f"{_DB}: the project's total size"),
    Skipped(f"{U}test_upload_fails_with_too_large_project_size_custom_limit", f"{_DB}: a per-project limit"),
    Skipped(
        f"{U}test_upload_fails_with_oserror_on_metadata_write",
        "a failing write of PyPI's .metadata file (monkeypatched); the gateway's filename_too_long covers it",
    ),
    Skipped(f"{U}test_upload_fails_with_previously_used_filename", f"{_DB}: deleted filenames"),
    Skipped(f"{U}test_upload_fails_with_existing_filename_diff_content", f"{_DB}: an existing file"),
    Skipped(f"{U}test_upload_fails_with_diff_filename_same_blake2", f"{_DB}: an existing file"),
    Skipped(f"{U}test_upload_fails_without_user_permission", "ownership: the gateway's own roles (not_allowed)"),
    Skipped(f"{U}test_upload_fails_without_oidc_publisher_permission", "Trusted Publishing (OIDC)"),
    Skipped(f"{U}test_upload_fails_with_unverified_email_after_permission_check", "PyPI accounts' verified e-mail"),
    Skipped(f"{U}test_upload_fails_without_two_factor_after_permission_check", "PyPI accounts' 2FA requirement"),
    Skipped(f"{U}test_upload_permission_error_surfaces_before_email_check", "ownership and e-mail"),
    Skipped(f"{U}test_upload_new_project_fails_with_unverified_email", "PyPI accounts' verified e-mail"),
    Skipped(f"{U}test_upload_attestation_fails_without_oidc_publisher", "PEP 740 attestations (Sigstore, OIDC)"),
    *(
        Skipped(f"{U}test_upload_fails_attestation_error[{label}]", "PEP 740 attestations (Sigstore, OIDC)")
        for label in ("", "invalid_attestations1", "1", "invalid_attestations3", "invalid_attestations4")
    ),
    Skipped(f"{U}test_upload_fails_nonuser_identity_cannot_create_project", "Trusted Publishing (OIDC)"),
    *(
        Skipped(
            f"{U}test_upload_new_project_fails_ratelimited[{limiter}-{address}]", "PyPI's project-creation rate limits"
        )
        for limiter, address in (
            ("project.create.ip", "127.0.0.1"),
            ("project.create.user", "127.0.0.1"),
            ("project.create.user", None),
        )
    ),
    Skipped(f"{U}test_upload_for_company_organization_owned_project_fails_without_subscription", "organisations"),
    Skipped(f"{U}test_upload_fails_with_yara_match", "YARA malware rules (monkeypatched)"),
    Skipped(f"{U}test_upload_fails_release_is_closed", f"{_DB}: the 14-day rule on old releases"),
    Skipped(f"{U}test_upload_duplicate_error_on_closed_releases", f"{_DB}: an existing file on an old release"),
    Skipped(f"{U}test_private_classifiers_cannot_be_created", "a database constraint, not an upload"),
    Skipped(
        "test_missing_trailing_slash_redirect", "URL routing: the gateway never redirects an upload (twine aborts)"
    ),
]
