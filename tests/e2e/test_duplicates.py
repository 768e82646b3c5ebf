"""Re-uploads the PyPI way in front of pypiserver: identical bytes are a 200 no-op, different bytes a 400
"File already exists", so `twine upload --skip-existing` works."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, GatewayProcess, Index, twine
from tests.dists import make_wheel, sha256_of

PASSWORD = "duplicate checking password"
# twine 6.2 and later refuse --skip-existing for any index but PyPI's before sending anything
# (settings.verify_feature_capability); 6.1 is the last that asks the index, the way PyPI answers.
TWINE_SKIPPING = "twine==6.1.0"


@pytest.fixture(scope="module")
def old_twine() -> Path:
    venv = ROOT / ".venv" / "twine-6.1"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([PYTHON, "-m", "uv", "venv", "--python", sys.executable, str(venv)], check=True, timeout=120)
        subprocess.run(
            [PYTHON, "-m", "uv", "pip", "install", "--python", str(python), TWINE_SKIPPING],
            check=True,
            timeout=300,
        )
    return python


@pytest.fixture(scope="module")
def gw(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    gateway.add_user("dora", PASSWORD)
    yield gateway


def run_twine(python: Path, gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "twine", "upload", "--repository-url", f"{gw.url}/legacy/", "-u", "dora", "-p", PASSWORD]
        + ["--non-interactive", "--disable-progress-bar", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "500", "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"},
    )


def test_skip_existing_exits_0_for_files_already_uploaded(
    gw: GatewayProcess, index: Index, old_twine: Path, tmp_path: Path
) -> None:
    first = make_wheel(tmp_path, "dup-skip", "1.0")
    assert twine(gw.url, "dora", PASSWORD, first).returncode == 0
    (tmp_path / "next").mkdir()
    changed = make_wheel(tmp_path / "next", "dup-skip", "1.0", seed=b"other bytes")
    new = make_wheel(tmp_path / "next", "dup-skip", "1.1")
    result = run_twine(old_twine, gw, "--skip-existing", str(changed), str(new))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output
    assert "Skipping dup_skip-1.0-py3-none-any.whl because it appears to already exist" in output
    assert sha256_of(index.packages / first.name) == sha256_of(first)
    assert new.name in index.files()


def test_identical_reupload_is_a_200_no_op(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "dup-same", "1.0")
    assert twine(gw.url, "dora", PASSWORD, wheel).returncode == 0
    stamp = (index.packages / wheel.name).stat().st_mtime_ns
    again = twine(gw.url, "dora", PASSWORD, wheel)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (index.packages / wheel.name).stat().st_mtime_ns == stamp, "the index was written to again"


def test_changed_bytes_under_the_same_name_are_refused(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "dup-diff", "1.0")
    assert twine(gw.url, "dora", PASSWORD, wheel).returncode == 0
    original = sha256_of(wheel)
    (tmp_path / "changed").mkdir()
    changed = make_wheel(tmp_path / "changed", "dup-diff", "1.0", seed=b"changed")
    result = twine(gw.url, "dora", PASSWORD, changed)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "400" in output and "File already exists ('dup_diff-1.0-py3-none-any.whl', with blake2_256 hash" in output
    assert sha256_of(index.packages / wheel.name) == original


def test_a_file_placed_on_the_index_directly_is_seen(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "dup-direct", "1.0")
    (index.packages / wheel.name).write_bytes(wheel.read_bytes())
    refused = twine(gw.url, "dora", PASSWORD, wheel)
    output = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0 and "403" in output, "a project on the index is nobody's to claim"
    assert "upload-gateway project grant dup-direct dora" in output
    gw.cli("project", "grant", "dup-direct", "dora")
    assert twine(gw.url, "dora", PASSWORD, wheel).returncode == 0
    (tmp_path / "changed").mkdir()
    changed = make_wheel(tmp_path / "changed", "dup-direct", "1.0", seed=b"!")
    result = twine(gw.url, "dora", PASSWORD, changed)
    assert result.returncode != 0 and "File already exists" in " ".join(result.stdout.split())


def test_a_deleted_filename_cannot_be_reused(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "dup-deleted", "1.0")
    assert twine(gw.url, "dora", PASSWORD, wheel).returncode == 0
    (index.packages / wheel.name).unlink()
    result = twine(gw.url, "dora", PASSWORD, wheel)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "previously used by a file that has since been deleted" in output
