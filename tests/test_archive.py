from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import struct
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.archive import check_distribution
from gateway.archive.shared import MAX_MEMBER_READ, DistInfo
from gateway.archive.tar_check import is_tarfile
from gateway.errors import GatewayError
from tests.archives import (
    core_metadata,
    sdist,
    sdist_files,
    tar_gz,
    tar_member,
    wheel,
    wheel_files,
    zip_bytes,
)
from tests.dists import make_sdist, make_wheel
from tests.reasons import ARCHIVE_REASONS as REASONS

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
SDIST = "demo_pkg-1.0.tar.gz"
ZIP_SDIST = "demo_pkg-1.0.zip"
INFO = "demo_pkg-1.0.dist-info"
TOP = "demo_pkg-1.0"
ARCHIVES = "See https://docs.pypi.org/archives for more information"
MiB = 1024 * 1024


def check(
    tmp_path: Path, data: bytes, filename: str = WHEEL, *, license_files: tuple[str, ...] = (), version: str = "1.0"
) -> DistInfo:
    path = tmp_path / "upload"
    path.write_bytes(data)
    filetype = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    return check_distribution(
        path, filename=filename, filetype=filetype, project="Demo-Pkg", version=version, license_files=license_files
    )


def without(files: dict[str, bytes], *names: str) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name not in names}


def wheel_with(**changes: bytes) -> bytes:
    """A valid wheel with dist-info members replaced or added (keys use '_' for '.', e.g. entry_points_txt)."""
    files = wheel_files()
    files.update({f"{INFO}/{key.replace('_txt', '.txt')}": data for key, data in changes.items()})
    return zip_bytes(files)


def set_zip_flag(data: bytes, name: str, flag: int) -> bytes:
    """Set a general-purpose flag bit of member `name` in its local header and its central-directory entry."""
    patched = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos, position = archive.infolist(), archive.start_dir
    for info in infos:
        if info.filename == name:
            for offset in (info.header_offset + 6, position + 8):
                (flags,) = struct.unpack_from("<H", patched, offset)
                struct.pack_into("<H", patched, offset, flags | flag)
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", patched, position + 28)
        position += 46 + name_length + extra_length + comment_length
    return bytes(patched)


def local_size_off_by_one(data: bytes) -> bytes:
    patched = bytearray(data)
    (size,) = struct.unpack_from("<I", patched, 18)
    struct.pack_into("<I", patched, 18, size + 1)
    return bytes(patched)


