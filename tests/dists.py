"""Build real, installable wheels and sdists for the tests (no build backend needed)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name

STEP = 1024 * 1024


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test package {name}\n".encode()


def make_wheel(directory: Path, name: str, version: str, *, payload_size: int = 0, seed: bytes = b"") -> Path:
    """A py3-none-any wheel with a module and `payload_size` random (incompressible) bytes stored."""
    stem = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    module = canonicalize_name(name).replace("-", "_")
    path = directory / f"{stem}-py3-none-any.whl"
    info = f"{stem}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\nSEED = {seed!r}\n".encode(),
        f"{info}/METADATA": _metadata(name, version),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{arcname},{_record_hash(data)},{len(data)}" for arcname, data in files.items()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            zf.writestr(arcname, data)
        if payload_size:
            digest = hashlib.sha256()
            with zf.open(f"{module}/payload.bin", "w", force_zip64=True) as out:
                left = payload_size
                while left:
                    block = os.urandom(min(STEP, left))
                    digest.update(block)
                    out.write(block)
                    left -= len(block)
            encoded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            record.append(f"{module}/payload.bin,sha256={encoded},{payload_size}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def make_sdist(directory: Path, name: str, version: str) -> Path:
    """A PEP 625 sdist: `{normalized_name}-{version}.tar.gz` with PKG-INFO at the top."""
    stem = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    path = directory / f"{stem}.tar.gz"
    files = {
        "PKG-INFO": _metadata(name, version),
        "pyproject.toml": b'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
    }
    with tarfile.open(path, "w:gz") as tar:
        for arcname, data in files.items():
            member = tarfile.TarInfo(f"{stem}/{arcname}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(STEP):
            digest.update(block)
    return digest.hexdigest()
