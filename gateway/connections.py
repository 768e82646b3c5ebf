"""Client connections: how many one address may hold, and how long a request may take to arrive.

aiohttp bounds neither: a connection that sends its headers a byte at a time is only closed by the keep-alive
timeout (an hour by default), and one address may open connections until the process runs out of file
descriptors. Here, with the `limits.*` keys of docs/operations.md ("Connections, timeouts and slow clients"):

- a request's line and headers must arrive within `header_timeout`, counted from the connection's start, or on
  a kept-alive connection from the first byte of the next request (an idle one is closed after
  `keepalive_timeout`, aiohttp's own timer); a late one gets 408 and the connection is closed;
- one client address (IPv6: one /64) holds at most `max_connections_per_address` connections; the next gets 429
  at once and is closed. Connections from `server.trusted_proxies` are exempt: behind a proxy every client has
  the proxy's address. Over https a connection counts from its accept, its TLS handshake included, and its 429
  comes over TLS once the handshake completed (`gateway.tls`);
- a request body other than an upload's (the account pages' forms) must arrive within `header_timeout` of its
  headers (`body_deadline`); an upload's pace is `gateway.upload.pace`'s;
- a large upload's body may be read past aiohttp, from the socket itself (`gateway.upload.pump.detach`); that
  connection then ends with its answer.

The hooks are aiohttp's: a `web.Server` whose protocol factory makes `GuardedHandler`s (its `RequestHandler`)
and whose request factory tells the handler that a request's headers are complete. Over https `gateway.tls`
admits a connection itself, before its handshake, with this module's `ConnectionGuard`, and hands it to a
`GuardedHandler` told so (`admitted_under`).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Middleware

from gateway.config import ClientLimits, Config
from gateway.errors import GatewayError, reason_phrase
from gateway.logs import client_of
from gateway.metrics import Metrics
from gateway.services import METRICS
from gateway.upload.handler import upload
from gateway.upload.pace import duration_text

log = logging.getLogger("gateway.connections")
# A refused connection is kept this long (reading and dropping what the client sends) so that its 429 arrives
# rather than a reset; at most MAX_LINGERING at once, past that it is closed at once. Over TLS it lingers for its
# handshake (within limits.header_timeout), then this long at most for the client's close_notify after the 429.
REFUSAL_LINGER = 2.0
MAX_LINGERING = 16
# At most one log line per reason in this many seconds: a flood of refusals must not flood the log.
LOG_INTERVAL = 10.0


def refusal(error: GatewayError) -> bytes:
    """A whole HTTP answer, written straight to a connection that has no request to answer (yet)."""
    body = f"{error.status} {error.message}\n".encode()
    head = [
        f"HTTP/1.1 {error.status} {reason_phrase(error.message)}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in error.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class SparseLog:
    """Warnings at most once per reason every LOG_INTERVAL seconds, with the count of those left out."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._left_out: collections.Counter[str] = collections.Counter()

    def warn(self, reason: str, message: str, client: str | None) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -LOG_INTERVAL) < LOG_INTERVAL:
            self._left_out[reason] += 1
            return
        self._last[reason] = now
        left_out = self._left_out.pop(reason, 0)
        suffix = f" ({left_out} more since the last such line)" if left_out else ""
        log.warning("%s%s", message, suffix, extra={"client": client, "reason": reason})


_sparse = SparseLog()  # one per process, as the log it keeps from flooding


