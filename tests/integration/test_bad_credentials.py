"""Credentials no client could mean, over the wire: refused as any malformed credentials are (a 401; a token
presented for an upload, a 403), never a 500."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import AppFactory, IndexFactory


async def _raw(host: str, port: int, request: bytes) -> bytes:
    """The whole answer to `request` (which asks the gateway to close): a gateway that keeps the connection open
    fails the test in 30 s, not hangs it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(30):
            return await reader.read()
    finally:
        writer.close()


BASIC_UTF8 = b"Basic YWxpY2U6\xc3\xa9"  # "alice:" then UTF-8 text that is not base64
BASIC_BYTE = b"Basic YWxpY2U6\xe9"  # a byte that is not UTF-8
BEARER_BYTE = b"Bearer pypi-\xe9"


@pytest.mark.parametrize(
    ("method_path", "authorization", "status"),
    [
        (b"POST /legacy/", BASIC_UTF8, b"401"),
        (b"POST /legacy/", BASIC_BYTE, b"401"),
        (b"POST /legacy/", BEARER_BYTE, b"403"),
        (b"GET /simple/", BASIC_UTF8, b"401"),
        (b"GET /simple/", BASIC_BYTE, b"401"),
        (b"GET /simple/", BEARER_BYTE, b"401"),
    ],
)
async def test_credentials_that_are_not_ascii_are_refused_not_a_500(
    start_index: IndexFactory, start_app: AppFactory, method_path: bytes, authorization: bytes, status: bytes
) -> None:
    gateway = await start_app(await start_index(), reads={"access": "authenticated"})
    server = gateway.client.server
    request = (
        method_path + b" HTTP/1.1\r\nHost: gateway.test\r\nAccept: text/plain\r\nContent-Length: 0\r\n"
        b"Connection: close\r\nAuthorization: " + authorization + b"\r\n\r\n"
    )
    answer = await _raw(str(server.host), int(server.port or 0), request)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == status, answer
