"""Private indexes end to end: a gateway with `reads.access = "authenticated"` in front of a pypiserver whose reads
need its service credential (`-a download,list,update`), with real pip, uv and poetry installing through it."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON, GatewayProcess, Index, index_upstream, start_gateway, start_index, twine
from tests.dists import make_sdist, make_wheel, sha256_of
from tests.e2e.test_clients import Client, install
from tests.e2e.test_web import Client as WebClient
from tests.harness import stop

PASSWORD = "a long enough password"


@dataclass
class Private:
    gw: GatewayProcess
    index: Index
    wheels: dict[str, Path]  # project -> its wheel, uploaded through the gateway
    sdists: dict[str, Path]
    upload_token: str  # alice's account-wide token, upload only

    def token(self, *args: str) -> str:
        return self.gw.cli("token", "create", "alice", *args).stdout.strip()

    @property
    def host(self) -> str:
        return self.gw.url.removeprefix("http://")

    def url(self, token: str) -> str:
        return f"http://__token__:{token}@{self.host}/simple/"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    directory = tmp_path_factory.mktemp("private")
    index = start_index(directory / "index", authenticate="download,list,update")
    gw = start_gateway(directory / "gw", index_upstream(index, directory / "gw"), reads={"access": "authenticated"})
    try:
        for name in ("alice", "carol"):
            gw.add_user(name, PASSWORD)
        gw.cli("user", "2fa", "enable", "carol")
        upload_token = gw.cli("token", "create", "alice").stdout.strip()
        (directory / "dists").mkdir()
        wheels, sdists = {}, {}
        for project in ("priv-a", "priv-b"):
            wheels[project] = make_wheel(directory / "dists", project, "1.0")
            sdists[project] = make_sdist(directory / "dists", project, "1.0")
            result = twine(gw.url, "__token__", upload_token, wheels[project], sdists[project])
            assert result.returncode == 0, result.stdout + result.stderr
        yield Private(gw, index, wheels, sdists, upload_token)
    finally:
        stop(gw.process)
        stop(index.process)


def get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def file_url(private: Private, token: str, filename: str) -> str:
    """The file's URL as the project's page links it, through the gateway."""
    _, _, page = get(f"{private.gw.url}/simple/{filename.split('-')[0].replace('_', '-')}/", basic("__token__", token))
    href = next(part.split('"')[0] for part in page.decode().split('href="')[1:] if filename in part)
    return href.split("#")[0]


def test_the_index_itself_is_private(private: Private) -> None:
    assert get(f"{private.index.url}simple/priv-a/")[0] == 401


def test_no_credential_gets_a_401_challenge(private: Private) -> None:
    for path in ("/simple/", "/simple/priv-a/", "/packages/" + private.wheels["priv-a"].name):
        status, headers, body = get(private.gw.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith('Basic realm="')
        assert b"this index is private" in body


def test_pip_installs_with_a_read_token_in_the_url(private: Private, tmp_path: Path) -> None:
    token = private.token("--read")
    target = tmp_path / "site"
    result = subprocess.run(
        [PYTHON, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check"]
        + ["--index-url", private.url(token), "--target", str(target), "priv-a"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PIP_NO_INPUT": "1",
            "PIP_FIND_LINKS": "",
            "PIP_EXTRA_INDEX_URL": "",
            "PIP_CONFIG_FILE": os.devnull,
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(path.name.startswith("priv_a-1.0") for path in target.iterdir())
    assert token not in private.gw.log_text()


def test_uv_installs_with_a_read_token_in_netrc(private: Private, tmp_path: Path) -> None:
    token = private.token("--read-only")
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1\nlogin __token__\npassword {token}\n")
    netrc.chmod(0o600)
    target = tmp_path / "site"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("UV_", "PIP_"))}
    result = subprocess.run(
        [PYTHON, "-m", "uv", "pip", "install", "--no-deps", "--no-cache", "--no-config", "--target", str(target)]
        + ["--index-url", f"{private.gw.url}/simple/", "priv-b"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "HOME": str(home), "NETRC": str(netrc), "UV_KEYRING_PROVIDER": "disabled"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(path.name.startswith("priv_b-1.0") for path in target.iterdir())


def test_poetry_installs_with_a_read_token(private: Private, tmp_path: Path) -> None:
    token = private.token("--read", "--project", "priv-a")
    client = Client("poetry", install("poetry"), tmp_path / "home")
    client.home.mkdir()
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1.0"\nrequires-python = ">=3.9"\ndependencies = ["priv-a"]\n\n'
        "[tool.poetry]\npackage-mode = false\n\n"
        f'[[tool.poetry.source]]\nname = "gateway"\nurl = "{private.gw.url}/simple/"\npriority = "primary"\n'
    )
    credentials = {"POETRY_HTTP_BASIC_GATEWAY_USERNAME": "__token__", "POETRY_HTTP_BASIC_GATEWAY_PASSWORD": token}
    for command in (["lock"], ["install", "--no-root"]):
        result = client.run("poetry", "--no-cache", *command, "--no-interaction", cwd=project, **credentials)
        assert result.returncode == 0, result.stdout + result.stderr
    installed = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c", "import priv_a; print(priv_a.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 0, installed.stderr


def test_a_token_scoped_to_a_cannot_see_b(private: Private) -> None:
    token = private.token("--read", "--project", "priv-a")
    auth = basic("__token__", token)
    status, headers, root = get(f"{private.gw.url}/simple/", auth)
    assert status == 200 and b"priv-a" in root and b"priv-b" not in root
    assert headers["Cache-Control"].startswith("private")
    assert get(f"{private.gw.url}/simple/priv-a/", auth)[0] == 200
    wheel_a = file_url(private, token, private.wheels["priv-a"].name)
    status, _, body = get(wheel_a, auth)
    assert status == 200 and body == private.wheels["priv-a"].read_bytes()
    assert get(f"{private.gw.url}/simple/priv-b/", auth)[0] == 404
    for name in (private.wheels["priv-b"].name, private.sdists["priv-b"].name):
        status, _, _ = get(wheel_a.replace(private.wheels["priv-a"].name, name), auth)
        assert status == 404, name
    refused = [line for line in private.gw.log_text().splitlines() if "reason=read_outside_scope" in line]
    assert refused and all("user=alice" in line and token not in line for line in refused)
    # The same URLs answer a token that may read everything: the 404s are the scope, not missing files.
    everything = basic("__token__", private.token("--read"))
    assert get(wheel_a.replace(private.wheels["priv-a"].name, private.wheels["priv-b"].name), everything)[0] == 200


def test_an_upload_token_cannot_read_and_a_read_only_token_cannot_upload(private: Private, tmp_path: Path) -> None:
    status, _, body = get(f"{private.gw.url}/simple/priv-a/", basic("__token__", private.upload_token))
    assert status == 403 and b"may not read" in body
    read_only = private.token("--read-only")
    wheel = make_wheel(tmp_path, "priv-a", "2.0")
    result = twine(private.gw.url, "__token__", read_only, wheel)
    assert result.returncode != 0 and "may only read" in result.stdout + result.stderr
    assert sha256_of(private.wheels["priv-a"])  # the uploaded file is still the only one
    assert not any(name.startswith("priv_a-2.0") for name in private.index.files())


def test_passwords_read_except_for_2fa_accounts(private: Private) -> None:
    assert get(f"{private.gw.url}/simple/priv-a/", basic("alice", PASSWORD))[0] == 200
    status, _, body = get(f"{private.gw.url}/simple/priv-a/", basic("carol", PASSWORD))
    assert status == 403 and b"two-factor" in body
    status, headers, _ = get(f"{private.gw.url}/simple/priv-a/", basic("alice", "wrong password"))
    assert status == 401 and "WWW-Authenticate" in headers


def test_a_revoked_read_token_stops_at_once(private: Private) -> None:
    token = private.token("--read")
    auth = basic("__token__", token)
    assert get(f"{private.gw.url}/simple/priv-a/", auth)[0] == 200
    token_id = next(line.split()[0] for line in private.gw.cli("token", "list", "alice").stdout.splitlines())
    private.gw.cli("token", "revoke", token_id)  # another process: the gateway's caches are warm
    assert get(f"{private.gw.url}/simple/priv-a/", auth)[0] == 401


def test_refused_reads_are_counted_by_reason(private: Private) -> None:
    get(f"{private.gw.url}/simple/")
    _, _, metrics = get(f"{private.gw.url}/metrics")
    assert b'upload_gateway_reads_refused_total{reason="read_credentials_required"}' in metrics
    line = next(
        line
        for line in metrics.decode().splitlines()
        if line.startswith('upload_gateway_reads_refused_total{reason="read_credentials_required"}')
    )
    assert float(line.split()[-1]) >= 1


def test_the_token_form_grants_reading_with_its_box(private: Private) -> None:
    client = WebClient(private.gw.url)
    assert client.sign_in("alice", PASSWORD)[0] == 303
    client.get("/account/confirm?next=/account/tokens/new")
    assert client.post("/account/confirm", {"password": PASSWORD, "next": "/account/tokens/new"})[0] == 303
    status, _, form = client.get("/account/tokens/new")
    assert status == 200 and 'name="read"' in form and "May read (private index)" in form
    made: dict[bool, str] = {}
    for may_read in (True, False):
        fields = {"description": f"read {may_read}", "scope": "", "expires": ""} | ({"read": "on"} if may_read else {})
        status, headers, page = client.post("/account/tokens/new", fields)
        assert status == 303 and headers["Location"] == "/account/tokens/created", page
        status, _, page = client.get("/account/tokens/created")
        assert status == 200, page
        made[may_read] = html.unescape(re.search(r'<code id="token" class="secret">([^<]+)</code>', page).group(1))
        assert ("install --index-url" in page) == may_read
    assert get(f"{private.gw.url}/simple/priv-a/", basic("__token__", made[True]))[0] == 200
    assert get(f"{private.gw.url}/simple/priv-a/", basic("__token__", made[False]))[0] == 403
    _, _, listing = client.get("/account/tokens")
    assert "all projects; read and upload" in listing


def test_the_cli_shows_and_checks_what_a_token_may_do(private: Private) -> None:
    refused = private.gw.cli("token", "create", "alice", "--read", "--read-only", check=False)
    assert refused.returncode == 2 and "not allowed with" in refused.stderr
    created = private.gw.cli("token", "create", "alice", "--read-only", "--project", "priv-b")
    assert "projects: priv-b; read only" in created.stderr
    listed = json.loads(private.gw.cli("token", "list", "alice", "--json").stdout)
    assert listed[0]["permissions"] == ["read"] and listed[0]["scope"] == "projects: priv-b; read only"
    assert {tuple(item["permissions"]) for item in listed} >= {("upload",), ("read", "upload"), ("read",)}
