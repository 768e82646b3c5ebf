"""Every common publishing client, end to end: each builds a real project with its own build command, uploads
the wheel and the sdist through the gateway with an API token, and pip and uv read them back byte for byte.

The tools are the latest releases from PyPI, installed once into `.venv/tools/<tool>` (reused while present;
delete the directory to pick up newer releases). Each tool runs with a throw-away HOME, no keyring and no
prompts; only the download cache (`.venv/tools/cache`) is shared between runs, so builds that fetch their
backend from PyPI (`python -m build`, `pdm build`) do not download it every time.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, GatewayProcess, Index, pip_download
from tests.dists import make_wheel, sha256_of

pytestmark = pytest.mark.clients

# Resolved: a tool venv records its own path, which must stay valid from any worktree sharing this .venv.
TOOLS_DIR = (ROOT / ".venv").resolve() / "tools"
CACHE_DIR = TOOLS_DIR / "cache"
VERSION = "0.1.0"
# What each tool's venv gets (the newest releases). pdm 2.29 breaks with hishel 2 (no SyncSqliteStorage).
PACKAGES = {
    "twine": ["twine", "build[uv]"],
    "uv": ["uv"],
    "poetry": ["poetry"],
    "pdm": ["pdm", "hishel<2"],
    "hatch": ["hatch"],
    "flit": ["flit"],
    "maturin": ["maturin"],
}
TOOLS = list(PACKAGES)
# Variables of the caller that would point a tool at another index or credential.
FOREIGN = ("TWINE_", "POETRY_", "PDM_", "HATCH_", "FLIT_", "MATURIN_", "UV_PUBLISH_", "VIRTUAL_ENV", "PYTHONPATH")


def install(tool: str) -> Path:
    """The tool's venv, created with uv on first use; a stamp names what is in it, so a half-done install is redone.
    A lock file per tool: the suite's workers (pytest-xdist) may want the same tool at once."""
    venv = TOOLS_DIR / tool
    stamp = venv / ".installed"
    wanted = " ".join(PACKAGES[tool])
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with (TOOLS_DIR / f".{tool}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == wanted):
            uv = [PYTHON, "-m", "uv"]
            subprocess.run(
                uv + ["venv", "-q", "--clear", "--python", sys.executable, str(venv)], check=True, timeout=120
            )
            subprocess.run(
                uv + ["pip", "install", "-q", "--python", str(venv / "bin" / "python"), *PACKAGES[tool]],
                check=True,
                timeout=600,
            )
            stamp.write_text(wanted)
    return venv / "bin"


@dataclass
class Client:
    tool: str
    bin: Path
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN)}
        real_home = Path.home()
        for name, default in (("RUSTUP_HOME", real_home / ".rustup"), ("CARGO_HOME", real_home / ".cargo")):
            if name not in env and default.is_dir():
                env[name] = str(default)  # rustup's cargo finds its toolchain under the real HOME
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CACHE_HOME=str(CACHE_DIR),
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', os.defpath)}",
            PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
            NO_COLOR="1",
            TERM="dumb",
            COLUMNS="200",
            PIP_NO_INPUT="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PDM_CHECK_UPDATE="false",
            POETRY_VIRTUALENVS_IN_PROJECT="true",  # the project's venv goes with it, not into the shared cache
            FLIT_NO_NETWORK="1",  # flit fetches PyPI's classifier list otherwise, and fails on its 404
            UV_PYTHON_DOWNLOADS="never",
            CARGO_NET_OFFLINE="true",
            SOURCE_DATE_EPOCH="1767225600",  # flit rebuilds on publish: the same bytes as the first build
        )
        env.update(extra)
        return env

    def run(self, *args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        argv = [str(arg) for arg in args]
        if not Path(argv[0]).is_absolute():
            argv[0] = str(self.bin / argv[0])
        return subprocess.run(
            argv, cwd=cwd, env=self.env(**env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
        )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args}\nexit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, output(result)
    return result


# --- projects -------------------------------------------------------------------------------------------------


def backend(tool: str, client: Client) -> tuple[str, str]:
    if tool == "uv":
        # uv builds with its own copy of uv_build (no download) when the range admits its version.
        major, minor = checked(client.run("uv", "--version", cwd=client.home)).stdout.split()[1].split(".")[:2]
        return f"uv_build>={major}.{minor},<{major}.{int(minor) + 1}", "uv_build"
    return {
        "twine": ("setuptools>=77", "setuptools.build_meta"),
        "poetry": ("poetry-core>=2.0,<3", "poetry.core.masonry.api"),
        "pdm": ("pdm-backend>=2.4", "pdm.backend"),
        "hatch": ("hatchling>=1.27", "hatchling.build"),
        "flit": ("flit_core>=3.12,<5", "flit_core.buildapi"),
        "maturin": ("maturin>=1.9,<2", "maturin"),
    }[tool]


def make_project(directory: Path, client: Client, name: str) -> None:
    """A src-layout project with the metadata a real release has: description, classifiers, license, readme."""
    module = name.replace("-", "_")
    requires, build_backend = backend(client.tool, client)
    directory.mkdir(parents=True)
    (directory / "README.md").write_text(f"# {name}\n\nUploaded by {client.tool} through upload-gateway: ünïcode ✓.\n")
    (directory / "LICENSE").write_text("MIT License\n\nCopyright (c) 2026 upload-gateway tests\n")
    pyproject = f"""\
[build-system]
requires = ["{requires}"]
build-backend = "{build_backend}"

[project]
name = "{name}"
version = "{VERSION}"
description = "End-to-end upload with {client.tool} through upload-gateway"
readme = "README.md"
requires-python = ">=3.9"
license = "MIT"
license-files = ["LICENSE"]
authors = [{{name = "Upload Gateway Tests", email = "tests@example.com"}}]
keywords = ["upload-gateway", "{client.tool}"]
classifiers = [
    "Programming Language :: Python :: 3",
    "Operating System :: OS Independent",
    "Intended Audience :: Developers",
]

[project.urls]
Homepage = "https://example.com/{name}"
"""
    if client.tool == "maturin":
        pyproject += '\n[tool.maturin]\nbindings = "bin"\n'
        (directory / "Cargo.toml").write_text(
            f'[package]\nname = "{name}"\nversion = "{VERSION}"\nedition = "2021"\nlicense = "MIT"\n'
            f'description = "End-to-end upload with maturin through upload-gateway"\n\n[dependencies]\n'
        )
        (directory / "src").mkdir()
        (directory / "src" / "main.rs").write_text(f'fn main() {{\n    println!("{name} {VERSION}");\n}}\n')
    else:
        package = directory / "src" / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f'"""Uploaded by {client.tool}."""\n\n__version__ = "{VERSION}"\n')
    (directory / "pyproject.toml").write_text(pyproject)