class ConnectionGuard:
    """The connections open per client address, and what is done when a limit is hit (metrics, log)."""

    def __init__(self, limits: ClientLimits, *, trusted_proxies: Iterable[str], metrics: Metrics) -> None:
        self.limits = limits
        self._trusted = [ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies]
        self._metrics = metrics
        self._open: collections.Counter[str] = collections.Counter()
        self._lingering = 0

    def address_of(self, peername: Any) -> str | None:
        """What a connection counts under: its IP address, for IPv6 its /64 (one host may hold all of it);
        None for a trusted proxy or a socket without an IP peer."""
        if not isinstance(peername, tuple) or not peername:
            return None
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(peername[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self._trusted):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def admit(self, address: str | None) -> bool:
        cap = self.limits.max_connections_per_address
        if address is not None and cap and self._open[address] >= cap:
            self._metrics.connections_refused.labels("too_many_connections").inc()
            _sparse.warn(
                "too_many_connections",
                f"connection from {address} refused: it has {cap} open (limits.max_connections_per_address)",
                address,
            )
            return False
        if address is not None:
            self._open[address] += 1
        self._metrics.connections_open.inc()
        return True

    def release(self, address: str | None) -> None:
        self._metrics.connections_open.dec()
        if address is not None:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]

    def too_many(self) -> GatewayError:
        cap = self.limits.max_connections_per_address
        return GatewayError(
            429,
            f"Too many connections from your address: at most {cap} at once; close some and try again",
            "too_many_connections",
            headers={"Retry-After": "1"},
        )

    def may_linger(self) -> bool:
        if self._lingering >= MAX_LINGERING:
            return False
        self._lingering += 1
        return True

    def lingered(self) -> None:
        self._lingering -= 1

    def handshake_late(self, address: str | None) -> None:
        """A TLS handshake cut off by `header_timeout`: counted and logged as late headers are (it is the same
        limit, on the bytes before them)."""
        self._metrics.connections_refused.labels("header_timeout").inc()
        _sparse.warn(
            "header_timeout",
            f"connection from {address or 'a trusted proxy'} closed: no TLS handshake within "
            f"{duration_text(self.limits.header_timeout)} (limits.header_timeout)",
            address,
        )

    def headers_late(self, address: str | None) -> GatewayError:
        self._metrics.connections_refused.labels("header_timeout").inc()
        _sparse.warn(
            "header_timeout",
            f"connection from {address or 'a trusted proxy'} closed: no complete request headers within "
            f"{duration_text(self.limits.header_timeout)} (limits.header_timeout)",
            address,
        )
        return GatewayError(
            408,
            f"Request timeout: the request headers did not arrive within {duration_text(self.limits.header_timeout)}",
            "header_timeout",
        )


class LateBody(GatewayError, TimeoutError):
    """The refusal of a body that came too slowly. A TimeoutError too: after answering, aiohttp reads what is left
    of a body ("lingering") and takes a timeout as the end of it, where any other error is logged as unhandled."""


