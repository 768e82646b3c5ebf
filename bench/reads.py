"""The read benchmark: simple pages, file downloads and `pip download` through the gateway, each against a
baseline measured in the same run, on loopback, through the gateway's HTTP interface only.

Servers: pypiserver (gunicorn, as in its Docker image) with real wheels; nginx as a plain reverse proxy in
front of it; a static index (simple pages and the same files, served by nginx); a gateway in front of
pypiserver, one in front of the static index (the gateway's own ceiling) and one with the embedded index
on the static index's files. Throughput comes from wrk (one thread, keep-alive), so the client is not the
bottleneck; its CPU and the servers' are reported with every figure. With two or more cores the server
being measured is pinned to CPU 0 and everything else (wrk, the upstreams, this process) to CPU 1, as the
targets say "on one core".

"Cold" is each page's first request (each project once, in random order, 16 at a time) to a server that
has served none yet; "warm" is wrk on random pages after that pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import Figure, Report, start_nginx
from tests.conftest import (
    PYTHON,
    GatewayProcess,
    Index,
    index_upstream,
    start_gateway,
    start_index,
    twine,
)
from tests.dists import make_wheel, sha256_of
from tests.harness import stop

JSON = "application/vnd.pypi.simple.v1+json"
CONNECTIONS = 16
NO_NGINX = "skipped: nginx is not installed (apt-get update && apt-get install -y nginx)"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Sizes:
    projects: int
    files_per_project: int
    file_size: int
    seconds: int
    pip_packages: int
    pip_runs: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(40, 2, 200 * 1024, 2, 20, 1)
        return cls(300, 4, 200 * 1024, 10, 20, 3)


# ---------------------------------------------------------------------------------------------------- placement


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(child) for child in (task / "children").read_text().split()]
    return found


def _pin(pids: Iterable[int], cpus: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)


def _cpu_seconds(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / CLOCK_TICK


@dataclass
class Server:
    """A process under measurement, with its descendants unless `descendants` is false (the embedded
    gateway's pypiserver child is not the gateway)."""

    label: str
    url: str
    pid: int
    descendants: bool = True

    def pids(self) -> list[int]:
        return _tree(self.pid) if self.descendants else [self.pid]


class Placement:
    """Where each process runs: the measured server alone on CPU 0, the rest on CPU 1 (when there are two)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []
        self.split = (os.cpu_count() or 1) >= 2
        self.original = os.sched_getaffinity(0)

    def place(self, subject: Server) -> None:
        if not self.split:
            return
        everything = {pid for server in self.servers for pid in server.pids()}
        _pin(everything | {os.getpid()}, {1})
        _pin(subject.pids(), {0})

    def restore(self) -> None:
        _pin({pid for server in self.servers for pid in server.pids()} | {os.getpid()}, self.original)

    def others(self, subject: Server) -> list[int]:
        return sorted({pid for server in self.servers for pid in server.pids()} - set(subject.pids()))


# ---------------------------------------------------------------------------------------------------- load


@dataclass
class Load:
    """One measurement: rate, bytes, latency and where the CPU went (core-seconds per second)."""

    requests: int
    seconds: float
    bytes: int
    p50_ms: float
    p99_ms: float
    cpu_server: float
    cpu_others: float
    cpu_client: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    def detail(self) -> dict[str, float]:
        """Latency, and the CPU each side used: on a shared machine the measured server may not get its whole
        core, so `per_server_cpu_s` (requests per CPU-second of the server) is the figure to compare."""
        return {
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "cpu_server": round(self.cpu_server, 2),
            "cpu_others": round(self.cpu_others, 2),
            "cpu_client": round(self.cpu_client, 2),
            "per_server_cpu_s": round(self.rate / self.cpu_server) if self.cpu_server >= 0.01 else 0,
        }


_WRK_SCRIPT = """
local paths = {%(paths)s}
local headers = {%(headers)s}
local n = #paths
request = function()
  return wrk.format("GET", paths[math.random(n)], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %%d, "duration_us": %%d, "bytes": %%d, "errors": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(placement: Placement, server: Server, paths: list[str], seconds: int, *, accept: str = "") -> Load:
    """CONNECTIONS keep-alive connections on random `paths` of `server` for `seconds`: wrk with one thread, or
    bench/load.py where wrk is not installed."""
    placement.place(server)
    binary = shutil.which("wrk")
    if binary is not None:
        script = placement.workdir / f"{server.label}.lua"
        headers = f'["Accept"] = "{accept}"' if accept else ""
        script.write_text(_WRK_SCRIPT % {"paths": ", ".join(json.dumps(p) for p in paths), "headers": headers})
        command = [
            binary,
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            server.url,
        ]
    else:
        listing = placement.workdir / f"{server.label}.json"
        listing.write_text(json.dumps(paths))
        command = [PYTHON, "-m", "bench.load", "--url", server.url, "--paths", str(listing)]
        command += ["--seconds", str(seconds), "--connections", str(CONNECTIONS), "--accept", accept]
    others = placement.others(server)
    server_before, others_before = _cpu_seconds(server.pids()), _cpu_seconds(others)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=seconds + 60)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child that ends meanwhile
    client = usage.ru_utime + usage.ru_stime - client_before
    line = next((ln for ln in stdout.decode().splitlines() if ln.startswith("WRK ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk against {server.label} failed: {stdout.decode()}{stderr.decode()}")
    result = json.loads(line[4:])
    if result["errors"]:
        raise RuntimeError(f"wrk against {server.label}: {result['errors']} errors or non-2xx answers\n{stdout!r}")
    duration = result["duration_us"] / 1e6
    return Load(
        result["requests"],
        duration,
        result["bytes"],
        result["p50_us"] / 1000,
        result["p99_us"] / 1000,
        (_cpu_seconds(server.pids()) - server_before) / elapsed,
        (_cpu_seconds(others) - others_before) / elapsed,
        client / elapsed,
    )


async def cold_pass(placement: Placement, server: Server, paths: list[str], *, accept: str = "") -> Load:
    """Each of `paths` once, in random order, CONNECTIONS at a time, from this process (on CPU 1)."""
    placement.place(server)
    order = random.sample(paths, len(paths))
    latencies: list[float] = []
    received = 0
    others = placement.others(server)
    server_before, others_before = _cpu_seconds(server.pids()), _cpu_seconds(others)
    client_before = time.process_time()
    headers = {"Accept": accept} if accept else {}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    started = time.perf_counter()
    async with aiohttp.ClientSession(server.url, connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal received
            while order:
                path = order.pop()
                begun = time.perf_counter()
                async with session.get(path) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{server.label} {path}: {resp.status} {body[:200]!r}")
                latencies.append(time.perf_counter() - begun)
                received += len(body)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Load(
        len(paths),
        elapsed,
        received,
        statistics.median(latencies) * 1000,
        latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        (_cpu_seconds(server.pids()) - server_before) / elapsed,
        (_cpu_seconds(others) - others_before) / elapsed,
        (time.process_time() - client_before) / elapsed,
    )


# ---------------------------------------------------------------------------------------------------- the servers


@dataclass
class Catalogue:
    """The packages every index serves: `projects` names, `files` (filename -> sha256), the wheels on disk."""

    projects: list[str]
    files: dict[str, str]
    directory: Path

    def page_paths(self) -> list[str]:
        return [f"/simple/{p}/" for p in self.projects]

    def file_paths(self) -> list[str]:
        return [f"/packages/{f}" for f in self.files]


def build(directory: Path, sizes: Sizes) -> Catalogue:
    directory.mkdir(parents=True)
    projects = [f"bench-read-{i:04d}" for i in range(sizes.projects)]
    files: dict[str, str] = {}
    for project in projects:
        for version in range(sizes.files_per_project):
            wheel = make_wheel(directory, project, f"1.0.{version}", payload_size=sizes.file_size)
            files[wheel.name] = sha256_of(wheel)
    return Catalogue(projects, files, directory)


def write_static_index(root: Path, catalogue: Catalogue) -> None:
    """PEP 503 pages as pypiserver writes them (relative links with #sha256=) and the files beside them."""
    shutil.copytree(catalogue.directory, root / "packages")
    simple = root / "simple"
    by_project: dict[str, list[str]] = {p: [] for p in catalogue.projects}
    for filename in catalogue.files:
        project = filename.split("-", 1)[0].replace("_", "-")
        by_project[project].append(filename)
    for project, filenames in by_project.items():
        (simple / project).mkdir(parents=True)
        links = "".join(
            f'<a href="../../packages/{f}#sha256={catalogue.files[f]}">{f}</a><br>\n' for f in sorted(filenames)
        )
        (simple / project / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><head><title>Links for {project}</title></head>"
            f"<body><h1>Links for {project}</h1>\n{links}</body></html>\n"
        )
    links = "".join(f'<a href="{p}/">{p}</a><br>\n' for p in catalogue.projects)
    (simple / "index.html").write_text(
        f"<!DOCTYPE html>\n<html><head><title>Simple Index</title></head><body>\n{links}</body></html>\n"
    )
    (root / "health").write_text("OK\n")


@dataclass
class Stack:
    index: Index
    pypiserver: Server
    gateway: Server
    gateway_process: GatewayProcess
    nginx_proxy: Server | None
    static: Server | None
    gateway_static: Server | None
    gateway_embedded: Server | None


@contextlib.contextmanager
def stack(workdir: Path, catalogue: Catalogue, placement: Placement) -> Iterator[Stack]:
    processes: list[subprocess.Popen[bytes]] = []
    quiet: dict[str, object] = {"level": "warning"}
    # Warm figures measure the cache. Pages change here only through the gateway, which purges them; the default
    # reads.cache_ttl (30 s) would have them revalidated against pypiserver (23 pages/s) during the run itself.
    reads: dict[str, object] = {"cache_ttl": "10m"}
    try:
        index = start_index(workdir / "index")
        processes.append(index.process)
        for wheel in catalogue.directory.iterdir():
            shutil.copy(wheel, index.packages / wheel.name)
        gw = start_gateway(workdir / "gw", index_upstream(index, workdir / "gw"), logging=quiet, reads=reads)
        processes.append(gw.process)
        s = Stack(
            index,
            Server("pypiserver", index.url.rstrip("/"), index.process.pid),
            Server("gateway", gw.url, gw.pid),
            gw,
            None,
            None,
            None,
            None,
        )
        proxy = start_nginx(
            workdir / "nginx-proxy",
            f"""    location / {{
      proxy_pass {index.url};
      proxy_http_version 1.1;
    }}""",
        )
        if proxy is not None:
            processes.append(proxy[1])
            s.nginx_proxy = Server("nginx-proxy", proxy[0], proxy[1].pid)
            write_static_index(workdir / "static", catalogue)
            for directory in (workdir.parent, workdir):  # nginx's worker runs as another user when we are root
                directory.chmod(0o755)
            static = start_nginx(
                workdir / "nginx-static",
                f"""    root {workdir / "static"};
    index index.html;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    open_file_cache max=10000;""",
            )
            assert static is not None
            processes.append(static[1])
            s.static = Server("static", static[0], static[1].pid)
            gw_static = start_gateway(workdir / "gw-static", {"url": static[0] + "/"}, logging=quiet, reads=reads)
            processes.append(gw_static.process)
            s.gateway_static = Server("gateway-static", gw_static.url, gw_static.pid)
            gw_embedded = start_gateway(
                workdir / "gw-embedded",
                {"url": "embedded", "data_dir": str(workdir / "static" / "packages")},
                logging=quiet,
                reads=reads,
            )
            processes.append(gw_embedded.process)
            s.gateway_embedded = Server("gateway-embedded", gw_embedded.url, gw_embedded.pid, descendants=False)
        placement.servers = [
            server
            for server in (s.pypiserver, s.gateway, s.nginx_proxy, s.static, s.gateway_static, s.gateway_embedded)
            if server is not None
        ]
        if s.gateway_embedded is not None:  # the embedded index counts as one of the others, not the gateway
            placement.servers += [Server("embedded-index", "", pid) for pid in _tree(gw_embedded.pid)[1:]]
        yield s
    finally:
        placement.restore()
        for process in reversed(processes):
            stop(process)


# ---------------------------------------------------------------------------------------------------- figures


def _figure(name: str, load: Load, unit: str, baseline: Load | None = None, **extra: object) -> Figure:
    value = load.mb_per_s if unit == "MB/s" else load.rate
    base = None if baseline is None else (baseline.mb_per_s if unit == "MB/s" else baseline.rate)
    detail = load.detail()
    if unit == "MB/s":
        detail = {"requests_per_s": round(load.rate, 1), **detail}
    figure = Figure(name, value, unit, base, None if base is None else value / base, detail=detail)
    for key, item in extra.items():
        setattr(figure, key, item)
    return figure


def _skipped(name: str, why: str) -> Figure:
    return Figure(name, 0, "", note=why)


async def _get(url: str, *, accept: str = "") -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession(headers={"Accept": accept} if accept else {}) as session,
        session.get(url) as resp,
    ):
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def check_routes(s: Stack, catalogue: Catalogue) -> str:
    """Every route serves the right page and the same file bytes, so a fast wrong answer cannot win; returns
    the content type the gateway answers a JSON request with."""
    project = catalogue.projects[-1]
    files = [f for f in catalogue.files if f.startswith(project.replace("-", "_") + "-")]
    pages = [s.pypiserver, s.gateway, s.nginx_proxy, s.static, s.gateway_static, s.gateway_embedded]
    for server in (server for server in pages if server is not None):
        status, _, body = await _get(f"{server.url}/simple/{project}/")
        if status != 200 or any(f.encode() not in body for f in files):
            raise RuntimeError(f"{server.label} served a wrong page for {project}: {status} {body[:300]!r}")
    for server in (server for server in (s.static, s.gateway_static, s.gateway_embedded) if server is not None):
        status, _, body = await _get(f"{server.url}/packages/{files[0]}")
        if status != 200 or hashlib.sha256(body).hexdigest() != catalogue.files[files[0]]:
            raise RuntimeError(f"{server.label} served different bytes for {files[0]} ({status})")
    _, content_type, _ = await _get(f"{s.gateway.url}/simple/{project}/", accept=JSON)
    return content_type.split(";")[0]


async def simple_pages(report: Report, s: Stack, catalogue: Catalogue, placement: Placement, sizes: Sizes) -> None:
    paths = catalogue.page_paths()
    cold_direct = await cold_pass(placement, s.pypiserver, paths)
    report.add(_figure("pages cold: pypiserver direct", cold_direct, "pages/s"))
    if s.nginx_proxy is None:
        report.add(_skipped("pages cold: nginx -> pypiserver", NO_NGINX))
    else:
        cold = await cold_pass(placement, s.nginx_proxy, paths)
        report.add(_figure("pages cold: nginx -> pypiserver", cold, "pages/s", cold_direct))
    cold = await cold_pass(placement, s.gateway, paths)
    report.add(_figure("pages cold: gateway -> pypiserver", cold, "pages/s", cold_direct))
    cold = await cold_pass(placement, s.gateway, paths, accept=JSON)
    report.add(_figure("pages cold: gateway, Accept: JSON", cold, "pages/s", cold_direct))
    json_type = await check_routes(s, catalogue)
    direct = await asyncio.to_thread(wrk, placement, s.pypiserver, paths, sizes.seconds)
    report.add(_figure("pages warm: pypiserver direct", direct, "pages/s"))
    if s.nginx_proxy is None:
        report.add(_skipped("pages warm: nginx -> pypiserver", NO_NGINX))
    else:
        proxied = await asyncio.to_thread(wrk, placement, s.nginx_proxy, paths, sizes.seconds)
        report.add(_figure("pages warm: nginx -> pypiserver", proxied, "pages/s", direct))
    warm = await asyncio.to_thread(wrk, placement, s.gateway, paths, sizes.seconds)
    figure = _figure("pages warm: gateway -> pypiserver", warm, "pages/s", direct, target=">= 20")
    figure.met = figure.ratio is not None and figure.ratio >= 20
    report.add(figure)
    report.add(
        Figure(
            "  the same: pages/s, gateway on one core",
            warm.rate,
            "pages/s",
            target=">= 5000",
            met=warm.rate >= 5000,
            note="one core" if placement.split else "not pinned: one CPU",
        )
    )
    warm_json = await asyncio.to_thread(wrk, placement, s.gateway, paths, sizes.seconds, accept=JSON)
    figure = _figure("pages warm: gateway, Accept: JSON", warm_json, "pages/s", direct, target=">= 20")
    figure.met = figure.ratio is not None and figure.ratio >= 20
    figure.note = f"served {json_type}"
    report.add(figure)


async def ceiling(report: Report, s: Stack, catalogue: Catalogue, placement: Placement, sizes: Sizes) -> None:
    names = (
        "pages: static index (nginx) direct",
        "pages: gateway -> static index",
        "files: static index (nginx) direct",
        "files: gateway -> static index",
        "files: gateway, embedded index, same files",
    )
    if s.static is None or s.gateway_static is None or s.gateway_embedded is None:
        for name in names:
            report.add(_skipped(name, NO_NGINX))
        return
    pages, files = catalogue.page_paths(), catalogue.file_paths()
    await cold_pass(placement, s.gateway_static, pages)  # warm the gateway's cache, as for any index
    direct = await asyncio.to_thread(wrk, placement, s.static, pages, sizes.seconds)
    report.add(_figure(names[0], direct, "pages/s"))
    through = await asyncio.to_thread(wrk, placement, s.gateway_static, pages, sizes.seconds)
    figure = _figure(names[1], through, "pages/s", direct, target=">= 0.2")
    figure.met = figure.ratio is not None and figure.ratio >= 0.2
    report.add(figure)
    direct = await asyncio.to_thread(wrk, placement, s.static, files, sizes.seconds)
    report.add(_figure(names[2], direct, "MB/s"))
    through = await asyncio.to_thread(wrk, placement, s.gateway_static, files, sizes.seconds)
    figure = _figure(names[3], through, "MB/s", direct, target=">= 0.6")
    figure.met = figure.ratio is not None and figure.ratio >= 0.6
    report.add(figure)
    embedded = await asyncio.to_thread(wrk, placement, s.gateway_embedded, files, sizes.seconds)
    report.add(_figure(names[4], embedded, "MB/s", direct, note="baseline: nginx on the same directory"))


def pip_download(url: str, requirements: list[str], target: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [PYTHON, "-m", "pip", "--isolated", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:"]
        + ["--disable-pip-version-check", "--index-url", url, "-d", str(target), *requirements],
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"pip download from {url} failed: {result.stdout}{result.stderr}")
    return elapsed


async def pip_downloads(report: Report, s: Stack, catalogue: Catalogue, placement: Placement, sizes: Sizes) -> None:
    requirements = catalogue.projects[: sizes.pip_packages]
    best: dict[str, float] = {}
    await asyncio.to_thread(
        pip_download, f"{s.pypiserver.url}/simple/", requirements, placement.workdir / "pip-warm-up"
    )
    for run in range(sizes.pip_runs):
        for server in (s.pypiserver, s.gateway):
            placement.place(server)
            target = placement.workdir / f"pip-{server.label}-{run}"
            elapsed = await asyncio.to_thread(pip_download, f"{server.url}/simple/", requirements, target)
            got = {path.name: sha256_of(path) for path in target.iterdir()}
            if len(got) != len(requirements) or any(catalogue.files.get(n) != h for n, h in got.items()):
                raise RuntimeError(f"pip download via {server.label} got the wrong files: {sorted(got)}")
            best[server.label] = min(best.get(server.label, elapsed), elapsed)
    n = len(requirements)
    report.add(Figure(f"pip download {n} packages: direct", best["pypiserver"], "s", note="best of runs"))
    report.add(
        Figure(
            f"pip download {n} packages: gateway",
            best["gateway"],
            "s",
            best["pypiserver"],
            best["gateway"] / best["pypiserver"],
            note="best of runs; baseline: direct",
        )
    )


async def upload_visibility(report: Report, s: Stack, placement: Placement) -> None:
    """After each page has been served (and so could be cached), an upload through the gateway must show on
    the very next request: the project's page in HTML and JSON, and the root for a new project."""
    placement.restore()
    gw = s.gateway_process
    gw.add_user("bench-reader", "benchmark password")
    token = gw.cli("token", "create", "bench-reader", "--description", "bench").stdout.strip()
    project = "bench-read-fresh"
    missing: list[str] = []
    for version in ("1.0.0", "1.0.1"):
        for _ in range(2):
            await _get(f"{gw.url}/simple/")
            await _get(f"{gw.url}/simple/{project}/")
            await _get(f"{gw.url}/simple/{project}/", accept=JSON)
        wheel = make_wheel(placement.workdir, project, version)
        result = await asyncio.to_thread(twine, gw.url, "__token__", token, wheel)
        if result.returncode != 0:
            raise RuntimeError(f"upload of {wheel.name} through the gateway failed: {result.stdout}{result.stderr}")
        checks = {
            f"/simple/{project}/ (HTML)": (f"{gw.url}/simple/{project}/", "", wheel.name),
            f"/simple/{project}/ (JSON)": (f"{gw.url}/simple/{project}/", JSON, wheel.name),
            "/simple/": (f"{gw.url}/simple/", "", project),
        }
        for label, (url, accept, expected) in checks.items():
            status, _, body = await _get(url, accept=accept)
            if status != 200 or expected.encode() not in body:
                missing.append(f"{label} after {version}")
    report.add(
        Figure(
            "upload visible on the very next request",
            0 if missing else 1,
            "yes" if not missing else "no",
            target="next request",
            met=not missing,
            note="; ".join(missing) or "HTML and JSON page, root page; new project and new version",
        )
    )


async def run(report: Report, quick: bool, workdir: Path) -> None:
    sizes = Sizes.of(quick)
    placement = Placement(workdir)
    catalogue = await asyncio.to_thread(build, workdir / "wheels", sizes)
    client = (
        f"wrk -t1 -c{CONNECTIONS}"
        if shutil.which("wrk")
        else f"bench/load.py -c{CONNECTIONS} (wrk is not installed: apt-get install -y wrk; this client is the "
        "bottleneck on fast servers)"
    )
    report.machine["read_load_generator"] = client
    print(
        f"reads: {sizes.projects} projects x {sizes.files_per_project} wheels of {sizes.file_size // 1024} KiB, "
        f"{client} for {sizes.seconds} s per figure; "
        + ("measured server on CPU 0, everything else on CPU 1" if placement.split else "one CPU: nothing pinned")
        + "; cpu_* are cores used (CPU seconds per second)",
        flush=True,
    )
    with stack(workdir, catalogue, placement) as s:
        await simple_pages(report, s, catalogue, placement, sizes)
        await ceiling(report, s, catalogue, placement, sizes)
        await pip_downloads(report, s, catalogue, placement, sizes)
        await upload_visibility(report, s, placement)
