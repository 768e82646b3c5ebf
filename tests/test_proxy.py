from __future__ import annotations

import pytest

from gateway.proxy import UpstreamURLs, rewrite_html, rewrite_json, route_of

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
