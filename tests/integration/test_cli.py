"""The administration commands, run in-process through `gateway.cli.main` on a store in a temporary directory
(the e2e tests run the same commands as subprocesses, for their start-up and their exit codes)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from tests.harness.config import app_config
from tests.harness.fake_index import FakeIndex
from tests.harness.inprocess import password_file
from tests.harness.postgresql import Server
from tests.harness.threaded_app import serve_in_thread

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Run]:
    index = FakeIndex()
    index.files["existing_project-1.0-py3-none-any.whl"] = b"not read"
    with serve_in_thread(index.app()) as url:
        index.url = url
        app_config(tmp_path, index.upstream(password_file(tmp_path)), store={"url": store_url})
        config = str(tmp_path / "gateway.toml")

        def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
            code = main(["--config", config, *args])
            out, err = capsys.readouterr()
            return code, out, err

        yield run


def test_users_projects_tokens_and_the_audit_trail(cli: Run) -> None:
    assert cli("user", "add", "alice", "--password-stdin", stdin="a long enough password\n")[0] == 0
    assert cli("user", "add", "bob", "--password-stdin", stdin="another long password\n")[0] == 0
    assert cli("project", "grant", "Demo", "alice")[0] == 0
    assert cli("project", "grant", "demo", "bob", "--role", "maintainer")[0] == 0
    code, out, _ = cli("project", "list", "bob", "--json")
    assert code == 0 and json.loads(out)[0]["role"] == "maintainer"

    code, token, err = cli("token", "create", "alice", "--project", "demo", "--expires", "30d")
    assert code == 0 and token.startswith("pypi-") and "created for alice" in err
    assert cli("token", "create", "alice", "--read")[0] == 0
    code, out, _ = cli("token", "list", "alice", "--json")
    tokens = json.loads(out)
    assert code == 0 and len(tokens) == 2
    assert token.strip() not in out  # never the secret
    code, out, _ = cli("token", "list")
    assert code == 0 and "alice" in out

    assert cli("token", "revoke", tokens[0]["id"])[0] == 0
    assert cli("token", "revoke", "--all", "alice")[0] == 0
    code, out, _ = cli("user", "list", "--json")
    assert code == 0 and [user["name"] for user in json.loads(out)] == ["alice", "bob"]
    assert cli("user", "list")[0] == 0

    assert cli("user", "password", "alice", "--password-stdin", stdin="a brand new password\n")[0] == 0
    code, out, _ = cli("user", "2fa", "enable", "alice")
    assert code == 0 and "otpauth://totp/" in out
    assert cli("user", "2fa", "disable", "alice")[0] == 0
    assert cli("project", "remove", "demo", "bob")[0] == 0
    code, out, err = cli("project", "import", "--owner", "alice")
    assert code == 0 and "1" in out + err
    code, out, _ = cli("project", "list", "alice")
    assert code == 0 and "existing-project" in out and "demo" in out.lower()
    assert cli("user", "remove", "bob")[0] == 0

    code, out, _ = cli("audit", "--json", "--since", "1h", "--user", "alice")
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert code == 0 and "token.created" in events and "token.revoked" in events
    code, out, _ = cli("audit")
    assert code == 0 and "user.removed" in out


def test_mistakes_are_one_line_and_exit_1(cli: Run) -> None:
    assert cli("user", "add", "alice", "--password-stdin", stdin="a long enough password\n")[0] == 0
    for args in (
        ("user", "add", "alice", "--password-stdin"),
        ("token", "create", "nobody"),
        ("token", "create", "alice", "--project", "demo"),
        ("token", "create", "alice", "--expires", "soon"),
        ("audit", "--since", "yesterday-ish"),
    ):
        code, out, err = cli(*args, stdin="a long enough password\n")
        assert (code, out) == (1, ""), args
        assert err.startswith("upload-gateway: ") and err.count("\n") == 1, (args, err)


def test_db_upgrade_and_copy_to_an_empty_store_and_never_onto_one_in_use(
    cli: Run, store_url: str, postgresql_server: Server
) -> None:
    assert cli("user", "add", "carol", "--password-stdin", stdin="a long enough password\n")[0] == 0
    code, out, _ = cli("db", "upgrade")
    assert code == 0 and "already" in out
    target = postgresql_server.create()
    code, out, err = cli("db", "copy", "--to", target)
    assert code == 0, err
    assert out.splitlines()[-1].startswith("copied ") and out.rstrip().endswith("counts verified")
    code, _, err = cli("db", "copy", "--to", target)
    assert code == 1 and err.startswith("upload-gateway: ") and len(err.splitlines()) == 1
    code, _, err = cli("db", "copy", "--to", store_url)
    assert (code, err) == (1, "upload-gateway: --to: that is the store itself\n")


def test_a_url_without_its_password_takes_it_from_pgpassword_and_never_shows_it(
    tmp_path: Path, postgresql_server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq's own ways to give a password (`PGPASSWORD`, which the compose stack's entrypoint sets from a secret
    file, or ~/.pgpass) work with a `store.url` that holds none; without one, the refusal is a line that names
    the database, not a traceback."""
    url = postgresql_server.create_with_password("gateway", "s3cret-pg-password")
    app_config(tmp_path, {"url": "http://127.0.0.1:9/"}, store={"url": url})
    config = str(tmp_path / "gateway.toml")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))

    assert main(["--config", config, "db", "upgrade"]) == 1
    refused = capsys.readouterr().err
    assert len(refused.splitlines()) == 1 and "cannot open the database" in refused, refused

    monkeypatch.setenv("PGPASSWORD", "s3cret-pg-password")
    assert main(["--config", config, "db", "upgrade"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["--config", config, "user", "add", "carol", "--password-stdin"]) == 0
    assert main(["--config", config, "user", "list"]) == 0
    out, err = capsys.readouterr()
    assert "carol" in out and "s3cret-pg-password" not in out + err + refused


def test_publishers_are_added_listed_and_removed_with_their_tokens(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    oidc = {"issuers": [{"name": "github", "url": "https://token.actions.githubusercontent.com", "kind": "github"}]}
    app_config(tmp_path, {"url": "http://127.0.0.1:9/"}, store={"url": store_url}, oidc=oidc)
    config = ["--config", str(tmp_path / "gateway.toml")]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main([*config, "user", "add", "alice", "--password-stdin"]) == 0
    assert main([*config, "project", "grant", "demo", "alice"]) == 0
    github = ["--repository", "octo/demo", "--owner-id", "42", "--workflow", "release.yml"]
    capsys.readouterr()

    assert main([*config, "publisher", "add", "demo", "--issuer", "github", *github]) == 0
    publisher_id = capsys.readouterr().out.strip()
    assert (
        main([*config, "publisher", "add", "new-one", "--issuer", "github", *github, "--pending", "--owner", "alice"])
        == 0
    )
    pending_id = capsys.readouterr().out.strip()
    assert main([*config, "publisher", "list", "--json"]) == 0
    listed = {row["id"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed[publisher_id]["description"] == "GitHub octo/demo, workflow release.yml"
    assert listed[pending_id]["pending"] is True and listed[pending_id]["owner"] == "alice"

    for mistake, said in (
        (["demo", "--issuer", "gitlab", *github], "is not a configured issuer"),
        (["demo", "--issuer", "github", "--repository", "octo/demo"], "needs --repository OWNER/REPO, --owner-id"),
        (["demo", "--issuer", "github", *github[:-1], "release.txt"], "workflow"),
        (["demo", "--issuer", "github", *github, "--pending", "--owner", "alice"], "exists"),
    ):
        assert main([*config, "publisher", "add", *mistake]) == 1
        err = capsys.readouterr().err
        assert said in err and len(err.splitlines()) == 1, (mistake, err)

    moved = {"issuers": [{"name": "github", "url": "https://ghes.example.com/_services/token", "kind": "github"}]}
    app_config(tmp_path, {"url": "http://127.0.0.1:9/"}, store={"url": store_url}, oidc=moved)
    assert main([*config, "publisher", "list"]) == 0
    shown = capsys.readouterr().out
    assert (
        f"{publisher_id}  demo  github  GitHub octo/demo, workflow release.yml  (refused: issuer 'github' is now "
        "https://ghes.example.com/_services/token, it was added for https://token.actions.githubusercontent.com: "
        "remove it and add it again to trust it)"
    ) in shown.splitlines(), shown

    assert main([*config, "publisher", "remove", publisher_id]) == 0
    assert main([*config, "publisher", "remove", pending_id]) == 0
    assert main([*config, "publisher", "remove", publisher_id]) == 1
    capsys.readouterr()
    assert main([*config, "publisher", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