def build(client: Client, project: Path, out: Path) -> None:
    """Build a wheel and an sdist into `out` with the tool's own build command."""
    tool = client.tool
    if tool == "twine":
        checked(client.run("python", "-m", "build", "--installer=uv", "--outdir", out, project, cwd=project))
    elif tool == "uv":
        checked(client.run("uv", "build", "--no-progress", "--no-config", "--out-dir", out, cwd=project))
    elif tool == "poetry":
        checked(client.run("poetry", "build", "--no-interaction", "--output", out, cwd=project))
    elif tool == "pdm":
        checked(client.run("pdm", "build", "--dest", out, cwd=project))
    elif tool == "hatch":
        checked(client.run("hatch", "build", out, cwd=project))
    elif tool == "flit":
        checked(client.run("flit", "build", cwd=project))  # always into the project's dist/
        for built in (project / "dist").iterdir():
            shutil.copy2(built, out)
    elif tool == "maturin":
        # The output directory lies outside the project: `maturin sdist` would pack it into the sdist.
        target = {"CARGO_TARGET_DIR": str(out.parent / "target")}
        checked(client.run("maturin", "build", "--release", "--out", out, cwd=project, **target))
        checked(client.run("maturin", "sdist", "--out", out, cwd=project, **target))
    else:
        raise AssertionError(tool)


