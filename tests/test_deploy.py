"""The deployment files hold together: docker-compose.yml, the Dockerfile, the configs they mount (nginx's among
them, which a real `nginx -t` checks), and the wheel the image installs. Docker itself is not needed (nor used):
the files are parsed and cross-checked."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from passlib.apache import HtpasswdFile

from gateway.config import Config, load_config
from gateway.upload.body_limits import max_body
from tests.harness import nginx
from tests.harness.compose import (
    COMPOSE,
    ENTRYPOINT,
    GATEWAYS,
    INTERPOLATION,
    ROOT,
    bind_mounts,
    compose,
    edge_address,
    environment,
    secret_files,
    service,
)

DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {"index", "postgres", "migrate", *GATEWAYS, "nginx", "prometheus", "grafana"}


def ports(name: str) -> list[str]:
    return [str(port) for port in service(name).get("ports", [])]


def healthcheck_command(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}, test
    return " ".join(test[1:])


def gateway_config(name: str) -> Config:
    """The configuration a replica runs with: its environment on top of the image's config/gateway.toml."""
    return load_config(ROOT / "config" / "gateway.toml", environment(name))


def nginx_site() -> nginx.Directive:
    return nginx.parse(nginx.GATEWAY_CONF.read_text())


def nginx_servers() -> tuple[nginx.Directive, nginx.Directive]:
    """gateway.conf's public server (the proxy) and its health server."""
    public, health = nginx_site().all("server")
    return public, health


def test_compose_has_its_services_and_no_unset_variables() -> None:
    assert set(compose()["services"]) == SERVICES
    for number, line in enumerate(COMPOSE.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"\$(?!\$)", line):
            assert INTERPOLATION.match(line, match.start()), f"line {number}: use ${{VAR:-default}} so it runs bare"


def test_every_service_but_the_migration_has_a_healthcheck_on_its_own_endpoint() -> None:
    expected = {
        "index": "http://127.0.0.1:8080/health",
        **{name: "http://127.0.0.1:8080/-/ready" for name in GATEWAYS},
        "nginx": "http://127.0.0.1:8081/healthy",
        "prometheus": "http://127.0.0.1:9090/-/ready",
        "grafana": "http://127.0.0.1:3000/api/health",
        "postgres": "pg_isready --username gateway --dbname gateway",
    }
    assert set(expected) == SERVICES - {"migrate"}
    for name, url in expected.items():
        check = service(name)["healthcheck"]
        assert url in healthcheck_command(name), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"
    # The slim images have no curl: the Python ones are checked with urllib.
    assert healthcheck_command("index").startswith("python -c")
    for name in GATEWAYS:
        assert healthcheck_command(name).startswith("python -c")
    # pg_isready asks for the role and database the image creates.
    postgres = environment("postgres")
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("gateway", "gateway")
    # nginx's check asks its own health server, which answers it without a replica.
    _, health = nginx_servers()
    assert health.one("listen").args == ("127.0.0.1:8081",)
    [location] = [block for block in health.all("location") if block.args == ("=", "/healthy")]
    assert location.one("return").args[0] == "200"
    # The migration runs once, to its end: no health, no restart.
    migrate = service("migrate")
    assert "healthcheck" not in migrate and migrate["restart"] == "no"
    assert migrate["command"] == ["db", "upgrade"]


