"""Issue #13, logs that cannot be forged or leak: malformed requests that aiohttp's own parser rejects while they
carry credentials, and user names with control characters, against a real gateway; then the whole log, the
audit trail (text and JSON) and its mirror file are read back."""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import GatewayFactory, GatewayProcess
from tests.dists import make_wheel
from tests.e2e.test_upload import basic, raw_post
from tests.e2e.test_web import Client
from tests.harness.forms import multipart, twine_fields, upload_body
from tests.logcheck import CONTINUATION, RECORD, parse_text_line, problems

PASSWORD = "log safety password 7"
WRONG = "not the password, but still secret 9"
# What a forged line would look like (no colon: a Basic user name ends at the first); none may start a line.
FORGED = "2001-02-03 04.05.06,789 INFO gateway.access POST /legacy/ 200 user=admin outcome=accepted"
EVIL = ["\n", "\r", "\r\n", "\x1b[2J\x1b[H", "\x00", "\u2028", "\u2029", "\x85", "\u202e", "\t"]


@dataclass
class Setup:
    gateway: GatewayProcess
    audit_file: Path
    token: str
    secrets: tuple[str, ...]


def secrets_of(token: str) -> tuple[str, ...]:
    return (PASSWORD, WRONG, token, token.partition("-")[2])


def start(gateway_factory: GatewayFactory, tmp_path: Path, log_format: str) -> Setup:
    audit_file = tmp_path / f"audit-{log_format}.jsonl"
    gw = gateway_factory(logging={"level": "debug", "format": log_format, "audit_file": str(audit_file)})
    gw.add_user("lena", PASSWORD)
    token = gw.cli("token", "create", "lena").stdout.strip()
    return Setup(gw, audit_file, token, secrets_of(token))


@pytest.fixture
def text_gateway(gateway_factory: GatewayFactory, tmp_path: Path) -> Iterator[Setup]:
    yield start(gateway_factory, tmp_path, "text")


def send_raw(url: str, data: bytes) -> bytes:
    """Send bytes as they are (no client library would send these), return the status line."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def authorizations(token: str) -> list[bytes]:
    return [
        basic("__token__", token).encode(),
        basic("lena", PASSWORD).encode(),
        basic("lena", WRONG).encode(),
        f"token {token}".encode(),
        f"Bearer {token}".encode(),
    ]


def malformed_requests(authorization: bytes) -> dict[str, bytes]:
    """Requests aiohttp's parser rejects with a 400 (logging the exception with the offending line)."""
    host = b"Host: gateway\r\n"
    header = b"Authorization: " + authorization + b"\r\n"
    return {
        "invalid header line after it": b"POST /legacy/ HTTP/1.1\r\n" + host + header + b"Bad Header\x01: y\r\n\r\n",
        "the header without its colon": b"POST /legacy/ HTTP/1.1\r\n" + host + header.replace(b": ", b" ", 1) + b"\r\n",
        "a control character in its value": b"POST /legacy/ HTTP/1.1\r\n" + host + header[:-2] + b"\x01\r\n\r\n",
        "the header too long": b"POST /legacy/ HTTP/1.1\r\n" + host + header[:-2] + b"A" * 9000 + b"\r\n\r\n",
        "a bad request line": b"POST /legacy/\x01 HTTP/1.1\r\n" + header + b"\r\n",
        "an invalid Content-Length": b"POST /legacy/ HTTP/1.1\r\n" + host + header + b"Content-Length: 1x\r\n\r\n",
        "two Content-Lengths": b"POST /legacy/ HTTP/1.1\r\n" + host + header + b"Content-Length: 1\r\n" * 2 + b"\r\n",
        "a bad method": b"P\x01ST /legacy/ HTTP/1.1\r\n" + header + b"\r\n",
    }


def upload_as(gw: GatewayProcess, username: str, password: str) -> int:
    content_type, body = upload_body(make_wheel(Path(gw.config.parent), "log-safety", "1.0"))
    headers = {"Content-Type": content_type, "Authorization": basic(username, password)}
    return raw_post(gw.url, "/legacy/", headers, body).status


def forged_user(evil: str) -> str:
    return f"mallory{evil}{FORGED}"


def test_credentials_in_requests_aiohttp_rejects_never_reach_the_log(text_gateway: Setup) -> None:
    gw = text_gateway.gateway
    sent = 0
    for authorization in authorizations(text_gateway.token):
        for what, request in malformed_requests(authorization).items():
            assert send_raw(gw.url, request).startswith(b"HTTP/1.0 400 Bad Request"), what
            sent += 1
    log = gw.log_text()
    assert log.count("Error handling request") >= sent - len(authorizations(text_gateway.token))  # bad method: debug
    assert "[redacted]" in log and "Invalid header" in log and "Got more than 8190 bytes" in log
    assert problems(log, secrets=text_gateway.secrets) == []
    assert_one_line_per_record(log)