def upload(client: Client, project: Path, url: str, token: str, *files: Path) -> subprocess.CompletedProcess[str]:
    """Upload `files` to `url` (the legacy upload API) with the tool's own upload command, as __token__."""
    tool = client.tool
    if tool == "twine":
        return client.run(
            "twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", url,
            "-u", "__token__", "-p", token, *files, cwd=project,
        )  # fmt: skip
    if tool == "uv":
        return client.run(
            "uv", "publish", "--no-progress", "--no-config", "--trusted-publishing", "never", "--publish-url", url,
            "-u", "__token__", "-p", token, *files, cwd=project,
        )  # fmt: skip
    if tool in ("poetry", "pdm"):
        # Both upload every file of a directory: one that holds just these.
        outbox = project.parent / f"outbox-{secrets.token_hex(4)}"
        outbox.mkdir()
        for file in files:
            shutil.copy2(file, outbox)
        if tool == "poetry":
            return client.run(
                "poetry", "publish", "--no-interaction", "-r", "gateway", "-u", "__token__", "-p", token,
                "--dist-dir", outbox, cwd=project, POETRY_REPOSITORIES_GATEWAY_URL=url,
            )  # fmt: skip
        return client.run(
            "pdm", "publish", "--no-build", "-d", outbox, "-r", url, "-u", "__token__", "-P", token, cwd=project
        )
    if tool == "hatch":
        return client.run("hatch", "publish", "-n", "-r", url, "-u", "__token__", "-a", token, *files, cwd=project)
    if tool == "flit":
        # flit publishes what it builds (again, into dist/): both formats, or the one asked for.
        kinds = {"wheel" if file.suffix == ".whl" else "sdist" for file in files}
        fmt = [] if len(kinds) == 2 else ["--format", kinds.pop()]
        credentials = {"FLIT_INDEX_URL": url, "FLIT_USERNAME": "__token__", "FLIT_PASSWORD": token}
        return client.run("flit", "publish", *fmt, cwd=project, **credentials)
    if tool == "maturin":
        return client.run(
            "maturin", "upload", "--non-interactive", "--repository-url", url, "-u", "__token__", "-p", token,
            *files, cwd=project,
        )  # fmt: skip
    raise AssertionError(tool)


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=TOOLS)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Client:
    tool: str = request.param
    if tool == "maturin" and shutil.which("cargo") is None:
        pytest.skip("maturin builds a Rust crate: cargo is not on PATH")
    return Client(tool, install(tool), tmp_path_factory.mktemp(f"home-{tool}"))


@dataclass
class Release:
    client: Client
    name: str
    project: Path
    wheel: Path
    sdist: Path
    digests: dict[str, str]
    token: str
    url: str
    first_upload: subprocess.CompletedProcess[str]

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")


