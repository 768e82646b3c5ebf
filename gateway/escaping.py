"""Client text as one visible line: the escaping that log lines, the audit trail and the CLI's output share.

Pure (no aiohttp), so that the command-line tools print audit events and token descriptions as the logs do
without importing the server.
"""

from __future__ import annotations

import re

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BARE = re.compile(r'[^\s"=\\]+')


def printable(text: str) -> str:
    """`text` with the backslash and every non-printable character (controls, ANSI escapes, NUL, U+2028,
    bidi overrides…) written as a Python string escape (`\\n`, `\\x1b`, `\\u2028`): one visible line that
    reads back unambiguously."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(ch) for ch in text)


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def key_value(key: str, value: object) -> str:
    """`key=value` (logfmt): the value escaped, and quoted when it holds a space, `=` or `"`, so that no
    value can pass for another field."""
    text = printable(str(value))
    return f"{key}={text}" if _BARE.fullmatch(text) else f"{key}={quoted(text)}"


def quoted(text: str) -> str:
    """`text` in double quotes, its own double quotes escaped (after `printable`, which escapes the backslash)."""
    return '"' + text.replace('"', '\\"') + '"'
