"""docker-compose.yml read back (Docker is never used), and its services' commands and environments mapped to this
machine: host names and ports to loopback ones, `/run/secrets/…` to the repository's secret files, `/data/` to a
directory (one directory for every replica, as they share the gateway-data volume), the image's entrypoint
(docker/upload-gateway) run as it is, with this interpreter first on PATH."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENTRYPOINT = ROOT / "docker" / "upload-gateway"
INTERPOLATION = re.compile(r"\$\{(\w+):-([^}]*)\}")
GATEWAYS = ("gateway-a", "gateway-b")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with no VAR set: what a bare `docker compose up` uses."""
    return INTERPOLATION.sub(lambda m: m.group(2), value)


def environment(name: str) -> dict[str, str]:
    """A service's environment as a bare `docker compose up` sets it."""
    return {key: interpolate(str(value)) for key, value in service(name).get("environment", {}).items()}


def bind_mounts(name: str) -> dict[str, Path]:
    """Container path -> file or directory of the repository, for the bind mounts of a service."""
    mounts: dict[str, Path] = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def secret_files() -> dict[str, Path]:
    """`/run/secrets/<name>` -> the repository's file, for every secret of the stack."""
    return {f"/run/secrets/{name}": ROOT / spec["file"] for name, spec in compose()["secrets"].items()}


def edge_address(name: str) -> str:
    """The fixed address of a service on the `edge` network (nginx and the replicas)."""
    address: str = service(name)["networks"]["edge"]["ipv4_address"]
    return address


def index_argv(python: str, port: int, packages: Path) -> list[str]:
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
    return [python, "-m", "pypiserver", "run", "--host", "127.0.0.1", *argv[1:]]


def gateway_env(
    name: str,
    python: str,
    data: Path,
    *,
    port: int,
    index_port: int,
    public_url: str,
    store_url: str,
    replace: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of gateway service `name` on this machine, listening on `port`, `/data/` at `data`, its
    PostgreSQL at `store_url` (the `postgres` service's database, on the tests' server), `replace` applied to each
    value as written (e.g. nginx's address in trusted_proxies)."""
    secrets = secret_files()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GATEWAY_", "PG"))}
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the entrypoint's `python`
    for key, value in environment(name).items():
        for original, replacement in (replace or {}).items():
            value = value.replace(original, replacement)
        value = value.replace("http://index:8080/", f"http://127.0.0.1:{index_port}/")
        value = value.replace("0.0.0.0:8080", f"127.0.0.1:{port}")
        if key == "GATEWAY_SERVER_PUBLIC_URL":
            value = public_url
        elif key == "GATEWAY_STORE_URL" and value.startswith("postgresql://"):
            value = store_url
        elif value in secrets:
            value = str(secrets[value])
        elif value.startswith("/data/"):
            value = f"{data}/{value.removeprefix('/data/')}"
        env[key] = value
    env["GATEWAY_CONFIG"] = str(ROOT / "config" / "gateway.toml")  # where the image puts it
    return env


def entrypoint(*args: str) -> list[str]:
    """The image's ENTRYPOINT with `args` (its CMD is `serve`)."""
    return [str(ENTRYPOINT), *args]
