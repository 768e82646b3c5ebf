"""`serve`: bind `server.listen`, run the app until SIGINT/SIGTERM, and print the banner.

The only command that imports the server (aiohttp.web, the app, the account pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import connections, logs
from gateway.app import SERVER_OPTIONS, create_app
from gateway.cli.common import CommandError
from gateway.config import CONFIG_VARIABLE, Config, ConfigError
from gateway.embedded import EmbeddedIndexError
from gateway.store import StoreError


def serve(config: Config, cli: str | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM. `cli`: how to run the CLI on the same store, for the banner (None:
    there is no configuration file, which the CLI needs)."""
    sockets = _listen(config.server.host, config.server.port)
    logs.setup(config.logging, config.tokens.prefix)
    try:
        asyncio.run(_serve(config, sockets, cli))
    except (EmbeddedIndexError, StoreError) as exc:  # an index that cannot start; a store that cannot open
        raise CommandError(str(exc)) from None
    finally:
        for sock in sockets:
            sock.close()
    return 0


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for `server.listen` (every address the host has), before anything starts: a taken address
    is one line, and a second `serve` touches neither the store nor the index."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"server.listen: cannot listen on {where}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {where}: the address is in use (is the gateway running already?); stop what "
                "holds it, or listen elsewhere with server.listen or GATEWAY_SERVER_LISTEN=HOST:PORT"
            ) from None
        raise ConfigError(f"server.listen: cannot listen on {where}: {exc.strerror or exc}") from None
    return sockets


async def _serve(config: Config, sockets: list[socket.socket], cli: str | None) -> None:
    runner = connections.runner(create_app(config), config, access_log=None, **SERVER_OPTIONS)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        _print_banner(config, [sock.getsockname() for sock in sockets], cli)
        async with _until_signalled() as stopped:
            await stopped.wait()
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _until_signalled() -> AsyncIterator[asyncio.Event]:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        yield stopped
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def command_line(config_file: Path | None) -> str:
    """How to run this very CLI again from the same directory: as it was started (`.venv/bin/upload-gateway`,
    `upload-gateway` from PATH, or `python -m gateway`), with --config when a file was named."""
    program = sys.argv[0] if sys.argv else ""
    if Path(program).name == "__main__.py" or not program:
        words = [sys.executable, "-m", "gateway"]
    elif os.sep in program and shutil.which(Path(program).name) != os.path.abspath(program):
        words = [program]
    else:
        words = [Path(program).name]
    if config_file is not None:
        words += ["--config", str(config_file)]
    return shlex.join(words)


def _print_banner(config: Config, bound: list[tuple[Any, ...]], cli: str | None) -> None:
    url = config.server.public_url
    upstream = "embedded pypiserver" if config.upstream.embedded else config.upstream.url
    listening = ", ".join(f"http://[{a[0]}]:{a[1]}" if ":" in a[0] else f"http://{a[0]}:{a[1]}" for a in bound)
    first = (
        f"  a user:  {cli} user add NAME\n  a token: {cli} token create NAME\n"
        if cli is not None
        else f"  a user:  the CLI needs a configuration file to find this store: serve with --config FILE or "
        f"{CONFIG_VARIABLE}\n"
    )
    print(
        f"upload-gateway listening on {listening} (index: {upstream}; public URL {url})\n{first}"
        f"  upload:  twine upload --repository-url {url}/legacy/ -u __token__ -p TOKEN dist/*\n"
        f"  install: pip install --index-url {url}/simple/ PROJECT",
        flush=True,
    )
