"""A linear HTML tokenizer, for re-emitting pages one token at a time (`rewrite`).

NOTE: CPython 3.11's html.parser rescans unfinished tags (`'<a ' * 8000` takes 12 s) and html5ever (nh3) is
quadratic in unique attributes and nesting depth, so pages are tokenized here as the HTML standard tokenizes them
(text, tags with their attributes, comments, raw-text elements), building no tree. Comments, processing
instructions and CDATA yield nothing; a doctype yields `_doctype`.

The work is linear in the input, fed whole or in chunks, and the tokens do not depend on where chunks split: an
unfinished token is retried only once the buffer has doubled, and a tag longer than MAX_TAG characters makes the
page a 502 (no index writes such a tag) rather than something to buffer.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from html import unescape
from html.entities import html5

from gateway.errors import GatewayError

MAX_TAG = 64 * 1024
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
_END_TAGS = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE | re.ASCII) for name in _RAWTEXT | _RCDATA}
_LONGEST_RAW_END = max(len(name) for name in _END_TAGS) + 3


class PageTooComplex(GatewayError):
    def __init__(self, max_tag: int) -> None:
        message = f"The package index sent a page with a tag longer than {max_tag // 1024} KiB; it is not served"
        super().__init__(502, message, "upstream_bad_page")


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


class Tokenizer(ABC):
    """The HTML tokenizer's states that matter for re-emission: data, tag, comment, bogus comment, raw text. A
    subclass takes the tokens (`_text`, `_doctype`, `_tag_token`) and makes the output."""

    def __init__(self, max_tag: int) -> None:
        self._max_tag = max_tag
        self._buf = ""
        self._pending: list[str] = []
        self._pending_length = 0
        self._state = "data"
        self._end_tag: re.Pattern[str] | None = None  # of the raw-text element being read; None for plaintext
        self._decode_raw = False
        self._wait = 0

    @abstractmethod
    def _text(self, text: str, *, decode: bool) -> None:
        """Text (`decode`: character references in it are still to be decoded)."""

    @abstractmethod
    def _doctype(self) -> None: ...

    @abstractmethod
    def _tag_token(self, source: str, name: str, attributes: dict[str, str], *, end_tag: bool) -> None:
        """A whole tag: its source text, its lower-cased name and its attributes (the first of each name, raw)."""

    @abstractmethod
    def _end(self) -> None:
        """The input has ended."""

    @abstractmethod
    def _flush(self) -> str:
        """What `feed` and `close` return: the output for the tokens seen since the last call."""

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
        self._end()
        return self._flush()

    def _take_pending(self) -> None:
        self._buf += "".join(self._pending)
        self._pending.clear()
        self._pending_length = 0

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
                self._doctype()
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
        self._tag_token(buf[start:end], name, attributes, end_tag=end_tag)
        if not end_tag and (name in _END_TAGS or name == "plaintext"):
            self._state, self._end_tag, self._decode_raw = "raw", _END_TAGS.get(name), name in _RCDATA
        return end


def _text_end(buf: str, pos: int, n: int) -> int:
    """Where text that may continue in the next chunk can be cut: before a character reference it may complete."""
    amp = buf.rfind("&", pos, n)
    return amp if amp >= 0 and _PARTIAL_REFERENCE.fullmatch(buf, amp, n) else n


def _ascii_lower(name: str) -> str:
    return name.lower() if name.isascii() else name
