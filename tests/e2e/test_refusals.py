"""Refusals as clients show them (issue #16): one message per refusal, in the reason phrase (twine) and in the
body, which is PyPI's HTML error page when the client accepts HTML (maturin prints its `<title>`, browsers show
it), JSON when it asks for JSON, and one line of text when it sends no Accept header."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import GatewayProcess
from tests.dists import make_wheel
from tests.e2e.test_upload import basic
from tests.harness.forms import multipart, twine_fields, upload_body

PASSWORD = "a long enough password"


@dataclass
class Answer:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: str

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0]


def request(
    gw: GatewayProcess, method: str, path: str, headers: dict[str, str], body: bytes = b"", accept: str | None = None
) -> Answer:
    parts = urlsplit(gw.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(method, path, body=body, headers={**headers, **({"Accept": accept} if accept else {})})
    resp = conn.getresponse()
    answer = Answer(resp.status, resp.reason, resp.headers, resp.read().decode())
    conn.close()
    return answer


def upload(
    gw: GatewayProcess, tmp_path: Path, project: str, authorization: str, accept: str | None = None, **fields: str
) -> Answer:
    directory = tmp_path / uuid.uuid4().hex
    directory.mkdir()
    wheel = make_wheel(directory, project, "1.0")
    content_type, body = upload_body(wheel, **fields)
    headers = {"Content-Type": content_type, "Authorization": authorization}
    return request(gw, "POST", "/legacy/", headers, body, accept)


def token(gw: GatewayProcess, user: str, *args: str) -> str:
    return gw.cli("token", "create", user, *args).stdout.strip()


@pytest.fixture(scope="module")
def gw(gateway: GatewayProcess) -> GatewayProcess:
    for name in ("rhea", "rolf", "tfa"):
        gateway.add_user(name, PASSWORD)
    gateway.cli("user", "2fa", "enable", "tfa")
    gateway.cli("project", "grant", "rhea-one", "rhea")
    gateway.cli("project", "grant", "rhea-two", "rhea")
    return gateway


def test_a_scoped_token_on_another_project_says_so_once(gw: GatewayProcess, tmp_path: Path) -> None:
    """Before: "Invalid API Token: project-scoped token is not valid for project: 'rhea-two', project-scoped
    token is not valid for project: 'rhea-two'" (the names and the ids caveat both refused)."""
    scoped = token(gw, "rhea", "--project", "rhea-one")
    answer = upload(gw, tmp_path, "rhea-two", basic("__token__", scoped))
    expected = "Invalid API Token: project-scoped token is not valid for project: 'rhea-two'"
    assert (answer.status, answer.reason) == (403, expected)
    assert answer.body == f"403 {expected}\n"


def test_a_scoped_token_on_a_new_project_is_told_to_use_an_account_wide_one(gw: GatewayProcess, tmp_path: Path) -> None:
    """Before: "project-scoped token is not valid for project: 'rhea-new'", twice, not docs/errors.md's answer."""
    scoped = token(gw, "rhea", "--project", "rhea-one")
    answer = upload(gw, tmp_path, "rhea-new", basic("__token__", scoped))
    expected = "The given token isn't allowed to create project 'rhea-new': use an account-wide token for a new project"
    assert (answer.status, answer.reason, answer.body) == (403, expected, f"403 {expected}\n")
    assert "rhea-new" not in gw.cli("project", "list", "rhea").stdout


def test_an_expired_scoped_token_on_its_own_project_still_says_expired(gw: GatewayProcess, tmp_path: Path) -> None:
    scoped = token(gw, "rhea", "--project", "rhea-one", "--expires", "1s")
    time.sleep(2)
    answer = upload(gw, tmp_path, "rhea-one", basic("__token__", scoped))
    assert (answer.status, answer.reason) == (403, "Invalid API Token: token is expired")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=x", b"not multipart at all"),
        ("text/plain", b"name=demo"),
        ("multipart/form-data", b""),
    ],
    ids=["bad-multipart", "not-multipart", "no-boundary"],
)
def test_a_2fa_accounts_password_upload_is_refused_on_the_headers_before_the_form(
    gw: GatewayProcess, content_type: str, body: bytes
) -> None:
    answer = request(
        gw, "POST", "/legacy/", {"Content-Type": content_type, "Authorization": basic("tfa", PASSWORD)}, body
    )
    assert answer.status == 403, (answer.status, answer.reason)
    assert answer.reason.startswith(
        "Username/Password authentication is no longer supported for accounts with two-factor authentication."
    )