class GuardedHandler(web.RequestHandler):
    """One client connection: admitted under its address's cap, closed when a request's headers are late."""

    def __init__(self, manager: GuardedServer, *, loop: asyncio.AbstractEventLoop, **options: Any) -> None:
        super().__init__(manager, loop=loop, **options)
        self._clock = loop
        self._guard = manager.guard
        self._address: str | None = None
        self._admitted = False
        self._headers_due: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a request whose headers are not complete arrived
        self._linger: asyncio.TimerHandle | None = None

    def admitted_under(self, address: str | None) -> None:
        """The connection was counted under `address` before it reached this handler (`gateway.tls` counts one
        from its accept, before its handshake): `connection_made` does not count it again, `connection_lost`
        releases it."""
        self._admitted, self._address = True, address

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._admitted:
            address = self._guard.address_of(transport.get_extra_info("peername"))
            if not self._guard.admit(address):
                self._refuse(cast(asyncio.Transport, transport))
                return
            self._admitted, self._address = True, address
        super().connection_made(transport)
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return  # a refused connection: what it sends is dropped
        if self._headers_due is None and self._idle():
            self._expect_headers()  # the first byte of the next request on a kept-alive connection
        if self._headers_due is not None and data:
            self._partial = True
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            if self._linger is not None:
                self._linger.cancel()
                self._guard.lingered()
            return
        if self._headers_due is not None:
            self._headers_due.cancel()
        self._guard.release(self._address)
        super().connection_lost(exc)

    def headers_complete(self) -> None:
        """A request's headers were parsed: its handling starts."""
        self._partial = False
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _idle(self) -> bool:
        """Waiting for a request's headers: aiohttp's own test (its keep-alive timer closes only such a connection)."""
        return self._waiter is not None and not self._waiter.done()

    def _expect_headers(self) -> None:
        self._headers_due = self._clock.call_later(self._guard.limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._headers_due = None
        if self.transport is None or not self._idle():
            return  # closed, or the headers have just been parsed
        error = self._guard.headers_late(self._address)
        if self._partial:
            self.transport.write(refusal(error))
        self.force_close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """429 at once; the connection then lingers a little (dropping what it sends) so that the answer is read
        rather than cut off by the reset a close with unread bytes sends."""
        transport.write(refusal(self._guard.too_many()))
        if not self._guard.may_linger():
            transport.close()
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = self._clock.call_later(REFUSAL_LINGER, transport.close)


_RequestFactory = Callable[
    [RawRequestMessage, StreamReader, web.RequestHandler, AbstractStreamWriter, "asyncio.Task[None]"],
    web.BaseRequest,
]


class GuardedServer(web.Server):
    """aiohttp's low-level server, making `GuardedHandler`s and telling them when a request's headers are in."""

    def __init__(self, plain: web.Server, guard: ConnectionGuard, options: dict[str, Any]) -> None:
        self._app_request: _RequestFactory = plain.request_factory
        super().__init__(
            plain.request_handler,
            request_factory=self._request,
            handler_cancellation=plain.handler_cancellation,
            **options,
        )
        self.guard = guard
        self._options = options

    def _request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        if isinstance(protocol, GuardedHandler):
            protocol.headers_complete()
        return self._app_request(message, payload, protocol, writer, task)

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=asyncio.get_running_loop(), **self._options)


class GuardedRunner(web.AppRunner):
    """An AppRunner (the app's start-up and clean-up as usual) whose server is a `GuardedServer`."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **options: Any) -> None:
        super().__init__(app, **options)
        self._guard = guard
        self._options = options

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self._guard, self._options)


def runner(app: web.Application, config: Config, **options: Any) -> web.AppRunner:
    """The runner `serve` starts the app with: the connection limits of `config`, aiohttp's `options`."""
    limits = config.limits.clients
    guard = ConnectionGuard(limits, trusted_proxies=config.server.trusted_proxies, metrics=app[METRICS])
    return GuardedRunner(app, guard, keepalive_timeout=limits.keepalive_timeout, **options)


def body_deadline(limits: ClientLimits) -> Middleware:
    """A request body other than an upload's must arrive within `header_timeout` of the headers; else 408.

    Only the account pages read such bodies (forms of a few hundred bytes, at most aiohttp's 1 MiB): a form that
    trickles in would otherwise hold its connection for as long as the client likes.
    """

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.content.is_eof() or request.match_info.handler is upload:
            return await handler(request)

        def too_late() -> None:
            if not request.content.is_eof():
                metrics = request.config_dict[METRICS]  # the account pages are a sub-app
                request.content.set_exception(body_late(metrics, limits, client_of(request)))

        timer = asyncio.get_running_loop().call_later(limits.header_timeout, too_late)
        try:
            return await handler(request)
        finally:
            timer.cancel()

    return middleware


def body_late(metrics: Metrics, limits: ClientLimits, client: str | None) -> LateBody:
    metrics.connections_refused.labels("body_timeout").inc()
    within = duration_text(limits.header_timeout)
    _sparse.warn(
        "body_timeout",
        f"request from {client} refused: its body did not arrive within {within} (limits.header_timeout)",
        client,
    )
    return LateBody(408, f"Request timeout: the request body did not arrive within {within}", "body_timeout")
