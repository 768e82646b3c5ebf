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
from collections.abc import Sequence
from pathlib import Path

from gateway.archive.shared import DistInfo, invalid
from gateway.archive.tar_check import TarCheck, is_tarfile
from gateway.archive.zip_check import ZipCheck


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
