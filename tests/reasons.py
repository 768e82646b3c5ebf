"""The reason codes each pure check may give, with the fix each asks for. Nothing in the gateway reads these:
the client gets the code and PyPI's message, and docs/errors.md has the fixes. The unit tests check that their
cases produce every code here and no other (test_validation, test_dist_metadata, test_archive)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.validation import MAX_FILENAME_LENGTH

VALIDATION_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "invalid_action": "Send ':action=file_upload', as twine does; other actions are disabled on this index.",
        "doc_upload_removed": "Host documentation elsewhere, for example on https://readthedocs.org/.",
        "submit_removed": "Skip pre-registration: upload the distribution files directly.",
        "duplicate_field": "Send each single-valued field (name, version, digests, :action, ...) only once.",
        "invalid_protocol_version": "Send protocol_version=1 or leave the field out.",
        "invalid_name": "Use a name of ASCII letters, digits, '.', '_' and '-', starting and ending alphanumeric.",
        "invalid_filetype": "Send filetype=bdist_wheel for a wheel or filetype=sdist for a source distribution.",
        "invalid_digest": "Send md5_digest as 32 and sha256_digest or blake2_256_digest as 64 hexadecimal digits.",
        "invalid_pyversion": "Send pyversion=source for an sdist and a Python tag such as py3 for a wheel.",
        "missing_digest": "Send at least one of sha256_digest, blake2_256_digest or md5_digest.",
        "invalid_metadata_version": "Build with a tool that writes metadata version 1.0, 1.1, 1.2 or 2.1 to 2.5.",
        "invalid_version": "Send a PEP 440 version, such as 1.0 or 2.1.0rc1.",
        "local_version": "Drop the local label ('+...') from the version; it is for private builds only.",
        "unsafe_filename": "Name the file without control or non-ASCII characters, '/', '\\' or '..'.",
        "filename_too_long": f"Shorten the filename to at most {MAX_FILENAME_LENGTH} characters.",
        "invalid_extension": "Upload wheels as .whl and source distributions as .tar.gz (PEP 527, PEP 625).",
        "invalid_content_type": "Send the file part as application/octet-stream (or without a Content-Type).",
        "invalid_filename": "Upload the file under the name the build tool gave it (a valid wheel or sdist name).",
        "ambiguous_filename": "Name the wheel as build tools do: the version after the first '-' starts with a digit.",
        "name_mismatch": "Make the form's name and the project name in the filename the same project.",
        "unnormalized_filename": "Rename the file with the normalized project name, as the message says (PEP 427/625).",
        "version_mismatch": "Make the form's version and the version in the filename the same.",
    }
)

METADATA_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "duplicate_field": "Send each single-valued metadata field, and each project URL label, only once.",
        "invalid_metadata_version": "Build with a tool that writes metadata version 1.0, 1.1, 1.2 or 2.1 to 2.5.",
        "invalid_name": "Use a name of ASCII letters, digits, '.', '_' and '-', starting and ending alphanumeric.",
        "invalid_version": "Send a PEP 440 version, such as 1.0 or 2.1.0rc1.",
        "local_version": "Drop the local label ('+...') from the version; it is for private builds only.",
        "invalid_summary": "Keep the summary to one line of at most 512 characters.",
        "invalid_description_content_type": "Use text/plain, text/x-rst or text/markdown (UTF-8; GFM or CommonMark).",
        "invalid_description": "Fix the description's markup so that it renders (try `twine check`).",
        "invalid_classifier": "Use classifiers from https://pypi.org/classifiers/ (no Private :: ones).",
        "deprecated_classifier": "Replace the deprecated classifier, as the message says.",
        "invalid_license": "Use License-Expression alone (PEP 639): drop License, or fix the SPDX expression.",
        "invalid_license_file": "List License-File paths relative to the project root, with '/', no '..' or globs.",
        "invalid_email": "Give valid e-mail addresses in Author-email and Maintainer-email.",
        "invalid_url": "Give http(s) URLs for Home-page, Download-URL and each Project-URL (label <= 32 chars).",
        "invalid_dependency": "Give valid requirements (PEP 508), without direct URLs, and a valid Requires-Python.",
        "invalid_dynamic": "List only core-metadata fields other than Name and Version as Dynamic.",
        "invalid_metadata": "Fix the core metadata as the message says.",
        "unsupported_platform": "Build for a platform PyPI accepts (manylinux, musllinux, macOS, Windows, ...).",
    }
)

ARCHIVE_REASONS: Mapping[str, str] = MappingProxyType(
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