def test_only_nginx_is_published_and_services_start_in_order() -> None:
    assert ports("nginx") == ["8080:8080"]
    for name in ("index", "postgres", "migrate", *GATEWAYS):
        assert ports(name) == [], f"{name} must be reachable only inside the stack"
    assert ports("prometheus") == ["127.0.0.1:9090:9090"]
    assert ports("grafana") == ["127.0.0.1:3000:3000"]
    public, _ = nginx_servers()
    assert public.one("listen").args == ("8080",), "nginx listens where its port is published"
    for name in GATEWAYS:
        depends = service(name)["depends_on"]
        assert depends["index"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully", "replicas never migrate"
    assert service("migrate")["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {name: spec["condition"] for name, spec in service("nginx")["depends_on"].items()} == {
        name: "service_healthy" for name in GATEWAYS
    }
    assert set(service("prometheus")["depends_on"]) == set(GATEWAYS)
    assert service("grafana")["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_every_mounted_file_and_secret_exists_and_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes", {}))
    secrets = compose()["secrets"]
    for name in SERVICES:
        for volume in service(name).get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} uses volume {source}, not declared"
        for secret in service(name).get("secrets", []):
            assert secret in secrets, f"{name} uses secret {secret}, not declared"
    used = {secret for name in SERVICES for secret in service(name).get("secrets", [])}
    assert used == set(secrets)
    for secret, spec in secrets.items():
        assert (ROOT / spec["file"]).is_file(), f"secret {secret}: {spec['file']} is missing"
        assert len((ROOT / spec["file"]).read_text().strip()) >= 24, f"secret {secret}: too short a placeholder"


def test_the_replicas_are_configured_alike_for_the_index_and_postgres() -> None:
    first, *others = GATEWAYS
    for name in GATEWAYS:
        assert service(name)["build"] == "."
        assert environment(name) == environment(first), "the replicas must run with one configuration"
        assert service(name)["image"] == service("migrate")["image"]
        # The whole environment is a valid configuration on top of the image's config/gateway.toml.
        config = gateway_config(name)
        assert (config.server.host, config.server.port) == ("0.0.0.0", 8080)
        assert config.upstream.url == "http://index:8080/"
        assert config.server.public_url.startswith("http")
    assert others, "two replicas at least"
    # The index listens where the gateways look for it.
    assert "8080" in service("index")["command"]
    # The migration opens the same store as the replicas.
    for key in ("GATEWAY_STORE_URL", "PGPASSWORD_FILE"):
        assert environment("migrate")[key] == environment(first)[key]


def test_the_store_is_postgres_and_its_password_only_in_a_secret() -> None:
    postgres = environment("postgres")
    env = environment(GATEWAYS[0])
    url = urlsplit(env["GATEWAY_STORE_URL"])
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert url.username == postgres["POSTGRES_USER"] and url.path == "/" + postgres["POSTGRES_DB"]
    assert url.password is None, "the password goes through PGPASSWORD_FILE, never in the URL"
    # The entrypoint reads the file the postgres image takes its password from: one secret on both sides.
    assert env["PGPASSWORD_FILE"] == postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    for name in (*GATEWAYS, "migrate", "postgres"):
        assert "postgres-password" in service(name)["secrets"]
    password = secret_files()["/run/secrets/postgres-password"].read_text().strip()
    assert password not in COMPOSE.read_text()
    # Every password of the stack comes from a file, but Grafana's, which the operator sets in the environment.
    for name in SERVICES:
        for key, value in service(name).get("environment", {}).items():
            if "PASSWORD" in key and key != "GF_SECURITY_ADMIN_PASSWORD":
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}: {key}"
    assert service("grafana")["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:-")
    assert "index-password" not in service("migrate")["secrets"], "migrating needs no index credential"


def test_the_replicas_share_one_server_secret_on_one_volume() -> None:
    for name in GATEWAYS:
        config = gateway_config(name)
        assert str(config.tokens.secret_file).startswith("/data/"), "the server secret must be on the volume"
        assert "gateway-data:/data" in service(name)["volumes"]
    assert len({gateway_config(name).tokens.secret_file for name in GATEWAYS}) == 1
    assert "volumes" not in service("migrate"), "migrating needs no server secret"


def test_nginx_reaches_each_replica_and_they_trust_its_forwarded_for_alone() -> None:
    subnet = ipaddress.ip_network(compose()["networks"]["edge"]["ipam"]["config"][0]["subnet"])
    nginx_address = ipaddress.ip_address(edge_address("nginx"))
    assert set(service("nginx")["networks"]) == {"edge"}, "nginx reaches the replicas, nothing else"
    upstream = nginx_site().one("upstream")
    servers = [directive.args for directive in upstream.all("server")]
    addresses = []
    for name in GATEWAYS:
        address = ipaddress.ip_address(edge_address(name))
        assert address in subnet and address != nginx_address
        addresses.append(f"{address}:{gateway_config(name).server.port}")
        config = gateway_config(name)
        assert config.server.trusted_proxies == (f"{nginx_address}/32",)
    assert [args[0] for args in servers] == addresses, "nginx's upstream lists every replica, at its address"
    for args in servers:
        assert any(arg.startswith("max_fails=") for arg in args) and any(a.startswith("fail_timeout=") for a in args)
    # Not the bridge's own address (the network's first), through which Docker's port proxy connects.
    assert nginx_address in subnet and nginx_address != next(subnet.hosts())


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smh]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


