"""Shared test helpers: the process helpers here (real servers for the end-to-end tests, started as subprocesses
on free loopback ports), and in its modules the in-process layer's fake index, app and accounts, the config files
and the twine-shaped bodies both layers send.

The process helpers live here rather than in tests/conftest.py so that harness modules (devpi.py) can use
them without importing the conftest that imports them.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(
    url: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT, *, context: ssl.SSLContext | None = None
) -> None:
    """Poll `url` until it answers 200; fail at once if `process` exits first. `context`: an https URL's trust."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
