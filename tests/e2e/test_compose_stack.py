"""The `index` and `gateway` services of docker-compose.yml, run without Docker: pypiserver with the service's
own arguments and the committed htpasswd, the gateway with the service's GATEWAY_* environment on top of the
image's config/gateway.toml, only host names, ports and the /data paths mapped to this machine. Their health
checks (compose's and the Dockerfile's) run as written, and twine uploads through the pair."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, free_port, stop, twine, wait_http
from tests.dists import make_wheel
from tests.test_deploy import bind_mounts, compose, dockerfile_stages, interpolate, service


@dataclass
class Stack:
    index_port: int
    gateway_url: str
    gateway_port: int
    packages: Path
    env: dict[str, str]
    index: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]


def index_argv(port: int, packages: Path) -> list[str]:
    """The index service's command, on a loopback port, with its mounts replaced by the repository's files."""
    command = [str(arg) for arg in service("index")["command"]]
    mounts = bind_mounts("index")
    argv: list[str] = []
    for arg in command:
        if arg == "8080":
            arg = str(port)
        elif arg in mounts:
            arg = str(mounts[arg])
        elif arg == "/data/packages":
            arg = str(packages)
        argv.append(arg)
    assert argv[0] == "run"
    return [PYTHON, "-m", "pypiserver", "run", "--host", "127.0.0.1", *argv[1:]]


def gateway_env(directory: Path, port: int, index_port: int) -> dict[str, str]:
    secrets = {f"/run/secrets/{name}": str(ROOT / spec["file"]) for name, spec in compose()["secrets"].items()}
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    for key, raw in service("gateway")["environment"].items():
        value = interpolate(str(raw))
        value = value.replace("http://index:8080/", f"http://127.0.0.1:{index_port}/")
        value = value.replace("0.0.0.0:8080", f"127.0.0.1:{port}").replace("localhost:8080", f"127.0.0.1:{port}")
        value = secrets.get(value) or re.sub(
            r"^(sqlite:///)?/data/", lambda m: f"{m.group(1) or ''}{directory}/", value
        )
        env[key] = value
    env["GATEWAY_CONFIG"] = str(ROOT / "config" / "gateway.toml")  # where the image puts it
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("compose")
    packages = directory / "packages"
    packages.mkdir()
    index_port, gateway_port = free_port(), free_port()
    index = subprocess.Popen(
        index_argv(index_port, packages),
        stdout=(directory / "index.log").open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "XDG_RUNTIME_DIR": str(directory)},
    )
    gateway: subprocess.Popen[bytes] | None = None
    try:
        wait_http(f"http://127.0.0.1:{index_port}/health", index)
        env = gateway_env(directory, gateway_port, index_port)
        assert env["GATEWAY_SERVER_PUBLIC_URL"] == f"http://127.0.0.1:{gateway_port}"
        gateway = subprocess.Popen(
            [PYTHON, "-m", "gateway", "serve"],
            stdout=(directory / "gateway.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=env,
        )
        url = f"http://127.0.0.1:{gateway_port}"
        wait_http(url + "/-/ready", gateway)
        yield Stack(index_port, url, gateway_port, packages, env, index, gateway)
    finally:
        if gateway is not None:
            stop(gateway)
        stop(index)


def compose_healthcheck(name: str, port: int, internal: int) -> subprocess.CompletedProcess[str]:
    test = service(name)["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    code = test[3].replace(f"127.0.0.1:{internal}", f"127.0.0.1:{port}")
    return subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=30)


def dockerfile_healthcheck(listen: str) -> subprocess.CompletedProcess[str]:
    healthcheck = next(args for instruction, args in dockerfile_stages()[-1] if instruction == "HEALTHCHECK")
    argv = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    env = {**os.environ, "GATEWAY_SERVER_LISTEN": listen}
    return subprocess.run([PYTHON, *argv[1:]], capture_output=True, text=True, timeout=30, env=env)


def test_the_health_checks_pass_on_the_running_pair(stack: Stack) -> None:
    index = compose_healthcheck("index", stack.index_port, 8080)
    assert index.returncode == 0, index.stderr
    gateway = compose_healthcheck("gateway", stack.gateway_port, 8080)
    assert gateway.returncode == 0, gateway.stderr
    image = dockerfile_healthcheck(f"0.0.0.0:{stack.gateway_port}")
    assert image.returncode == 0, image.stderr


def test_the_image_healthcheck_fails_where_nothing_is_ready() -> None:
    result = dockerfile_healthcheck(f"0.0.0.0:{free_port()}")
    assert result.returncode == 1
    assert "Connection refused" in result.stderr


def test_twine_uploads_through_the_gateway_into_the_index(stack: Stack, tmp_path: Path) -> None:
    def cli(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [PYTHON, "-m", "gateway", *args], input=stdin, capture_output=True, text=True, env=stack.env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("user", "add", "compose-alice", "--password-stdin", stdin="compose password\n")
    token = cli("token", "create", "compose-alice").strip()
    wheel = make_wheel(tmp_path, "compose-pkg", "1.0")
    result = twine(stack.gateway_url, "__token__", token, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in stack.packages.iterdir()] == [wheel.name]
