"""Index pages re-emitted safely, with links to the gateway, in one linear pass that also collects the page's links.

The page is read by the linear tokenizer (`html_tokens`), building no tree: each token is re-emitted on its own,
in a form that is safe wherever it lands:

- text: character references decoded, then re-escaped, so `&lt;script&gt;` stays text;
- tags on a short allowlist (what simple pages use) keep only allowlisted attributes, each value written as
  `html.escape(value, quote=True)` inside double quotes; every other tag (`<script>`, `<base>`, `<iframe>`, …)
  comes out as its escaped source text, and a raw-text element's content (`<script>`'s) as escaped text;
- `href`: any scheme but http(s) (`javascript:`) is dropped; a link that resolves into the index's read roots
  points at the gateway, one elsewhere on the index's host is dropped (it would give away the index's internal
  address and the gateway does not serve it), and a link to another host is left as it was;
- comments, processing instructions and CDATA are dropped; a doctype becomes `<!DOCTYPE html>`.

As the tokens, the output does not depend on where the input's chunks split.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape, unescape
from urllib.parse import unquote, urljoin, urlsplit

from packaging.utils import InvalidName, canonicalize_name

from gateway.reads.html_tokens import MAX_TAG, Tokenizer, unescape_attribute
from gateway.reads.paths import IndexLayout

MAX_LINK_TEXT = 1024

# What simple pages (PEP 503, pypiserver, devpi, Warehouse) are made of; everything else is shown as text.
ALLOWED_TAGS = frozenset(
    "html head body title meta h1 h2 h3 h4 h5 h6 a br p div span pre code ul ol li hr "
    "table thead tbody tr th td b i em strong small".split()
)
_GLOBAL_ATTRIBUTES = frozenset({"id", "class", "title", "lang", "dir"})
_TAG_ATTRIBUTES = {"a": frozenset({"href", "rel"}), "meta": frozenset({"name", "content", "charset"})}
_DATA_ATTRIBUTE = re.compile(r"data-[a-z0-9-]+")

_URL_TRIM = "".join(map(chr, range(0x21)))
_URL_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_HASH = re.compile(r"([A-Za-z0-9_]+)=([0-9A-Fa-f]+)")


@dataclass(frozen=True, slots=True)
class Link:
    """An `<a>` of the page: `url` as emitted (None without an href, or when it was dropped), its text with references
    decoded (None past MAX_LINK_TEXT characters) and its data-* attributes, decoded."""

    url: str | None
    text: str | None
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileLink:
    """A file a project page lists, as PEP 503/592/658/714 encode it. `yanked` is None when not yanked ("" when
    yanked without a reason); `core_metadata` is True, False or the metadata file's hashes."""

    filename: str
    url: str
    hashes: dict[str, str]
    requires_python: str | None
    yanked: str | None
    core_metadata: bool | dict[str, str]
    gpg_sig: bool | None

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")


@dataclass(frozen=True)
class RewrittenPage:
    body: bytes
    links: list[Link]


class PageRewriter:
    """Feed an index page's bytes (whole, or chunk by chunk as they arrive); each call returns the safe UTF-8 output
    for what could be decided so far. `links` holds the page's anchors once `close()` has returned.

    Without a layout, links are kept as they are (only non-http(s) ones are dropped): for reading a page's files.
    """

    def __init__(
        self,
        page_url: str,
        layout: IndexLayout | None,
        public_url: str = "",
        *,
        charset: str = "utf-8",
        max_tag: int = MAX_TAG,
    ) -> None:
        try:
            codec = codecs.lookup(charset).name
        except LookupError:
            codec = "utf-8"
        self._decoder = codecs.getincrementaldecoder("utf-8-sig" if codec == "utf-8" else codec)(errors="replace")
        self._tokens = _Rewriter(page_url, layout, public_url, max_tag)
        self.links = self._tokens.links

    def feed(self, chunk: bytes) -> bytes:
        return self._tokens.feed(self._decoder.decode(chunk)).encode("utf-8", "replace")

    def close(self) -> bytes:
        tail = self._tokens.feed(self._decoder.decode(b"", final=True))
        return (tail + self._tokens.close()).encode("utf-8", "replace")


def rewrite_page(
    body: bytes, page_url: str, layout: IndexLayout, public_url: str, *, charset: str = "utf-8"
) -> RewrittenPage:
    """A whole page at once: a plain function to run off the event loop (`asyncio.to_thread`)."""
    rewriter = PageRewriter(page_url, layout, public_url, charset=charset)
    return RewrittenPage(rewriter.feed(body) + rewriter.close(), rewriter.links)


def links_of(page: str, page_url: str = "") -> list[Link]:
    """The anchors of a page already decoded to text, links as written (resolved against `page_url` if given)."""
    tokens = _Rewriter(page_url, None, "", MAX_TAG)
    tokens.feed(page)
    tokens.close()
    return tokens.links


