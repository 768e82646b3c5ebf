"""`serve --workers N`: small uploads per second and warm simple pages per second with 2 and 3 workers, each as a
ratio against one worker measured in the same run, on this machine, nothing pinned (the point is to use every
core).

Uploads go to the discard index (bench/discard.py), so the gateway (its parsing, checks, token verification and
SQLite records, which the workers share) is what is measured, not pypiserver's 25 uploads/s. Pages are served
from the gateway's cache (each worker warms its own first) in front of pypiserver, under wrk. The load generator
runs on the same cores as the workers: on a 2-core machine three workers cannot triple anything, and the figure
says what they gain there. The gateways run one after the other, alternating, best of the rounds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench.common import Body, Figure, Report, post, token_auth
from bench.reads import Load, Placement, Server, _cpu_seconds, _tree, wrk
from tests.conftest import PYTHON, GatewayProcess, index_upstream, start_gateway, start_index
from tests.dists import make_wheel
from tests.harness import free_port, stop, wait_http

COUNTS = (1, 2, 3)  # 3 is issue #18's figure; 2 is as many as this machine has cores
CLIENTS = 32
PROJECTS = 8
WARM_UP = 6  # seconds


def _gateway(directory: Path, upstream: dict[str, object], workers: int) -> GatewayProcess:
    return start_gateway(
        directory,
        upstream,
        server={"workers": workers},
        logging={"level": "warning"},
        limits={"max_uploads_per_user": "64"},
        reads={"cache_ttl": "10m"},
    )


@contextmanager
def _running(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    try:
        yield gateway
    finally:
        stop(gateway.process)


async def _uploads(gateway: GatewayProcess, token: str, count: int) -> tuple[float, float]:
    """Uploads per second, and the cores the gateway's processes used meanwhile: `count` 10 KiB wheels, CLIENTS
    at a time, each answered 200."""
    stamp = uuid.uuid4().int % 10**6
    queue: asyncio.Queue[Body] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(Body(f"bench-workers-{i % PROJECTS}", f"{stamp}.{i}", 10 * 1024))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as session:

        async def client() -> None:
            while not queue.empty():
                await post(session, f"{gateway.url}/legacy/", queue.get_nowait(), token_auth(token))

        pids = _tree(gateway.pid)
        started, cpu = time.perf_counter(), _cpu_seconds(pids)
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        return count / elapsed, (_cpu_seconds(pids) - cpu) / elapsed


def _pages(gateway: GatewayProcess, paths: list[str], seconds: int, workdir: Path) -> Load:
    """Warm pages per second under wrk, after a pass long enough to fill every worker's cache from pypiserver
    (about 23 pages/s: 3 workers x 20 pages take 3 s)."""
    placement = Placement(workdir)
    placement.split = False  # every core for the workers: pinning would measure one
    server = Server(f"gateway-{uuid.uuid4().hex[:6]}", gateway.url, gateway.pid)
    placement.servers = [server]
    wrk(placement, server, paths, WARM_UP)
    return wrk(placement, server, paths, seconds)


async def run(report: Report, quick: bool, workdir: Path) -> None:
    count, seconds, rounds = (300, 2, 1) if quick else (2000, 10, 3)
    workdir.mkdir(parents=True)
    discard_port = free_port()
    discard = subprocess.Popen([PYTHON, "-m", "bench.discard", "--port", str(discard_port)], cwd=Path.cwd())
    index = start_index(workdir / "index")
    try:
        discard_url = f"http://127.0.0.1:{discard_port}/"
        wait_http(discard_url + "health", discard)
        wheels = workdir / "wheels"
        wheels.mkdir()
        names = [f"bench-page-{i}" for i in range(20)]
        for name in names:
            shutil.copy(make_wheel(wheels, name, "1.0"), index.packages)
        paths = [f"/simple/{name}/" for name in names]
        uploads: dict[int, tuple[float, float]] = {}
        pages: dict[int, Load] = {}
        for round_ in range(rounds):
            for workers in COUNTS:
                where = workdir / f"{round_}-{workers}"
                with _running(_gateway(where / "up", {"url": discard_url}, workers)) as gateway:
                    gateway.add_user("bench", "benchmark password")
                    token = gateway.cli("token", "create", "bench").stdout.strip()
                    for i in range(PROJECTS):
                        gateway.cli("project", "grant", f"bench-workers-{i}", "bench")
                    await _uploads(gateway, token, CLIENTS)  # warm up: every worker's threads and caches
                    measured = await _uploads(gateway, token, count)
                    uploads[workers] = max(uploads.get(workers, (0.0, 0.0)), measured)
                upstream = index_upstream(index, where / "pages")
                with _running(_gateway(where / "pages", upstream, workers)) as gateway:
                    load = await asyncio.to_thread(_pages, gateway, paths, seconds, where)
                    if workers not in pages or load.rate > pages[workers].rate:
                        pages[workers] = load
    finally:
        stop(index.process)
        stop(discard)
    cores = f"{os.cpu_count()} cores, client on the same cores"
    one = COUNTS[0]
    rate_one, cpu_one = uploads[one]
    report.add(
        Figure(
            f"{count} x 10 KiB uploads, {CLIENTS} clients: 1 worker",
            rate_one,
            "uploads/s",
            note=f"{cores}; to the discard index",
            detail={"cpu_server": round(cpu_one, 2)},
        )
    )
    for workers in COUNTS[1:]:
        rate, cpu = uploads[workers]
        report.add(
            Figure(
                f"  the same, {workers} workers",
                rate,
                "uploads/s",
                rate_one,
                rate / rate_one,
                note="baseline: 1 worker",
                detail={"cpu_server": round(cpu, 2)},
            )
        )
    report.add(
        Figure("warm simple pages, wrk: 1 worker", pages[one].rate, "pages/s", note=cores, detail=pages[one].detail())
    )
    for workers in COUNTS[1:]:
        report.add(
            Figure(
                f"  the same, {workers} workers",
                pages[workers].rate,
                "pages/s",
                pages[one].rate,
                pages[workers].rate / pages[one].rate,
                note="baseline: 1 worker",
                detail=pages[workers].detail(),
            )
        )
