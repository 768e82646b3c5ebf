"""The read benchmark's load generator where wrk is not installed: keep-alive connections, each requesting
random paths back to back for a while, printing the same one-line result as the benchmark's wrk script.

One Python process tops out at a few thousand small responses per second, so on fast servers this
measures the client: bench/reads.py says so next to every figure it drives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

import aiohttp


async def load(url: str, paths: list[str], seconds: float, connections: int, accept: str) -> dict[str, int]:
    latencies: list[float] = []
    received = errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def connection() -> None:
            nonlocal received, errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.get(random.choice(paths)) as resp:
                        body = await resp.read()
                        received += len(body)
                        errors += resp.status >= 400
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(connections)))
        duration = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "duration_us": int(duration * 1e6),
        "bytes": received,
        "errors": errors,
        "p50_us": int(latencies[len(latencies) // 2] * 1e6),
        "p99_us": int(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--paths", type=Path, required=True, help="a JSON list of paths")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--accept", default="")
    args = parser.parse_args()
    paths = json.loads(args.paths.read_text())
    print("WRK " + json.dumps(asyncio.run(load(args.url, paths, args.seconds, args.connections, args.accept))))


if __name__ == "__main__":
    main()