def test_nginx_streams_uploads_and_never_sends_one_twice() -> None:
    public, _ = nginx_servers()
    config = gateway_config(GATEWAYS[0])

    def value(name: str) -> tuple[str, ...]:
        return public.one(name).args

    assert value("client_max_body_size") == (f"{max_body(config.limits) // 2**20}m",)
    assert max_body(config.limits) % 2**20 == 0
    assert value("proxy_request_buffering") == ("off",)
    assert value("proxy_http_version") == ("1.1",)
    headers = {directive.args[0].lower(): directive.args[1:] for directive in public.all("proxy_set_header")}
    assert headers["x-forwarded-for"] == ("$proxy_add_x_forwarded_for",)
    assert headers["x-forwarded-proto"] == ("$scheme",)
    assert headers["connection"] == ('""',), "upstream keepalive needs the Connection header cleared"
    assert headers["host"] == ("$http_host",)
    # Another replica only for a connection that failed; an upload (POST) never, an HTTP answer never.
    retry = value("proxy_next_upstream")
    assert "non_idempotent" not in retry and not any(word.startswith("http_") for word in retry)
    assert set(retry) <= {"error", "timeout"}
    # Longer than the gateway waits for the index, so nginx never cuts off an upload being stored.
    assert seconds(value("proxy_read_timeout")[0]) > config.upstream.timeout
    assert seconds(value("client_body_timeout")[0]) >= config.limits.read_timeout
    # nginx drops an idle upstream connection before the gateway does.
    assert (
        seconds(nginx_site().one("upstream").one("keepalive_timeout").args[0]) < config.limits.clients.keepalive_timeout
    )
    locations = {directive.args: directive for directive in public.all("location")}
    assert set(locations) == {("/",), ("=", "/metrics")}
    assert locations[("/",)].one("proxy_pass").args == ("http://gateway_replicas",)
    assert locations[("=", "/metrics")].one("return").args == ("404",), "metrics are scraped per replica only"


def test_nginx_accepts_the_config_as_the_image_includes_it(tmp_path: Path) -> None:
    """A real `nginx -t` on gateway.conf inside an http block like the image's, with the replicas' addresses as
    written (nginx -t needs no route to them)."""
    config = nginx.main_config(tmp_path, nginx.GATEWAY_CONF.read_text())
    result = nginx.check(config)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    broken = nginx.main_config(
        tmp_path / "broken", nginx.mapped({"proxy_request_buffering off;": "proxy_request_buffering of;"})
    )
    assert nginx.check(broken).returncode == 1, "nginx -t must be able to fail"


def test_promtool_accepts_the_prometheus_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "config" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_account_works_on_both_sides() -> None:
    """The gateways' password file opens the index's htpasswd for the gateways' user name."""
    env = environment(GATEWAYS[0])
    password_file = PurePosixPath(env["GATEWAY_UPSTREAM_PASSWORD_FILE"])
    secrets = compose()["secrets"]
    assert password_file.parent == PurePosixPath("/run/secrets") and password_file.name in secrets
    for name in GATEWAYS:
        assert password_file.name in service(name)["secrets"]
    password = (ROOT / secrets[password_file.name]["file"]).read_text().strip()

    command = service("index")["command"]
    htpasswd_target = command[command.index("--passwords") + 1]
    assert command[command.index("--authenticate") + 1] == "update"
    htpasswd = bind_mounts("index")[htpasswd_target]
    passwords = HtpasswdFile(str(htpasswd))
    assert passwords.users() == [env["GATEWAY_UPSTREAM_USERNAME"]]
    assert passwords.check_password(env["GATEWAY_UPSTREAM_USERNAME"], password) is True
    assert passwords.check_password(env["GATEWAY_UPSTREAM_USERNAME"], password + "x") is False


