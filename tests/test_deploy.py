"""The deployment files hold together: docker-compose.yml, the Dockerfile, the configs they mount, and the wheel
the image installs. Docker itself is not needed (nor used): the files are parsed and cross-checked."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from passlib.apache import HtpasswdFile

from gateway.config import load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {"index", "gateway", "prometheus", "grafana"}
INTERPOLATION = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with no VAR set: what a bare `docker compose up` uses."""
    return INTERPOLATION.sub(lambda m: m.group(2), value)


def bind_mounts(name: str) -> dict[str, Path]:
    """Container path -> file or directory of the repository, for the bind mounts of a service."""
    mounts: dict[str, Path] = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def ports(name: str) -> list[str]:
    return [str(port) for port in service(name).get("ports", [])]


def healthcheck_command(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}, test
    return " ".join(test[1:])


def test_compose_has_the_four_services_and_no_unset_variables() -> None:
    assert set(compose()["services"]) == SERVICES
    for number, line in enumerate(COMPOSE.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"\$(?!\$)", line):
            assert INTERPOLATION.match(line, match.start()), f"line {number}: use ${{VAR:-default}} so it runs bare"


def test_every_service_has_a_healthcheck_on_its_own_endpoint() -> None:
    expected = {
        "index": "http://127.0.0.1:8080/health",
        "gateway": "http://127.0.0.1:8080/-/ready",
        "prometheus": "http://127.0.0.1:9090/-/ready",
        "grafana": "http://127.0.0.1:3000/api/health",
    }
    for name, url in expected.items():
        check = service(name)["healthcheck"]
        assert url in healthcheck_command(name), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"
    # The slim images have no curl: the Python ones are checked with urllib.
    assert healthcheck_command("index").startswith("python -c")
    assert healthcheck_command("gateway").startswith("python -c")


def test_ports_published_and_dependencies() -> None:
    assert ports("index") == [], "only the gateway may reach the index"
    assert ports("gateway") == ["8080:8080"]
    assert ports("prometheus") == ["127.0.0.1:9090:9090"]
    assert ports("grafana") == ["127.0.0.1:3000:3000"]
    assert service("gateway")["depends_on"]["index"]["condition"] == "service_healthy"
    assert service("grafana")["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_every_mounted_file_and_secret_exists_and_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes", {}))
    for name in SERVICES:
        for volume in service(name).get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} uses volume {source}, not declared"
    for secret, spec in compose().get("secrets", {}).items():
        assert (ROOT / spec["file"]).is_file(), f"secret {secret}: {spec['file']} is missing"


def test_the_gateway_service_is_configured_for_the_index_service() -> None:
    gateway = service("gateway")
    env = {key: interpolate(str(value)) for key, value in gateway["environment"].items()}
    assert gateway["build"] == "."
    assert env["GATEWAY_SERVER_LISTEN"] == "0.0.0.0:8080"
    assert env["GATEWAY_UPSTREAM_URL"] == "http://index:8080/"
    assert env["GATEWAY_SERVER_PUBLIC_URL"].startswith("http")
    # The whole environment is a valid configuration on top of the image's config/gateway.toml.
    config = load_config(ROOT / "config" / "gateway.toml", env)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 8080)
    assert config.upstream.url == "http://index:8080/"
    assert str(config.store.path).startswith("/data/"), "the store must be on the gateway-data volume"
    assert str(config.tokens.secret_file).startswith("/data/"), "the server secret must be on the volume"
    assert "gateway-data:/data" in gateway["volumes"]
    # The index listens where the gateway looks for it.
    assert "8080" in service("index")["command"]


