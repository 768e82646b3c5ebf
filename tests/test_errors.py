from __future__ import annotations

import pytest

from gateway.errors import MAX_REASON_LENGTH, GatewayError, reason_phrase


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("File too large", "File too large"),
        ("line one\r\nSet-Cookie: x=1", "line one  Set-Cookie: x=1"),
        ("nul\x00byte\ttab", "nul byte tab"),
    ],
)
def test_messages_are_one_printable_line(message: str, expected: str) -> None:
    assert GatewayError(400, message, "r").message == expected


def test_messages_are_bounded() -> None:
    message = GatewayError(400, "x" * 5000, "r").message
    assert len(message) == MAX_REASON_LENGTH and message.endswith("...")


def test_reason_phrase_is_ascii_body_keeps_text() -> None:
    error = GatewayError(403, "Zugriff verweigert für Ünïcode €", "r")
    assert error.message == "Zugriff verweigert für Ünïcode €"
    assert reason_phrase(error.message) == "Zugriff verweigert f?r ?n?code ?"
