"""The `index` and `gateway-a` services of docker-compose.yml, run without Docker: pypiserver with the service's
own arguments and the committed htpasswd, the gateway through the image's entrypoint (docker/upload-gateway) with
the service's environment on top of the image's config/gateway.toml, only host names, ports, the secrets and the
/data paths mapped to this machine (tests/harness/compose.py). Their health checks (compose's and the
Dockerfile's) run as written, and twine uploads through the pair. Two replicas behind nginx:
tests/e2e/test_replicas.py."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON, free_port, stop, twine, wait_http
from tests.dists import make_wheel
from tests.harness import postgresql
from tests.harness.compose import entrypoint, gateway_env, index_argv, service
from tests.harness.postgresql import Server
from tests.test_deploy import dockerfile_stages


@dataclass
class Stack:
    index_port: int
    gateway_url: str
    gateway_port: int
    packages: Path
    env: dict[str, str]
    index: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgresql_server: Server) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("compose")
    packages = directory / "packages"
    packages.mkdir()
    index_port, gateway_port = free_port(), free_port()
    index = subprocess.Popen(
        index_argv(PYTHON, index_port, packages),
        stdout=(directory / "index.log").open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "XDG_RUNTIME_DIR": str(directory)},
    )
    gateway: subprocess.Popen[bytes] | None = None
    try:
        wait_http(f"http://127.0.0.1:{index_port}/health", index)
        url = f"http://127.0.0.1:{gateway_port}"
        env = gateway_env(
            "gateway-a",
            PYTHON,
            directory,
            port=gateway_port,
            index_port=index_port,
            public_url=url,
            store_url=postgresql_server.create(),
        )
        gateway = subprocess.Popen(
            entrypoint("serve"),
            stdout=(directory / "gateway.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=env,
        )
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
    gateway = compose_healthcheck("gateway-a", stack.gateway_port, 8080)
    assert gateway.returncode == 0, gateway.stderr
    image = dockerfile_healthcheck(f"0.0.0.0:{stack.gateway_port}")
    assert image.returncode == 0, image.stderr


def test_the_postgres_healthcheck_runs_as_written(postgresql_server: postgresql.Server) -> None:
    """Debian's pg_isready with the service's arguments, pointed at a real server, then at nothing."""
    test = service("postgres")["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"], test
    argv = [str(postgresql_server.bin / "pg_isready"), *test[2:], "--host", "127.0.0.1", "--port"]
    ready = subprocess.run([*argv, str(postgresql_server.port)], capture_output=True, text=True, timeout=30)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    nothing = subprocess.run([*argv, str(free_port())], capture_output=True, text=True, timeout=30)
    assert nothing.returncode == 2, nothing.stdout + nothing.stderr  # pg_isready: no response


def test_the_image_healthcheck_fails_where_nothing_is_ready() -> None:
    result = dockerfile_healthcheck(f"0.0.0.0:{free_port()}")
    assert result.returncode == 1
    assert "Connection refused" in result.stderr


def test_twine_uploads_through_the_gateway_into_the_index(stack: Stack, tmp_path: Path) -> None:
    def cli(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            entrypoint(*args), input=stdin, capture_output=True, text=True, env=stack.env, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("user", "add", "compose-alice", "--password-stdin", stdin="compose password\n")
    token = cli("token", "create", "compose-alice").strip()
    wheel = make_wheel(tmp_path, "compose-pkg", "1.0")
    result = twine(stack.gateway_url, "__token__", token, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in stack.packages.iterdir()] == [wheel.name]