def test_the_service_account_works_on_both_sides() -> None:
    """The gateway's password file opens the index's htpasswd for the gateway's user name."""
    env = service("gateway")["environment"]
    password_file = PurePosixPath(env["GATEWAY_UPSTREAM_PASSWORD_FILE"])
    secrets = compose()["secrets"]
    assert password_file.parent == PurePosixPath("/run/secrets") and password_file.name in secrets
    assert password_file.name in service("gateway")["secrets"]
    password = (ROOT / secrets[password_file.name]["file"]).read_text().strip()

    command = service("index")["command"]
    htpasswd_target = command[command.index("--passwords") + 1]
    assert command[command.index("--authenticate") + 1] == "update"
    htpasswd = bind_mounts("index")[htpasswd_target]
    passwords = HtpasswdFile(str(htpasswd))
    assert passwords.users() == [env["GATEWAY_UPSTREAM_USERNAME"]]
    assert passwords.check_password(env["GATEWAY_UPSTREAM_USERNAME"], password) is True
    assert passwords.check_password(env["GATEWAY_UPSTREAM_USERNAME"], password + "x") is False


def test_prometheus_gets_its_config_and_rules_and_scrapes_the_gateway() -> None:
    mounts = bind_mounts("prometheus")
    config_target = next(target for target, source in mounts.items() if source == ROOT / "config" / "prometheus.yml")
    assert config_target == "/etc/prometheus/prometheus.yml"  # the image's default --config.file
    config = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        target = str(PurePosixPath(config_target).parent / rule_file)
        assert mounts.get(target) == ROOT / "config" / rule_file, f"{rule_file} is not mounted beside the config"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for static in jobs["upload-gateway"]["static_configs"] for t in static["targets"]]
    assert targets == ["gateway:8080"]


def test_grafana_gets_its_data_source_and_dashboard() -> None:
    mounts = bind_mounts("grafana")
    provisioning = ROOT / "config" / "grafana" / "provisioning"
    for kind in ("datasources", "dashboards"):
        assert mounts[f"/etc/grafana/provisioning/{kind}"] == provisioning / kind
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["url"]) for d in datasources] == [("prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load((provisioning / "dashboards" / "upload-gateway.yml").read_text())["providers"]
    dashboards_dir = mounts[providers[0]["options"]["path"]]
    assert dashboards_dir == ROOT / "config" / "grafana" / "dashboards"
    dashboard = json.loads((dashboards_dir / "upload-gateway.json").read_text())
    assert dashboard["uid"] == "upload-gateway" and dashboard["panels"]
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{providers[0]['options']['path']}/upload-gateway.json"


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_runs_as_non_root_with_a_readiness_healthcheck() -> None:
    final = dockerfile_stages()[-1]
    assert final[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in final if instruction == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthchecks = [args for instruction, args in final if instruction == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/-/ready" in healthchecks[0] and "urllib" in healthchecks[0] and "curl" not in healthchecks[0]
    runs = " ".join(args for instruction, args in final if instruction == "RUN")
    assert re.search(r"pip install .*\.whl", runs), "the final stage installs the project wheel"


def test_the_dockerfile_healthcheck_command_is_valid_python() -> None:
    healthcheck = next(args for instruction, args in dockerfile_stages()[-1] if instruction == "HEALTHCHECK")
    argv = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")


def test_docker_build_context_holds_what_the_dockerfile_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context is an allow-list: secrets, data and .venv stay out"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction == "COPY" and not args.startswith("--from"):
                for source in shlex.split(args)[:-1]:
                    assert (ROOT / source).exists(), source
                    assert source.rstrip("/") in allowed, f"{source} is copied but excluded by .dockerignore"


@pytest.mark.slow
def test_the_wheel_the_image_installs_holds_the_whole_package(tmp_path: Path) -> None:
    """Build from exactly what the Dockerfile's build stage copies (not the work tree, which it leaves alone)."""
    source = tmp_path / "src"
    source.mkdir()
    build_stage = dockerfile_stages()[0]
    for instruction, args in build_stage:
        if instruction == "COPY":
            *sources, _ = shlex.split(args)
            for name in sources:
                if (ROOT / name).is_dir():
                    shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", ".", "-w", str(wheels)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = wheels.glob("upload_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    package = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "gateway").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {"gateway/__init__.py", "gateway/cli/__init__.py", "gateway/py.typed"} <= package
    assert package - names == set(), "files of the package missing from the wheel (package-data?)"
    assert "upload-gateway = gateway.cli:main" in entry_points
