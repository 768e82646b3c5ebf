"""The gateway's own https (`server.tls_cert`, `server.tls_key`): the server's TLS context, and the site serving it.

`serve` builds the context once, before it binds, so anything wrong with the files is one line at start, never a
traceback or a worker that keeps failing: a file missing or unreadable, not PEM, a certificate that has expired, a
key that does not match the certificate, a key under a passphrase (never prompted for: a service has no terminal),
or a key file that users other than its owner and group may open (refused rather than warned about: such a key
must be taken as known and replaced, and a warning in a log nobody reads leaves it in use; the gateway does not
change the mode of a file it did not create, as `gateway.private` does for its own). With `--workers N` the
parent builds it before it forks and every worker inherits it: the workers present the same certificate and
share its session-ticket keys (a session resumes on any of them), the parent itself never handles a connection,
and OpenSSL (3.x, and 1.1.1) gives a forked child a fresh random state.

The context is Python's for servers (`ssl.create_default_context(Purpose.CLIENT_AUTH)`: no compression, fresh
(EC)DHE keys, OpenSSL's default ciphers) with TLS 1.2 at least, HTTP/1.1 by ALPN (aiohttp speaks nothing else),
and no client certificate asked for: clients authenticate with tokens and passwords, as they do to PyPI.

A connection counts under its address's cap (`limits.max_connections_per_address`, `gateway.connections`) from
its accept, before any TLS work: asyncio's own TLS server (`create_server(ssl=…)`) shows a connection to its
protocol only once the handshake completed, so one address could hold any number that never finish one. So
`TLSSite` accepts plain TCP, admits each connection, and only then upgrades it with `loop.start_tls`, the
handshake held to `limits.header_timeout` (asyncio allows 60 s). Over the cap, a client is given its handshake to
read the 429 over TLS (it cannot read a plaintext one), as many at once as `gateway.connections` lets refusals
linger, and is closed at once past that. A client speaking plain http to the port fails the handshake and is
closed without an answer; asyncio logs nothing of it outside its debug mode. The upgraded transport answers
`get_extra_info("sslcontext")` as asyncio's own TLS does, so `gateway.upload.pump` leaves https bodies on the
event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
from pathlib import Path
from typing import cast

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gateway import private
from gateway.config import ConfigError, TLSFiles
from gateway.connections import REFUSAL_LINGER, GuardedHandler, GuardedServer, refusal


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """The context https is served with, from the certificate chain and key `files` name, checked first so that
    each fault is named (`ConfigError`, naming the key)."""
    _check_chain(files.cert)
    _check_key(files.key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(files.cert, files.key, password=_no_passphrase)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"server.tls_key: {files.key} is not the private key of the certificate in {files.cert}, which must "
            f"come first in that file ({exc.reason or exc})"
        ) from None
    except OSError as exc:  # a file replaced between the checks and now
        raise ConfigError(f"server.tls_cert: cannot read {files.cert} or {files.key}: {exc.strerror or exc}") from None
    return context


def _read(key: str, path: Path) -> tuple[bytes, os.stat_result]:
    try:
        with path.open("rb") as file:
            return file.read(), os.fstat(file.fileno())
    except OSError as exc:
        raise ConfigError(f"server.{key}: cannot read {path}: {exc.strerror or exc}") from None


def _check_chain(path: Path) -> None:
    data, _ = _read("tls_cert", path)
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"server.tls_cert: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    expired = chain[0].not_valid_after_utc
    if expired < datetime.datetime.now(datetime.UTC):
        raise ConfigError(f"server.tls_cert: the certificate in {path} expired on {expired:%Y-%m-%d %H:%M} UTC")


def _check_key(path: Path) -> None:
    data, status = _read("tls_key", path)
    if private.open_to_others(status):
        raise ConfigError(
            f"server.tls_key: {path} may be read by any user of this host (mode {status.st_mode & 0o777:o}): "
            f"take it as known, replace the key, and keep the new one private (chmod o-rwx {path})"
        )
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"server.tls_key: the key in {path} is protected by a passphrase, which the gateway never asks for: "
            "give it the key without one (openssl pkey -in KEY -out KEY.plain), readable by its user only"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"server.tls_key: {path} holds no PEM private key (-----BEGIN PRIVATE KEY-----)") from None


def _no_passphrase() -> bytes:
    """OpenSSL's fallback is to prompt on the terminal; `_check_key` has refused such a key already."""
    raise ConfigError("server.tls_key: the key is protected by a passphrase, which the gateway never asks for")


