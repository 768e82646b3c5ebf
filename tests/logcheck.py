"""Reading the gateway's logs back, and the check every e2e gateway's log and audit file pass at teardown:
no raw control character, no forged line, no credential in any encoding (issue #13)."""

from __future__ import annotations

import base64
import binascii
import re

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_FIELD = re.compile(rf' (\w+)=({_QUOTED}|[^\s"=\\]+)')
# A text record's first line: `2026-01-02 03:04:05,678 LEVEL logger: …`.
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
CONTINUATION = "  | "
# What may legitimately hold these words: the gateway's own redaction markers.
MARKERS = re.compile(r"\[redacted\]|\[token redacted\]")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
LEAKS = {
    "an Authorization header value": re.compile(
        r"(?i)\bauthorization\b[\"']?(?:[ \t]*[:=][ \t]*|[ \t]+)(?!\[redacted\]|scheme[ \t]+\[redacted\])\S"
    ),
    "a Basic or Bearer credential": re.compile(
        r"(?i)\b(?:basic|bearer)[ \t]+(?!credentials\b|\[redacted\])[A-Za-z0-9+/=_-]{4,}"
    ),
    "base64 of __token__:": re.compile(r"X190b2tlbl9f"),
    "an API token": re.compile(r"pypi-[A-Za-z0-9_-]{16,}"),
    "credentials in a URL": re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://(?!\[redacted\]@)[^/\s@'\"<>\[\]]+:[^/\s@'\"<>]*@"),
    "a Cookie header value": re.compile(r"(?i)\bcookie[\"']?[ \t]*:[ \t]*(?!\[redacted\])\S"),
}
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{8,}={0,2}(?![A-Za-z0-9+/=_-])")


def parse_text_line(line: str) -> tuple[str, dict[str, str]]:
    """A text log line read back: its message and its fields, each exactly as written; the whole line used."""
    _, _, rest = line.partition(": ")
    message = re.match(rf"{_QUOTED}|[^=]*?(?= \w+=|$)", rest)
    assert message is not None
    fields: dict[str, str] = {}
    position = message.end()
    while position < len(rest):
        field = _FIELD.match(rest, position)
        assert field is not None, f"unparsable at {rest[position:]!r}"
        assert field.group(1) not in fields, f"{field.group(1)} twice"
        fields[field.group(1)] = field.group(2)
        position = field.end()
    return message.group(0), fields


def basic_credentials_in(text: str) -> list[str]:
    """Every base64 run in `text` that decodes to UTF-8 `name:secret` (read up to its last whole group and
    character: a quoted line may be cut short): a Basic credential, whatever its context. Random runs (hex
    digests, token ids) almost never decode to UTF-8 at all."""
    found = []
    for run in _BASE64.findall(text):
        try:
            decoded = base64.b64decode(run[: len(run) - len(run) % 4], validate=True)
        except binascii.Error:
            continue
        for cut in range(4):
            try:
                name, colon, _ = decoded[: len(decoded) - cut].decode("utf-8").partition(":")
            except UnicodeDecodeError:
                continue
            if colon and name:
                found.append(run)
            break
    return found


def problems(text: str, *, secrets: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with a log or an audit file: raw control characters, a credential, a known secret in any
    of its encodings."""
    found = [f"raw control character {char!r}" for char in sorted(set(CONTROL.findall(text)))]
    found += [f"{what}: {hit.group(0)[:40]!r}…" for what, pattern in LEAKS.items() for hit in pattern.finditer(text)]
    found += [f"a Basic credential in base64: {run[:12]!r}…" for run in basic_credentials_in(text)]
    for secret in (secret for secret in secrets if len(secret) >= 8):  # a shorter one could occur by chance
        # The secret itself, and its base64 at each of the three alignments it can have inside `name:secret`.
        shifted = [base64.b64encode(b"\0" * k + secret.encode()).decode() for k in range(3)]
        forms = [secret, shifted[0][:-4], shifted[1][4:-4], shifted[2][4:-4]]
        found += [f"known secret {secret[:3]}… as {form[:12]!r}" for form in forms if len(form) >= 6 and form in text]
    return found
