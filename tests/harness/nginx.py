"""config/nginx/gateway.conf on this machine, without Docker: its directives read back as a tree, and the file run
by a real nginx (Debian's package) inside a main configuration like the official image's, with the compose
stack's addresses replaced by loopback ones. Those replacements and the main configuration's paths are all that
differ from what the container runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness import free_port, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent.parent
GATEWAY_CONF = ROOT / "config" / "nginx" / "gateway.conf"
# Where docker-compose.yml's nginx listens for clients and for its health check, as gateway.conf writes them.
PUBLIC_LISTEN = "listen 8080;"
HEALTH_LISTEN = "listen 127.0.0.1:8081;"
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};]|[^\s{};"]+')


@dataclass(frozen=True)
class Directive:
    """One directive: its name, its arguments (quotes kept), and its block's directives for a block."""

    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None

    def all(self, name: str) -> list[Directive]:
        return [directive for directive in self.block or () if directive.name == name]

    def one(self, name: str) -> Directive:
        [found] = self.all(name)
        return found


def parse(text: str) -> Directive:
    """The file as the block of a root directive; comments dropped. Enough for gateway.conf (no `#` in quotes)."""
    tokens = _TOKEN.findall(re.sub(r"#[^\n]*", "", text))
    position = 0

    def block() -> tuple[Directive, ...]:
        nonlocal position
        found: list[Directive] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                found.append(Directive(words[0], tuple(words[1:])))
                words = []
            elif token == "{":
                found.append(Directive(words[0], tuple(words[1:]), block()))
                words = []
            elif token == "}":
                break
            else:
                words.append(token)
        assert not words, f"unterminated directive {words}"
        return tuple(found)

    return Directive("", (), block())


def binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert found, "nginx is not installed: apt-get install nginx-light (make test-tools says what is missing)"
    return found


def mapped(replacements: dict[str, str]) -> str:
    """gateway.conf with each replacement made; each original must be in the file (else the test is stale)."""
    text = GATEWAY_CONF.read_text()
    for original, replacement in replacements.items():
        assert original in text, f"{original!r} is no longer in {GATEWAY_CONF}"
        text = text.replace(original, replacement)
    return text


def main_config(directory: Path, site: str) -> Path:
    """An nginx.conf like the image's (the site included inside `http { }`), its files under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway.conf").write_text(site)
    # As root, workers would run as `nobody`, who cannot write the temporary directories under a 0700 tmp_path.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = directory / "nginx.conf"
    config.write_text(
        f"""{user}worker_processes 1;
error_log {directory}/error.log;
pid {directory}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    keepalive_timeout 65;
    include {directory}/gateway.conf;
}}
"""
    )
    return config


def check(config: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on `config`."""
    return subprocess.run(
        [binary(), "-t", "-p", str(config.parent), "-c", str(config)], capture_output=True, text=True, timeout=30
    )


@dataclass
class Nginx:
    url: str
    health_url: str
    directory: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop(self.process)


def start(directory: Path, upstreams: dict[str, str]) -> Nginx:
    """nginx with gateway.conf, listening on free loopback ports, each `upstreams` address (as gateway.conf
    writes it) replaced by the given loopback one."""
    port, health = free_port(), free_port()
    site = mapped(
        {PUBLIC_LISTEN: f"listen 127.0.0.1:{port};", HEALTH_LISTEN: f"listen 127.0.0.1:{health};", **upstreams}
    )
    config = main_config(directory, site)
    log = (directory / "nginx.out").open("wb")
    process = subprocess.Popen(
        [binary(), "-p", str(directory), "-c", str(config), "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT
    )
    running = Nginx(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health}/healthy", directory, process)
    try:
        wait_http(running.health_url, process)
    except BaseException:
        stop(process)
        raise
    return running
