"""The copy of an upload the archive checks read: whole for anything but a wheel, a wheel's structure with large
members left as holes, and never a different verdict from the checks on the real file."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.archive import check_distribution
from gateway.errors import GatewayError
from gateway.upload.filecopy import HOLE_MIN, IN_MEMORY_MAX, FileCopy
from tests.dists import make_sdist, make_wheel


def copied(path: Path, *, sparse: bool, step: int) -> FileCopy:
    data = path.read_bytes()
    copy = FileCopy(sparse=sparse)
    for start in range(0, len(data), step):
        copy.write([memoryview(data)[start : start + step]])
    copy.finish()
    return copy


def verdict(path: Path, name: str, version: str, filename: str) -> str:
    filetype = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    try:
        check_distribution(path, filename=filename, filetype=filetype, project=name, version=version)
    except GatewayError as exc:
        return exc.reason
    return "ok"


@pytest.mark.parametrize("step", [1000, 65536, 10**7])
def test_a_wheel_copy_leaves_its_payload_out_and_keeps_what_the_checks_read(tmp_path: Path, step: int) -> None:
    wheel = make_wheel(tmp_path, "sparse-demo", "1.0", payload_size=3 * 2**20)
    copy = copied(wheel, sparse=True, step=step)
    try:
        assert os.path.getsize(copy.path) == wheel.stat().st_size
        assert os.stat(copy.path).st_blocks * 512 < 2**20, "the payload is a hole"
        with zipfile.ZipFile(wheel) as original, zipfile.ZipFile(copy.path) as sparse:
            assert sparse.namelist() == original.namelist()
            for info in original.infolist():
                if ".dist-info/" in info.filename or info.compress_size < HOLE_MIN:
                    assert sparse.read(info.filename) == original.read(info.filename)
        assert verdict(copy.path, "sparse-demo", "1.0", wheel.name) == verdict(wheel, "sparse-demo", "1.0", wheel.name)
        assert verdict(copy.path, "sparse-demo", "1.0", wheel.name) == "ok"
    finally:
        copy.close()


def test_anything_else_is_copied_whole(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "whole-demo", "1.0")
    copy = copied(sdist, sparse=False, step=100)
    try:
        assert copy.reader().read() == sdist.read_bytes()
    finally:
        copy.close()


def test_a_data_descriptor_stops_the_holes(tmp_path: Path) -> None:
    """A member whose sizes follow its data (written to an unseekable stream): copied whole from there on."""
    buffer = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            view = memoryview(data)  # type: ignore[arg-type]
            buffer.write(view)
            return len(view)

    with zipfile.ZipFile(Unseekable(), "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("streamed_demo/big.bin", os.urandom(2 * HOLE_MIN))
        archive.writestr("streamed_demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: streamed-demo\n")
    path = tmp_path / "streamed_demo-1.0-py3-none-any.whl"
    path.write_bytes(buffer.getvalue())
    copy = copied(path, sparse=True, step=4096)
    try:
        assert Path(copy.path).read_bytes() == path.read_bytes()
    finally:
        copy.close()


MUTATIONS = st.lists(st.tuples(st.integers(0, 10**7), st.binary(min_size=1, max_size=8)), max_size=4)


@settings(max_examples=150, deadline=None)
@given(MUTATIONS, st.integers(1, 200_000), st.booleans())
@example(mutations=[(244, b"\x01"), (1179, b"\x00\x08")], step=1, big=False)  # a UTF-8 flag on a non-UTF-8 name
@example(mutations=[(370, b"\x00" * 5)], step=1, big=True)  # a ZIP64 local size no longer the sentinel
def test_damaged_wheels_are_never_judged_better_on_the_copy(
    tmp_path_factory: pytest.TempPathFactory, mutations: list[tuple[int, bytes]], step: int, big: bool
) -> None:
    directory = tmp_path_factory.mktemp("damaged")
    wheel = make_wheel(directory, "damaged-demo", "1.0", payload_size=2 * HOLE_MIN if big else 0)
    data = bytearray(wheel.read_bytes())
    for offset, patch in mutations:
        at = offset % len(data)
        data[at : at + len(patch)] = patch
    wheel.write_bytes(bytes(data))
    copy = copied(wheel, sparse=True, step=step)
    try:
        on_file = verdict(wheel, "damaged-demo", "1.0", wheel.name)
        on_copy = verdict(copy.path, "damaged-demo", "1.0", wheel.name)
        assert on_copy == on_file or on_file != "ok", (on_file, on_copy)
        if on_file != "ok":
            assert on_copy != "ok", "a file the checks refuse must be refused on its copy too"
    finally:
        copy.close()


def test_a_small_copy_stays_in_memory(tmp_path: Path) -> None:
    """No file system for a small upload's copy: creating and dropping a temporary file cost more than its checks."""
    wheel = make_wheel(tmp_path, "small-demo", "1.0", payload_size=10 * 1024)
    assert wheel.stat().st_size <= IN_MEMORY_MAX
    copy = copied(wheel, sparse=True, step=4096)
    try:
        assert os.readlink(copy.path).startswith("/memfd:")
        assert Path(copy.path).read_bytes() == wheel.read_bytes()
        assert verdict(copy.path, "small-demo", "1.0", wheel.name) == "ok"
    finally:
        copy.close()


@pytest.mark.parametrize("sparse", [True, False])
def test_a_copy_that_outgrows_memory_moves_to_a_temporary_file(tmp_path: Path, sparse: bool) -> None:
    """Memory held per upload stays bounded: past IN_MEMORY_MAX (holes counted) the copy is on disk, with the same
    bytes as if it had been there from the start."""
    wheel = make_wheel(tmp_path, "growing-demo", "1.0", payload_size=IN_MEMORY_MAX + 4096)
    copy = copied(wheel, sparse=sparse, step=100_000)
    try:
        assert not os.readlink(copy.path).startswith("/memfd:")
        assert os.path.getsize(copy.path) == wheel.stat().st_size
        if sparse:
            assert os.stat(copy.path).st_blocks * 512 < IN_MEMORY_MAX, "the payload is still a hole"
        else:
            assert copy.reader().read() == wheel.read_bytes()
        assert verdict(copy.path, "growing-demo", "1.0", wheel.name) == "ok"
    finally:
        copy.close()
