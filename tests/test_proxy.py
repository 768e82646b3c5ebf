from __future__ import annotations

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.proxy import UpstreamURLs, index_fault

PUBLIC = "https://pkgs.example.com"
PYPISERVER = UpstreamURLs.build("http://127.0.0.1:8081")
DEVPI = UpstreamURLs.build(
    "http://127.0.0.1:3141/", "http://127.0.0.1:3141/alice/dev/", "http://127.0.0.1:3141/alice/dev/+simple/"
)


def test_the_index_words_show_the_gateway_not_the_index() -> None:
    docker = UpstreamURLs.build("http://index:8080/")
    said = "File exists at http://index:8080/packages/demo-1.0.tar.gz; see HTTP://INDEX:8080/ or http://index:8080"
    shown = docker.hide(said, PUBLIC)
    assert "index:8080" not in shown.lower()
    assert f"File exists at {PUBLIC}/packages/demo-1.0.tar.gz;" in shown
    assert (
        DEVPI.hide("see http://127.0.0.1:3141/alice/dev/+f/ab/x.whl", PUBLIC) == f"see {PUBLIC}/alice/dev/+f/ab/x.whl"
    )
    assert docker.hide("nothing of the index here: http://elsewhere:8080/", PUBLIC).endswith("http://elsewhere:8080/")


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
