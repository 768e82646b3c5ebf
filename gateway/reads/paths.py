"""The read allowlist: which request targets reach the index, and the one index URL each maps to.

A read reaches the index only as one of three routes: the simple root (`/simple/`), a project page
(`/simple/<project>/`), or a file under one of the index's file roots (pypiserver's `/packages/…`, devpi's
`/<user>/<index>/+f/…`), which the gateway serves at the path the root has under the index's base URL, as the
rewritten pages link to it. Everything else is refused here, before a byte goes to the index with the gateway's
service credential.

The target is judged as received (still percent-encoded), one segment at a time, each decoded exactly once.
Whatever could read differently in another parser is refused with a 400 rather than normalised: dot segments
(also `%2e`), encoded separators (`%2f`, `%5c`), backslashes, doubled slashes, absolute-form targets, controls,
malformed or non-UTF-8 escapes (overlong forms included), and a `%` that survives decoding (a second decoding would
change the path). Decoded segments keep to the characters index paths have (letters, digits, `. _ - ~ + !`), so
the upstream URL is the decoded path written out literally: decoding it again changes nothing. The query is never
forwarded; only PEP 691's `format` parameter is read from it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote_plus, unquote_to_bytes, urlsplit, urlunsplit

from packaging.utils import (
    InvalidName,
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from gateway.errors import GatewayError

MAX_TARGET = 2048
SIMPLE_PATH = "/simple/"
# Files that sit beside a distribution under its name plus a suffix (PEP 658 metadata, PEP 503 signatures, PEP 740).
SIDECAR_SUFFIXES = (".metadata", ".asc", ".provenance")

_OUTSIDE_VISIBLE_ASCII = re.compile(r"[^\x21-\x7e]")
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SEGMENT = re.compile(r"[A-Za-z0-9._~+!-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Page:
    """What a page route answers with: its canonical `location` (for a redirect) and the `?format=` it asks for."""

    path: str
    query: str

    @property
    def location(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    @property
    def format(self) -> str | None:
        return format_parameter(self.query)


@dataclass(frozen=True)
class SimpleRoot(_Page):
    """`/simple/`. `needs_redirect`: the target was not written as `path` (e.g. `/simple`): answer with a redirect
    to `location` instead of asking the index."""

    upstream_url: str
    path: str
    query: str
    needs_redirect: bool


@dataclass(frozen=True)
class ProjectPage(_Page):
    """`/simple/<project>/`. `project` is the PEP 503 normalized name; `normalized` says whether the name arrived
    normalized. `needs_redirect`: the target was not written as `path` (another spelling of the name, an escape, a
    missing slash), so answer with a redirect to `location`, as indexes do, instead of asking the index."""

    project: str
    normalized: bool
    upstream_url: str
    path: str
    query: str
    needs_redirect: bool


@dataclass(frozen=True)
class FileRequest:
    """A file under one of the index's file roots. `project` is the PEP 503 name its filename carries (for
    project-scoped read rights), or None when the name is no distribution's (or a sidecar of one)."""

    upstream_url: str
    path: str
    filename: str
    project: str | None


ReadRoute = SimpleRoot | ProjectPage | FileRequest


