"""PEP 691 content negotiation, with q-values, the `latest` aliases and the format parameter."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.reads.negotiate import HTML, HTML_V1, JSON_V1, choose

PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UV = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


@pytest.mark.parametrize(
    ("accept", "served"),
    [
        (None, HTML),
        ("", HTML),
        ("*/*", HTML),
        ("text/html", HTML),
        (PIP, JSON_V1),
        (UV, JSON_V1),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/vnd.pypi.simple.latest+html", HTML_V1),
        ("text/html, application/vnd.pypi.simple.v1+json", JSON_V1),  # equal q: the server's preference
        ("text/html, application/vnd.pypi.simple.v1+json;q=0.5", HTML),
        ("application/vnd.pypi.simple.v1+json;q=0, text/html;q=0.1", HTML),
        ("APPLICATION/VND.PYPI.SIMPLE.V1+JSON", JSON_V1),
        ("application/vnd.pypi.simple.v1+json;q=abc, text/html;q=0.2", HTML),
        ("application/vnd.pypi.simple.v1+json;q=2, text/html;q=0.2", HTML),
        ("image/png, */*;q=0.1", HTML),
    ],
)
def test_accept(accept: str | None, served: str) -> None:
    representation = choose(accept)
    assert representation.content_type == served
    assert representation.kind == ("json" if served == JSON_V1 else "html")


@pytest.mark.parametrize(
    "accept", ["image/png", "application/vnd.pypi.simple.v2+json", "text/html;q=0", "application/json"]
)
def test_nothing_acceptable_is_406(accept: str) -> None:
    with pytest.raises(GatewayError) as exc:
        choose(accept)
    assert exc.value.status == 406 and exc.value.reason == "not_acceptable"
    assert JSON_V1 in exc.value.message


def test_the_format_parameter_wins() -> None:
    assert choose("text/html", "application/vnd.pypi.simple.v1+json").content_type == JSON_V1
    assert choose(PIP, "text/html").content_type == HTML
    with pytest.raises(GatewayError) as exc:
        choose(PIP, "application/xml")
    assert exc.value.status == 406
