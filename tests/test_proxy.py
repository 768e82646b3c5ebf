from __future__ import annotations

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.proxy import index_fault


@pytest.mark.parametrize(
    ("error", "status", "reason", "kind"),
    [
        (aiohttp.ServerTimeoutError("Timeout on reading data from socket"), 504, "upstream_timeout", "timeout"),
        (TimeoutError(), 504, "upstream_timeout", "timeout"),
        (
            aiohttp.ClientConnectorError(
                ConnectionKey("index", 8080, False, True, None, None, None), OSError(111, "x")
            ),
            502,
            "upstream_unreachable",
            "unreachable",
        ),
        (aiohttp.ServerDisconnectedError(), 502, "upstream_protocol", "protocol"),
        (aiohttp.ClientPayloadError("Response payload is not completed"), 502, "upstream_protocol", "protocol"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), 502, "upstream_protocol", "protocol"),
        (
            aiohttp.ClientResponseError(
                RequestInfo(URL("http://index:8080/"), "GET", CIMultiDictProxy(CIMultiDict())),
                (),
                status=400,
                message="Bad status line:\n  Invalid status code",
            ),
            502,
            "upstream_protocol",
            "protocol",
        ),
    ],
)
def test_every_client_failure_is_a_502_or_504_that_does_not_name_the_index(
    error: aiohttp.ClientError | TimeoutError, status: int, reason: str, kind: str
) -> None:
    fault = index_fault(error, "POST", "http://index:8080/")
    assert (fault.status, fault.reason, fault.kind) == (status, reason, kind)
    assert "index:8080" not in fault.message and fault.message.endswith("; try again later")
    assert fault.url == "http://index:8080/" and type(error).__name__ in fault.cause and "\n" not in fault.cause