@dataclass(frozen=True)
class IndexLayout:
    """Where the index's read API lives. Every URL is absolute and ends with '/'; file roots lie under `base`.

    The gateway serves `simple` at `/simple/` and each file root at its path under `base`
    (`http://i:3141/alice/dev/+f/` at `/alice/dev/+f/`).
    """

    base: str
    simple: str
    file_roots: tuple[str, ...]

    @classmethod
    def build(cls, base: str, simple: str = "", file_roots: Sequence[str] = ()) -> IndexLayout:
        """The layout from configuration: `simple` defaults to `<base>simple/`; file roots (absolute, or relative
        to `base`) default to devpi's `+f/` beside a `…/+simple/` root, and to pypiserver's `<base>packages/`.
        Raises ValueError for a URL the allowlist could not keep to."""
        base = _normalise_root("base", base)
        simple = _normalise_root("simple", simple or base + "simple/")
        if not file_roots:
            file_roots = [simple[: -len("+simple/")] + "+f/" if simple.endswith("/+simple/") else base + "packages/"]
        roots = tuple(_normalise_root("file root", root if "://" in root else base + root) for root in file_roots)
        for root in roots:
            if not root.startswith(base) or root == base:
                raise ValueError(f"the file root {root} must lie under the index's base URL {base}")
            if ("/" + root[len(base) :]).startswith(SIMPLE_PATH):
                raise ValueError(f"the file root {root} would be served under /simple/, where project pages are")
            if simple.startswith(root):  # its pages (and whatever lies beside them: devpi's +api) would pass as files
                raise ValueError(f"the file root {root} holds the simple index {simple}: give the files' own root")
            if any(other != root and other.startswith(root) for other in roots):
                raise ValueError(f"the file roots overlap: {root} holds another root")
        return cls(base=base, simple=simple, file_roots=roots)

    @property
    def file_paths(self) -> tuple[str, ...]:
        """The gateway path of each file root (`/packages/`)."""
        return tuple("/" + root[len(self.base) :] for root in self.file_roots)

    def on_index_origin(self, url: str) -> bool:
        """Does this absolute URL point at the index's host (scheme, host and port of any of its roots)?"""
        origin = _origin(url)
        return origin is not None and origin in {_origin(self.base), _origin(self.simple)}

    def to_public(self, url: str, public_url: str) -> str | None:
        """The gateway URL serving this absolute index URL, or None when it lies outside the read roots."""
        normal = _normalise_url(url)
        if normal is None:
            return None
        if normal.startswith(self.simple):
            return public_url + SIMPLE_PATH + normal[len(self.simple) :]
        for root in self.file_roots:
            if normal.startswith(root):
                return public_url + "/" + normal[len(self.base) :]
        return None


def format_parameter(query: str) -> str | None:
    """PEP 691's optional `format` URL parameter (the first one), as sent; None when absent."""
    for field in query.split("&"):
        name, sep, value = field.partition("=")
        if sep and name == "format":
            return unquote_plus(value)
    return None


def decide(target: str, layout: IndexLayout) -> ReadRoute:
    """The route for a raw request target (`request.raw_path`: path and query as received), or a GatewayError:
    400 for a target that is malformed or could leave the roots, 404 for one that is none of the routes."""
    if len(target) > MAX_TARGET:
        raise _refuse(414, f"Request target too long: at most {MAX_TARGET} characters are served", "target_too_long")
    if _OUTSIDE_VISIBLE_ASCII.search(target):
        raise _refuse(400, "Malformed request target: it contains a control character, a space or a non-ASCII byte")
    if not target.startswith("/"):
        if _ABSOLUTE_FORM.match(target):
            raise _refuse(400, "Absolute-form request targets are not served: request the path (GET /simple/ …)")
        raise _refuse(400, "Malformed request target: it must start with '/'")
    if "#" in target:
        raise _refuse(400, "Malformed request target: a fragment ('#') is never sent in a request")
    raw_path, _, query = target.partition("?")
    if "\\" in raw_path:
        raise _refuse(400, "Backslashes are not allowed in the request path: use '/'", "bad_path")
    raw = raw_path.split("/")[1:]
    segments = [_segment(part, last=index == len(raw) - 1) for index, part in enumerate(raw)]
    route = _route(segments, layout, query)
    if route is None:
        raise _not_found(layout)
    if isinstance(route, (SimpleRoot, ProjectPage)) and route.path != raw_path:
        return _redirecting(route)
    return route


def _segment(raw: str, *, last: bool) -> str:
    if raw == "":
        if not last:
            raise _refuse(400, "Empty path segment ('//') in the request path", "bad_path")
        return raw
    if _BAD_ESCAPE.search(raw):
        raise _refuse(
            400,
            "Malformed percent-encoding in the request path: '%' must be followed by two hex digits",
            "bad_percent_encoding",
        )
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(
            400, "Percent-encoded bytes in the request path are not valid UTF-8", "bad_percent_encoding"
        ) from None
    if "/" in decoded or "\\" in decoded:
        raise _refuse(400, "Encoded '/' or '\\' (%2F, %5C) in the request path is refused", "bad_percent_encoding")
    if "%" in decoded:
        raise _refuse(400, "Double percent-encoding ('%25') in the request path is refused", "bad_percent_encoding")
    if _CONTROL.search(decoded):
        raise _refuse(400, "Percent-encoded control characters in the request path are refused", "bad_percent_encoding")
    if decoded in (".", ".."):
        raise _refuse(
            400, "Dot segments ('.' and '..', also written %2e) are refused in the request path", "path_traversal"
        )
    if not _SEGMENT.fullmatch(decoded):
        raise _refuse(
            400,
            "The request path has characters no index path has (allowed: letters, digits and . _ - ~ + !)",
            "bad_path",
        )
    return decoded


