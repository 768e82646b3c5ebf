"""The client's upload body as the flow reads it: on the event loop, or from its socket in a pump's thread, with
the same timeouts and pace either way."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time

import aiohttp
from aiohttp import web

from gateway.config import LimitsConfig
from gateway.errors import GatewayError
from gateway.upload.pace import Pace
from gateway.upload.pump import POLL, detach, detachable, shutting_down


class BodySource:
    """The client's body, chunk by chunk: refused with a 408 when nothing comes for `limits.read_timeout`, or when
    it comes too slowly or for too long (`pace`). Read on the event loop (`read`), or, once `detach`ed, from the
    connection's socket in a pump's thread (`recv_into`)."""

    def __init__(self, request: web.Request, *, length: int, limits: LimitsConfig) -> None:
        self._request = request
        self.length = length
        self.received = 0
        self._timeout = limits.read_timeout
        self._loop = asyncio.get_running_loop()
        self._pace = Pace(limits.clients, started=self._loop.time())

    async def read(self) -> bytes:
        """The next chunk, or b"" once Content-Length bytes have arrived."""
        if self.received >= self.length:
            return b""
        started = self._loop.time()
        while True:
            patience = self._patience(self._loop.time(), started)
            try:
                async with asyncio.timeout(patience):
                    chunk = await self._request.content.readany()
                break
            except TimeoutError:
                continue
            except (ConnectionError, aiohttp.ClientError, asyncio.IncompleteReadError):
                chunk = b""
                break
        self._arrived(self._loop.time() - started, len(chunk))
        return chunk

    def detachable(self) -> bool:
        return detachable(self._request)

    def detach(self) -> tuple[socket.socket, bytes]:
        """The connection's socket for a pump's thread (`pump.detach`), and what aiohttp had read. A
        connection lost since the last read (while the index took the previous chunk) is a truncated upload, as
        `read` tells it: the client's doing, not the index's."""
        request = self._request
        transport = request.transport
        if transport is None or transport.is_closing() or request.content.exception() is not None:
            raise truncated_body()
        sock, buffered = detach(request)
        self.received += len(buffered)
        return sock, buffered

    def recv_into(self, sock: socket.socket, buffer: bytearray, want: int, stopped: threading.Event) -> int:
        """Like `read`, into `buffer` from the socket itself, in a pump's thread; the number of bytes."""
        started = time.monotonic()  # the event loop's clock (`loop.time()`), which the pace was started on
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while True:
            patience = self._patience(time.monotonic(), started)
            if stopped.is_set():
                raise shutting_down()
            try:
                size = sock.recv_into(buffer, want)
                break
            except BlockingIOError:
                poller.poll(min(patience, POLL) * 1000)
            except OSError:
                size = 0
                break
        self._arrived(time.monotonic() - started, size)
        return size

    def _patience(self, now: float, started: float) -> float:
        """How long a read begun at `started` may still wait; a 408 once it may not."""
        waiting = now - started
        self._pace.check(now, waiting)
        if waiting >= self._timeout:
            raise GatewayError(408, "Request timeout: the client stopped sending the upload; try again", "read_timeout")
        return min(self._timeout - waiting, self._pace.patience(now, waiting))

    def _arrived(self, waited: float, size: int) -> None:
        self._pace.arrived(waited, size)
        if not size:
            raise truncated_body()
        self.received += size


def truncated_body() -> GatewayError:
    return GatewayError(400, "Truncated upload: the body ended before Content-Length bytes arrived", "truncated_body")
