"""Logs: one line per request (JSON or text), with secrets kept out at the source.

Nothing logs headers or bodies; handlers add only known fields (user, token id, project, filename,
outcome, reason) to the request's line. A filter still masks anything shaped like a token, and libraries
that would log query parameters (aiosqlite logs SQL arguments at debug level) are held at WARNING.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.config import LoggingConfig

FIELDS = web.RequestKey("log_fields", dict[str, Any])
ACCESS = logging.getLogger("gateway.access")
# Loggers that put secrets (SQL arguments, headers) in debug lines.
QUIET = ("aiosqlite", "aiohttp.access", "aiohttp.client")
_STANDARD = set(vars(logging.makeLogRecord({})))


class Redactor(logging.Filter):
    """Masks token-shaped strings in every message and field, whatever logged them."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._token = re.compile(rf"\b{re.escape(prefix)}-[A-Za-z0-9_\-]{{16,}}")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True

    def scrub(self, text: str) -> str:
        return self._token.sub("[token redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD and value is not None
        )
        return super().format(record) + (f" {extra}" if extra else "")


def setup(config: LoggingConfig, token_prefix: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    handler.addFilter(Redactor(token_prefix))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str | None:
    """The client's address: X-Forwarded-For is believed only from trusted proxies, right to left."""
    networks = [ipaddress.ip_network(entry, strict=False) for entry in trusted]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    address = peer
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    while address is not None and is_trusted(address) and hops:
        address = hops.pop()
    return address


def client_of(request: web.Request) -> str | None:
    """The client's address as `access_middleware` worked it out (trusted proxies honoured)."""
    fields = request.get(FIELDS)
    return fields["client"] if fields is not None else request.remote


def access_middleware(trusted_proxies: tuple[str, ...]) -> Middleware:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        fields: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "client": client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted_proxies),
        }
        request[FIELDS] = fields
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            fields.update(
                status=status,
                duration=round(time.perf_counter() - started, 6),
                bytes_in=request.content_length or 0,
            )
            if request.path not in ("/-/healthy", "/-/ready", "/metrics") or status >= 400:
                ACCESS.info("%s %s %s", request.method, request.path, status, extra=fields)

    return middleware
