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

A TLS connection reaches aiohttp, and so `gateway.connections`' guard (the per-address cap, the header
deadline), only once its handshake completed; `TLSSite` holds the handshake to `limits.header_timeout` (asyncio
allows 60 s), so a client that opens connections and never finishes a handshake holds each that long at most.
A client speaking plain http to the port fails the handshake and is closed without an answer; asyncio logs
nothing of it outside its debug mode.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gateway import private
from gateway.config import ConfigError, TLSFiles


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
    """aiohttp's site on a bound socket, with TLS whose handshake must complete within `handshake_timeout`
    seconds (aiohttp's own site leaves asyncio's 60 s)."""

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
        await web.BaseSite.start(self)  # registers the site; SockSite.start would create the server without the timeout
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server,
            sock=self._sock,
            ssl=self._tls,
            backlog=self._backlog,
            ssl_handshake_timeout=self._handshake_timeout,
        )
