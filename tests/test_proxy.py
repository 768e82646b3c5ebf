from __future__ import annotations

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.proxy import UpstreamURLs, index_fault, rewrite_html, rewrite_json, route_of

PUBLIC = "https://pkgs.example.com"
PYPISERVER = UpstreamURLs.build("http://127.0.0.1:8081")
DEVPI = UpstreamURLs.build(
    "http://127.0.0.1:3141/", "http://127.0.0.1:3141/alice/dev/", "http://127.0.0.1:3141/alice/dev/+simple/"
)


@pytest.mark.parametrize(
    ("urls", "path", "expected"),
    [
        (PYPISERVER, "/simple/", "http://127.0.0.1:8081/simple/"),
        (PYPISERVER, "/simple/demo/", "http://127.0.0.1:8081/simple/demo/"),
        (PYPISERVER, "/packages/demo-1.0.tar.gz", "http://127.0.0.1:8081/packages/demo-1.0.tar.gz"),
        (DEVPI, "/simple/demo/", "http://127.0.0.1:3141/alice/dev/+simple/demo/"),
        (DEVPI, "/alice/dev/+f/abc/demo-1.0.tar.gz", "http://127.0.0.1:3141/alice/dev/+f/abc/demo-1.0.tar.gz"),
        (DEVPI, "/simple?format=json", "http://127.0.0.1:3141/alice/dev/+simple/?format=json"),
    ],
)
def test_gateway_paths_map_onto_the_index(urls: UpstreamURLs, path: str, expected: str) -> None:
    assert urls.for_path(path) == expected


def test_pypiserver_path_absolute_links_are_rewritten() -> None:
    page = '<a href="/packages/Demo_Pkg-0.1.0-py3-none-any.whl#sha256=ab">Demo_Pkg-0.1.0-py3-none-any.whl</a>'
    out = rewrite_html(page, "http://127.0.0.1:8081/simple/demo-pkg/", PYPISERVER, PUBLIC)
    assert out == (
        f'<a href="{PUBLIC}/packages/Demo_Pkg-0.1.0-py3-none-any.whl#sha256=ab">Demo_Pkg-0.1.0-py3-none-any.whl</a>'
    )


def test_devpi_relative_links_are_rewritten() -> None:
    page = (
        '<a href="../../+f/ea7/ce85b9143e8c0/newproj-0.1.0-py3-none-any.whl#sha256=ff" '
        'data-requires-python="&gt;=3.8">newproj</a>'
    )
    out = rewrite_html(page, "http://127.0.0.1:3141/alice/dev/+simple/newproj/", DEVPI, PUBLIC)
    assert f'href="{PUBLIC}/alice/dev/+f/ea7/ce85b9143e8c0/newproj-0.1.0-py3-none-any.whl#sha256=ff"' in out
    assert 'data-requires-python="&gt;=3.8"' in out


def test_root_page_relative_links_stay_in_simple() -> None:
    out = rewrite_html('<a href="demo-pkg/">demo-pkg</a>', "http://127.0.0.1:8081/simple/", PYPISERVER, PUBLIC)
    assert out == f'<a href="{PUBLIC}/simple/demo-pkg/">demo-pkg</a>'


def test_foreign_links_are_left_alone() -> None:
    page = "<a href='https://elsewhere.example/x.whl'>x</a>"
    assert rewrite_html(page, "http://127.0.0.1:8081/simple/x/", PYPISERVER, PUBLIC) == page


def test_json_urls_are_rewritten() -> None:
    data = {
        "info": {"name": "demo", "package_url": "http://127.0.0.1:8081/project/demo/", "summary": "/packages/x"},
        "urls": [{"url": "http://127.0.0.1:8081/packages/demo-1.0.tar.gz", "digests": {"sha256": "ab"}}],
        "files": [{"url": "../../+f/ab/demo-1.0.tar.gz"}],
    }
    out = rewrite_json(data, "http://127.0.0.1:8081/simple/demo/", PYPISERVER, PUBLIC)
    assert out["urls"][0]["url"] == f"{PUBLIC}/packages/demo-1.0.tar.gz"
    assert out["info"]["package_url"] == f"{PUBLIC}/project/demo/"
    assert out["info"]["summary"] == "/packages/x"
    assert out["files"][0]["url"] == f"{PUBLIC}/+f/ab/demo-1.0.tar.gz"


@pytest.mark.parametrize(
    ("path", "route"),
    [("/simple/x/", "simple"), ("/packages/x.whl", "packages"), ("/x/json", "json"), ("/+status", "other")],
)
def test_route_labels_are_bounded(path: str, route: str) -> None:
    assert route_of(path) == route


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
