from __future__ import annotations

import base64
import hashlib
import json
import logging
import sys
import uuid

import pytest

from gateway import logs
from gateway.escaping import printable
from gateway.logs import CONTINUATION, JsonFormatter, Redactor, TextFormatter, client_address
from tests.logcheck import parse_text_line


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", "198.51.100.1", [], "203.0.113.5"),
        ("10.0.0.2", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, 10.0.0.3", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", None, ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "not-an-ip, 10.0.0.9", ["10.0.0.0/8"], "not-an-ip"),
        (None, "198.51.100.1", ["10.0.0.0/8"], None),
        # A proxy that writes the client's port too: the address alone, so one client is one throttle key.
        ("10.0.0.2", "198.51.100.1:50123", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", "[2001:db8::1]:50123", ["10.0.0.0/8"], "2001:db8::1"),
        ("10.0.0.2", "198.51.100.1:50123, 10.0.0.3:443", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", "2001:db8::1", ["10.0.0.0/8"], "2001:db8::1"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str | None, forwarded: str | None, trusted: list[str], expected: str | None
) -> None:
    assert client_address(peer, forwarded, trusted) == expected


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"msg": message, "levelname": "INFO", "name": "gateway.access"})
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_token_shaped_strings_are_masked_in_messages_and_fields() -> None:
    token = "pypi-AgEJMTI3LjAuMC4xAiQ3NWMyMDI2MS00YTNkLTQxNmQt"
    rec = record(f"saw {token} here", error=f"bad {token}")
    assert Redactor("pypi").filter(rec)
    assert token not in rec.getMessage() and "[token redacted]" in rec.getMessage()
    assert rec.error == "bad [token redacted]"


def test_json_lines_carry_the_fields() -> None:
    line = json.loads(JsonFormatter().format(record("POST /legacy/ 200", status=200, user="alice", project="demo")))
    assert line["message"] == "POST /legacy/ 200" and line["logger"] == "gateway.access"
    assert line["status"] == 200 and line["user"] == "alice" and line["project"] == "demo"
    assert line["time"].endswith("Z")


def test_text_lines_append_fields_as_key_values() -> None:
    text = TextFormatter().format(record("POST /legacy/ 403", reason="invalid_token", token_id=None))
    assert text.endswith("POST /legacy/ 403 reason=invalid_token")


TOKEN = "pypi-AgEJMTI3LjAuMC4xAiQ3NWMyMDI2MS00YTNkLTQxNmQt"
DUNDER = base64.b64encode(f"__token__:{TOKEN}".encode()).decode()
PASSWORD_PAIR = base64.b64encode(b"erin:s3cret password").decode()


def formatted(formatter: logging.Formatter, rec: logging.LogRecord) -> str:
    assert Redactor("pypi").filter(rec)
    return formatter.format(rec)


@pytest.mark.parametrize(
    "line",
    [
        # What aiohttp's parser puts in its exception when it rejects a request (logger aiohttp.server).
        f"Invalid header value char:\n\n    b'Authorization: Basic {DUNDER}\\x01'\n         ^",
        f"Invalid header token:\n\n    b'Authorization Basic {PASSWORD_PAIR}'",
        f"Got more than 8190 bytes when reading: b'Basic {DUNDER[:60]}AAAA...'.",
        f"{{'Authorization': 'token {TOKEN[5:]}'}}",
        f"authorization=Bearer {TOKEN[5:]}",
        f"saw {DUNDER} and {PASSWORD_PAIR} without a scheme",
        "Unsupported authorization scheme 'hunter2': use HTTP Basic",
        f"a token %3A{TOKEN} in a path",
    ],
)
def test_credentials_are_masked_in_every_encoding(line: str) -> None:
    scrubbed = Redactor("pypi").scrub(line)
    for secret in (DUNDER, DUNDER[:60], "X190b2tlbl9f", PASSWORD_PAIR, TOKEN, TOKEN[5:], "hunter2"):
        assert secret not in scrubbed
    assert "[redacted]" in scrubbed or "[token redacted]" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "Malformed Basic credentials: send base64 of 'username:password'",
        "POST /legacy/ 403",
        "GET /simple/demo-pkg/ 200",
        "sha256=3b8d1c0f9c2a7e4d5b6a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c",
        "file=Demo_Pkg-0.1.0-py3-none-any.whl",
    ],
)
def test_ordinary_lines_are_left_alone(text: str) -> None:
    assert Redactor("pypi").scrub(text) == text


