"""Build real, installable wheels and sdists for the tests (no build backend needed)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
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


class LargeWheel:
    """A real wheel whose one large member repeats `block`, produced as a stream: never held in memory.

    Written by hand (stored members, sizes in the local headers, no data descriptors) as build tools write
    them, so benchmarks upload files the archive checks accept, of any size, without building them first.
    """

    _payload_sums: dict[tuple[int, bytes], tuple[int, bytes]] = {}  # noqa: RUF012 - shared by wheels of a size

    def __init__(self, name: str, version: str, size: int, block: bytes) -> None:
        stem = f"{canonicalize_name(name).replace('-', '_')}-{version}"
        self.filename = f"{stem}-py3-none-any.whl"
        self.size, self._block = size, block
        payload_name = f"{canonicalize_name(name).replace('-', '_')}/payload.bin"
        crc, sha256 = self._sums()
        info = f"{stem}.dist-info"
        small = {
            f"{info}/METADATA": _metadata(name, version),
            f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
        record = [f"{payload_name},sha256={_b64(sha256)},{size}"]
        record += [f"{arcname},{_record_hash(data)},{len(data)}" for arcname, data in small.items()]
        small[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
        self.prefix = _local_header(payload_name, crc, size)
        entries = [(payload_name, crc, size, 0)]
        suffix = b""
        offset = len(self.prefix) + size
        for arcname, data in small.items():
            entries.append((arcname, zlib.crc32(data), len(data), offset + len(suffix)))
            suffix += _local_header(arcname, zlib.crc32(data), len(data)) + data
        directory = b"".join(_central_entry(*entry) for entry in entries)
        end = struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), offset + len(suffix), 0
        )
        self.suffix = suffix + directory + end
        self.length = len(self.prefix) + size + len(self.suffix)

    def _sums(self) -> tuple[int, bytes]:
        """The payload's CRC-32 and sha256, worked out once per size and block."""
        key = (self.size, hashlib.sha256(self._block).digest())
        if key not in self._payload_sums:
            crc, digest = 0, hashlib.sha256()
            for chunk in self._payload():
                crc = zlib.crc32(chunk, crc)
                digest.update(chunk)
            self._payload_sums[key] = (crc, digest.digest())
        return self._payload_sums[key]

    def _payload(self) -> Iterator[bytes]:
        left = self.size
        while left:
            chunk = self._block[: min(left, len(self._block))]
            left -= len(chunk)
            yield chunk

    def chunks(self) -> Iterator[bytes]:
        yield self.prefix
        yield from self._payload()
        yield self.suffix


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _local_header(name: str, crc: int, size: int) -> bytes:
    encoded = name.encode()
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, size, size, len(encoded), 0) + encoded


def _central_entry(name: str, crc: int, size: int, offset: int) -> bytes:
    encoded = name.encode()
    fields = (b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, size, size, len(encoded), 0, 0, 0, 0, 0o644 << 16, offset)
    return struct.pack("<4s6H3L5H2L", *fields) + encoded