def assert_one_line_per_record(log: str) -> None:
    """Every line is a record's own line, a traceback line hung under it, or the start-up banner."""
    banner = ("upload-gateway listening on ", "  a user:  ", "  a token: ", "  upload:  ", "  install: ")
    for line in log.splitlines():
        assert RECORD.match(line) or line.startswith((CONTINUATION, *banner)), f"a line of its own: {line!r}"
        assert not line.startswith(FORGED[:10])


def test_user_names_with_control_characters_forge_no_line_in_the_log_or_the_audit_trail(text_gateway: Setup) -> None:
    gw = text_gateway.gateway
    for evil in EVIL:
        assert upload_as(gw, forged_user(evil), WRONG) == 403
    path = "/simple/" + quote(f"x{EVIL[0]}{FORGED}{EVIL[1]}\x1b[0m") + "/"
    assert send_raw(gw.url, f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode()).startswith(b"HTTP/1.1 ")

    log = gw.log_text()
    assert problems(log, secrets=text_gateway.secrets) == []
    assert_one_line_per_record(log)
    refused = [line for line in log.splitlines() if "gateway.access: POST /legacy/ 403" in line or "mallory" in line]
    assert len(refused) == len(EVIL), "each refused upload is exactly one line"
    for line, evil in zip(refused, EVIL, strict=True):
        message, fields = parse_text_line(line)
        assert message == "POST /legacy/ 403" and fields["reason"] == "invalid_credentials"
        assert fields["user"].startswith('"mallory\\') and FORGED.replace('"', '\\"') in fields["user"]
        assert evil not in line
    assert [line for line in log.splitlines() if "GET /simple/x\\n2001-02-03" in line]

    text = gw.cli("audit").stdout
    assert problems(text, secrets=text_gateway.secrets) == []
    lines = text.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  [a-z0-9_.]+ ", line) for line in lines), lines
    rejected = [line for line in lines if " upload.rejected " in line]
    assert len(rejected) == len(EVIL)
    assert all('user="mallory\\' in line and "reason=invalid_credentials" in line for line in rejected)

    for place, json_lines in (("audit --json", gw.cli("audit", "--json").stdout), ("audit file", None)):
        raw = json_lines if json_lines is not None else text_gateway.audit_file.read_text()
        assert problems(raw, secrets=text_gateway.secrets) == [], place
        events = [json.loads(line) for line in raw.splitlines()]
        assert len(events) == len(lines), place
        names = [event["user_name"] for event in events if event["event"] == "upload.rejected"]
        assert names == [forged_user(evil) for evil in EVIL], f"{place}: the names read back exactly"


