"""Benchmarks: every figure against a baseline measured in the same run, on loopback.

    make bench            # full run, writes bench/results/latest.json
    make bench QUICK=1    # under a minute, smaller sizes and counts

Results are verified as they go (sha256 of what the index stored), so a fast wrong path cannot win.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from bench import reads, workers
from bench.common import Body, Figure, MiB, Report, machine, post, start_nginx, token_auth
from gateway import tokens
from gateway.accounts import create_token
from gateway.authentication import Authenticator, TokenSettings
from gateway.credentials import TokenCredentials
from gateway.metrics import Metrics
from gateway.password_checks import PasswordChecks
from gateway.store import Store
from tests.conftest import (
    PYTHON,
    GatewayProcess,
    Index,
    free_port,
    index_upstream,
    start_gateway,
    start_index,
    stop,
    wait_http,
)
from tests.dists import make_wheel, sha256_of
from tests.harness import postgresql

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sizes:
    large: int
    large_runs: int
    ceiling: int
    ceiling_runs: int
    memory_big: int
    memory_clients: int
    memory_each: int
    small_count: int
    small_latency_count: int
    token_iterations: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(48 * MiB, 3, 96 * MiB, 3, 256 * MiB, 20, 8 * MiB, 300, 60, 2_000)
        return cls(200 * MiB, 3, 400 * MiB, 3, 1024 * MiB, 20, 50 * MiB, 2_000, 300, 20_000)


# ---------------------------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    index: Index
    gateway: GatewayProcess
    token: str
    discard_url: str
    discard_gateway: GatewayProcess
    discard_token: str
    nginx_url: str | None


def _token(gw: GatewayProcess, user: str) -> str:
    gw.add_user(user, "benchmark password")
    return gw.cli("token", "create", user, "--description", "bench").stdout.strip()


@contextlib.contextmanager
def stack(workdir: Path) -> Iterator[Stack]:
    processes: list[subprocess.Popen[bytes]] = []
    index = start_index(workdir / "index")
    processes.append(index.process)
    discard_port = free_port()
    discard = subprocess.Popen([PYTHON, "-m", "bench.discard", "--port", str(discard_port)], cwd=Path.cwd())
    processes.append(discard)
    discard_url = f"http://127.0.0.1:{discard_port}/"
    wait_http(discard_url + "health", discard)
    # One bench user sends 20 large and 32 small uploads at once: past the default per-user cap (8), which the
    # bench is not measuring.
    limits = {"max_file_size": "2GiB", "read_timeout": "120s", "max_uploads_per_user": "64"}
    quiet = {"logging": {"level": "warning"}, "limits": limits}
    gw = start_gateway(workdir / "gw", index_upstream(index, workdir / "gw"), **quiet)
    processes.append(gw.process)
    gw_discard = start_gateway(workdir / "gw-discard", {"url": discard_url}, **quiet)
    processes.append(gw_discard.process)
    nginx_url, nginx = _start_nginx(workdir / "nginx", index.url)
    if nginx is not None:
        processes.append(nginx)
    try:
        yield Stack(index, gw, _token(gw, "bench"), discard_url, gw_discard, _token(gw_discard, "bench"), nginx_url)
    finally:
        for process in reversed(processes):
            stop(process)


def _start_nginx(directory: Path, upstream: str) -> tuple[str | None, subprocess.Popen[bytes] | None]:
    started = start_nginx(
        directory,
        f"""    client_max_body_size 0;
    location / {{
      proxy_pass {upstream};
      proxy_request_buffering off;
      proxy_http_version 1.1;
    }}""",
    )
    return started if started is not None else (None, None)


# ---------------------------------------------------------------------------------------------------- figures


def twine_upload(url: str, user: str, password: str, wheel: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "twine",
            "upload",
            "--repository-url",
            url,
            f"--username={user}",
            f"--password={password}",  # one joined argument: a password may start with "-"
            "--non-interactive",
            "--disable-progress-bar",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"},
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"twine to {url} failed: {result.stdout}{result.stderr}")
    return elapsed


def large_upload(report: Report, s: Stack, sizes: Sizes, workdir: Path) -> None:
    """twine, alternating direct and through the gateway: the median of the pairs' ratios (a slow moment of the
    machine spoils one pair, not the figure)."""
    routes: dict[str, tuple[str, str, str]] = {
        "direct": (s.index.url, s.index.username, s.index.password),
        "gateway": (f"{s.gateway.url}/legacy/", "__token__", s.token),
    }
    if s.nginx_url:
        routes["nginx"] = (f"{s.nginx_url}/", s.index.username, s.index.password)
    times: dict[str, list[float]] = {route: [] for route in routes}
    for run in range(sizes.large_runs):
        for route, (url, user, password) in routes.items():
            directory = workdir / f"large-{route}-{run}"
            directory.mkdir()
            wheel = make_wheel(
                directory,
                "bench-large",
                f"{run}.{len(times[route])}.{uuid.uuid4().int % 10**6}",
                payload_size=sizes.large,
            )
            elapsed = twine_upload(url, user, password, wheel)
            if sha256_of(s.index.packages / wheel.name) != sha256_of(wheel):
                raise RuntimeError(f"the index stored a different {wheel.name} via {route}")
            (s.index.packages / wheel.name).unlink()
            times[route].append(elapsed)
    direct = statistics.median(times["direct"])
    mib = sizes.large // MiB
    pairs = f"median of {sizes.large_runs} alternating pairs"
    report.add(Figure(f"twine {mib} MiB: direct to pypiserver", direct, "s", note=pairs))
    ratio = statistics.median(g / d for g, d in zip(times["gateway"], times["direct"], strict=True))
    report.add(
        Figure(
            f"twine {mib} MiB: through the gateway",
            statistics.median(times["gateway"]),
            "s",
            direct,
            ratio,
            "<= 1.05",
            ratio <= 1.05,
            "baseline: direct; ratio: median of the pairs'",
        )
    )
    if "nginx" in times:
        ratio = statistics.median(g / n for g, n in zip(times["gateway"], times["nginx"], strict=True))
        report.add(Figure(f"twine {mib} MiB: through streaming nginx", statistics.median(times["nginx"]), "s"))
        report.add(Figure("gateway / streaming nginx", ratio, "x", None, ratio, "<= 1.03", ratio <= 1.03))
    else:
        report.add(Figure("gateway / streaming nginx", 0, "x", note="nginx not installed (apt-get install nginx)"))


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU time, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hashing_floor(body: Body) -> float:
    """CPU seconds to hash the body's file once with sha256 and once with blake2b, in this process: the work a
    validating gateway cannot avoid."""
    sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=32)
    started = time.process_time()
    for chunk in body.wheel.chunks():
        sha.update(chunk)
        blake.update(chunk)
    return time.process_time() - started


async def ceiling(report: Report, s: Stack, sizes: Sizes) -> None:
    """The discard index's ceiling, direct and through the gateway, and the gateway's CPU per GB against the
    hashing floor measured beside each run."""
    pid = s.discard_gateway.pid
    cpu_ratios: list[float] = []
    cpu_per_gb: list[float] = []
    floors: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        direct = gateway = float("inf")
        for run in range(sizes.ceiling_runs):
            direct = min(
                direct, await post(session, s.discard_url, Body("bench-ceiling", f"0.{run}", sizes.ceiling), None)
            )
            body = Body("bench-ceiling", f"1.{run}.{uuid.uuid4().int % 10**6}", sizes.ceiling)
            floor = await asyncio.to_thread(hashing_floor, body)
            used = cpu_seconds(pid)
            gateway = min(
                gateway, await post(session, f"{s.discard_gateway.url}/legacy/", body, token_auth(s.discard_token))
            )
            used = cpu_seconds(pid) - used
            gb = body.length / 1e9
            cpu_ratios.append(used / floor)
            cpu_per_gb.append(used / gb)
            floors.append(floor / gb)
    mb = sizes.ceiling / 1e6
    report.add(Figure(f"POST {sizes.ceiling // MiB} MiB to a discard index", mb / direct, "MB/s"))
    ratio = direct / gateway
    report.add(
        Figure(
            "  the same through the gateway (digests on)",
            mb / gateway,
            "MB/s",
            mb / direct,
            ratio,
            ">= 0.70",
            ratio >= 0.7,
            "baseline: direct",
        )
    )
    ratio = statistics.median(cpu_ratios)
    report.add(
        Figure(
            "  gateway CPU per GB (x floor)",
            statistics.median(cpu_per_gb),
            "core-s/GB",
            statistics.median(floors),
            ratio,
            "<= 1.25",
            ratio <= 1.25,
            "baseline: sha256 + blake2b of the same bytes",
        )
    )
    bound = await asyncio.to_thread(pump_bound, sizes)
    for key, label in (("one_thread", "both hashes in one thread"), ("lane", "blake2b in a second thread")):
        report.add(
            Figure(
                f"  pump bound, {label} (x floor)",
                bound[f"{key}_x_floor"],
                "x",
                note=f"{bound[f'{key}_mb_s']:.0f} MB/s; bench/pump_bound.py: recv, hash, send, no parsing",
            )
        )


def pump_bound(sizes: Sizes) -> dict[str, float]:
    """What a pump with no parsing at all reaches on this machine (`bench.pump_bound`, a process of its own: it
    forks its sending and discarding ends)."""
    command = [PYTHON, "-m", "bench.pump_bound", "--size-mib", str(sizes.ceiling // MiB)]
    done = subprocess.run([*command, "--runs", str(sizes.ceiling_runs)], capture_output=True, check=True)
    return dict(json.loads(done.stdout))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[Callable[[], float]]:
    idle = rss_kib(pid)
    peak = [idle]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield lambda: (peak[0] - idle) / 1024
    finally:
        done.set()
        thread.join()


async def memory(report: Report, s: Stack, sizes: Sizes) -> None:
    url, auth, pid = f"{s.discard_gateway.url}/legacy/", token_auth(s.discard_token), s.discard_gateway.pid
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        await post(session, url, Body("bench-memory", "0.0.0", MiB), auth)  # warm up: threads, caches
        with peak_rss(pid) as grown:
            await post(session, url, Body("bench-memory", f"1.{uuid.uuid4().int % 10**6}", sizes.memory_big), auth)
        one = grown()
        with peak_rss(pid) as grown:
            bodies = [
                Body("bench-memory", f"2.{i}.{uuid.uuid4().int % 10**6}", sizes.memory_each)
                for i in range(sizes.memory_clients)
            ]
            await asyncio.gather(*(post(session, url, body, auth) for body in bodies))
        many = grown()
    report.add(
        Figure(f"peak RSS over idle, one {sizes.memory_big // MiB} MiB upload", one, "MiB", target="< 32", met=one < 32)
    )
    report.add(
        Figure(
            f"peak RSS over idle, {sizes.memory_clients} x {sizes.memory_each // MiB} MiB at once",
            many,
            "MiB",
            target="< 96",
            met=many < 96,
        )
    )


async def small_uploads(report: Report, s: Stack, sizes: Sizes) -> None:
    direct = (s.index.url, aiohttp.encode_basic_auth(s.index.username, s.index.password))
    through = (f"{s.gateway.url}/legacy/", token_auth(s.token))

    async def run(target: tuple[str, str], count: int, concurrency: int, tag: str) -> tuple[float, list[float]]:
        bodies = [Body(f"bench-small-{i % 8}", f"{tag}.{i}", 10 * 1024) for i in range(count)]
        queue: asyncio.Queue[Body] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        latencies: list[float] = []
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                while not queue.empty():
                    latencies.append(await post(session, target[0], queue.get_nowait(), target[1]))

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        stored = set(s.index.files())
        missing = [b.filename for b in bodies if b.filename not in stored]
        if missing:
            raise RuntimeError(f"{len(missing)} small uploads missing on the index, e.g. {missing[0]}")
        for body in bodies:  # pypiserver slows down as its directory fills: each run starts from the same state
            (s.index.packages / body.filename).unlink()
        return count / elapsed, latencies

    for i in range(8):  # uploaded directly first, the projects exist on the index: the gateway wants an owner
        await asyncio.to_thread(s.gateway.cli, "project", "grant", f"bench-small-{i}", "bench")
    stamp = uuid.uuid4().int % 10**6
    direct_rate, _ = await run(direct, sizes.small_count, 32, f"1.{stamp}")
    gateway_rate, _ = await run(through, sizes.small_count, 32, f"2.{stamp}")
    _, direct_lat = await run(direct, sizes.small_latency_count, 1, f"3.{stamp}")
    _, gateway_lat = await run(through, sizes.small_latency_count, 1, f"4.{stamp}")
    ratio = gateway_rate / direct_rate
    report.add(Figure(f"{sizes.small_count} x 10 KiB, 32 clients: direct", direct_rate, "uploads/s"))
    report.add(
        Figure(
            "  the same through the gateway",
            gateway_rate,
            "uploads/s",
            direct_rate,
            ratio,
            ">= 0.90",
            ratio >= 0.9,
            "baseline: direct",
        )
    )
    for q, target in (("p50", 2.0), ("p99", None)):
        pick = statistics.median if q == "p50" else (lambda xs: sorted(xs)[int(len(xs) * 0.99) - 1])
        added = (pick(gateway_lat) - pick(direct_lat)) * 1000
        report.add(
            Figure(
                f"  added latency {q}, one client at a time",
                added,
                "ms",
                pick(direct_lat) * 1000,
                None,
                f"< {target}" if target else "",
                added < target if target else None,
                "baseline: direct",
            )
        )


@dataclass
class Verifications:
    """Token verifications per second on one backend: the HMAC chain alone, with the row read from the store each
    time (what a replica does for a token it has not seen), and warm (row and result cached)."""

    cold: float
    with_row: float
    warm: float


async def verifications(url: str, sizes: Sizes) -> Verifications:
    store = await Store.open(url)
    try:
        secret = os.urandom(32)
        settings = TokenSettings(prefix="pypi", location="bench", server_secret=secret)
        user = await store.add_user("bench", "x")
        token, row = await create_token(store, settings, user, description="bench", projects=[], expires_at=None)
        stored = [tokens.deserialize(c, user_id=user.id) for c in row.caveats]
        context = tokens.VerifyContext(user_id=user.id, project="bench", project_id=None, now=int(time.time()))
        n = sizes.token_iterations
        started = time.perf_counter()
        for _ in range(n):
            parsed = tokens.parse(token, prefix="pypi")
            tokens.verify(parsed, key=tokens.root_key(secret, row.secret), context=context, stored_caveats=stored)
        cold = n / (time.perf_counter() - started)
        authenticator = Authenticator(store, settings, Metrics(), PasswordChecks(workers=1, queue=0, metrics=Metrics()))
        started = time.perf_counter()
        for _ in range(n // 10):
            identity = await authenticator.authenticate(TokenCredentials(token))
            authenticator._rows.clear()
            authenticator._parsed.clear()
            authenticator._verified.clear()
            authenticator.check_token(identity, "bench", None, time.time())
        with_row = (n // 10) / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(n * 5):
            identity = await authenticator.authenticate(TokenCredentials(token))
            authenticator.check_token(identity, "bench", None, time.time())
        warm = n * 5 / (time.perf_counter() - started)
    finally:
        await store.close()
    return Verifications(cold, with_row, warm)


async def token_verification(report: Report, sizes: Sizes, workdir: Path) -> None:
    """On SQLite, and on a PostgreSQL of the bench's own (tests/harness/postgresql.py), one after the other."""
    sqlite = await verifications(f"sqlite:///{workdir / 'tokens.db'}", sizes)
    server = await asyncio.to_thread(postgresql.start, durable=True)
    try:
        pg = await verifications(server.create(), sizes)
    finally:
        await asyncio.to_thread(server.stop)
    report.add(
        Figure(
            "token verifications, cold (parse + HMAC chain)",
            sqlite.cold,
            "per s",
            target=">= 5000",
            met=sqlite.cold >= 5000,
        )
    )
    report.add(Figure("  cold, with the SQLite row read each time", sqlite.with_row, "per s", note="informational"))
    report.add(
        Figure(
            "  cold, with the PostgreSQL row read each time",
            pg.with_row,
            "per s",
            baseline=sqlite.with_row,
            ratio=pg.with_row / sqlite.with_row,
            note="PostgreSQL against SQLite, same run",
        )
    )
    report.add(
        Figure("token verifications, warm (cached)", sqlite.warm, "per s", target=">= 50000", met=sqlite.warm >= 50000)
    )
    report.add(
        Figure(
            "  warm, on PostgreSQL",
            pg.warm,
            "per s",
            baseline=sqlite.warm,
            ratio=pg.warm / sqlite.warm,
            note="cached: no store read (the difference is the machine's noise)",
        )
    )


