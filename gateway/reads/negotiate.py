"""PEP 691 content negotiation: which representation of a simple page a request gets.

The `format` URL parameter wins over `Accept` (PEP 691 allows either). `Accept` is read with its q-values; among
equal q-values the server's preference applies (JSON, then the versioned HTML, then `text/html`); a type with
q=0 is refused; `*/*`, `application/*` and no `Accept` at all get `text/html`, as PyPI answers browsers and old
clients. A request that accepts none of them gets 406 naming what is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.errors import GatewayError

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML = "text/html"
# The content types a client may ask for, each with the one the gateway answers with.
SERVED = {
    JSON_V1: JSON_V1,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    HTML_V1: HTML_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
    HTML: HTML,
}
_PREFERENCE = (JSON_V1, "application/vnd.pypi.simple.latest+json", HTML_V1, "application/vnd.pypi.simple.latest+html")
MAX_ACCEPT = 4096

Kind = Literal["html", "json"]


@dataclass(frozen=True)
class Representation:
    """`content_type` as served; `kind` is what the cache keys on (both HTML types are the same bytes)."""

    content_type: str

    @property
    def kind(self) -> Kind:
        return "json" if self.content_type.endswith("+json") else "html"


def choose(accept: str | None, format_parameter: str | None = None) -> Representation:
    """The representation for a request's `Accept` header and its `format` URL parameter (or a 406)."""
    if format_parameter is not None:
        served = SERVED.get(format_parameter.strip().lower())
        if served is None:
            raise _not_acceptable(f"the format parameter {format_parameter[:80]!r} is none of them")
        return Representation(served)
    if accept is None or not accept.strip():
        return Representation(HTML)
    best: tuple[float, int, str] | None = None
    for media_type, q in _parse(accept[:MAX_ACCEPT]):
        if q <= 0:
            continue
        candidates = [media_type] if media_type in SERVED else []
        if media_type in ("*/*", "text/*", "application/*"):
            candidates = [HTML]
        for candidate in candidates:
            rank = (q, _rank(candidate), SERVED[candidate])
            if best is None or rank[:2] > best[:2]:
                best = rank
    if best is None:
        raise _not_acceptable("the request's Accept header allows none of them")
    return Representation(best[2])


def _rank(media_type: str) -> int:
    """Higher is preferred at equal q: the PEP 691 types in order, then text/html."""
    return len(_PREFERENCE) - _PREFERENCE.index(media_type) if media_type in _PREFERENCE else 0


def _parse(accept: str) -> list[tuple[str, float]]:
    """(media type in lower case, q) for each element of an Accept header; a malformed q counts as 0."""
    out: list[tuple[str, float]] = []
    for element in accept.split(","):
        media_type, *params = (part.strip() for part in element.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        if media_type:
            out.append((media_type.lower(), q))
    return out


def _not_acceptable(why: str) -> GatewayError:
    return GatewayError(
        406,
        f"Not Acceptable: this index serves {JSON_V1}, {HTML_V1} and {HTML}; {why}",
        "not_acceptable",
    )
