"""Distribution files as bytes, valid or broken one way at a time, for the archive and Warehouse-case tests."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterable, Mapping

from packaging.utils import canonicalize_name

Files = Mapping[str, bytes]


def stem(name: str, version: str) -> str:
    """`{normalized name}-{version}`, as wheel and sdist filenames and their directories spell it."""
    return f"{canonicalize_name(name).replace('-', '_')}-{version}"


def core_metadata(name: str, version: str, extra: str = "") -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: a test\n{extra}".encode()


def wheel_files(name: str = "demo-pkg", version: str = "1.0", *, metadata: bytes | None = None) -> dict[str, bytes]:
    """A wheel's members: a module, WHEEL, METADATA and a RECORD listing them all."""
    info = f"{stem(name, version)}.dist-info"
    files = {
        f"{canonicalize_name(name).replace('-', '_')}/__init__.py": b"VALUE = 1\n",
        f"{info}/METADATA": core_metadata(name, version) if metadata is None else metadata,
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{member},,\n" for member in [*files, f"{info}/RECORD"]).encode()
    return files


def zip_bytes(
    files: Files | Iterable[tuple[str | zipfile.ZipInfo, bytes]], *, method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """A zip of `files`; ZipInfo keys carry their own attributes (links, compression)."""
    buffer = io.BytesIO()
    items = files.items() if isinstance(files, Mapping) else files
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for member, data in items:
            archive.writestr(member, data)
    return buffer.getvalue()


def wheel(name: str = "demo-pkg", version: str = "1.0", *, metadata: bytes | None = None) -> bytes:
    return zip_bytes(wheel_files(name, version, metadata=metadata))


def sdist_files(name: str = "demo-pkg", version: str = "1.0", *, pkg_info: bytes | None = None) -> dict[str, bytes]:
    top = stem(name, version)
    return {
        f"{top}/PKG-INFO": core_metadata(name, version) if pkg_info is None else pkg_info,
        f"{top}/pyproject.toml": b'[project]\nname = "demo"\n',
        f"{top}/LICENSE.MIT": b"MIT License\n",
    }


def tar_member(name: str, data: bytes = b"", **attributes: object) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    for key, value in attributes.items():
        setattr(member, key, value)
    return member, data


def tar_gz(
    members: Files | Iterable[tuple[tarfile.TarInfo, bytes]],
    *,
    tar_format: int = tarfile.PAX_FORMAT,
    mode: str = "w:gz",
) -> bytes:
    """A gzip-compressed tar (or, with mode="w", a plain one) of `members`."""
    buffer = io.BytesIO()
    items = [tar_member(name, data) for name, data in members.items()] if isinstance(members, Mapping) else members
    with tarfile.open(fileobj=buffer, mode=mode, format=tar_format) as archive:
        for member, data in items:
            archive.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def sdist(name: str = "demo-pkg", version: str = "1.0", *, pkg_info: bytes | None = None) -> bytes:
    return tar_gz(sdist_files(name, version, pkg_info=pkg_info))
