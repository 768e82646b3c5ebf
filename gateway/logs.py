"""Logs: one line per request (JSON or text), with secrets kept out and client input unable to forge lines.

Nothing logs headers or bodies; handlers add only known fields (user, token id, project, filename,
outcome, reason) to the request's line, and libraries that would log query parameters (SQLAlchemy and
psycopg log SQL arguments at debug level) are held at WARNING. Two things still guard every line, whatever logged it:
`Redactor` masks credentials in every encoding (aiohttp's parser quotes a rejected request's raw header line
in its error), and the formatters escape control characters, so a user name with a newline stays on its line.
"""

from __future__ import annotations

import base64
import binascii
import functools
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
from gateway.escaping import key_value, printable, quoted

FIELDS = web.RequestKey("log_fields", dict[str, Any])
ACCESS = logging.getLogger("gateway.access")
# Loggers that put secrets (SQL statements and their parameters, headers) in debug or info lines.
QUIET = ("aiohttp.access", "aiohttp.client", "alembic", "psycopg", "sqlalchemy")
_STANDARD = set(vars(logging.makeLogRecord({})))
REDACTED = "[redacted]"
REDACTED_MACAROON = "[token redacted]"
# Continuation lines (tracebacks) start with this, so a record's first line is the only one at column 0.
CONTINUATION = "  | "


class Redactor(logging.Filter):
    """Masks credentials in every message, field and traceback, whatever logged them.

    Installed on the root handler, so it sees every logger's records (aiohttp's own included). What it masks:
    the rest of the line after `Authorization:` (or `Authorization` and a space, or `authorization scheme`)
    and after `Cookie:` (a web session); the user information of a URL (`https://user:secret@host`);
    the credential after `Basic` or `Bearer`; API tokens (`<prefix>-…`, and `pypi-…`); base64 of
    `__token__:`; and any base64 run that decodes to `name:password` text (a Basic credential quoted
    without its scheme). The password cannot be known, so everything that could hold it is dropped.
    """

    _HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization\b)([\"']?[ \t]*[:=][ \t]*|[ \t]+(?:scheme[ \t]+)?)[^\r\n]*")
    _COOKIE = re.compile(r"(?i)(\b(?:set-)?cookie[\"']?[ \t]*:[ \t]*)[^\r\n]*")
    _USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s@'\"<>\[\]]+@")
    _SCHEME = re.compile(r"(?i)\b(basic|bearer)([ \t]+)(?!credentials\b)[A-Za-z0-9+/=._~-]+")
    _DUNDER_TOKEN = re.compile(r"X190b2tlbl9f[A-Za-z0-9+/=_-]*")  # base64 of "__token__:" and what follows
    _BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{8,}={0,2}(?![A-Za-z0-9+/=_-])")

    def __init__(self, prefix: str) -> None:
        super().__init__()
        prefixes = sorted({re.escape(prefix), "pypi"})
        self._token = re.compile(rf"(?:{'|'.join(prefixes)})-[A-Za-z0-9_\-]{{16,}}")
        self._exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both, masked
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)  # formatters use exc_text first
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for key, value in vars(record).items():
            if key in _STANDARD or value is None or isinstance(value, bool | int | float):
                continue
            setattr(record, key, self.scrub(value if isinstance(value, str) else str(value)))
        return True

    def scrub(self, text: str) -> str:
        text = self._HEADER.sub(rf"\1\2{REDACTED}", text)
        text = self._COOKIE.sub(rf"\1{REDACTED}", text)
        text = self._USERINFO.sub(rf"\1{REDACTED}@", text)
        text = self._SCHEME.sub(rf"\1\2{REDACTED}", text)
        text = self._DUNDER_TOKEN.sub(REDACTED, text)
        text = self._token.sub(REDACTED_MACAROON, text)
        return self._BASE64.sub(_redact_credential, text)


def _redact_credential(match: re.Match[str]) -> str:
    """A base64 run that decodes to `name:secret` (UTF-8) is a Basic credential: masked; anything else stays.

    A run cut short (aiohttp's "Got more than 8190 bytes" quotes a line's start) is read up to its last whole
    group and character. Random base64 almost never decodes to UTF-8 with a colon after its first character
    (2 in 730,000 runs of eight or more characters in the Python sources of this project's dependencies, both
    real credentials; none in 100,000 hex digests and token ids).
    """
    run = match.group(0)
    try:
        decoded = base64.b64decode(run[: len(run) - len(run) % 4], validate=True)
    except binascii.Error:
        return run
    for cut in range(4):  # a character cut in the middle of its UTF-8 bytes
        try:
            text = decoded[: len(decoded) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        name, colon, _ = text.partition(":")
        return REDACTED if colon and name else run
    return run


class JsonFormatter(logging.Formatter):
    """One JSON object per line; json.dumps escapes every control character (and, ASCII-only, U+2028)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        exception = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exception:
            line["exception"] = exception
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value…`, escaped (the message quoted when it holds a `=`); a
    traceback follows on lines that start with `CONTINUATION`, so only a record's own first line starts at
    column 0."""

    def format(self, record: logging.LogRecord) -> str:
        fields = [
            key_value(key, value) for key, value in vars(record).items() if key not in _STANDARD and value is not None
        ]
        message = printable(record.getMessage())
        if "=" in message or message.startswith('"'):
            message = quoted(message)  # so that nothing in it passes for a field after it
        head = " ".join([f"{self.formatTime(record)} {record.levelname} {record.name}: {message}", *fields])
        tail = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if record.stack_info:
            tail = f"{tail}\n{record.stack_info}" if tail else record.stack_info
        if not tail:
            return head
        return "\n".join([head, *(CONTINUATION + printable(line) for line in tail.split("\n"))])


def redact(text: str, token_prefix: str) -> str:
    """`text` with credentials masked as in the logs: for client input that is also kept elsewhere (the
    audit trail), such as a Basic user name that is in fact a token."""
    return _redactor(token_prefix).scrub(text)


@functools.cache
def _redactor(token_prefix: str) -> Redactor:
    return Redactor(token_prefix)


def setup(config: LoggingConfig, token_prefix: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    handler.addFilter(_redactor(token_prefix))
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
    hops = [_without_port(hop.strip()) for hop in (forwarded_for or "").split(",") if hop.strip()]
    while address is not None and is_trusted(address) and hops:
        address = hops.pop()
    return address


def _without_port(hop: str) -> str:
    """A hop's address without the port some proxies add (`198.51.100.1:50123`, `[2001:db8::1]:50123`)."""
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


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