def zip64_wheel() -> bytes:
    """A valid wheel whose first member's local header carries its sizes in a ZIP64 extra (sentinels in the
    32-bit fields), as zipfile writes members it cannot size up front."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, (name, data) in enumerate(wheel_files().items()):
            with archive.open(name, "w", force_zip64=number == 0) as member:
                member.write(data)
    return buffer.getvalue()


def zip64_local_size_not_the_sentinel(data: bytes) -> bytes:
    """The ZIP64 extra still says the right size, but the 32-bit field no longer defers to it: a streaming reader
    takes the 32-bit field."""
    patched = bytearray(data)
    assert struct.unpack_from("<I", patched, 18)[0] == 0xFFFFFFFF
    struct.pack_into("<I", patched, 18, 0xFFFFFF00)
    return bytes(patched)


def streamed_zip() -> bytes:
    """A zip written to a pipe: its sizes follow each member in a data descriptor."""

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            self.data += chunk
            return len(chunk)

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w") as archive:
        for name, content in wheel_files().items():
            archive.writestr(name, content)
    return bytes(pipe.data)


def duplicate_member() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate name, and writes it
        # stored, and as long as the first: the central directory's sizes fit both local headers
        evil = (f"{INFO}/METADATA", core_metadata("evil-pkg", "1.0"))
        return zip_bytes([*wheel_files().items(), evil], method=zipfile.ZIP_STORED)


def zip_member(name: str, *, mode: int = 0, comment: bytes = b"") -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    info.comment = comment
    return info


def bad_crc_metadata() -> bytes:
    files = wheel_files()
    data = zip_bytes(files, method=zipfile.ZIP_STORED)
    at = data.index(files[f"{INFO}/METADATA"])
    return data[:at] + b"X" + data[at + 1 :]


def zlib_error_tar() -> bytes:
    """The first tar block in one gzip member, then a member whose DEFLATE block type is reserved."""
    plain = tar_gz({f"{TOP}/PKG-INFO": b"x"}, mode="w")
    return gzip.compress(plain[:512], mtime=0) + bytes.fromhex("1f8b080000000000000307")


def sparse_tar(tar_format: int) -> bytes:
    if tar_format == tarfile.PAX_FORMAT:
        sparse = tar_member(f"{TOP}/sparse.dat", b"x", pax_headers={"GNU.sparse.map": "0,1", "GNU.sparse.size": "10"})
    else:
        sparse = tar_member(f"{TOP}/sparse.dat", type=tarfile.GNUTYPE_SPARSE)
    pkg_info = tar_member(f"{TOP}/PKG-INFO", core_metadata("demo-pkg", "1.0"))
    return tar_gz([pkg_info, sparse], tar_format=tar_format)


def sdist_with(*extra: tuple[tarfile.TarInfo, bytes], files: dict[str, bytes] | None = None) -> bytes:
    members = [tar_member(name, data) for name, data in (sdist_files() if files is None else files).items()]
    return tar_gz([*members, *extra])


def polyglot() -> bytes:
    return sdist() + zip_bytes({"PKG-INFO": b"x"})


def not_accepted(kind: str, detail: str) -> str:
    return f"Invalid distribution file. {kind} archive not accepted: {detail}. {ARCHIVES}"


Build = Callable[[], bytes]
REFUSED = [
    # the kind of file
    pytest.param(WHEEL, lambda: b"this isn't a valid zip file", (), "not_a_zip", "File is not a zipfile", id="not-zip"),
    pytest.param(WHEEL, lambda: b"", (), "not_a_zip", "File is not a zipfile", id="empty-wheel"),
    pytest.param(ZIP_SDIST, lambda: b"a", (), "not_a_zip", "File is not a zipfile", id="not-zip-sdist"),
    pytest.param(SDIST, lambda: b"Definitely not a valid tar file.", (), "not_a_tar", "File is not a tarfile"),
    pytest.param(SDIST, lambda: b"", (), "not_a_tar", "File is not a tarfile", id="empty-sdist"),
    pytest.param(SDIST, lambda: b"\x8b\x08\x00\x00\x00\x00\x00\x00\xff", (), "not_a_tar", "File is not a tarfile"),
    pytest.param(SDIST, lambda: sdist()[:40], (), "not_a_tar", "File is not a tarfile", id="truncated-first-header"),
    pytest.param(SDIST, polyglot, (), "polyglot_archive", "File is both a zip and a tar file", id="polyglot-tar"),
    pytest.param(ZIP_SDIST, polyglot, (), "polyglot_archive", "File is both a zip and a tar file", id="polyglot-zip"),
    pytest.param(WHEEL, polyglot, (), "polyglot_archive", "File is both a zip and a tar file", id="polyglot-whl"),
    # archives their readers give up on: PyPI's message ends in "None"
    pytest.param(SDIST, lambda: tar_gz(sdist_files(), mode="w")[:-10], (), "corrupt_archive", "None", id="plain-tar"),
    pytest.param(SDIST, lambda: sdist()[:-20], (), "corrupt_archive", "None", id="truncated-gzip"),
    pytest.param(SDIST, lambda: sdist()[:-4], (), "corrupt_archive", "None", id="truncated-gzip-trailer"),
    pytest.param(SDIST, zlib_error_tar, (), "corrupt_archive", "None", id="zlib-error"),
    pytest.param(SDIST, lambda: sdist() + b"garbage", (), "corrupt_archive", "None", id="data-after-gzip"),
    pytest.param(
        WHEEL,
        lambda: b"PK\x05\x06" + bytes(18),
        (),
        "missing_wheel_file",
        f"WHEEL not found at {INFO}/WHEEL",
        id="empty",
    ),
    pytest.param(WHEEL, lambda: wheel().replace(b"PK\x01\x02", b"PK\x01\x03"), (), "corrupt_archive", "None", id="cd"),
    pytest.param(WHEEL, bad_crc_metadata, (), "corrupt_archive", "None", id="bad-crc-of-a-member-read"),
    # zip bombs and compression
    pytest.param(
        WHEEL,
        lambda: zip_bytes({**wheel_files(), "demo_pkg/zeros.dat": bytes(65 * MiB)}),
        (),
        "compression_ratio",
        "File exceeds compression ratio of 50",
        id="zip-bomb",
    ),
    *(
        pytest.param(
            name,
            lambda method=method: zip_bytes(
                [*wheel_files().items(), (zip_member("demo_pkg/x.py"), b"1")], method=method
            ),
            (),
            "unsupported_compression",
            "File does not use a supported compression type",
            id=f"{label}-{name[-4:]}",
        )
        for method, label in ((zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma"))
        for name in (WHEEL, ZIP_SDIST)
    ),
    # wheel layout
    pytest.param(
        WHEEL,
        lambda: zip_bytes(without(wheel_files(), f"{INFO}/WHEEL")),
        (),
        "missing_wheel_file",
        f"WHEEL not found at {INFO}/WHEEL",
        id="no-WHEEL",
    ),
    pytest.param(
        "cheese.whl", wheel, (), "unparsable_wheel_filename", "Unable to parse name and version from wheel filename"
    ),
    # record framing
    pytest.param(WHEEL, lambda: wheel() + b"junk", (), "zip_framing", "Trailing data", id="trailing-data"),
    pytest.param(
        WHEEL, lambda: b"MZ" + bytes(30) + wheel(), (), "zip_framing", "Unknown record signature", id="prefix"
    ),
    pytest.param(WHEEL, streamed_zip, (), "zip_framing", "ZIP contains a data descriptor", id="data-descriptor"),
    pytest.param(
        WHEEL,
        lambda: zip_bytes([*wheel_files().items(), (zip_member("demo_pkg/a.py", comment=b"hi"), b"")]),
        (),
        "zip_framing",
        "Comment in central directory",
        id="member-comment",
    ),
    pytest.param(WHEEL, duplicate_member, (), "zip_framing", "Duplicate filename in local headers", id="duplicate"),
    pytest.param(
        WHEEL,
        lambda: zip_bytes({**wheel_files(), "demo_pkg/a\x01b.py": b""}),
        (),
        "zip_framing",
        "Invalid character in filename",
        id="unprintable-name",
    ),
    pytest.param(
        WHEEL, lambda: local_size_off_by_one(wheel()), (), "zip_framing", "Mis-matched data size", id="local-size"
    ),
    pytest.param(
        WHEEL,
        lambda: zip64_local_size_not_the_sentinel(zip64_wheel()),
        (),
        "zip_framing",
        "Mis-matched data size",
        id="zip64-local-size",
    ),
    # members outside the archive, links, encryption (the gateway's own rules)
    *(
        pytest.param(
            WHEEL,
            lambda name=name: zip_bytes({**wheel_files(), name: b"x"}),
            (),
            "unsafe_member",
            detail,
            id=f"zip-{label}",
        )
        for name, label, detail in (
            ("../evil.py", "traversal", "Member '../evil.py' has a '..' path component"),
            ("demo_pkg/../../evil.py", "inner-traversal", "Member 'demo_pkg/../../evil.py' has a '..' path component"),
            (
                "demo_pkg\\..\\evil.py",
                "backslash-traversal",
                "Member 'demo_pkg\\\\..\\\\evil.py' has a '..' path component",
            ),
            ("/etc/evil", "absolute", "Member '/etc/evil' has an absolute path"),
            ("C:/evil.py", "drive", "Member 'C:/evil.py' has an absolute path"),
        )
    ),
    pytest.param(
        WHEEL,
        lambda: zip_bytes([*wheel_files().items(), (zip_member("demo_pkg/link", mode=0o120777), b"/etc/passwd")]),
        (),
        "unsafe_member",
        "Member 'demo_pkg/link' is a symbolic link",
        id="zip-symlink",
    ),
    pytest.param(
        WHEEL,
        lambda: set_zip_flag(wheel(), "demo_pkg/__init__.py", 0x1),
        (),
        "unsafe_member",
        "Member 'demo_pkg/__init__.py' is encrypted",
        id="zip-encrypted",
    ),
    # wheel contents, in PyPI's order
    pytest.param(
        WHEEL,
        wheel,
        ("LICENSE",),
        "missing_license_file",
        f"License-File LICENSE does not exist in distribution file {WHEEL} at {INFO}/licenses/LICENSE",
        id="wheel-license-file",
    ),
    pytest.param(
        WHEEL,
        lambda: zip_bytes(without(wheel_files(), f"{INFO}/RECORD")),
        (),
        "missing_record",
        f"Wheel '{WHEEL}' does not contain the required RECORD file: {INFO}/RECORD",
        id="no-RECORD",
    ),
    *(
        pytest.param(
            WHEEL,
            lambda record=record: wheel_with(RECORD=record),
            (),
            "missing_record",
            f"Wheel '{WHEEL}' does not contain the required RECORD file: {INFO}/RECORD",
            id=f"RECORD-{label}",
        )
        for record, label in ((b"\xff\xfe", "not-utf8"), (b"a" * 200_000 + b",,\n", "field-over-csv-limit"))
    ),
    *(
        pytest.param(
            WHEEL,
            lambda content=content: wheel_with(entry_points_txt=content),
            (),
            "invalid_entry_points",
            f"Wheel '{WHEEL}' has invalid entry points defined in the entry_points.txt file",
            id=f"entry-points-{label}",
        )
        for content, label in (
            (b"[console_scripts]\n/bin/evil = evil:main\n", "path-in-script-name"),
            (b"[gui_scripts]\n..\\evil = evil:main\n", "gui-script"),
            (b"console_scripts = x\n", "no-section"),
            (b"[console_scripts]\na = x:y\na = x:z\n", "duplicate-name"),
            (b"[console_scripts]\nnot a delimiter: x\n", "colon-delimiter"),
            (b"\xff[console_scripts]\n", "not-utf8"),
        )
    ),
    pytest.param(
        WHEEL,
        lambda: zip_bytes(without(wheel_files(), f"{INFO}/METADATA")),
        (),
        "missing_metadata",
        f"Wheel '{WHEEL}' does not contain the required METADATA file: {INFO}/METADATA",
        id="no-METADATA",
    ),
    # the file's own metadata against its name
    pytest.param(
        WHEEL,
        lambda: wheel(metadata=core_metadata("other", "1.0")),
        (),
        "metadata_mismatch",
        f"{INFO}/METADATA names 'other', not the project 'Demo-Pkg'",
        id="METADATA-name",
    ),
    pytest.param(
        WHEEL,
        lambda: wheel(metadata=b"Metadata-Version: 2.1\nVersion: 1.0\n"),
        (),
        "metadata_mismatch",
        f"{INFO}/METADATA names no Name, not the project 'Demo-Pkg'",
        id="METADATA-without-name",
    ),
    pytest.param(
        WHEEL,
        lambda: wheel(metadata=core_metadata("demo-pkg", "2.0")),
        (),
        "metadata_mismatch",
        f"{INFO}/METADATA has '2.0', not the version '1.0'",
        id="METADATA-version",
    ),
    pytest.param(
        WHEEL,
        lambda: wheel(metadata=b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: one\n"),
        (),
        "metadata_mismatch",
        f"{INFO}/METADATA has 'one', not the version '1.0'",
        id="METADATA-bad-version",
    ),
    pytest.param(
        WHEEL,
        lambda: wheel(metadata=core_metadata("demo-pkg", "1.0", "Description: " + "x" * MAX_MEMBER_READ)),
        (),
        "member_too_large",
        f"{INFO}/METADATA is larger than 32 MiB",
        id="METADATA-too-large",
    ),
    # zip sdists (PyPI opens them before refusing their name)
    pytest.param(
        ZIP_SDIST,
        lambda: zip_bytes({"package/something.txt": b"x", "package/else.txt": b"y"}),
        (),
        "missing_pkg_info",
        "PKG-INFO not found at package/PKG-INFO",
        id="zip-no-PKG-INFO",
    ),
    pytest.param(
        ZIP_SDIST,
        lambda: zip_bytes({**sdist_files(), "notpackage/test.txt": b"2"}),
        (),
        "sdist_top_level",
        "Incorrect number of top-level directories in sdist",
        id="zip-two-top-level",
    ),
    pytest.param(
        ZIP_SDIST,
        lambda: zip_bytes({**sdist_files(), f"{TOP}/../evil": b"2"}),
        (),
        "unsafe_member",
        f"Member '{TOP}/../evil' has a '..' path component",
        id="zip-sdist-traversal",
    ),
    # tar sdists, in PyPI's order
    pytest.param(
        SDIST, lambda: sparse_tar(tarfile.PAX_FORMAT), (), "sparse_member", "Sparse members are not allowed", id="pax"
    ),
    pytest.param(
        SDIST, lambda: sparse_tar(tarfile.GNU_FORMAT), (), "sparse_member", "Sparse members are not allowed", id="gnu"
    ),
    pytest.param(
        SDIST,
        lambda: sdist_with(tar_member("notpackage/test.txt", b"x")),
        (),
        "sdist_top_level",
        "Incorrect number of top-level directories in sdist",
        id="two-top-level",
    ),
    pytest.param(
        SDIST,
        lambda: tar_gz({"PKG-INFO": core_metadata("demo-pkg", "1.0"), "setup.py": b""}),
        (),
        "sdist_top_level",
        "Incorrect number of top-level directories in sdist",
        id="no-top-level",
    ),
    pytest.param(
        SDIST,
        lambda: sdist_with(tar_member(f"/{TOP}/evil", b"x")),
        (),
        "sdist_top_level",
        "Incorrect number of top-level directories in sdist",
        id="absolute-and-relative",
    ),
    pytest.param(
        SDIST,
        lambda: tar_gz(without(sdist_files(), f"{TOP}/PKG-INFO")),
        (),
        "missing_pkg_info",
        f"PKG-INFO not found at {TOP}/PKG-INFO",
        id="no-PKG-INFO",
    ),
    pytest.param(
        SDIST,
        lambda: tar_gz({f"./{name}": data for name, data in sdist_files().items()}),
        (),
        "missing_pkg_info",
        f"PKG-INFO not found at {TOP}/PKG-INFO",
        id="dot-slash-names-like-pypi",
    ),
    pytest.param(
        SDIST,
        sdist,
        ("LICENSE",),
        "missing_license_file",
        f"License-File LICENSE does not exist in distribution file {SDIST} at {TOP}/LICENSE",
        id="sdist-license-file",
    ),
    *(
        pytest.param(SDIST, lambda extra=extra: sdist_with(extra), (), "unsafe_member", detail, id=f"tar-{label}")
        for extra, label, detail in (
            (
                tar_member(f"{TOP}/../../evil", b"x"),
                "traversal",
                f"Member '{TOP}/../../evil' has a '..' path component",
            ),
            (
                tar_member(f"{TOP}/link", type=tarfile.SYMTYPE, linkname="../../etc/passwd"),
                "symlink-outside",
                f"Member '{TOP}/link' links outside the sdist ('../../etc/passwd')",
            ),
            (
                tar_member(f"{TOP}/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
                "absolute-symlink",
                f"Member '{TOP}/link' links outside the sdist ('/etc/passwd')",
            ),
            (
                tar_member(f"{TOP}/link", type=tarfile.SYMTYPE, linkname=".."),
                "symlink-to-parent",
                f"Member '{TOP}/link' links outside the sdist ('..')",
            ),
            (
                tar_member(f"{TOP}/hard", type=tarfile.LNKTYPE, linkname="etc/passwd"),
                "hardlink-outside",
                f"Member '{TOP}/hard' links outside the sdist ('etc/passwd')",
            ),
            (
                tar_member(f"{TOP}/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
                "char-device",
                f"Member '{TOP}/dev' is a device, FIFO or other special file",
            ),
            (
                tar_member(f"{TOP}/disk", type=tarfile.BLKTYPE),
                "block-device",
                f"Member '{TOP}/disk' is a device, FIFO or other special file",
            ),
            (
                tar_member(f"{TOP}/fifo", type=tarfile.FIFOTYPE),
                "fifo",
                f"Member '{TOP}/fifo' is a device, FIFO or other special file",
            ),
        )
    ),
    pytest.param(
        SDIST,
        lambda: tar_gz({f"/{name}": data for name, data in sdist_files().items()}),
        (),
        "unsafe_member",
        f"Member '/{TOP}/PKG-INFO' has an absolute path",
        id="tar-absolute",
    ),
    pytest.param(
        SDIST,
        lambda: sdist_with(files={f"other-1.0/{name}": data for name, data in {"PKG-INFO": b"", "x": b""}.items()}),
        (),
        "sdist_directory_name",
        "The sdist's top-level directory 'other-1.0' should be 'demo_pkg-1.0'",
        id="top-level-named-for-another",
    ),
    pytest.param(
        SDIST,
        lambda: sdist_with(files={"demo_pkg/PKG-INFO": core_metadata("demo-pkg", "1.0"), "demo_pkg/setup.py": b""}),
        (),
        "sdist_directory_name",
        "The sdist's top-level directory 'demo_pkg' should be 'demo_pkg-1.0'",
        id="top-level-without-version",
    ),
    pytest.param(
        SDIST,
        lambda: sdist_with(
            tar_member(f"{TOP}/PKG-INFO", type=tarfile.SYMTYPE, linkname="PKG-INFO.real"),
            files=without(sdist_files(), f"{TOP}/PKG-INFO"),
        ),
        (),
        "missing_pkg_info",
        f"PKG-INFO at {TOP}/PKG-INFO is not a regular file",
        id="PKG-INFO-symlink",
    ),
    pytest.param(
        SDIST,
        lambda: sdist(pkg_info=core_metadata("other", "1.0")),
        (),
        "metadata_mismatch",
        f"{TOP}/PKG-INFO names 'other', not the project 'Demo-Pkg'",
        id="PKG-INFO-name",
    ),
    pytest.param(
        SDIST,
        lambda: sdist(pkg_info=core_metadata("demo-pkg", "1.1")),
        (),
        "metadata_mismatch",
        f"{TOP}/PKG-INFO has '1.1', not the version '1.0'",
        id="PKG-INFO-version",
    ),
    pytest.param(
        SDIST,
        lambda: sdist(pkg_info=core_metadata("demo-pkg", "1.0", "Description: " + "x" * MAX_MEMBER_READ)),
        (),
        "member_too_large",
        f"{TOP}/PKG-INFO is larger than 32 MiB",
        id="PKG-INFO-too-large",
    ),
]


@pytest.mark.parametrize(("filename", "build", "license_files", "reason", "message"), REFUSED)
def test_refused(
    tmp_path: Path, filename: str, build: Build, license_files: tuple[str, ...], reason: str, message: str | None
) -> None:
    with pytest.raises(GatewayError) as caught:
        check(tmp_path, build(), filename, license_files=license_files)
    error = caught.value
    assert (error.status, error.reason) == (400, reason)
    assert error.reason in REASONS
    if message is None:
        return
    if reason in ("zip_framing", "unsafe_member", "sparse_member"):
        message = not_accepted("tar" if filename.endswith(".tar.gz") else "ZIP", message)
    elif not message.startswith(("License-File", "Wheel '")):
        message = f"Invalid distribution file. {message}"
    assert error.message == message
    if reason == "corrupt_archive":
        assert error.hint.startswith("The archive could not be read: ")


def test_every_reason_is_documented_and_produced() -> None:
    assert {case.values[3] for case in REFUSED} == set(REASONS)
    assert all(text and "\n" not in text for text in REASONS.values())


ACCEPTED = [
    pytest.param(WHEEL, wheel, (), id="wheel"),
    pytest.param(WHEEL, lambda: wheel(metadata=core_metadata("Demo.Pkg", "1.0.0")), (), id="equivalent-name-version"),
    pytest.param(WHEEL, lambda: wheel_with(**{"licenses/LICENSE": b"MIT"}), ("LICENSE",), id="license-file"),
    pytest.param(
        WHEEL, lambda: wheel_with(entry_points_txt=b"[console_scripts]\ndemo.cli_2 = demo:main\n"), (), id="scripts"
    ),
    pytest.param(WHEEL, lambda: zip_bytes({**wheel_files(), "demo_pkg/zeros.dat": bytes(8 * MiB)}), (), id="ratio"),
    pytest.param(WHEEL, lambda: zip_bytes({**wheel_files(), "demo_pkg/": b""}), (), id="directory-entry"),
    pytest.param(WHEEL, zip64_wheel, (), id="zip64-local-header"),
    pytest.param(ZIP_SDIST, lambda: zip_bytes(sdist_files()), (), id="zip-sdist"),
    pytest.param(SDIST, sdist, ("LICENSE.MIT",), id="sdist"),
    pytest.param(
        SDIST,
        lambda: tar_gz({f"Demo-Pkg-1.0.0/{name.split('/', 1)[1]}": data for name, data in sdist_files().items()}),
        (),
        id="unnormalized-directory",
    ),
    pytest.param(
        SDIST,
        lambda: sdist_with(
            tar_member(f"{TOP}/src", type=tarfile.DIRTYPE),
            tar_member(f"{TOP}/src/link", type=tarfile.SYMTYPE, linkname="../LICENSE.MIT"),
            tar_member(f"{TOP}/hard", type=tarfile.LNKTYPE, linkname=f"{TOP}/LICENSE.MIT"),
        ),
        (),
        id="links-inside",
    ),
    pytest.param(SDIST, lambda: sdist() + bytes(512), (), id="zero-padding-after-gzip"),
]


@pytest.mark.parametrize(("filename", "build", "license_files"), ACCEPTED)
def test_accepted(tmp_path: Path, filename: str, build: Build, license_files: tuple[str, ...]) -> None:
    info = check(tmp_path, build(), filename, license_files=license_files)
    assert info.metadata["name"].lower().replace(".", "-") == "demo-pkg"
    assert info.metadata_path in info.names
    assert info.metadata_bytes.startswith(b"Metadata-Version: ")


def test_what_a_wheel_check_returns(tmp_path: Path) -> None:
    info = check(tmp_path, wheel())
    assert info.root == INFO
    assert info.metadata_path == f"{INFO}/METADATA"
    assert info.metadata == {"metadata_version": "2.1", "name": "demo-pkg", "version": "1.0", "summary": "a test"}
    assert info.names == frozenset(wheel_files())
    assert info.record_mismatch == ""


def test_what_an_sdist_check_returns(tmp_path: Path) -> None:
    info = check(tmp_path, sdist(), SDIST)
    assert (info.root, info.metadata_path) == (TOP, f"{TOP}/PKG-INFO")
    assert info.names == frozenset(sdist_files())


def test_record_mismatch_is_reported_not_refused(tmp_path: Path) -> None:
    """PyPI only e-mails the owners about it; the caller decides what to do with it."""
    files = {**wheel_files(), "demo_pkg/unlisted.py": b"", f"{INFO}/RECORD.jws": b"sig"}
    files[f"{INFO}/RECORD"] += b"demo_pkg/absent.py,,\n"
    info = check(tmp_path, zip_bytes(files))
    assert (
        info.record_mismatch
        == "RECORD does not list ['demo_pkg/unlisted.py']; RECORD lists absent ['demo_pkg/absent.py']"
    )


def test_payload_is_not_read(tmp_path: Path) -> None:
    """Like PyPI, only small dist-info members are decompressed: a payload's bad CRC goes unseen (pip sees it)."""
    files = {**wheel_files(), "demo_pkg/data.bin": b"payload" * 1000}
    data = zip_bytes(files, method=zipfile.ZIP_STORED)
    at = data.index(b"payload")
    check(tmp_path, data[:at] + b"X" + data[at + 1 :])