def test_prometheus_gets_its_config_and_rules_and_scrapes_every_replica() -> None:
    mounts = bind_mounts("prometheus")
    config_target = next(target for target, source in mounts.items() if source == ROOT / "config" / "prometheus.yml")
    assert config_target == "/etc/prometheus/prometheus.yml"  # the image's default --config.file
    config = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        target = str(PurePosixPath(config_target).parent / rule_file)
        assert mounts.get(target) == ROOT / "config" / rule_file, f"{rule_file} is not mounted beside the config"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for static in jobs["upload-gateway"]["static_configs"] for t in static["targets"]]
    assert targets == [f"{name}:{gateway_config(name).server.port}" for name in GATEWAYS], "each replica, not nginx"
    # Prometheus reaches the replicas on the default network, which nginx is not on.
    assert "networks" not in service("prometheus")
    for name in GATEWAYS:
        assert "default" in service(name)["networks"]


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


def test_every_command_in_the_image_goes_through_the_entrypoint() -> None:
    """`docker compose exec gateway-a upload-gateway …` finds docker/upload-gateway before pip's script."""
    final = dockerfile_stages()[-1]
    [copy] = [args for instruction, args in final if instruction == "COPY" and "docker/upload-gateway" in args]
    *options, source, target = shlex.split(copy)
    assert options == ["--chmod=0755"] and source == "docker/upload-gateway"
    [path] = [args for instruction, args in final if instruction == "ENV" and args.startswith("PATH=")]
    assert path == f"PATH={PurePosixPath(target).parent}:$PATH"
    assert PurePosixPath(target).name == "upload-gateway"
    assert ("ENTRYPOINT", '["upload-gateway"]') in final
    assert ENTRYPOINT.stat().st_mode & 0o111, "executable in the repository too"


def fake_python(directory: Path) -> Path:
    """A `python` that records its arguments and environment and exits 3, for the entrypoint to start."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    script = bin_dir / "python"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {directory}/argv\nenv > {directory}/env\nexit 3\n')
    script.chmod(0o755)
    return bin_dir


def run_entrypoint(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{fake_python(directory)}:/usr/bin:/bin"
    return subprocess.run(
        [str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=30, env={"PATH": path, **env}
    )


def recorded_env(directory: Path) -> dict[str, str]:
    lines = (directory / "env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_the_entrypoint_gives_libpq_the_password_from_its_file(tmp_path: Path) -> None:
    password = tmp_path / "postgres-password"
    password.write_text("pa ss$word\n")
    result = run_entrypoint(tmp_path, "user", "add", "a b", PGPASSWORD_FILE=str(password))
    assert result.returncode == 3, result.stderr  # the gateway's own status, passed on
    assert (tmp_path / "argv").read_text().splitlines() == ["-m", "gateway", "user", "add", "a b"]
    env = recorded_env(tmp_path)
    assert env["PGPASSWORD"] == "pa ss$word", "the file's content without its newline"
    assert "PGPASSWORD_FILE" not in env


def test_the_entrypoint_without_a_password_file_changes_nothing(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path, "serve")
    assert result.returncode == 3, result.stderr
    assert (tmp_path / "argv").read_text().splitlines() == ["-m", "gateway", "serve"]
    assert "PGPASSWORD" not in recorded_env(tmp_path)


def test_the_entrypoint_stops_when_the_password_file_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    result = run_entrypoint(tmp_path, "serve", PGPASSWORD_FILE=str(missing))
    assert result.returncode != 0 and result.returncode != 3
    assert str(missing) in result.stderr
    assert not (tmp_path / "argv").exists(), "the gateway must not start without its password"


def test_docker_build_context_holds_what_the_dockerfile_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context is an allow-list: secrets, data and .venv stay out"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction == "COPY" and not args.startswith("--from"):
                for source in [arg for arg in shlex.split(args)[:-1] if not arg.startswith("--")]:
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
