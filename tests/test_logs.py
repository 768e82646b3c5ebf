from __future__ import annotations

import json
import logging

import pytest

from gateway.logs import JsonFormatter, Redactor, TextFormatter, client_address


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
