"""The CLI loads what a command uses: parsing, `--help` and the store commands never import the server.

Each probe runs in a fresh interpreter, since the test process has imported everything already.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli import COMMANDS, _command, build_parser

ROOT = Path(__file__).resolve().parent.parent
# The server and what only it needs: aiohttp's server, the app, the account pages, the upload checks
# (readme_renderer, docutils), WebAuthn, the metrics registry, the request logs.
SERVER_MODULES = (
    "aiohttp.web",
    "gateway.app",
    "gateway.web",
    "gateway.logs",
    "gateway.validation",
    "readme_renderer",
    "webauthn",
    "prometheus_client",
)
# One command line of each command but `serve`.
STORE_COMMANDS = [
    ["audit"],
    ["user", "add", "a"],
    ["user", "list"],
    ["user", "remove", "a"],
    ["user", "password", "a"],
    ["user", "2fa", "enable", "a"],
    ["user", "2fa", "disable", "a"],
    ["token", "create", "a"],
    ["token", "list"],
    ["token", "revoke", "x"],
    ["project", "grant", "p", "a"],
    ["project", "remove", "p", "a"],
    ["project", "import"],
    ["project", "list", "a"],
    ["publisher", "add", "p", "--issuer", "i"],
    ["publisher", "list"],
    ["publisher", "remove", "x"],
]
PROBE = """
import contextlib, io, sys
from gateway.cli import build_parser, main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    build_parser().parse_args(["--help"])
build_parser().parse_args(["token", "list", "alice", "--json"])
if sys.argv[1:]:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(sys.argv[1:]) == 0
print("\\n".join(sys.modules))
"""


def _loaded(*argv: str, stdin: str = "") -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def _server_modules(loaded: set[str]) -> set[str]:
    return {name for name in loaded if any(name == m or name.startswith(m + ".") for m in SERVER_MODULES)}


def test_parsing_and_help_import_neither_the_server_nor_the_store_commands() -> None:
    loaded = _loaded()
    assert _server_modules(loaded) == set()
    assert not {f"gateway.cli.{module}" for module, _ in COMMANDS.values()} & loaded


@pytest.mark.parametrize("command", [["token", "list"], ["user", "list"], ["audit"], ["project", "list", "alice"]])
def test_store_commands_import_no_server_code(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[store]\nurl = "sqlite:///gateway.db"\n[tokens]\nsecret_file = "secret.key"\n')
    if command[0] == "project":  # a user to list the projects of
        _loaded("--config", str(config), "user", "add", "alice", "--password-stdin", stdin="a password\n")
    loaded = _loaded("--config", str(config), *command)
    assert "gateway.store" in loaded
    assert _server_modules(loaded) == set()


def _fastest(code: list[str]) -> float:
    """The fastest of three starts (the least disturbed by whatever else the machine runs)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, *code], cwd=ROOT, capture_output=True, timeout=60, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def test_help_starts_in_well_under_half_the_time_of_importing_the_server() -> None:
    server = _fastest(["-c", "import gateway.cli.serve"])
    helping = _fastest(["-m", "gateway", "--help"])
    assert helping < server / 2, f"--help took {helping:.3f}s, importing the server {server:.3f}s"


def _key(argv: list[str]) -> tuple[str, str]:
    args = build_parser().parse_args(argv)
    return args.command, args.twofa if (args.command, args.action) == ("user", "2fa") else args.action


@pytest.mark.parametrize("argv", STORE_COMMANDS)
def test_every_store_command_finds_its_function(argv: list[str]) -> None:
    assert inspect.iscoroutinefunction(_command(*_key(argv)))


def test_the_table_has_exactly_the_store_commands_of_the_parser() -> None:
    assert {_key(argv) for argv in STORE_COMMANDS} == set(COMMANDS)
