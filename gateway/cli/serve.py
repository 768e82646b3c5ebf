"""`serve`: bind `server.listen`, run the app until SIGINT/SIGTERM, and print the banner.

With `server.workers` (or `--workers`) above 1, the sockets, the embedded index, the metrics directory and the TLS
context (`gateway.tls`) are the parent's, made once, and each worker `gateway.workers` forks runs the app on them
with metrics in that directory.
The only command that imports the server (aiohttp.web, the app, the account pages).
"""

from __future__ import annotations

import asyncio
import concurrent.futures.process
import contextlib
import errno
import functools
import multiprocessing.util
import os
import shlex
import shutil
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import connections, logs, metrics, tls
from gateway.app import SERVER_OPTIONS, create_app
from gateway.cli.common import CommandError
from gateway.config import CONFIG_VARIABLE, Config, ConfigError
from gateway.embedded import EmbeddedIndex, EmbeddedIndexError
from gateway.store import StoreError
from gateway.upload.body_limits import max_body
from gateway.workers import Start, Supervisor

BACKLOG = 128  # connections the kernel queues for the gateway to accept (aiohttp's default)


def serve(config: Config, cli: str | None = None, workers: int | None = None) -> int:
    """Run the gateway until SIGINT/SIGTERM. `cli`: how to run the CLI on the same store, for the banner (None:
    there is no configuration file, which the CLI needs). `workers`: `--workers`, over `server.workers`."""
    count = config.server.workers if workers is None else workers
    context = tls.server_context(config.server.tls) if config.server.tls is not None else None
    sockets = _listen(config.server.host, config.server.port)
    logs.setup(config.logging, config.tokens.prefix)
    bound = [sock.getsockname() for sock in sockets]
    try:
        if count > 1:
            return _serve_workers(config, sockets, context, count, lambda: _print_banner(config, bound, cli, count))
        asyncio.run(
            _serve(
                config, sockets, context, lambda: create_app(config), lambda: _print_banner(config, bound, cli, count)
            )
        )
    except (EmbeddedIndexError, StoreError) as exc:  # an index that cannot start; a store that cannot open
        raise CommandError(str(exc)) from None
    finally:
        for sock in sockets:
            sock.close()
    return 0


def _serve_workers(
    config: Config,
    sockets: list[socket.socket],
    context: ssl.SSLContext | None,
    count: int,
    banner: Callable[[], None],
) -> int:
    """The supervisor's part: a private metrics directory (empty, removed at the end) and the one embedded index,
    then `count` workers until a signal, each serving on `sockets` with `context` (built before the fork)."""
    with tempfile.TemporaryDirectory(prefix="upload-gateway-metrics-") as name:
        directory = Path(name)
        index = (
            EmbeddedIndex(config.upstream.data_dir, max_body=max_body(config.limits))
            if config.upstream.embedded
            else None
        )
        if index is not None:
            index.launch()
        try:
            metrics.share_between_processes(directory)  # the workers' metrics, not the index's environment

            def work(start: Start) -> int:
                return _work(config, sockets, context, start, directory, index)

            supervisor = Supervisor(
                count, work, serving=banner, ended=lambda pid: metrics.process_ended(directory, pid)
            )
            return supervisor.run()
        finally:
            if index is not None:
                index.terminate()


def _work(
    config: Config,
    sockets: list[socket.socket],
    context: ssl.SSLContext | None,
    start: Start,
    directory: Path,
    index: EmbeddedIndex | None,
) -> int:
    """One worker: the app on the inherited sockets, its metrics in the shared files; what stops it from starting
    is one line on stderr, as a single `serve` prints it."""
    shared = metrics.Metrics(shared=directory)
    if start.replacement:
        shared.worker_restarts.inc()
    try:
        app = functools.partial(
            create_app,
            config,
            metrics=shared,
            shared=index,
            start_warnings=start.number == 0 and not start.replacement,
        )
        asyncio.run(_serve(config, sockets, context, app, start.ready, several=True))
    except (ConfigError, CommandError, StoreError, EmbeddedIndexError) as exc:
        print(f"upload-gateway: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A worker ends with os._exit (gateway.workers), never the interpreter's exit, which would run the parent's
        # exit hooks too (removing the metrics directory). The two hooks of the read path's render pool run here, in
        # the interpreter's order: the pool's process joined, then multiprocessing's own (its semaphores given
        # back, or its tracker reports them leaked). The second alone waits forever for the pool's process.
        concurrent.futures.process._python_exit()
        multiprocessing.util._exit_function()  # type: ignore[attr-defined]
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


async def _serve(
    config: Config,
    sockets: list[socket.socket],
    context: ssl.SSLContext | None,
    app: Callable[[], web.Application],
    serving: Callable[[], None],
    *,
    several: bool = False,
) -> None:
    """Run the app `app` makes (on this loop) on `sockets` until SIGINT/SIGTERM, then drain; `serving` once it
    accepts connections. `context`: https (None: http). `several`: other workers accept on the same sockets."""
    runner = connections.runner(app(), config, access_log=None, **SERVER_OPTIONS)
    await runner.setup()
    try:
        for sock in sockets:
            # With several workers: asyncio accepts as many connections as the backlog each time the socket is
            # readable, so one worker would take a whole burst (and keep it, keep-alive). One at a time, the rest of
            # a burst goes to the other workers the kernel woke with it; listen() again gives the kernel's queue
            # its length.
            backlog = 1 if several else BACKLOG
            site: web.SockSite = (
                web.SockSite(runner, sock, backlog=backlog)
                if context is None
                else tls.TLSSite(
                    runner,
                    sock,
                    ssl_context=context,
                    handshake_timeout=config.limits.clients.header_timeout,
                    backlog=backlog,
                )
            )
            await site.start()
            if several:
                sock.listen(BACKLOG)
        serving()
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


def _print_banner(config: Config, bound: list[tuple[Any, ...]], cli: str | None, workers: int) -> None:
    url = config.server.public_url
    upstream = "embedded pypiserver" if config.upstream.embedded else config.upstream.url
    scheme = "https" if config.server.tls is not None else "http"
    listening = ", ".join(f"{scheme}://[{a[0]}]:{a[1]}" if ":" in a[0] else f"{scheme}://{a[0]}:{a[1]}" for a in bound)
    first = (
        f"  a user:  {cli} user add NAME\n  a token: {cli} token create NAME\n"
        if cli is not None
        else f"  a user:  the CLI needs a configuration file to find this store: serve with --config FILE or "
        f"{CONFIG_VARIABLE}\n"
    )
    processes = f"; {workers} workers" if workers > 1 else ""
    print(
        f"upload-gateway listening on {listening} (index: {upstream}; public URL {url}{processes})\n{first}"
        f"  upload:  twine upload --repository-url {url}/legacy/ -u __token__ -p TOKEN dist/*\n"
        f"  install: pip install --index-url {url}/simple/ PROJECT",
        flush=True,
    )
