"""Index pages re-emitted safely, with links to the gateway, in one linear pass that also collects the page's links.

NOTE: CPython 3.11's html.parser rescans unfinished tags (`'<a ' * 8000` takes 12 s) and html5ever (nh3) is
quadratic in unique attributes and nesting depth, so pages are tokenized here as the HTML standard tokenizes them
(text, tags with their attributes, comments, raw-text elements), building no tree: each token is re-emitted on its
own, in a form that is safe wherever it lands:

- text: character references decoded, then re-escaped, so `&lt;script&gt;` stays text;
- tags on a short allowlist (what simple pages use) keep only allowlisted attributes, each value written as
  `html.escape(value, quote=True)` inside double quotes; every other tag (`<script>`, `<base>`, `<iframe>`, …)
  comes out as its escaped source text, and a raw-text element's content (`<script>`'s) as escaped text;
- `href`: any scheme but http(s) (`javascript:`) is dropped; a link that resolves into the index's read roots
  points at the gateway, one elsewhere on the index's host is dropped (it would give away the index's internal
  address and the gateway does not serve it), and a link to another host is left as it was;
- comments, processing instructions and CDATA are dropped; a doctype becomes `<!DOCTYPE html>`.

The work is linear in the input, fed whole or in chunks, and the output does not depend on where chunks split: an
unfinished token is retried only once the buffer has doubled, and a tag longer than MAX_TAG characters makes the
page a 502 (no index writes such a tag) rather than something to buffer.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape, unescape
from html.entities import html5
from urllib.parse import unquote, urljoin, urlsplit

from packaging.utils import InvalidName, canonicalize_name

from gateway.errors import GatewayError
from gateway.reads.paths import IndexLayout

MAX_TAG = 64 * 1024
MAX_LINK_TEXT = 1024

# What simple pages (PEP 503, pypiserver, devpi, Warehouse) are made of; everything else is shown as text.
ALLOWED_TAGS = frozenset(
    "html head body title meta h1 h2 h3 h4 h5 h6 a br p div span pre code ul ol li hr "
    "table thead tbody tr th td b i em strong small".split()
)
VOID_TAGS = frozenset({"br", "hr", "meta"})
_GLOBAL_ATTRIBUTES = frozenset({"id", "class", "title", "lang", "dir"})
_TAG_ATTRIBUTES = {"a": frozenset({"href", "rel"}), "meta": frozenset({"name", "content", "charset"})}
_DATA_ATTRIBUTE = re.compile(r"data-[a-z0-9-]+")
# Elements whose content the HTML tokenizer reads as text up to their end tag (RCDATA ones decode references).
_RAWTEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript"})
_RCDATA = frozenset({"title", "textarea"})

_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_SPACE = re.compile(r"[\t\n\f\r ]*")
_SPACE_SLASH = re.compile(r"[\t\n\f\r /]*")
_ATTRIBUTE_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]+")
_COMMENT_END = re.compile(r"--!?>")
_PARTIAL_REFERENCE = re.compile(r"&(?:#[0-9]*|#[xX][0-9a-fA-F]*|[^\t\n\f <&#;]{0,32})")
_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_URL_TRIM = "".join(map(chr, range(0x21)))
_URL_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_HASH = re.compile(r"([A-Za-z0-9_]+)=([0-9A-Fa-f]+)")
_END_TAGS = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE | re.ASCII) for name in _RAWTEXT | _RCDATA}
_LONGEST_RAW_END = max(len(name) for name in _END_TAGS) + 3


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


class PageTooComplex(GatewayError):
    def __init__(self, max_tag: int) -> None:
        message = f"The package index sent a page with a tag longer than {max_tag // 1024} KiB; it is not served"
        super().__init__(502, message, "upstream_bad_page")


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
        self._tokens = _Tokenizer(page_url, layout, public_url, max_tag)
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
    tokens = _Tokenizer(page_url, None, "", MAX_TAG)
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


def unescape_attribute(value: str) -> str:
    """Character references decoded as in an attribute value: a legacy reference without ';' followed by '=' or an
    alphanumeric stays as written (`?a=1&copy=2` keeps `&copy`), as browsers do."""
    if "&" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body.startswith("#"):
            return unescape(match.group(0))
        for length in range(len(body), 1, -1):  # the longest entity name the reference starts with
            if body[:length] in html5:
                break
        else:
            return match.group(0)
        name, rest = body[:length], body[length:]
        following = rest[:1] or value[match.end() : match.end() + 1]
        if not name.endswith(";") and (following == "=" or (following.isascii() and following.isalnum())):
            return match.group(0)
        return html5[name] + rest

    return _REFERENCE.sub(replace, value)


class _Tokenizer:
    """The HTML tokenizer's states that matter for re-emission: data, tag, comment, bogus comment, raw text."""

    def __init__(self, page_url: str, layout: IndexLayout | None, public_url: str, max_tag: int) -> None:
        self._page_url = page_url
        self._layout = layout
        self._public_url = public_url
        self._max_tag = max_tag
        self._buf = ""
        self._pending: list[str] = []
        self._pending_length = 0
        self._out: list[str] = []
        self._state = "data"
        self._end_tag: re.Pattern[str] | None = None  # of the raw-text element being read; None for plaintext
        self._decode_raw = False
        self._wait = 0
        self.links: list[Link] = []
        self._anchor: tuple[str | None, dict[str, str]] | None = None
        self._anchor_text: list[str] = []
        self._anchor_length = 0

    def feed(self, text: str) -> str:
        self._pending.append(text.replace("\x00", "\ufffd") if "\x00" in text else text)
        self._pending_length += len(text)
        if len(self._buf) + self._pending_length >= self._wait:
            self._take_pending()
            stalled = self._run(final=False)
            self._wait = 2 * len(self._buf) if stalled else 0
        return self._flush()

    def close(self) -> str:
        self._take_pending()
        self._run(final=True)
        self._buf = ""
        self._end_anchor()
        return self._flush()

    def _take_pending(self) -> None:
        self._buf += "".join(self._pending)
        self._pending.clear()
        self._pending_length = 0

    def _flush(self) -> str:
        out = "".join(self._out)
        self._out.clear()
        return out

    def _run(self, *, final: bool) -> bool:
        """Consume what can be decided; True when an unfinished token waits for more input."""
        buf, pos, n = self._buf, 0, len(self._buf)
        stalled = False
        while pos < n:
            if self._state == "data":
                lt = buf.find("<", pos)
                if lt < 0:
                    stop = n if final else _text_end(buf, pos, n)
                    self._text(buf[pos:stop], decode=True)
                    pos, stalled = stop, stop < n
                    break
                if lt > pos:
                    self._text(buf[pos:lt], decode=True)
                step = self._markup(buf, lt, final)
                if step is None:
                    pos, stalled = lt, True
                    break
                pos = step
            elif self._state == "raw":
                match = None if self._end_tag is None else self._end_tag.search(buf, pos)
                if match is not None:
                    self._text(buf[pos : match.start()], decode=self._decode_raw)
                    pos, self._state = match.start(), "data"
                    continue
                # Keep what could be the start of the end tag ("</script" and one more character).
                stop = n if final or self._end_tag is None else max(pos, n - _LONGEST_RAW_END)
                if self._decode_raw and not final:
                    stop = min(stop, _text_end(buf, pos, n))
                self._text(buf[pos:stop], decode=self._decode_raw)
                pos, stalled = stop, stop < n
                break
            elif self._state == "comment":
                match = _COMMENT_END.search(buf, pos)
                if match is None:
                    pos = n if final else max(pos, n - 3)
                    stalled = pos < n
                    break
                pos, self._state = match.end(), "data"
            else:  # bogus comment or doctype: up to the next '>'
                gt = buf.find(">", pos)
                if gt < 0:
                    pos = n
                    break
                pos, self._state = gt + 1, "data"
        self._buf = buf[pos:]
        return stalled

    def _markup(self, buf: str, pos: int, final: bool) -> int | None:
        """Handle the markup at buf[pos] == '<'; the position after it, or None until more input arrives."""
        n = len(buf)
        if pos + 1 >= n:
            if final:
                self._text("<", decode=False)
                return n
            return None
        c = buf[pos + 1]
        if c == "!":
            head = buf[pos + 2 : pos + 9]
            if head.startswith("--"):
                if head.startswith(("-->", "--->")):  # abrupt ends: "<!-->", "<!--->"
                    return pos + (5 if head.startswith("-->") else 6)
                if not final and len(head) < 4 and "--->".startswith(head[:4]):
                    return None
                self._state = "comment"
                return pos + 4
            if not final and len(head) < 7 and ("--".startswith(head) or "doctype".startswith(head.lower())):
                return None
            if head.isascii() and head.lower() == "doctype":
                self._out.append("<!DOCTYPE html>")
            self._state = "bogus"
            return pos + 2
        if c == "/":
            if pos + 2 >= n:
                if final:
                    self._text("</", decode=False)
                    return n
                return None
            d = buf[pos + 2]
            if d == ">":
                return pos + 3
            if d.isascii() and d.isalpha():
                return self._tag(buf, pos, end_tag=True, final=final)
            self._state = "bogus"
            return pos + 2
        if c == "?":
            self._state = "bogus"
            return pos + 1
        if c.isascii() and c.isalpha():
            return self._tag(buf, pos, end_tag=False, final=final)
        self._text("<", decode=False)
        return pos + 1

    def _tag(self, buf: str, start: int, *, end_tag: bool, final: bool) -> int | None:
        n = len(buf)
        name_match = _TAG_NAME.match(buf, start + (2 if end_tag else 1))
        assert name_match is not None
        name = _ascii_lower(name_match.group())
        pos = name_match.end()
        attributes: dict[str, str] = {}
        end = -1
        while pos < n:
            if pos - start > self._max_tag:
                raise PageTooComplex(self._max_tag)
            separator = _SPACE_SLASH.match(buf, pos)
            assert separator is not None
            pos = separator.end()
            if pos >= n:
                break
            if buf[pos] == ">":  # a '/' before it changes nothing on the elements this emits
                end = pos + 1
                break
            attribute = _ATTRIBUTE_NAME.match(buf, pos)
            assert attribute is not None
            pos = attribute.end()
            value = ""
            after = _SPACE.match(buf, pos)
            assert after is not None
            if after.end() >= n:
                break
            if buf[after.end()] == "=":
                value_start = _SPACE.match(buf, after.end() + 1)
                assert value_start is not None
                pos = value_start.end()
                if pos >= n:
                    break
                quote = buf[pos]
                if quote in "\"'":
                    close = buf.find(quote, pos + 1)
                    if close < 0:
                        pos = n
                        break
                    value, pos = buf[pos + 1 : close], close + 1
                elif quote != ">":
                    unquoted = _UNQUOTED.match(buf, pos)
                    assert unquoted is not None
                    value, pos = unquoted.group(), unquoted.end()
            else:
                pos = after.end()
            attributes.setdefault(_ascii_lower(attribute.group()), value)
        if (end if end >= 0 else n) - start > self._max_tag:
            raise PageTooComplex(self._max_tag)
        if end < 0:
            return n if final else None  # a tag the input never finishes is dropped, as at the end of a file
        if name not in ALLOWED_TAGS:
            self._text(buf[start:end], decode=False)
        elif end_tag:
            self._out.append(f"</{name}>")
            if name == "a":
                self._end_anchor()
        else:
            self._start_tag(name, attributes)
        if not end_tag and (name in _END_TAGS or name == "plaintext"):
            self._state, self._end_tag, self._decode_raw = "raw", _END_TAGS.get(name), name in _RCDATA
        return end

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


def _text_end(buf: str, pos: int, n: int) -> int:
    """Where text that may continue in the next chunk can be cut: before a character reference it may complete."""
    amp = buf.rfind("&", pos, n)
    return amp if amp >= 0 and _PARTIAL_REFERENCE.fullmatch(buf, amp, n) else n


def _ascii_lower(name: str) -> str:
    return name.lower() if name.isascii() else name
