"""The command line: one-line errors, exit codes, users."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway import tokens
from tests.conftest import PYTHON, ROOT, GatewayFactory, GatewayProcess, Index
from tests.dists import make_wheel
from tests.e2e.test_upload import basic, raw_post
from tests.harness import free_port
from tests.harness.config import write_config
from tests.harness.forms import upload_body


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli_in(ROOT, *args, env=env, stdin=stdin)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GATEWAY_UPSTREAM_URL": "not a url"}, "upstream.url"),
        ({"GATEWAY_LIMITS_MAX_FILE_SIZE": "-3"}, "limits.max_file_size"),
        ({"GATEWAY_POLICY_PASSWORD_UPLOADS": "maybe"}, "policy.password_uploads"),
    ],
)
def test_bad_configuration_stops_with_one_line(env: dict[str, str], key: str) -> None:
    result = run("serve", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0]
    assert "Traceback" not in result.stderr


def test_usage_error_is_exit_2() -> None:
    assert run("frobnicate").returncode == 2


def test_user_add_and_list(tmp_path: Path) -> None:
    env = {"GATEWAY_STORE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    assert run("user", "add", "grace", "--password-stdin", env=env, stdin="long enough password\n").returncode == 0
    again = run("user", "add", "Grace", "--password-stdin", env=env, stdin="long enough password\n")
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    short = run("user", "add", "heidi", "--password-stdin", env=env, stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    bad = run("user", "add", "__token__", "--password-stdin", env=env, stdin="long enough password\n")
    assert bad.returncode == 1 and "invalid user name" in bad.stderr
    listed = json.loads(run("user", "list", "--json", env=env).stdout)
    assert [user["name"] for user in listed] == ["grace"]
    assert "password" not in json.dumps(listed)
    assert [line.split()[0] for line in run("user", "list", env=env).stdout.splitlines()] == ["grace"]


# --- Issue #16: one store, administration, one-line mistakes, the audit trail ---------------------------------

PASSWORD = "a long enough password"


def cli_in(
    directory: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI run from `directory`, with no GATEWAY_* variable but those given, stdin closed unless given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [PYTHON, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=directory,
        env={**base, **(env or {})},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """A user mistake: exit 1, one line on stderr naming `words`, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("upload-gateway: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def post_wheel(url: str, tmp_path: Path, project: str, username: str, password: str) -> tuple[int, str]:
    wheel = make_wheel(tmp_path, project, f"0.{uuid.uuid4().int % 10**6}", seed=uuid.uuid4().bytes)
    content_type, body = upload_body(wheel)
    resp = raw_post(url, "/legacy/", {"Content-Type": content_type, "Authorization": basic(username, password)}, body)
    return resp.status, resp.reason


def audit(gw: GatewayProcess, user: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gw.cli("audit", "--user", user, "--json").stdout.splitlines()]


def test_without_a_configuration_file_commands_refuse_instead_of_making_a_store(tmp_path: Path) -> None:
    for args in (("user", "list"), ("token", "create", "alice"), ("audit",)):
        line = one_line(cli_in(tmp_path, *args), "no configuration file", "--config", "GATEWAY_CONFIG")
        assert str(tmp_path) in line
    assert list(tmp_path.iterdir()) == []
    missing = cli_in(tmp_path, "user", "list", env={"GATEWAY_CONFIG": str(tmp_path / "nope.toml")})
    one_line(missing, "nope.toml", "not found")


def test_the_cli_from_another_directory_finds_the_store_serve_uses(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Relative paths in the file are the file's: `serve` runs from the clone, the CLI from elsewhere."""
    gw = gateway_factory(store={"url": "sqlite:///state/gateway.db"}, tokens={"secret_file": "state/secret.key"})
    assert (gw.config.parent / "state" / "gateway.db").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = {"GATEWAY_CONFIG": str(gw.config)}
    gw.secrets.append(PASSWORD)
    assert (
        cli_in(elsewhere, "user", "add", "rhea", "--password-stdin", env=named, stdin=PASSWORD + "\n").returncode == 0
    )
    made = cli_in(elsewhere, "--config", os.path.relpath(gw.config, elsewhere), "token", "create", "rhea")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    gw.secrets.append(token)
    assert post_wheel(gw.url, tmp_path, "rhea-pkg", "__token__", token)[0] == 200
    assert list(elsewhere.iterdir()) == []


def test_serve_on_a_taken_address_is_one_line(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()

    def timed(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        started = time.monotonic()
        done = subprocess.run(
            [PYTHON, "-m", "gateway", "--config", str(gw.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=gw.env,
        )
        return time.monotonic() - started, done

    baseline, _ = timed("user", "list")  # a command's start-up and a store opened, on this machine now
    took, second = timed("serve")
    line = one_line(second, gw.url.removeprefix("http://"), "in use", "GATEWAY_SERVER_LISTEN")
    assert "Traceback" not in second.stdout + second.stderr, line
    assert took < 3 * baseline + 2, (took, baseline)  # refused at once, not after starting the index
    assert urllib.request.urlopen(gw.url + "/-/ready", timeout=5).status == 200


def test_a_missing_index_password_file_is_one_line(tmp_path: Path, index: Index) -> None:
    config = tmp_path / "gateway.toml"
    port = free_port()
    write_config(
        config,
        {
            "server": {"listen": f"127.0.0.1:{port}"},
            "upstream": {"url": index.url, "username": index.username, "password_file": "index-password"},
            "store": {"url": "sqlite:///gateway.db"},
            "tokens": {"secret_file": "secret.key"},
        },
    )
    result = cli_in(ROOT, "--config", str(config), "serve")
    one_line(result, "upstream.password_file", str(tmp_path / "index-password"), "No such file")


def test_user_mistakes_are_one_line(tmp_path: Path) -> None:
    """`user add` without a terminal says to use --password-stdin; unknown users, an unreachable index, files that
    cannot be written: one line each."""
    env = {"GATEWAY_STORE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    one_line(cli_in(ROOT, "user", "add", "ivan", env=env), "no terminal", "--password-stdin")
    one_line(cli_in(ROOT, "user", "password", "nobody", env=env, stdin="x" * 20), "no user named 'nobody'")
    for args in (("user", "remove", "nobody"), ("user", "2fa", "disable", "nobody"), ("token", "list", "nobody")):
        one_line(cli_in(ROOT, *args, env=env), "no user named 'nobody'")
    nowhere = {**env, "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}/"}
    one_line(cli_in(ROOT, "project", "import", env=nowhere), "unreachable")  # and no log record beside it
    one_line(cli_in(ROOT, "user", "list", env={**env, "GATEWAY_LOGGING_AUDIT_FILE": str(tmp_path)}), "audit_file")
    under_a_file = {"GATEWAY_STORE_URL": f"sqlite:///{tmp_path / 'db.sqlite' / 'x.db'}"}
    one_line(cli_in(ROOT, "user", "list", env=under_a_file), "store.url", "db.sqlite: File exists")


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> GatewayProcess:
    for name in ("ada", "bea", "cyd", "dee", "eve", "fay"):
        gateway.add_user(name, PASSWORD)
    return gateway


def token_for(gw: GatewayProcess, user: str, *args: str) -> str:
    return gw.cli("token", "create", user, *args).stdout.strip()


def test_a_removed_users_tokens_stop_working_at_once(admin: GatewayProcess, tmp_path: Path, index: Index) -> None:
    token = token_for(admin, "ada")
    assert post_wheel(admin.url, tmp_path, "ada-pkg", "__token__", token)[0] == 200  # the token row is now cached
    removed = admin.cli("user", "remove", "ada")
    assert "1 token(s)" in removed.stderr and "ada-pkg" in removed.stderr  # left without an owner
    before = set(index.files())
    status, reason = post_wheel(admin.url, tmp_path, "ada-pkg", "__token__", token)
    assert status == 403, reason
    assert set(index.files()) == before
    assert post_wheel(admin.url, tmp_path, "ada-pkg", "ada", PASSWORD)[0] == 403
    time.sleep(2.5)  # past the row cache: the token itself is gone
    assert post_wheel(admin.url, tmp_path, "ada-pkg", "__token__", token)[0] == 403
    assert "ada" not in admin.cli("user", "list").stdout.split()
    events = audit(admin, "ada")
    removal = next(event for event in events if event["event"] == "user.removed")
    assert removal["detail"]["by"].startswith("cli:") and removal["detail"]["tokens"] == 1
    assert removal["detail"]["orphaned"] == ["ada-pkg"]


def test_a_password_reset_works_and_the_old_password_does_not(admin: GatewayProcess, tmp_path: Path) -> None:
    new = "a brand new long password"
    admin.secrets.append(new)
    admin.cli("user", "password", "bea", "--password-stdin", stdin=new + "\n")
    assert post_wheel(admin.url, tmp_path, "bea-pkg", "bea", new)[0] == 200
    assert post_wheel(admin.url, tmp_path, "bea-pkg", "bea", PASSWORD)[0] == 403
    short = admin.cli("user", "password", "bea", "--password-stdin", stdin="short\n", check=False)
    one_line(short, "at least 8")
    (event,) = [e for e in audit(admin, "bea") if e["event"] == "user.password_changed"]
    assert event["detail"]["by"].startswith("cli:")


def test_2fa_enable_refuses_an_enrolled_user_and_disable_lets_passwords_upload(
    admin: GatewayProcess, tmp_path: Path
) -> None:
    first = admin.cli("user", "2fa", "enable", "cyd").stdout
    assert post_wheel(admin.url, tmp_path, "cyd-pkg", "cyd", PASSWORD)[0] == 403
    again = admin.cli("user", "2fa", "enable", "cyd", check=False)
    one_line(again, "already has an authenticator app", "--replace", "2fa disable cyd")
    assert again.stdout == ""
    replaced = admin.cli("user", "2fa", "enable", "cyd", "--replace").stdout
    assert replaced.splitlines()[0] != first.splitlines()[0] and "otpauth://" in replaced
    listed = {user["name"]: user for user in json.loads(admin.cli("user", "list", "--json").stdout)}
    assert listed["cyd"]["two_factor"] == {"totp": True, "security_keys": 0, "recovery_codes_left": 8}
    assert "2FA: an authenticator app (8 recovery codes left)" in admin.cli("user", "list").stdout
    admin.cli("user", "2fa", "disable", "cyd")
    assert post_wheel(admin.url, tmp_path, "cyd-pkg", "cyd", PASSWORD)[0] == 200
    one_line(admin.cli("user", "2fa", "disable", "cyd", check=False), "no second factor")
    listed = {user["name"]: user for user in json.loads(admin.cli("user", "list", "--json").stdout)}
    assert listed["cyd"]["two_factor"] == {"totp": False, "security_keys": 0, "recovery_codes_left": 0}
    kinds = [
        (e["event"], e["detail"].get("by", "")[:4]) for e in audit(admin, "cyd") if e["event"].startswith("user.2fa")
    ]
    assert kinds == [
        ("user.2fa.totp_enabled", "cli:"),
        ("user.2fa.totp_enabled", "cli:"),
        ("user.2fa.disabled", "cli:"),
    ]


def test_user_list_shows_tokens_and_their_last_use(admin: GatewayProcess, tmp_path: Path) -> None:
    used, spare = token_for(admin, "dee"), token_for(admin, "dee")
    revoked = token_for(admin, "dee")
    admin.cli("token", "revoke", tokens.parse(revoked, prefix="pypi").token_id)
    assert spare
    assert post_wheel(admin.url, tmp_path, "dee-pkg", "__token__", used)[0] == 200
    listed = {user["name"]: user for user in json.loads(admin.cli("user", "list", "--json").stdout)}
    assert listed["dee"]["tokens"] == {"active": 2, "all": 3}
    assert listed["dee"]["last_token_use"].startswith(time.strftime("%Y-%m-%dT", time.gmtime()))
    assert listed["fay"]["tokens"] == {"active": 0, "all": 0} and listed["fay"]["last_token_use"] is None
    line = next(line for line in admin.cli("user", "list").stdout.splitlines() if line.startswith("dee "))
    assert "2FA: none" in line and "tokens: 2 active of 3" in line and "last token use: 20" in line


def test_token_refusals_name_the_token_its_owner_and_the_project(admin: GatewayProcess, tmp_path: Path) -> None:
    admin.cli("project", "grant", "eve-one", "eve")
    admin.cli("project", "grant", "eve-two", "eve")
    revoked = token_for(admin, "eve")
    revoked_id = tokens.parse(revoked, prefix="pypi").token_id
    admin.cli("token", "revoke", revoked_id)
    assert post_wheel(admin.url, tmp_path, "eve-one", "__token__", revoked)[0] == 403
    scoped = token_for(admin, "eve", "--project", "eve-one")
    assert post_wheel(admin.url, tmp_path, "eve-two", "__token__", scoped)[0] == 403
    expiring = token_for(admin, "eve", "--expires", "1s")
    time.sleep(2.1)
    assert post_wheel(admin.url, tmp_path, "eve-one", "__token__", expiring)[0] == 403
    unknown = tokens.mint(
        prefix="pypi", location="x", token_id=str(uuid.UUID(int=7)), key=b"k" * 32, caveats=[tokens.RequestUser("u")]
    )
    assert post_wheel(admin.url, tmp_path, "eve-one", "__token__", unknown)[0] == 403

    assert "revoked 2 token(s) of eve" in admin.cli("token", "revoke", "--all", "eve").stderr

    events = audit(admin, "eve")
    (revocation,) = [e for e in events if e["event"] == "token.revoked"]
    assert revocation["token_id"] == revoked_id and revocation["detail"]["by"].startswith("cli:")
    (revoked_all,) = [e for e in events if e["event"] == "token.revoked_all"]
    assert revoked_all["detail"]["by"].startswith("cli:") and revoked_all["detail"]["count"] == 2
    refusals = {e["token_id"]: e for e in events if e["event"] == "upload.rejected"}
    assert len(refusals) == 3 and all(e["user_name"] == "eve" for e in refusals.values())
    assert refusals[revoked_id]["detail"]["reason"] == "revoked_token"
    assert refusals[revoked_id]["project"] is None  # refused on the headers, before the form named one
    wrong = refusals[tokens.parse(scoped, prefix="pypi").token_id]
    assert (wrong["detail"]["reason"], wrong["project"]) == ("invalid_token", "eve-two")
    late = refusals[tokens.parse(expiring, prefix="pypi").token_id]
    assert (late["detail"]["reason"], late["project"]) == ("invalid_token", "eve-one")
    nobody = [json.loads(line) for line in admin.cli("audit", "--json").stdout.splitlines()]
    (stranger,) = [e for e in nobody if e["token_id"] == str(uuid.UUID(int=7))]
    assert stranger["user_name"] is None and stranger["detail"]["reason"] == "invalid_token"
    shown = admin.cli("audit", "--user", "eve").stdout
    assert re.search(rf"token\.revoked\s+user=eve token={revoked_id} by=cli:", shown)


def test_the_banner_shows_the_real_address_and_commands_that_work(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_CONFIG": str(ROOT / "config" / "gateway.toml"),
        "GATEWAY_SERVER_LISTEN": f"127.0.0.1:{port}",  # only the address: the banner must follow it
        "GATEWAY_UPSTREAM_DATA_DIR": str(tmp_path / "packages"),
        "GATEWAY_STORE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "GATEWAY_TOKENS_SECRET_FILE": str(tmp_path / "secret"),
    }
    process = subprocess.Popen(
        [PYTHON, "-m", "gateway", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = "".join(process.stdout.readline() for _ in range(5))
        assert f"listening on http://127.0.0.1:{port} " in banner
        # public_url is derived from the address, a loopback host spelled localhost (what security keys accept)
        assert f"twine upload --repository-url http://localhost:{port}/legacy/" in banner
        assert f"pip install --index-url http://localhost:{port}/simple/" in banner
        lines = banner.splitlines()
        add = next(line.removeprefix("  a user:  ") for line in lines if line.endswith(" user add NAME"))
        create = next(line.removeprefix("  a token: ") for line in lines if line.endswith(" token create NAME"))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        for line, stdin in ((add, PASSWORD + "\n"), (create, None)):
            argv = [word.replace("NAME", "kim") for word in shlex.split(line)]
            argv += ["--password-stdin"] if stdin else []
            done = subprocess.run(argv, cwd=elsewhere, env=env, input=stdin, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (argv, done.stderr)
        assert done.stdout.startswith("pypi-")
    finally:
        process.terminate()
        process.wait(20)