def test_real_builds_pass(tmp_path: Path) -> None:
    """The wheels and sdists the end-to-end tests upload, ZIP64 payload included."""
    built = make_wheel(tmp_path, "Demo-Pkg", "1.0", payload_size=100_000)
    check(tmp_path, built.read_bytes(), built.name)
    built = make_sdist(tmp_path, "Demo-Pkg", "1.0")
    check(tmp_path, built.read_bytes(), built.name)


def test_only_distribution_filenames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a distribution filename"):
        check(tmp_path, wheel(), "demo_pkg-1.0.exe")


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid wheel or sdist, then bytes flipped, cut or inserted."""
    filename, data = draw(st.sampled_from([(WHEEL, wheel()), (SDIST, sdist()), (ZIP_SDIST, zip_bytes(sdist_files()))]))
    mutable = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(mutable) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            mutable[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del mutable[at:]
            if not mutable:
                break
        else:
            mutable[at:at] = draw(st.binary(min_size=1, max_size=8))
    return filename, bytes(mutable)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "600")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=damaged())
def test_damaged_files_are_refused_or_accepted_never_crash(tmp_path: Path, case: tuple[str, bytes]) -> None:
    filename, data = case
    try:
        check(tmp_path, data, filename)
    except GatewayError as exc:
        assert exc.status == 400 and exc.reason in REASONS and "\n" not in exc.message


def _tar_probe_reference(data: bytes) -> bool:
    """What the probe must say: tarfile's own four readers, with the probe's handling of broken streams."""
    try:
        return tarfile.is_tarfile(io.BytesIO(data))
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return False


def _tar_kinds() -> list[bytes]:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as archive:
        member, content = tar_member("package/PKG-INFO", b"Name: package\n")
        archive.addfile(member, io.BytesIO(content))
    tar = plain.getvalue()
    return [
        tar,
        gzip.compress(tar),
        bz2.compress(tar),
        lzma.compress(tar),
        lzma.compress(tar, format=lzma.FORMAT_ALONE),  # legacy .lzma: no magic bytes, xz's reader takes it
        wheel(),
    ]


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "600")), deadline=None, database=None)
@given(
    data=st.one_of(
        st.sampled_from(_tar_kinds()),
        st.tuples(st.sampled_from(_tar_kinds()), st.sampled_from(_tar_kinds())).map(lambda pair: pair[0] + pair[1]),
        st.tuples(
            st.sampled_from([b"", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"]\x00\x00\x80\x00", b"PK\x03\x04"]),
            st.binary(max_size=600),
        ).map(lambda pair: pair[0] + pair[1]),
    )
)
def test_tar_probe_agrees_with_tarfile(data: bytes) -> None:
    """The probe skips the gzip and bzip2 readers on a file without their magic bytes (a wheel's probe was a
    quarter of its check); it must say what all four readers say, legacy .lzma and polyglots included."""
    assert is_tarfile(io.BytesIO(data)) is _tar_probe_reference(data)
