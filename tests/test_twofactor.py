from __future__ import annotations

import base64
import re

import pyotp
import pytest

from gateway.twofactor import (
    new_recovery_codes,
    new_totp_secret,
    normalize_recovery_code,
    provisioning_uri,
    verify_totp,
)

RFC6238_SECRET = base64.b32encode(b"12345678901234567890").decode()  # RFC 6238 appendix B, SHA-1
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_700_000_010.5
STEP = int(NOW) // 30


def code_at(step_offset: int) -> str:
    return pyotp.TOTP(SECRET).at(NOW + 30 * step_offset)


@pytest.mark.parametrize(
    ("now", "code", "step"),
    [
        (59, "287082", 1),
        (1111111109, "081804", 37037036),
        (1234567890, "005924", 41152263),
        (2000000000, "279037", 66666666),
    ],
)
def test_rfc6238_vectors(now: int, code: str, step: int) -> None:
    assert verify_totp(RFC6238_SECRET, code, now=now, last_step=None) == step


@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_clock_drift(offset: int, accepted: bool) -> None:
    expected = STEP + offset if accepted else None
    assert verify_totp(SECRET, code_at(offset), now=NOW, last_step=None) == expected


@pytest.mark.parametrize(
    ("offset", "last_step", "expected"),
    [
        (0, STEP, None),  # the same code twice
        (0, STEP - 1, STEP),
        (-1, STEP - 1, None),  # an older code after a newer one
        (1, STEP, STEP + 1),
        (0, STEP + 1, None),  # a code from ahead of us was already used
    ],
)
def test_each_code_is_accepted_once(offset: int, last_step: int, expected: int | None) -> None:
    assert verify_totp(SECRET, code_at(offset), now=NOW, last_step=last_step) == expected


def test_wrong_code() -> None:
    valid = {code_at(offset) for offset in (-1, 0, 1)}
    wrong = next(code for code in (f"{n:06d}" for n in range(10)) if code not in valid)
    assert verify_totp(SECRET, wrong, now=NOW, last_step=None) is None


@pytest.mark.parametrize(
    "code",
    [
        "",
        "12345",
        "1234567",
        "12a456",
        "-12345",
        "+12345",
        "1234.5",
        "\u0661\u0662\u0663\u0664\u0665\u0666",
        "\uff11" * 6,
    ],
)
def test_malformed_codes(code: str) -> None:
    assert verify_totp(SECRET, code, now=NOW, last_step=None) is None


@pytest.mark.parametrize("layout", ["{}{}", "{} {}", " {}\t{}\n"])
def test_spaces_are_ignored(layout: str) -> None:
    code = code_at(0)
    assert verify_totp(SECRET, layout.format(code[:3], code[3:]), now=NOW, last_step=None) == STEP


def test_new_totp_secret() -> None:
    secrets = {new_totp_secret() for _ in range(10)}
    assert len(secrets) == 10
    assert {len(base64.b32decode(secret)) for secret in secrets} == {20}


def test_provisioning_uri() -> None:
    uri = provisioning_uri(SECRET, account="alice", issuer="Upload Gateway")
    assert uri.startswith("otpauth://totp/Upload%20Gateway:alice?")
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    assert (totp.secret, totp.digits, totp.interval, totp.issuer) == (SECRET, 6, 30, "Upload Gateway")


def test_recovery_codes() -> None:
    codes = new_recovery_codes()
    assert len(codes) == 8
    assert len(set(codes)) == 8
    assert all(re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}", code) for code in codes)
    assert len(new_recovery_codes(3)) == 3


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("abcd-ef01-2345-6789", "abcdef0123456789"),
        (" ABCD-EF01 2345-6789\n", "abcdef0123456789"),
        ("abcdef0123456789", "abcdef0123456789"),
        ("ab cd-ef-01", "abcdef01"),
    ],
)
def test_normalize_recovery_code(typed: str, normalized: str) -> None:
    assert normalize_recovery_code(typed) == normalized


def test_generated_codes_survive_normalization() -> None:
    for code in new_recovery_codes():
        assert normalize_recovery_code(code) == code.replace("-", "")
        assert normalize_recovery_code(code.upper().replace("-", " ")) == normalize_recovery_code(code)
