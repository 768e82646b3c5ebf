"""The bound any hashing pump reaches on this machine: one process that only moves bytes from a socket to a
socket on loopback (`recv_into` 256 KiB buffers, sha256 and blake2b `update`, `sendall`), with no multipart
parsing at all, between a sending and a discarding child. Its CPU per GB over the hashing floor, measured in the
same process, is what the gateway's `x floor` can at best approach; its MB/s is what two cores shared by a
client, a pump and an index can move while hashing.

    python -m bench.pump_bound --size-mib 400 --runs 3    # prints one JSON object
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

BUFFER = 256 * 1024
BLOCK = os.urandom(BUFFER)


def hashing_floor(size: int) -> float:
    sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=32)
    started = time.process_time()
    for _ in range(size // BUFFER):
        sha.update(BLOCK)
        blake.update(BLOCK)
    return time.process_time() - started


def _child(work: socket.socket, send: bool, size: int) -> None:
    if send:
        view = memoryview(BLOCK)
        for _ in range(size // BUFFER):
            work.sendall(view)
    else:
        sink = bytearray(2**20)
        while work.recv_into(sink):
            pass
    work.close()
    os._exit(0)


def _connected_pair(send: bool, size: int) -> socket.socket:
    """A loopback connection whose other end is a forked child that sends `size` bytes or discards all."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        if os.fork() == 0:
            _child(socket.create_connection(("127.0.0.1", port)), send, size)
        mine, _ = server.accept()
    return mine


def pump(size: int, *, lane: bool) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to move `size` bytes through, hashed; blake2b in a second thread if `lane`."""
    source, sink = _connected_pair(True, size), _connected_pair(False, size)
    sha, blake = hashlib.sha256(), hashlib.blake2b(digest_size=32)
    buffers = [bytearray(BUFFER), bytearray(BUFFER)]
    lanes = ThreadPoolExecutor(max_workers=1) if lane else None
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    turn = 0
    while received := source.recv_into(buffers[turn]):
        view = memoryview(buffers[turn])[:received]
        if lanes is not None:
            blake_done = lanes.submit(blake.update, view)
            sha.update(view)
            blake_done.result()
        else:
            sha.update(view)
            blake.update(view)
        sink.sendall(view)
        turn ^= 1
    sink.close()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
    source.close()
    os.wait()
    os.wait()
    if lanes is not None:
        lanes.shutdown()
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * 2**20
    result: dict[str, float] = {}
    for lane in (False, True):
        ratios, rates = [], []
        for _ in range(args.runs):
            floor = hashing_floor(size)
            cpu, wall = pump(size, lane=lane)
            ratios.append(cpu / floor)
            rates.append(size / 1e6 / wall)
        key = "lane" if lane else "one_thread"
        result[f"{key}_x_floor"] = statistics.median(ratios)
        result[f"{key}_mb_s"] = statistics.median(rates)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
