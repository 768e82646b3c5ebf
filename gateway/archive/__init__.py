"""The distribution file itself, checked before the index may keep it: PyPI's `_is_valid_dist_file` and the
wheel checks that follow it, in PyPI's order and words, then what an index in front of pip needs on top
(members outside the archive, links, device files, metadata naming another project).

Pure and synchronous: it reads a complete file on disk, so the caller runs it in a thread once the digests
matched. A wheel is judged on its central directory, the framing of its records and a few small members; its
payload is never decompressed. A gzip stream has no index, so an sdist is inflated once, front to back, keeping
nothing but the member headers and PKG-INFO (PyPI inflates it whole too, to list its members).

`check_distribution` tells the kind of file and hands it to `zip_check` or `tar_check`; what they share is in
`shared`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from gateway.archive.shared import DistInfo, invalid
from gateway.archive.tar_check import TarCheck, is_tarfile
from gateway.archive.zip_check import ZipCheck

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
        is_tar = is_tarfile(probed)
    if is_zip and is_tar:
        raise invalid("File is both a zip and a tar file", "polyglot_archive")
    if filename.endswith((".whl", ".zip")):
        if not is_zip:
            raise invalid("File is not a zipfile", "not_a_zip")
        return ZipCheck(path, filename, project, version, license_files).run()
    if not filename.endswith(".tar.gz"):
        raise ValueError(f"not a distribution filename: {filename!r}")
    if not is_tar:
        raise invalid("File is not a tarfile", "not_a_tar")
    return TarCheck(path, filename, filetype, project, version, license_files).run()