async def run_all(report: Report, sizes: Sizes, workdir: Path, only: str | None) -> None:
    if only in (None, "uploads"):
        with stack(workdir / "uploads") as s:
            await asyncio.to_thread(large_upload, report, s, sizes, workdir)
            await ceiling(report, s, sizes)
            await memory(report, s, sizes)
            await small_uploads(report, s, sizes)
    if only in (None, "uploads", "tokens"):
        await token_verification(report, sizes, workdir)
    if only in (None, "reads"):
        await reads.run(report, report.quick, workdir / "reads")
    if only in (None, "workers"):
        await workers.run(report, report.quick, workdir / "workers")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        choices=("uploads", "tokens", "reads", "workers"),
        help="run one part (results go to <name>-<part>.json)",
    )
    args = parser.parse_args()
    report = Report(machine(), args.quick)
    print(f"machine: {report.machine}")
    print(f"{'figure':<44} {'value':>10} {'unit':<9} {'baseline':>10} {'ratio':>7}  {'target':<12} verdict")
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        asyncio.run(run_all(report, Sizes.of(args.quick), Path(workdir), args.only))
    RESULTS.mkdir(exist_ok=True)
    name = ("quick" if args.quick else "latest") + (f"-{args.only}" if args.only else "") + ".json"
    (RESULTS / name).write_text(json.dumps({**asdict(report)}, indent=2) + "\n")
    missed = [f.name for f in report.figures if f.met is False]
    print(f"wrote bench/results/{name}; targets missed: {len(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