def file_links(links: Iterable[Link]) -> list[FileLink]:
    """The files among a project page's links: those with a URL whose last path segment names a file."""
    files: list[FileLink] = []
    for link in links:
        if link.url is None:
            continue
        try:
            parts = urlsplit(link.url)
        except ValueError:
            continue
        filename = unquote(parts.path.rsplit("/", 1)[-1])
        if not filename:
            continue
        match = _HASH.fullmatch(parts.fragment)
        metadata = link.data.get("data-core-metadata", link.data.get("data-dist-info-metadata"))
        gpg = link.data.get("data-gpg-sig")
        files.append(
            FileLink(
                filename=filename,
                url=link.url,
                hashes={match[1].lower(): match[2].lower()} if match else {},
                requires_python=link.data.get("data-requires-python"),
                yanked=link.data.get("data-yanked"),
                core_metadata=_core_metadata(metadata),
                gpg_sig=None if gpg is None else gpg.strip().lower() == "true",
            )
        )
    return files


def root_projects(links: Iterable[Link]) -> list[tuple[str, str]]:
    """The projects a simple root lists (the link text is the name): (PEP 503 name, the name as listed), each once,
    valid names only, sorted."""
    projects: dict[str, str] = {}
    for link in links:
        if link.text is None:
            continue
        try:
            projects.setdefault(canonicalize_name(link.text, validate=True), link.text)
        except InvalidName:
            continue
    return sorted(projects.items())


def _core_metadata(value: str | None) -> bool | dict[str, str]:
    if value is None:
        return False
    value = value.strip()
    if value.lower() == "true":
        return True
    match = _HASH.fullmatch(value)
    return {match[1].lower(): match[2].lower()} if match else False


class _Rewriter(Tokenizer):
    """The tokens re-emitted safely, and the page's anchors collected."""

    def __init__(self, page_url: str, layout: IndexLayout | None, public_url: str, max_tag: int) -> None:
        super().__init__(max_tag)
        self._page_url = page_url
        self._layout = layout
        self._public_url = public_url
        self._out: list[str] = []
        self.links: list[Link] = []
        self._anchor: tuple[str | None, dict[str, str]] | None = None
        self._anchor_text: list[str] = []
        self._anchor_length = 0

    def _doctype(self) -> None:
        self._out.append("<!DOCTYPE html>")

    def _tag_token(self, source: str, name: str, attributes: dict[str, str], *, end_tag: bool) -> None:
        if name not in ALLOWED_TAGS:
            self._text(source, decode=False)
        elif end_tag:
            self._out.append(f"</{name}>")
            if name == "a":
                self._end_anchor()
        else:
            self._start_tag(name, attributes)

    def _end(self) -> None:
        self._end_anchor()

    def _flush(self) -> str:
        out = "".join(self._out)
        self._out.clear()
        return out

    def _start_tag(self, name: str, attributes: dict[str, str]) -> None:
        allowed = _TAG_ATTRIBUTES.get(name, frozenset())
        parts = ["<", name]
        href: str | None = None
        data: dict[str, str] = {}
        for attribute, raw in attributes.items():
            is_data = _DATA_ATTRIBUTE.fullmatch(attribute) is not None
            if not (is_data or attribute in _GLOBAL_ATTRIBUTES or attribute in allowed):
                continue
            value = unescape_attribute(raw)
            if is_data:
                data[attribute] = value
            if name == "a" and attribute == "href":
                href = self._href(value)
                if href is None:
                    continue
                value = href
            elif name == "meta" and attribute == "charset":
                value = "utf-8"  # the gateway serves UTF-8 whatever the index used
            parts.append(f' {attribute}="{escape(value, quote=True)}"')
        parts.append(">")
        self._out.append("".join(parts))
        if name == "a":
            self._end_anchor()
            self._anchor = (href, data)

    def _href(self, value: str) -> str | None:
        if self._layout is None:
            return _kept_as_written(value, self._page_url)
        return public_link(value, self._page_url, self._layout, self._public_url)

    def _text(self, text: str, *, decode: bool) -> None:
        if not text:
            return
        if decode and "&" in text:
            text = unescape(text)
        self._out.append(escape(text, quote=False))
        if self._anchor is not None and self._anchor_length <= MAX_LINK_TEXT:
            self._anchor_text.append(text)
            self._anchor_length += len(text)

    def _end_anchor(self) -> None:
        if self._anchor is None:
            return
        url, data = self._anchor
        text = "".join(self._anchor_text).strip() if self._anchor_length <= MAX_LINK_TEXT else None
        self.links.append(Link(url, text, data))
        self._anchor = None
        self._anchor_text = []
        self._anchor_length = 0


def public_link(value: str, page_url: str, layout: IndexLayout, public_url: str) -> str | None:
    """What a link of an index page becomes (also in its JSON pages): None for a non-http(s) scheme or a URL on the
    index's host outside its read roots; the gateway's URL for one inside them; any other host's as written."""
    url = _URL_TAB_NEWLINE.sub("", value.strip(_URL_TRIM))
    scheme = _SCHEME.match(url)
    if scheme is not None and scheme.group(1).lower() not in ("http", "https"):
        return None
    try:
        resolved = urljoin(page_url, url.replace("\\", "/"))
    except ValueError:
        return None
    if not layout.on_index_origin(resolved):
        return value
    return layout.to_public(resolved, public_url)


def _kept_as_written(value: str, page_url: str) -> str | None:
    url = _URL_TAB_NEWLINE.sub("", value.strip(_URL_TRIM))
    scheme = _SCHEME.match(url)
    if scheme is not None and scheme.group(1).lower() not in ("http", "https"):
        return None
    try:
        return urljoin(page_url, url) if page_url else url
    except ValueError:
        return None