@pytest.fixture(scope="module")
def release(client: Client, gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """The tool's project, built, and uploaded once (wheel and sdist) by a new user with an account-wide token."""
    tool = client.tool
    name = f"clients-{tool}-{secrets.token_hex(4)}"
    work = tmp_path_factory.mktemp(f"clients-{tool}")
    project, out = work / name, work / "out"
    out.mkdir()
    make_project(project, client, name)
    build(client, project, out)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    wheel, sdist = wheels[0], sdists[0]
    digests = {wheel.name: sha256_of(wheel), sdist.name: sha256_of(sdist)}

    user = f"clients-{tool}"
    gateway.add_user(user, secrets.token_urlsafe(16))
    token = gateway.cli("token", "create", user, "--description", tool).stdout.strip()
    url = f"{gateway.url}/legacy/"
    # flit cannot upload a file it is given: it rebuilds and uploads that, so SOURCE_DATE_EPOCH must make the
    # rebuild identical to this build (the tests compare the index's bytes with these digests).
    first = upload(client, project, url, token, wheel, sdist)
    yield Release(client, name, project, wheel, sdist, digests, token, url, first)


def outcomes(log: str, filename: str) -> list[tuple[str, str]]:
    """(outcome, reason) of each upload of `filename` in the gateway's log."""
    return re.findall(rf"POST /legacy/ .* file={re.escape(filename)} .*outcome=(\w+) reason=(\w+)", log)


def uploaded(release: Release) -> None:
    if release.first_upload.returncode != 0:
        pytest.fail(f"the first upload failed, see test_upload_wheel_and_sdist\n{output(release.first_upload)}")


# --- tests ----------------------------------------------------------------------------------------------------


def test_upload_wheel_and_sdist(release: Release, index: Index, gateway: GatewayProcess) -> None:
    assert release.first_upload.returncode == 0, (
        output(release.first_upload) + "\n--- gateway log\n" + gateway.log_text()
    )
    assert {release.wheel.name, release.sdist.name} <= set(index.files())
    for filename, digest in release.digests.items():
        assert sha256_of(index.packages / filename) == digest, f"{filename} on the index differs from the build"
        assert outcomes(gateway.log_text(), filename) == [("accepted", "ok")]


def test_download_and_install_through_the_gateway(release: Release, gateway: GatewayProcess, tmp_path: Path) -> None:
    uploaded(release)
    simple = f"{gateway.url}/simple/"
    pip = pip_download(simple, f"{release.name}=={VERSION}", tmp_path)
    assert pip.returncode == 0, output(pip)
    assert sha256_of(tmp_path / release.wheel.name) == release.digests[release.wheel.name]

    with urllib.request.urlopen(f"{simple}{release.name}/", timeout=30) as resp:
        page = resp.read().decode()
    links = {filename: href for href, filename in re.findall(r'href="([^"#]+/([^/"#]+))#sha256=[0-9a-f]+"', page)}
    assert set(release.digests) <= set(links), page
    with urllib.request.urlopen(links[release.sdist.name], timeout=30) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == release.digests[release.sdist.name]

    target = tmp_path / "target"
    uv = subprocess.run(
        [PYTHON, "-m", "uv", "pip", "install", "--no-cache", "--no-deps", "--python", PYTHON, "--target", str(target)]
        + ["--index-url", simple, f"{release.name}=={VERSION}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert uv.returncode == 0, output(uv)
    if release.client.tool == "maturin":
        program = subprocess.run([str(target / "bin" / release.name)], capture_output=True, text=True, timeout=30)
        assert program.stdout == f"{release.name} {VERSION}\n", output(program)
    else:
        code = f"import {release.module} as m; print(m.__version__, m.__doc__)"
        imported = subprocess.run(
            [PYTHON, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(target)},
        )
        assert imported.stdout == f"{VERSION} Uploaded by {release.client.tool}.\n", output(imported)


def test_identical_reupload_of_the_wheel_succeeds(release: Release, index: Index, gateway: GatewayProcess) -> None:
    """Every tool sends the same wheel again (none skips it on its own) and gets PyPI's 200 no-op."""
    uploaded(release)
    stored = index.packages / release.wheel.name
    stamp = stored.stat().st_mtime_ns
    seen = len(gateway.log_text())
    again = upload(release.client, release.project, release.url, release.token, release.wheel)
    log = gateway.log_text()[seen:]
    assert again.returncode == 0, output(again) + "\n--- gateway log\n" + log
    assert outcomes(log, release.wheel.name) == [("accepted", "already_present")], log
    assert outcomes(log, release.sdist.name) == [], log
    assert stored.stat().st_mtime_ns == stamp, "the index was written to again"
    assert sha256_of(stored) == release.digests[release.wheel.name]


@pytest.mark.parametrize("tool", ["maturin", "uv", "twine"])
def test_the_client_shows_the_gateways_message(gateway: GatewayProcess, tmp_path: Path, tool: str) -> None:
    """Each reads a refusal its own way: maturin prints only the <title> of a 403's HTML page ("Username and/or
    password are wrong" when there is none, issue #16), uv asks for JSON and prints its `code`, twine prints the
    reason phrase. Each must show the gateway's message, once. No build needed: they upload a wheel built here."""
    (tmp_path / "home").mkdir()
    client = Client(tool, install(tool), tmp_path / "home")
    owner, stranger = f"{tool}-owner-{secrets.token_hex(3)}", f"{tool}-other-{secrets.token_hex(3)}"
    project = f"{tool}-refused-{secrets.token_hex(3)}"
    for user in (owner, stranger):
        gateway.add_user(user, secrets.token_urlsafe(16))
    gateway.cli("project", "grant", project, owner)
    token = gateway.cli("token", "create", stranger).stdout.strip()
    wheel = make_wheel(tmp_path, project, "1.0")
    refused = upload(client, tmp_path, f"{gateway.url}/legacy/", token, wheel)
    shown = f"The user '{stranger}' isn't allowed to upload to project '{project}'."
    said = " ".join((refused.stdout + refused.stderr).split())  # twine and uv wrap long lines
    assert refused.returncode != 0, output(refused)
    assert shown in said and said.count(shown) == 1, output(refused)
    assert "<title>" not in said and '"code"' not in said, output(refused)  # the message, not the body's markup

    revoked = gateway.cli("token", "create", stranger).stdout.strip()
    gateway.cli("token", "revoke", "--all", stranger)
    refused = upload(client, tmp_path, f"{gateway.url}/legacy/", revoked, wheel)
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "Invalid API Token: token has been revoked; create a new one" in said, output(refused)