def test_a_2fa_accounts_password_upload_of_an_invalid_form_gets_the_2fa_answer(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    answer = upload(gw, tmp_path, "tfa-pkg", basic("tfa", PASSWORD), name="not a valid name!", version="x.y.z")
    assert answer.status == 403 and "two-factor authentication" in answer.reason, (answer.status, answer.reason)


# --- the body: HTML, JSON or text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "*/*",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/json;q=0.5, */*",
    ],
)
def test_clients_that_take_html_get_pypis_error_page(gw: GatewayProcess, tmp_path: Path, accept: str) -> None:
    """maturin (`Accept: */*`) prints the page's <title>; a browser shows the <h1>; twine keeps its reason phrase."""
    rolf = token(gw, "rolf")
    answer = upload(gw, tmp_path, "rhea-one", basic("__token__", rolf), accept=accept)
    message = "The user 'rolf' isn't allowed to upload to project 'rhea-one'."
    assert answer.status == 403 and answer.reason.startswith(message)
    assert answer.content_type == "text/html"
    assert f"<title>403 {answer.reason}</title>" in answer.body
    assert f"<h1>403 {answer.reason}</h1>" in answer.body
    assert answer.body.count(message) == 2  # the title and the heading, nothing else repeats it
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("method", "path", "accept", "status", "reason"),
    [
        ("POST", "/simple/", "application/json", 405, "method_not_allowed"),
        ("GET", "/simple/no-such-project-here/", "application/vnd.pypi.simple.v1+json", 404, "project_not_found"),
        (
            "GET",
            "/simple/no-such-project-here/",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.01",
            404,
            "project_not_found",
        ),
    ],
)
def test_clients_that_ask_for_json_get_json(
    gw: GatewayProcess, method: str, path: str, accept: str, status: int, reason: str
) -> None:
    """PyPI's JSON error (uv asks for it); a PEP 691 client (pip and uv send the last Accept header) gets it too."""
    answer = request(gw, method, path, {}, accept=accept)
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"  # exactly: uv reads the JSON only then
    assert json.loads(answer.body) == {
        "code": f"{status} {answer.reason}",
        "message": answer.reason,
        "title": HTTPStatus(status).phrase,
        "reason": reason,
    }


@pytest.mark.parametrize("accept", [None, "text/plain", "text/plain, text/html;q=0.5"])
def test_without_an_accept_header_the_body_is_the_one_line_message(gw: GatewayProcess, accept: str | None) -> None:
    answer = request(gw, "POST", "/simple/", {}, accept=accept)
    assert answer.status == 405 and answer.content_type == "text/plain"
    assert answer.body == f"405 {answer.reason}\n"
    assert answer.headers["Vary"] == "Accept"  # the body depends on it


def test_a_message_naming_the_request_is_escaped_in_the_page(gw: GatewayProcess, tmp_path: Path) -> None:
    """Attacker-controlled text (a path, a filename) lands in messages; the page shows it, never runs it."""
    answer = request(gw, "POST", "/%3Cscript%3Ealert(1)%3C/script%3E", {}, accept="text/html")
    assert answer.status == 405 and "<script>alert(1)</script>" in answer.reason
    assert "<script" not in answer.body and "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.body

    rhea = token(gw, "rhea")
    wheel = make_wheel(tmp_path, "rhea-one", "1.0")
    data = wheel.read_bytes()
    evil = "rhea_one-1.0-py3-none-any<img src=x onerror=alert(1)>.whl"
    content_type, body = multipart(twine_fields(wheel.name, data), [("content", evil, data)])
    refused = request(
        gw, "POST", "/legacy/", {"Content-Type": content_type, "Authorization": basic("__token__", rhea)}, body, "*/*"
    )
    assert refused.status == 400 and "<img src=x" in refused.reason, refused.reason
    assert "<img" not in refused.body and "&lt;img src=x onerror=alert(1)&gt;" in refused.body


@pytest.mark.parametrize(
    ("authorization", "status", "message"),
    [
        ("", 401, "Authentication required: upload with an API token"),
        ("Digest x", 401, "Unsupported authorization scheme 'digest': use HTTP Basic"),
        (basic("rolf", "wrong password"), 403, "Invalid or non-existent authentication information."),
        (basic("__token__", "nope"), 403, "Invalid API Token: malformed or nonexistent macaroon"),
        ("revoked", 403, "Invalid API Token: token has been revoked; create a new one"),
        (basic("tfa", PASSWORD), 403, "Username/Password authentication is no longer supported"),
    ],
    ids=["none", "scheme", "password", "malformed", "revoked", "2fa"],
)
@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_each_refusal_says_its_message_once(
    gw: GatewayProcess, tmp_path: Path, authorization: str, status: int, message: str, accept: str | None
) -> None:
    if authorization == "revoked":
        authorization = basic("__token__", token(gw, "rolf", "--description", "to revoke"))
        gw.cli("token", "revoke", "--all", "rolf")
    headers = {"Authorization": authorization} if authorization else {}
    wheel = make_wheel(tmp_path, "rhea-one", "1.0")
    content_type, body = upload_body(wheel)
    answer = request(gw, "POST", "/legacy/", {**headers, "Content-Type": content_type}, body, accept)
    assert answer.status == status and answer.reason.startswith(message), (answer.status, answer.reason)
    first_clause = answer.reason.split(":")[0].split(".")[0]
    assert answer.reason.count(first_clause) == 1, answer.reason
    if accept == "application/json":  # PyPI's shape: the message, and the status with it as `code`
        said = json.loads(answer.body)
        assert (said["message"], said["code"]) == (answer.reason, f"{status} {answer.reason}")
    else:  # the text's one line; the HTML page's title and heading
        assert answer.body.count(first_clause) == (2 if accept else 1), answer.body
