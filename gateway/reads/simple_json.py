"""PEP 691 JSON pages: built from the links of an index's HTML page, or relayed from the index's own JSON.

Either way the output holds only the keys PEP 691, 700 and 714 define, every file URL mapped as the HTML
rewriter maps links (`rewrite.public_link`), and PEP 700's `size` and `upload-time` filled in from what the
gateway recorded when the index does not give them. `api-version` is 1.1 only when every file has its size
(PEP 700 makes `size` mandatory there), else 1.0 with whatever is known.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from gateway.reads.paths import IndexLayout
from gateway.reads.rewrite import FileLink, public_link


@dataclass(frozen=True)
class Known:
    """What the gateway recorded of a file it delivered."""

    size: int
    uploaded: float


def project_json(name: str, files: Iterable[FileLink], known: Mapping[str, Known]) -> bytes:
    """The PEP 691 project page for the files an HTML page listed (URLs already the gateway's)."""
    entries = []
    for link in files:
        entry: dict[str, Any] = {"filename": link.filename, "url": link.url, "hashes": dict(link.hashes)}
        if link.requires_python is not None:
            entry["requires-python"] = link.requires_python
        if link.core_metadata:
            entry["core-metadata"] = entry["dist-info-metadata"] = link.core_metadata
        if link.gpg_sig is not None:
            entry["gpg-sig"] = link.gpg_sig
        if link.yanked is not None:
            entry["yanked"] = link.yanked or True
        entries.append(entry)
    return _project(name, entries, known)


def relay_project_json(
    name: str, body: bytes, page_url: str, layout: IndexLayout, public_url: str, known: Mapping[str, Known]
) -> bytes:
    """The index's own PEP 691 project page, rewritten; raises ValueError for one that is not."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ValueError("not a PEP 691 project page")
    entries = []
    for item in data["files"]:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("filename"), str)
            or not isinstance(item.get("url"), str)
        ):
            continue
        url = public_link(item["url"], page_url, layout, public_url)
        if url is None:
            continue
        entry: dict[str, Any] = {"filename": item["filename"], "url": url}
        hashes = item.get("hashes")
        entry["hashes"] = {str(k): str(v) for k, v in hashes.items()} if isinstance(hashes, dict) else {}
        for key, kinds in _FILE_KEYS.items():
            value = item.get(key)
            if value is not None and isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
                entry[key] = value
        entries.append(entry)
    return _project(name, entries, known)


def root_json(projects: Iterable[str]) -> bytes:
    """The PEP 691 root page: each listed project's name."""
    return _dump({"meta": {"api-version": "1.0"}, "projects": [{"name": name} for name in projects]})


def relay_root_json(body: bytes) -> list[str]:
    """The project names of the index's own PEP 691 root page; raises ValueError for one that is not."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("projects"), list):
        raise ValueError("not a PEP 691 root page")
    return [item["name"] for item in data["projects"] if isinstance(item, dict) and isinstance(item.get("name"), str)]


_FILE_KEYS: dict[str, tuple[type, ...]] = {
    "requires-python": (str,),
    "core-metadata": (bool, dict),
    "dist-info-metadata": (bool, dict),
    "gpg-sig": (bool,),
    "yanked": (bool, str),
    "size": (int,),
    "upload-time": (str,),
}


def _project(name: str, entries: list[dict[str, Any]], known: Mapping[str, Known]) -> bytes:
    for entry in entries:
        record = known.get(entry["filename"].lower())
        if record is not None:
            entry.setdefault("size", record.size)
            entry.setdefault("upload-time", upload_time(record.uploaded))
    complete = all(isinstance(entry.get("size"), int) for entry in entries)
    return _dump(
        {
            "meta": {"api-version": "1.1" if complete else "1.0"},
            "name": name,
            "files": entries,
            "versions": versions(entry["filename"] for entry in entries),
        }
    )


def versions(filenames: Iterable[str]) -> list[str]:
    """PEP 700's `versions`: every version a distribution filename names, in version order."""
    found: dict[Version, str] = {}
    for filename in filenames:
        try:
            if filename.endswith(".whl"):
                version = parse_wheel_filename(filename)[1]
            elif filename.endswith((".tar.gz", ".zip")):
                version = parse_sdist_filename(filename)[1]
            else:
                continue
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue
        found.setdefault(version, str(version))
    return [found[version] for version in sorted(found)]


def upload_time(timestamp: float) -> str:
    """PEP 700's format: ISO 8601 in UTC with a `Z`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
