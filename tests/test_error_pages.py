from __future__ import annotations

import json
import re

import pytest

from gateway.app import render_error
from gateway.error_pages import Format, choose, html_page, json_body, text_body
from gateway.errors import GatewayError


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "text"),  # PyPI: no Accept header, plain text
        ("", "text"),
        ("*/*", "html"),  # requests (twine), ureq (maturin), aiohttp
        ("text/html", "html"),
        ("text/*", "html"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "html"),  # a browser
        ("application/json", "json"),
        ("application/json;q=0.5, */*", "html"),
        ("application/json, */*;q=0.5", "json"),
        ("application/vnd.pypi.simple.v1+json", "json"),
        ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01", "json"),
        ("application/vnd.pypi.simple.v1+html", "text"),
        ("text/plain", "text"),
        ("text/plain, text/html;q=0.5", "text"),
        ("text/html;q=0, */*", "json"),  # the specific range refuses HTML; */* still takes JSON
        ("text/html;q=0, application/json;q=0, */*", "text"),
        ("image/png", "text"),
        ("text/html;q=nonsense", "text"),
        ("nonsense, ,;;", "text"),
        ("TEXT/HTML", "html"),
    ],
)
def test_the_format_follows_the_accept_header_as_on_pypi(accept: str | None, chosen: Format) -> None:
    assert choose(accept) == chosen


def test_the_page_has_the_message_as_title_and_heading_on_one_line() -> None:
    page = html_page(403, "Invalid API Token: project-scoped token is not valid for project: 'demo'")
    # maturin's own regex over the page
    title = re.search(r"<title>(.+?)</title>", page)
    assert title and title.group(1) == "403 Invalid API Token: project-scoped token is not valid for project: 'demo'"
    assert "<h1>403 Invalid API Token: project-scoped token is not valid for project: 'demo'</h1>" in page
    assert page.count("project-scoped") == 2


def test_the_page_escapes_the_message_and_hint_but_not_the_callers_html() -> None:
    page = html_page(
        400,
        "Invalid distribution filename 'x<script>alert(1)</script>&.whl'",
        hint="</title><img src=x onerror=alert(2)>",
        head='<link rel="stylesheet" href="/account/static/site.css">\n',
        navigation='<nav><a href="/account/">Your account</a></nav>\n',
    )
    assert "<script" not in page and "<img" not in page and page.count("</title>") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;.whl" in page
    assert "<p>&lt;/title&gt;&lt;img src=x onerror=alert(2)&gt;</p>" in page
    assert '<link rel="stylesheet" href="/account/static/site.css">\n</head>' in page
    assert '<body>\n<nav><a href="/account/">Your account</a></nav>\n<h1>' in page


def test_json_and_text_bodies() -> None:
    assert json.loads(json_body(403, "No", "not_allowed")) == {
        "code": "403 No",  # what uv shows
        "message": "No",
        "title": "Forbidden",
        "reason": "not_allowed",
    }
    assert json.loads(json_body(429, "Wait", "throttled", hint="h"))["hint"] == "h"
    assert json.loads(json_body(499, "Odd", "x"))["title"] == "Error"
    assert json_body(400, "Ünïcode €", "x").isascii()
    assert text_body(405, "Method Not Allowed") == "405 Method Not Allowed\n"
    assert text_body(400, "Bad", hint="Fix it") == "400 Bad\n\nFix it\n"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/plain; charset=utf-8"),
        ("*/*", "text/html; charset=utf-8"),
        ("application/json", "application/json"),
    ],
)
def test_render_error_keeps_the_reason_phrase_and_varies_on_accept(accept: str | None, content_type: str) -> None:
    response = render_error(GatewayError(403, "Zugriff für 'x' <b>", "not_allowed", hint="Frag"), accept)
    assert (response.status, response.reason) == (403, "Zugriff f?r 'x' <b>")
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Vary"] == "Accept" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert ("Content-Security-Policy" in response.headers) == (accept == "*/*")
    varied = render_error(GatewayError(404, "No", "r", headers={"Vary": "Accept, Authorization"}), accept)
    assert varied.headers["Vary"] == "Accept, Authorization"
    assert render_error(GatewayError(401, "Who", "r", headers={"Vary": "Authorization"})).headers["Vary"] == (
        "Authorization, Accept"
    )
