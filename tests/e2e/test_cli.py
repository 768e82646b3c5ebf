"""The command line: one-line errors, exit codes, users."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [PYTHON, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**base, **(env or {})},
        input=stdin,
    )


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
    assert run("user", "list", env=env).stdout.split() == ["grace"]
