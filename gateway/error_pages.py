"""What the body of a refusal looks like: PyPI's HTML error page, JSON, or one line of text, by the request's Accept.

PyPI (Pyramid/WebOb) answers an upload error with an HTML page whose `<title>` and `<h1>` are the status and the
message when the client accepts `text/html` (`*/*` does), JSON when it prefers `application/json`, and plain text
otherwise (no Accept header at all). Clients rely on that: maturin prints only the `<title>` of a 403 page (without
one it says "Username and/or password are wrong"), browsers show the page, and twine prints the reason phrase,
which carries the same one-line message whatever the body is (`app.render_error`).

The gateway negotiates the same way, with two additions: `+json` types (PEP 691's
`application/vnd.pypi.simple.v1+json`) ask for JSON, so a client of the JSON simple API gets JSON errors, and a
client that prefers `text/plain` gets text. Messages may quote what the request said (a path, a filename): the
page escapes them, and is served with a CSP that runs nothing.
"""

from __future__ import annotations

import html
import http
import json
from typing import Literal

Format = Literal["html", "json", "text"]
# The header every error page is served with: nothing on it may load or run, even if escaping ever failed.
PAGE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
JSON_TYPE = "application/json"
_OFFERS: tuple[Format, ...] = ("html", "json", "text")  # on equal quality, the first wins (as in WebOb)


def choose(accept: str | None) -> Format:
    """The body format for this Accept header: the offer of highest quality; `text` when none is acceptable.

    Each offer takes the quality of the most specific range that matches it (`text/html;q=0, */*` refuses HTML).
    """
    if not accept or not accept.strip():
        return "text"
    ranges = _ranges(accept)
    best: tuple[float, Format] = (0.0, "text")
    for offer in _OFFERS:
        quality = _quality(offer, ranges)
        if quality > best[0]:
            best = (quality, offer)
    return best[1]


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    """(type, subtype, q) of each media range; a malformed q counts as 0, a range without a slash is skipped."""
    ranges = []
    for item in accept.split(",")[:64]:
        media, *params = (part.strip() for part in item.split(";"))
        kind, slash, sub = media.lower().partition("/")
        if not slash:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        ranges.append((kind.strip(), sub.strip(), quality))
    return ranges


def _quality(offer: Format, ranges: list[tuple[str, str, float]]) -> float:
    """The q of the most specific range matching `offer` (exact, then `type/*`, then `*/*`); 0 when none does."""
    specific: tuple[int, float] = (-1, 0.0)
    for kind, sub, quality in ranges:
        rank = _match(offer, kind, sub)
        if rank > specific[0] or (rank == specific[0] and quality > specific[1]):
            specific = (rank, quality)
    return specific[1] if specific[0] >= 0 else 0.0


def _match(offer: Format, kind: str, sub: str) -> int:
    """How specifically `kind/sub` names `offer`: 2 exactly, 1 by a wildcard subtype, 0 by `*/*`, -1 not at all."""
    if (kind, sub) == ("*", "*"):
        return 0
    if offer == "html":
        return 2 if (kind, sub) == ("text", "html") else 1 if (kind, sub) == ("text", "*") else -1
    if offer == "text":
        return 2 if (kind, sub) == ("text", "plain") else 1 if (kind, sub) == ("text", "*") else -1
    if kind != "application":
        return -1
    return 2 if sub == "json" or sub.endswith("+json") else 1 if sub == "*" else -1


def html_page(status: int, message: str, *, hint: str = "", head: str = "", navigation: str = "") -> str:
    """PyPI's error page: `<status> <message>` as the title and the heading, then the hint.

    `message` and `hint` are text and escaped here. `head` (e.g. a stylesheet link) and `navigation` (e.g. the
    account pages' menu) are trusted HTML the caller built; both default to nothing. The title stays on one line:
    maturin reads it with `<title>(.+?)</title>`.
    """
    heading = _text(f"{status} {message}")
    details = f"<p>{_text(hint)}</p>\n" if hint else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{heading}</title>\n{head}</head>\n<body>\n{navigation}<h1>{heading}</h1>\n{details}</body>\n</html>\n"
    )


def json_body(status: int, message: str, reason: str, *, hint: str = "") -> bytes:
    """PyPI's JSON error, `{"code": "<status> <message>", "message", "title"}`, plus the `reason` code of
    docs/errors.md and the `hint` when there is one. uv shows `code` when the Content-Type is exactly
    `application/json` (`JSON_TYPE`, with no charset parameter: JSON is UTF-8, and this is ASCII)."""
    body: dict[str, object] = {
        "code": f"{status} {message}",
        "message": message,
        "title": _title(status),
        "reason": reason,
    }
    if hint:
        body["hint"] = hint
    return json.dumps(body).encode("ascii")


def text_body(status: int, message: str, *, hint: str = "") -> str:
    """`<status> <message>` on the first line, then the hint after a blank line."""
    return f"{status} {message}\n" + (f"\n{hint}\n" if hint else "")


def _text(value: str) -> str:
    """Text for an HTML text node: `&`, `<` and `>` escaped; quotes stay as they are (maturin prints the title
    raw, so `'foo'` must not arrive as `&#x27;foo&#x27;`, and no attribute ever holds this text)."""
    return html.escape(value, quote=False)


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