def test_json_logs_escape_client_input_and_hold_no_credential(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    setup = start(gateway_factory, tmp_path, "json")
    gw = setup.gateway
    for evil in EVIL:
        assert upload_as(gw, forged_user(evil), WRONG) == 403
    for authorization in authorizations(setup.token):
        for request in malformed_requests(authorization).values():
            send_raw(gw.url, request)
    log = gw.log_text()
    assert problems(log, secrets=setup.secrets) == []
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    users = [r["user"] for r in records if r["logger"] == "gateway.access" and r.get("reason") == "invalid_credentials"]
    assert users == [forged_user(evil) for evil in EVIL]
    errors = [r for r in records if r["logger"] == "aiohttp.server"]
    assert errors and all("Traceback" in r["exception"] for r in errors)
    assert any("Authorization: [redacted]" in r["exception"] for r in errors)
    assert all(line.startswith("{") or not line.startswith(FORGED[:10]) for line in log.splitlines())


def test_a_token_sent_as_a_basic_password_is_masked_in_every_encoding(text_gateway: Setup) -> None:
    """The decodable forms a reader could undo: base64 of `__token__:` is `X190b2tlbl9f`."""
    assert base64.b64encode(b"__token__:").decode().startswith("X190b2tlbl9f")
    gw = text_gateway.gateway
    request = malformed_requests(basic("__token__", text_gateway.token).encode())["the header too long"]
    send_raw(gw.url, request)
    log = gw.log_text()
    assert "Got more than 8190 bytes when reading: b'Basic [redacted]" in log
    assert "X190b2tlbl9f" not in log and text_gateway.token[5:40] not in log


def raw_upload(gw: GatewayProcess, authorization: str, filename: str, user_agent: bytes, **fields: str) -> bytes:
    """An upload sent byte for byte (no client library sends control characters): the status line."""
    wheel = make_wheel(Path(gw.config.parent), "log-safety", "1.0")
    content_type, body = multipart(
        twine_fields(wheel.name, wheel.read_bytes(), **fields), [("content", filename, wheel.read_bytes())]
    )
    head = (
        f"POST /legacy/ HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Authorization: {authorization}\r\nConnection: close\r\n"
    ).encode()
    return send_raw(gw.url, head + b"User-Agent: " + user_agent + b"\r\n\r\n" + body)


def test_control_characters_and_credentials_in_every_client_field_reach_the_log_escaped_or_masked(
    text_gateway: Setup,
) -> None:
    """Filenames, form fields, User-Agent, paths, cookies and URLs, each with control characters or credentials,
    from a client with the right password (so that the upload gets as far as its form) and from one without."""
    gw, token = text_gateway.gateway, text_gateway.token
    good = basic("lena", PASSWORD)
    for evil in ["\x1b[2J", "\x00", "\u2028", "\x85", "\u202e", "\t", "\x7f"]:
        status = raw_upload(gw, good, f"log_safety-1.0-py3-none-any{evil}.whl", b"twine/6.1 (evil)")
        assert status.startswith(b"HTTP/1.1 400 "), (evil, status)
    for evil in EVIL:
        status = raw_upload(gw, good, "log_safety-1.0-py3-none-any.whl", b"ok", version=f"1.0{evil}{FORGED}")
        assert status.startswith(b"HTTP/1.1 400 "), (evil, status)
        raw_upload(gw, good, "log_safety-1.0-py3-none-any.whl", b"ok", name=f"log-safety{evil}{FORGED}")
        raw_upload(gw, good, "log_safety-1.0-py3-none-any.whl", b"ok", summary=f"x{evil}{FORGED}")
    for agent in [b"twine\x1b[31m", b"twine\x00", b"twine\x7f", "twine\u2028".encode(), b"twine\x85", b"tw\tine"]:
        raw_upload(gw, basic("lena", WRONG), "log_safety-1.0-py3-none-any.whl", agent)
    assert upload_as(gw, token, WRONG) == 403  # a token pasted as the user name: masked in the audit trail too
    browser = Client(gw.url)
    browser.get("/account/login")
    assert browser.post("/account/login", {"username": token, "password": WRONG})[0] == 401  # the same, signing in
    secret_in_url = quote(PASSWORD)
    requests = [
        f"GET http://lena:{secret_in_url}@gateway/simple/ HTTP/1.1\r\nHost: gateway\r\n\r\n".encode(),
        f"GET http://lena:{secret_in_url}@gateway/simple/\x01 HTTP/1.1\r\nHost: gateway\r\n\r\n".encode(),
        f"GET /simple/{token}/ HTTP/1.1\r\nHost: gateway\r\n\r\n".encode(),
        f"GET /simple/{quote(FORGED)}%0d%0a%1b%00/ HTTP/1.1\r\nHost: gateway\r\n\r\n".encode(),
        b"GET /simple/\x1b[2J/ HTTP/1.1\r\nHost: gateway\r\n\r\n",
        b"GET /simple/ HTTP/1.1\r\nHost: gateway\r\nCookie: gateway_session=s3ss10n-value\x01\r\n\r\n",
        b"GET /simple/ HTTP/1.1\r\nHost: gateway\r\nProxy-Authorization: "
        + basic("lena", PASSWORD).encode()
        + b"\x01\r\n\r\n",
        b"GET /simple/ HTTP/1.1\r\nHost: gateway\r\nX-Forwarded-For: 1.2.3.4\x1b[2J\r\n\r\n",
    ]
    for request in requests:
        assert send_raw(gw.url, request).startswith(b"HTTP/1."), request
    log = gw.log_text()
    assert problems(log, secrets=(*text_gateway.secrets, secret_in_url, "s3ss10n-value")) == []
    assert_one_line_per_record(log)
    assert "\\x1b[2J" in log and "\\u2028" in log and "\\x00" in log  # escaped, not dropped: the operator sees them
    assert log.count("reason=unsafe_filename") == 7  # the refusal names the problem, not the file
    assert "GET http://[redacted]@gateway/simple/" in log and "GET /simple/[token redacted]/" in log
    assert "Cookie: [redacted]" in log and "Proxy-Authorization: [redacted]" in log
    audit = gw.cli("audit").stdout + text_gateway.audit_file.read_text()
    assert problems(audit, secrets=text_gateway.secrets) == []
