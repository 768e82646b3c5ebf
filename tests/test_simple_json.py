"""PEP 691 JSON pages: built from HTML links or relayed from the index's JSON, with only the keys the PEPs define."""

from __future__ import annotations

import json

import pytest

from gateway.errors import GatewayError
from gateway.reads.paths import IndexLayout
from gateway.reads.render import Source, render
from gateway.reads.simple_json import Known, relay_project_json, upload_time, versions

LAYOUT = IndexLayout.build("http://127.0.0.1:3141/", "http://127.0.0.1:3141/alice/dev/+simple/")
PAGE = "http://127.0.0.1:3141/alice/dev/+simple/demo/"
PUBLIC = "https://pkgs.example.com"


def test_the_index_json_is_relayed_rewritten_with_what_the_gateway_knows() -> None:
    body = json.dumps(
        {
            "meta": {"api-version": "1.0", "_evil": 1},
            "name": "demo",
            "files": [
                {
                    "filename": "demo-1.0.tar.gz",
                    "url": "../../+f/ab/demo-1.0.tar.gz#sha256=ab",
                    "hashes": {"sha256": "ab"},
                    "requires-python": ">=3.8",
                    "yanked": "broken",
                    "size": True,
                    "extra": "<script>",
                },
                {"filename": "demo-2.0-py3-none-any.whl", "url": "javascript:alert(1)", "hashes": {}},
                {"filename": "demo-3.0.tar.gz", "url": "http://127.0.0.1:3141/+api", "hashes": {}},
                {"filename": "demo-0.9.zip", "url": "https://files.example/demo-0.9.zip"},
                "not a file",
            ],
        }
    ).encode()
    out = json.loads(relay_project_json("demo", body, PAGE, LAYOUT, PUBLIC, {"demo-1.0.tar.gz": Known(10, 0.0)}))
    assert out == {
        "meta": {"api-version": "1.0"},
        "name": "demo",
        "files": [
            {
                "filename": "demo-1.0.tar.gz",
                "url": f"{PUBLIC}/alice/dev/+f/ab/demo-1.0.tar.gz#sha256=ab",
                "hashes": {"sha256": "ab"},
                "requires-python": ">=3.8",
                "yanked": "broken",
                "size": 10,
                "upload-time": "1970-01-01T00:00:00.000000Z",
            },
            {"filename": "demo-0.9.zip", "url": "https://files.example/demo-0.9.zip", "hashes": {}},
        ],
        "versions": ["0.9", "1.0"],
    }


def test_json_built_from_html_is_1_1_when_every_size_is_known() -> None:
    html = (
        b'<a href="../../+f/ab/demo-1.0-py3-none-any.whl#sha256=ab" data-dist-info-metadata="sha256=cd" '
        b'data-yanked="">demo-1.0-py3-none-any.whl</a>'
    )
    known = {"demo-1.0-py3-none-any.whl": (5, 1700000000.5)}
    body, etag = render(Source(html, "text/html", "utf-8", PAGE, "demo", "json", known), LAYOUT, PUBLIC)
    out = json.loads(body)
    assert out["meta"] == {"api-version": "1.1"} and out["versions"] == ["1.0"]
    assert out["files"] == [
        {
            "filename": "demo-1.0-py3-none-any.whl",
            "url": f"{PUBLIC}/alice/dev/+f/ab/demo-1.0-py3-none-any.whl#sha256=ab",
            "hashes": {"sha256": "ab"},
            "core-metadata": {"sha256": "cd"},
            "dist-info-metadata": {"sha256": "cd"},
            "yanked": True,
            "size": 5,
            "upload-time": upload_time(1700000000.5),
        }
    ]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    root, _ = render(
        Source(b'<a href="demo/">Demo</a>', "text/html", "utf-8", LAYOUT.simple, None, "json", {}), LAYOUT, PUBLIC
    )
    assert json.loads(root) == {"meta": {"api-version": "1.0"}, "projects": [{"name": "Demo"}]}


def test_pages_that_cannot_be_served_are_502() -> None:
    for source in (
        Source(b"{not json", "application/vnd.pypi.simple.v1+json", "utf-8", PAGE, "demo", "json", {}),
        Source(b'{"files": 1}', "application/vnd.pypi.simple.v1+json", "utf-8", PAGE, "demo", "json", {}),
        Source(b"{}", "application/vnd.pypi.simple.v1+json", "utf-8", PAGE, "demo", "html", {}),
    ):
        with pytest.raises(GatewayError) as exc:
            render(source, LAYOUT, PUBLIC)
        assert (exc.value.status, exc.value.reason) == (502, "upstream_bad_page")


def test_versions_are_in_version_order() -> None:
    names = ["demo-1.10.tar.gz", "demo-1.9-py3-none-any.whl", "demo-1.9.tar.gz", "notes.txt", "demo-2.0rc1.zip"]
    assert versions(names) == ["1.9", "1.10", "2.0rc1"]