def test_tracebacks_are_masked_before_any_formatter_sees_them() -> None:
    try:
        raise ValueError(f"b'Authorization: Basic {DUNDER}'")
    except ValueError:
        rec = logging.makeLogRecord({"msg": "Error handling request", "levelname": "ERROR", "exc_info": sys.exc_info()})
    for formatter in (TextFormatter(), JsonFormatter()):
        out = formatted(formatter, rec)
        assert "Traceback" in out and DUNDER not in out and "X190b2tl" not in out


@pytest.mark.parametrize("evil", ["\n", "\r", "\x1b[2J", "\x00", "\u2028", "\u2029", "\x85", "\u202e", "\t", "\x7f"])
def test_text_lines_cannot_be_forged(evil: str) -> None:
    forged = f'eve{evil}2026-01-01 00:00:00,000 INFO gateway.access: POST /legacy/ 200 user=admin outcome="x'
    rec = record(f"POST /{forged} 403", user=forged, error=f'say "{forged}"', status=403)
    out = formatted(TextFormatter(), rec)
    assert "\n" not in out and out.isprintable()
    message, fields = parse_text_line(out)
    assert message.startswith('"POST /eve\\') and set(fields) == {"user", "error", "status"}
    assert fields["user"].startswith('"eve\\') and fields["status"] == "403"


def test_escapes_read_back() -> None:
    for text in ("plain", "a\\nb", "a\nb", "\x1b[31mred\x1b[0m", "é ü 名前", "\u2028\U0001f600\U000e0041"):
        escaped = printable(text)
        assert escaped.isprintable()
        assert escaped.encode("latin-1", "backslashreplace").decode("unicode_escape") == text


def test_tracebacks_hang_under_their_record() -> None:
    try:
        raise ValueError("first\n2026-01-01 00:00:00,000 INFO gateway.access: forged\x1b[0m")
    except ValueError:
        rec = logging.makeLogRecord({"msg": "boom", "name": "root", "levelname": "ERROR", "exc_info": sys.exc_info()})
    head, *rest = formatted(TextFormatter(), rec).split("\n")
    assert head.endswith("ERROR root: boom") and rest
    assert all(line.startswith(CONTINUATION) and line.isprintable() for line in rest)


def test_json_lines_escape_control_characters() -> None:
    rec = record("POST /legacy/ 403", user="eve\n\x1b\x00\u2028")
    out = formatted(JsonFormatter(), rec)
    assert "\n" not in out and out.isascii() and out.isprintable()
    assert json.loads(out)["user"] == "eve\n\x1b\x00\u2028"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Invalid header value char:\n\n    b'Cookie: gateway_session=s3ss10n-value\\x01'", "s3ss10n-value"),
        ("{'Set-Cookie': 'gateway_session=s3ss10n-value; HttpOnly'}", "s3ss10n-value"),
        ("Invalid method encountered:\n\n    b'G\\x01T http://lena:hunter2@gateway/simple/ HTTP/1.1'", "hunter2"),
        (f"url=https://__token__:{TOKEN}@pkgs.example.com/legacy/", TOKEN[5:20]),
        ("upstream https://index-service@index:8080/ failed", "index-service"),
    ],
)
def test_cookies_and_credentials_in_urls_are_masked(line: str, secret: str) -> None:
    scrubbed = Redactor("pypi").scrub(line)
    assert secret not in scrubbed and "[redacted]" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "index fault on simple: upstream_unreachable url=http://index:8080/simple/demo/",
        "see https://pkgs.example.com/account/tokens for a token",
        "the session cookie was missing",
    ],
)
def test_urls_and_words_without_credentials_are_left_alone(text: str) -> None:
    assert Redactor("pypi").scrub(text) == text


@pytest.mark.parametrize("cut", range(12, len(PASSWORD_PAIR) + 1))
def test_a_basic_credential_cut_short_is_masked_without_its_scheme(cut: int) -> None:
    """aiohttp quotes the start of a line too long to read: the base64 can end anywhere."""
    assert Redactor("pypi").scrub(f"b'{PASSWORD_PAIR[:cut]}...'") == "b'[redacted]...'"


def test_digests_and_ids_are_not_taken_for_credentials() -> None:
    values = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(2000)] + [
        uuid.uuid4().hex for _ in range(2000)
    ]
    text = " ".join(values)
    assert Redactor("pypi").scrub(text) == text


def test_redact_masks_tokens_of_the_configured_prefix_without_logging_set_up() -> None:
    """The audit trail's masking of a token typed as a user name knows the gateway's own prefix, whatever
    logging a process (the CLI, a test) configured."""
    token = "acme-" + "A" * 40
    assert token not in logs.redact(f"user {token}", "acme")
    assert "pypi-" + "B" * 40 not in logs.redact("pypi-" + "B" * 40, "acme")
    assert logs.redact("alice", "acme") == "alice"
