"""The out-of-the-box index: pypiserver (see `index_server`) as a child process on a free loopback port.

It accepts uploads only with a credential generated at each start and known to this process alone, so
nobody on the machine can bypass the gateway by posting to the index directly. The child dies with us:
SIGTERM on a clean stop, and the kernel's parent-death signal if we are killed.

One gateway process starts it on its event loop (`start`, `stop`). Under `serve --workers N` the supervisor
starts it once, before any event loop or thread exists, with `launch` and `terminate` (blocking, no loop), and
every worker it forks uses that one index and its credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp

SERVICE_USER = "upload-gateway"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


class EmbeddedIndexError(Exception):
    """The embedded index could not start; the message says why."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """The kernel sends this process SIGTERM when its parent dies (called in a child, before it runs)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedIndex:
    def __init__(self, data_dir: Path, *, max_body: int) -> None:
        self.data_dir = data_dir
        self.max_body = max_body
        self.username = SERVICE_USER
        self.password = secrets.token_urlsafe(32)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._process: asyncio.subprocess.Process | None = None
        self._launched: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gateway.index_server",
            "--port",
            str(self.port),
            "--max-body",
            str(self.max_body),
            str(self.data_dir),
        ]

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            *self._command(), stdin=asyncio.subprocess.PIPE, stdout=sys.stderr, preexec_fn=die_with_parent
        )
        assert self._process.stdin is not None
        self._process.stdin.write(self.password.encode() + b"\n")
        await self._process.stdin.drain()
        self._process.stdin.close()
        await self._wait_until_ready()

    async def _wait_until_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                if self._process is not None and self._process.returncode is not None:
                    raise EmbeddedIndexError(f"the embedded pypiserver exited with status {self._process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + "health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise EmbeddedIndexError(f"the embedded pypiserver did not answer on port {self.port} in {START_TIMEOUT:.0f}s")

    def launch(self) -> None:
        """`start` without an event loop, for the supervisor of several workers: no loop, no thread left."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        process = self._launched = subprocess.Popen(
            self._command(), stdin=subprocess.PIPE, stdout=sys.stderr, preexec_fn=die_with_parent
        )
        assert process.stdin is not None
        process.stdin.write(self.password.encode() + b"\n")
        process.stdin.close()
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedIndexError(f"the embedded pypiserver exited with status {process.returncode}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                direct.open(self.url + "health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        self.terminate()
        raise EmbeddedIndexError(f"the embedded pypiserver did not answer on port {self.port} in {START_TIMEOUT:.0f}s")

    def terminate(self) -> None:
        """`stop` for an index started with `launch`."""
        process, self._launched = self._launched, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):  # not `wait_for`, which on 3.11 may drop a cancel
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
