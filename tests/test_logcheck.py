"""The e2e log check (tests/logcheck.py) finds what it must, and nothing in a clean log: a check that cannot
fail, or that cries wolf over other tests' logs, is a defect. (A raw newline cannot be told from a line end
here: tests/e2e/test_log_safety.py checks that every line of its gateways' logs is a record's own.)"""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.logcheck import problems

SECRET = "a test password 42"
CLEAN = """2026-12-02 01:12:59,578 INFO gateway.access: POST /legacy/ 403 user="eve\\n2026" reason=invalid_credentials
2026-12-02 01:13:00,744 INFO gateway.access: GET /simple/[token redacted]/ 301 path="/simple/[token redacted]/"
2026-12-02 01:13:01,000 ERROR aiohttp.server: Error handling request
  | Traceback (most recent call last):
  |     b'Authorization: [redacted]
  |     b'Cookie: [redacted]
  | aiohttp.http_exceptions.LineTooLong: 400, message: Got more than 8190 bytes when reading: b'Basic [redacted]'.
2026-12-02 01:13:02,000 WARNING gateway.upstream: index fault url=http://index:8080/simple/ cause="HTTP 500"
2026-12-02 01:13:03,000 INFO gateway.access: GET http://[redacted]@gateway/simple/ 200 sha256=3b8d1c0f9c2a7e4d5b6a
"""


def test_a_clean_log_has_no_problem() -> None:
    assert problems(CLEAN, secrets=(SECRET,)) == []


@pytest.mark.parametrize(
    "leak",
    [
        "user=eve\x1b[2J",
        "user=eve\x00",
        "user=eve\u2028",
        "user=eve\x85",
        "b'Authorization: Basic bGVuYTpwdw=='",
        "Authorization token abc",
        "saw " + base64.b64encode(b"__token__:pypi-x").decode(),
        "saw " + base64.b64encode(b"lena:pw").decode() + " alone",
        "token pypi-AgEJMTI3LjAuMC4xAiQ3NWMy",
        "GET http://lena:pw@gateway/simple/",
        "b'Cookie: gateway_session=abc'",
        f"said {SECRET} aloud",
        *(f"x {base64.b64encode(prefix.encode() + SECRET.encode()).decode()} y" for prefix in ("", "a:", "ab:")),
    ],
)
def test_each_leak_is_found(leak: str) -> None:
    assert problems(CLEAN + leak + "\n", secrets=(SECRET,))


def test_a_credential_cut_short_is_found_and_digests_are_not() -> None:
    whole = base64.b64encode(f"lena:{SECRET}".encode()).decode()
    assert all(problems(f"b'{whole[:cut]}...'") for cut in range(8, len(whole) + 1))
    assert problems(" ".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(5000))) == []