class TLSSite(web.SockSite):
    """aiohttp's site on a bound socket serving TLS, each connection counted under its address's cap from its
    accept (`_Handshake`), its handshake to complete within `handshake_timeout` seconds (aiohttp's own site leaves
    asyncio's 60 s)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext,
        handshake_timeout: float,
        backlog: int,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=backlog)
        self._tls = ssl_context
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; SockSite.start would have asyncio do the TLS itself
        server = self._runner.server
        assert isinstance(server, GuardedServer)
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Handshake(server, self._tls, self._handshake_timeout), sock=self._sock, backlog=self._backlog
        )


class _Handshake(asyncio.Protocol):
    """An accepted TCP connection until its TLS handshake ends: counted under its address from the accept, before
    any TLS work, then handed to a `GuardedHandler` admitted under that address.

    Over the cap the connection is given its handshake (up to the same timeout) to read the 429 over TLS, and is
    closed after it; at most `MAX_LINGERING` at once (shared with plain http's refusals), past that it is closed
    at once. Whatever ends the connection before the handler has it (a failed or late handshake, a client gone,
    the gateway stopping) gives back its place under the cap, or its lingering, exactly once (`_end`).

    asyncio's `start_tls` never calls the new protocol's `connection_made`, and it hands the protocol what came
    with the end of the handshake before its caller resumes: this protocol is that protocol until the handler is
    ready, keeping those bytes for it.
    """

    def __init__(self, server: GuardedServer, context: ssl.SSLContext, timeout: float) -> None:
        self._server = server
        self._guard = server.guard
        self._context = context
        self._timeout = timeout
        self._address: str | None = None
        self._admitted = False
        self._ended = False  # what it was counted under is given back
        self._handler: GuardedHandler | None = None
        self._early = bytearray()  # the request's first bytes, which came with the end of the handshake
        self._eof = False
        self._task: asyncio.Task[asyncio.Transport | None] | None = None
        self._started = 0.0  # loop time the handshake began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)
        self._address = self._guard.address_of(raw.get_extra_info("peername"))
        self._admitted = self._guard.admit(self._address)
        if not self._admitted and not self._guard.may_linger():
            self._ended = True
            raw.close()
            return
        raw.pause_reading()  # start_tls pauses it only once it runs: not a byte of the ClientHello goes elsewhere
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        self._task = loop.create_task(
            loop.start_tls(
                raw,
                self,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout,
                # a refusal waits this long for the client's close_notify after its 429 (asyncio: 30 s)
                ssl_shutdown_timeout=None if self._admitted else REFUSAL_LINGER,
            )
        )
        self._task.add_done_callback(self._handshaken)

    def data_received(self, data: bytes) -> None:
        if self._admitted:  # a refused connection's bytes are dropped
            self._early += data

    def eof_received(self) -> None:
        self._eof = True

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._handler is not None:  # asyncio scheduled the call for this protocol before the handover
            self._handler.connection_lost(exc)
            return
        if self._task is not None:
            self._task.cancel()  # closed before its start_tls ran, which must not run then (once done, no effect)
        self._end()

    def _handshaken(self, task: asyncio.Task[asyncio.Transport | None]) -> None:
        tls = None
        if not task.cancelled():
            failed = task.exception()
            if failed is None:
                tls = task.result()
            elif isinstance(failed, ConnectionAbortedError) and self._late(task.get_loop()):
                self._guard.handshake_late(self._address)
            elif not isinstance(failed, OSError):  # OSError: the handshake failed or was late, the client left
                task.get_loop().call_exception_handler(
                    {"message": "TLS handshake failed", "exception": failed, "protocol": self}
                )
        if tls is None or self._ended:  # None: the connection was lost, without an error, in the handshake
            self._end()
            return
        if not self._admitted:
            tls.write(refusal(self._guard.too_many()))
            tls.close()  # `connection_lost` ends the lingering
            return
        handler = self._server()
        handler.admitted_under(self._address)
        self._handler = handler
        tls.set_protocol(handler)
        handler.connection_made(tls)
        if self._early:
            handler.data_received(bytes(self._early))
            self._early.clear()
        if self._eof:
            handler.eof_received()

    def _late(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the handshake ran its whole time: asyncio aborts a late one with a `ConnectionAbortedError`
        that only its message tells from another abort."""
        return loop.time() - self._started >= self._timeout

    def _end(self) -> None:
        """Give back what the connection was counted under while no handler had it: its place, or its lingering."""
        if self._ended:
            return
        self._ended = True
        if self._admitted:
            self._guard.release(self._address)
        else:
            self._guard.lingered()