def _route(segments: list[str], layout: IndexLayout, query: str) -> ReadRoute | None:
    if segments[:1] == ["simple"] and len(segments) <= 2 and segments[1:] in ([], [""]):
        return SimpleRoot(layout.simple, SIMPLE_PATH, query, needs_redirect=False)
    if segments[:1] == ["simple"] and len(segments) in (2, 3) and segments[2:] in ([], [""]):
        name = segments[1]
        try:
            project = canonicalize_name(name, validate=True)
        except InvalidName:
            raise GatewayError(
                404,
                f"Not found: '{name}' is not a valid project name (letters, digits, '.', '_' and '-', "
                "beginning and ending with a letter or digit)",
                "unknown_route",
            ) from None
        path = f"{SIMPLE_PATH}{project}/"
        return ProjectPage(project, name == project, f"{layout.simple}{project}/", path, query, needs_redirect=False)
    for root, prefix in zip(layout.file_roots, layout.file_paths, strict=True):
        head = prefix.strip("/").split("/")
        rest = segments[len(head) :]
        if segments[: len(head)] == head and rest and rest[-1] != "":
            tail = "/".join(rest)
            return FileRequest(root + tail, prefix + tail, rest[-1], _project_of(rest[-1]))
    return None


def _redirecting(route: SimpleRoot | ProjectPage) -> ReadRoute:
    if isinstance(route, SimpleRoot):
        return SimpleRoot(route.upstream_url, route.path, route.query, needs_redirect=True)
    return ProjectPage(
        route.project, route.normalized, route.upstream_url, route.path, route.query, needs_redirect=True
    )


def _project_of(filename: str) -> str | None:
    for suffix in SIDECAR_SUFFIXES:
        filename = filename.removesuffix(suffix)
    try:
        if filename.endswith(".whl"):
            name = parse_wheel_filename(filename)[0]
        elif filename.endswith((".tar.gz", ".zip")):
            name = parse_sdist_filename(filename)[0]
        else:
            return None
        return canonicalize_name(name, validate=True)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidName):
        return None


def _not_found(layout: IndexLayout) -> GatewayError:
    files = ", ".join(path + "…" for path in layout.file_paths)
    return GatewayError(
        404,
        f"Not found: this gateway serves the index at {SIMPLE_PATH}, project pages at {SIMPLE_PATH}<project>/ "
        f"and files under {files}; uploads go to /legacy/",
        "unknown_route",
    )


def _refuse(status: int, message: str, reason: str = "bad_target") -> GatewayError:
    return GatewayError(status, message, reason)


def _parse(url: str) -> tuple[str, SplitResult] | None:
    """(origin as the roots write it: lower case, default port dropped; the parts), or None if not http(s)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host if port in (None, _DEFAULT_PORTS[scheme]) else f'{host}:{port}'}", parts


def _origin(url: str) -> str | None:
    parsed = _parse(url)
    return None if parsed is None else parsed[0]


def _normalise_url(url: str) -> str | None:
    """`url` with its origin written as the roots write it; None if not http(s) or if it carries credentials."""
    parsed = _parse(url)
    if parsed is None or "@" in parsed[1].netloc:
        return None
    origin, parts = parsed
    return origin + urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))


def _normalise_root(what: str, url: str) -> str:
    if not url.endswith("/"):
        url += "/"
    normal = _normalise_url(url)
    parts = urlsplit(url)
    if normal is None or parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"the index's {what} URL must be an http(s) URL without credentials, query or fragment: {url}")
    segments = parts.path.split("/")[1:-1]
    if any(not _SEGMENT.fullmatch(segment) or segment in (".", "..") for segment in segments):
        raise ValueError(f"the index's {what} URL has a path the allowlist cannot serve (letters, digits, . _ - ~ + !)")
    return normal
