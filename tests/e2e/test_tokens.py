"""API tokens, 2FA and project rights, end to end with real twine against a real pypiserver."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pymacaroons
import pytest

from gateway import tokens
from tests.conftest import PYTHON, GatewayFactory, GatewayProcess, Index, twine
from tests.dists import make_wheel
from tests.e2e.test_upload import basic, raw_post
from tests.harness.forms import upload_body

PASSWORD = "a long enough password"
SEEN_TOKENS: list[str] = []


@pytest.fixture(scope="module")
def gw(gateway: GatewayProcess) -> GatewayProcess:
    for name in ("tina", "tom", "uma", "vic"):
        gateway.add_user(name, PASSWORD)
    return gateway


def create_token(gw: GatewayProcess, user: str, *args: str) -> str:
    result = gw.cli("token", "create", user, *args)
    token = result.stdout.strip()
    assert token.startswith("pypi-") and "\n" not in token
    assert token not in result.stderr
    SEEN_TOKENS.append(token)
    return token


def upload(gw: GatewayProcess, tmp_path: Path, project: str, version: str, password: str, user: str = "__token__"):
    wheel = make_wheel(tmp_path, project, version, seed=uuid.uuid4().bytes)
    result = twine(gw.url, user, password, wheel)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def post(gw: GatewayProcess, tmp_path: Path, project: str, password: str, user: str = "__token__"):
    wheel = make_wheel(tmp_path, project, f"0.{uuid.uuid4().int % 10**6}")
    content_type, body = upload_body(wheel)
    resp = raw_post(gw.url, "/legacy/", {"Content-Type": content_type, "Authorization": basic(user, password)}, body)
    return resp.status, resp.reason, resp.read().decode()


def test_account_token_claims_uploads_and_is_refused_elsewhere(gw: GatewayProcess, tmp_path: Path) -> None:
    tina = create_token(gw, "tina", "--description", "tina's laptop")
    tom = create_token(gw, "tom")
    code, out = upload(gw, tmp_path, "tina-lib", "1.0", tina)
    assert code == 0, out
    code, out = upload(gw, tmp_path, "tina-lib", "1.1", tina)
    assert code == 0, out
    code, out = upload(gw, tmp_path, "tina-lib", "1.2", tom)
    assert code != 0
    assert "403" in out and "The user 'tom' isn't allowed to upload to project 'tina-lib'" in out
    projects = json.loads(gw.cli("project", "list", "tina", "--json").stdout)
    assert projects == [{"project": "tina-lib", "display_name": "tina-lib", "role": "owner"}]
    listed = {row["description"]: row for row in json.loads(gw.cli("token", "list", "tina", "--json").stdout)}
    assert listed["tina's laptop"]["last_used"] is not None
    assert listed["tina's laptop"]["scope"] == "all projects"


def test_project_scoped_token(gw: GatewayProcess, tmp_path: Path) -> None:
    gw.cli("project", "grant", "Scoped.One", "uma")
    gw.cli("project", "grant", "scoped-two", "uma", "--role", "maintainer")
    scoped = create_token(gw, "uma", "--project", "scoped-one")
    code, out = upload(gw, tmp_path, "scoped-one", "1.0", scoped)
    assert code == 0, out
    code, out = upload(gw, tmp_path, "scoped-two", "1.0", scoped)
    assert code != 0
    assert "403" in out and "project-scoped token is not valid for project: 'scoped-two'" in out
    status, reason, _ = post(gw, tmp_path, "brand-new-by-scoped", scoped)
    assert status == 403 and "The given token isn't allowed to create project 'brand-new-by-scoped'" in reason
    listed = json.loads(gw.cli("token", "list", "uma", "--json").stdout)
    assert listed[0]["scope"] == "projects: scoped-one"
    refused = gw.cli("token", "create", "uma", "--project", "tina-lib", check=False)
    assert refused.returncode == 1 and "no role on project" in refused.stderr


def test_removing_a_role_takes_effect_at_once(gw: GatewayProcess, tmp_path: Path) -> None:
    gw.cli("project", "grant", "shared-lib", "uma")
    gw.cli("project", "grant", "shared-lib", "vic", "--role", "maintainer")
    vic = create_token(gw, "vic")
    assert post(gw, tmp_path, "shared-lib", vic)[0] == 200
    gw.cli("project", "remove", "shared-lib", "vic")
    status, reason, _ = post(gw, tmp_path, "shared-lib", vic)
    assert status == 403 and "isn't allowed to upload to project 'shared-lib'" in reason


def test_revocation_reaches_a_running_gateway_within_5s(gw: GatewayProcess, tmp_path: Path) -> None:
    token = create_token(gw, "vic", "--description", "to revoke")
    assert post(gw, tmp_path, "vic-revoked", token)[0] == 200
    token_id = tokens.parse(token, prefix="pypi").token_id
    gw.cli("token", "revoke", token_id)
    revoked_at = time.monotonic()
    while (status := post(gw, tmp_path, "vic-revoked", token))[0] == 200:
        assert time.monotonic() - revoked_at < 5, "a revoked token still uploads after 5 s"
        time.sleep(0.2)
    assert status[0] == 403 and "revoked" in status[1]
    assert time.monotonic() - revoked_at < 5


def test_revoke_all(gw: GatewayProcess, tmp_path: Path) -> None:
    first, second = create_token(gw, "tom"), create_token(gw, "tom", "--description", "ci")
    assert post(gw, tmp_path, "tom-things", first)[0] == 200
    result = gw.cli("token", "revoke", "--all", "tom")
    assert "revoked" in result.stderr
    time.sleep(2.5)
    for token in (first, second):
        status, reason, _ = post(gw, tmp_path, "tom-things", token)
        assert status == 403 and "revoked" in reason
    assert all(row["revoked"] for row in json.loads(gw.cli("token", "list", "tom", "--json").stdout))


def _body(token: str) -> str:
    return token.partition("-")[2]


def _reminted(token: str, key: bytes) -> str:
    parsed = tokens.parse(token, prefix="pypi")
    return tokens.mint(prefix="pypi", location="127.0.0.1", token_id=parsed.token_id, key=key, caveats=[])


def test_bad_tokens_get_403_with_a_clear_message(gw: GatewayProcess, tmp_path: Path) -> None:
    good = create_token(gw, "tina")
    expiring = create_token(gw, "tina", "--expires", "1s")
    time.sleep(2)
    flipped = list(good)
    flipped[-5] = "A" if flipped[-5] != "A" else "B"
    cases = {
        "expired": (expiring, "token is expired"),
        "flipped byte": ("".join(flipped), "Invalid API Token"),
        "truncated": (good[:-10], "malformed"),
        "other prefix": ("pypa-" + _body(good), "start with 'pypi-'"),
        "other server secret": (_reminted(good, b"k" * 32), "signatures do not match"),
        "not a token": ("hunter2-password", "Invalid API Token"),
        "unknown id": (
            tokens.mint(prefix="pypi", location="x", token_id=str(uuid.uuid4()), key=b"k" * 32, caveats=[]),
            "deleted or nonexistent",
        ),
    }
    for name, (token, expected) in cases.items():
        status, reason, body = post(gw, tmp_path, "tina-lib", token)
        assert status == 403, (name, status, reason)
        assert expected in reason, (name, reason)
        assert reason in body
    wheel = make_wheel(tmp_path, "tina-lib", "9.9")
    result = twine(gw.url, "__token__", "".join(flipped), wheel)
    assert result.returncode != 0 and "403" in result.stdout + result.stderr
    assert "Retry 1 of" not in result.stdout + result.stderr


def _attenuate(token: str, caveat: bytes) -> str:
    macaroon = pymacaroons.Macaroon.deserialize(_body(token))
    macaroon.add_first_party_caveat(caveat)
    return "pypi-" + macaroon.serialize()


def test_holder_narrows_a_token_offline(gw: GatewayProcess, tmp_path: Path) -> None:
    gw.cli("project", "grant", "narrow-one", "vic")
    gw.cli("project", "grant", "narrow-two", "vic")
    wide = create_token(gw, "vic")
    one_only = _attenuate(wide, b'[1,["narrow-one"]]')
    assert post(gw, tmp_path, "narrow-one", one_only)[0] == 200
    status, reason, _ = post(gw, tmp_path, "narrow-two", one_only)
    assert status == 403 and "not valid for project: 'narrow-two'" in reason
    assert post(gw, tmp_path, "narrow-two", wide)[0] == 200
    past = _attenuate(wide, json.dumps([0, int(time.time()) - 10, 0], separators=(",", ":")).encode())
    status, reason, _ = post(gw, tmp_path, "narrow-one", past)
    assert status == 403 and "token is expired" in reason
    unknown = _attenuate(wide, b'[9,"future caveat"]')
    status, reason, _ = post(gw, tmp_path, "narrow-one", unknown)
    assert status == 403 and "unknown tag" in reason


def test_two_factor_accounts_cannot_upload_with_a_password(gw: GatewayProcess, tmp_path: Path) -> None:
    assert post(gw, tmp_path, "uma-pw", PASSWORD, user="uma")[0] == 200
    enrolled = gw.cli("user", "2fa", "enable", "uma").stdout
    assert enrolled.startswith("otpauth://totp/") and enrolled.count("\n") >= 9
    status, reason, body = post(gw, tmp_path, "uma-pw", PASSWORD, user="uma")
    assert status == 403 and "API tokens" in reason and "/account/tokens" in body
    code, out = upload(gw, tmp_path, "uma-pw", "5.0", create_token(gw, "uma"))
    assert code == 0, out
    code, out = upload(gw, tmp_path, "uma-pw", "5.1", PASSWORD, user="uma")
    assert code != 0 and "two-factor" in out


def test_password_policy_deny(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    strict = gateway_factory(policy={"password_uploads": "deny"})
    strict.add_user("wes", PASSWORD)
    status, reason, _ = post(strict, tmp_path, "wes-lib", PASSWORD, user="wes")
    assert status == 403 and "no longer supported" in reason and "API tokens" in reason
    token = strict.cli("token", "create", "wes").stdout.strip()
    assert post(strict, tmp_path, "wes-lib", token)[0] == 200


def test_new_projects_deny_needs_a_grant(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    closed = gateway_factory(policy={"new_projects": "deny"})
    closed.add_user("xena", PASSWORD)
    token = closed.cli("token", "create", "xena").stdout.strip()
    status, reason, _ = post(closed, tmp_path, "xena-new", token)
    assert status == 403 and "project grant" in reason
    closed.cli("project", "grant", "xena-new", "xena")
    assert post(closed, tmp_path, "xena-new", token)[0] == 200


def test_max_lifetime_caps_expiry(gateway_factory: GatewayFactory) -> None:
    capped = gateway_factory(tokens={"max_lifetime": "30d"})
    capped.add_user("yan", PASSWORD)
    refused = capped.cli("token", "create", "yan", "--expires", "60d", check=False)
    assert refused.returncode == 1 and "max_lifetime" in refused.stderr and refused.stdout == ""
    capped.cli("token", "create", "yan")
    listed = json.loads(capped.cli("token", "list", "yan", "--json").stdout)
    assert listed[0]["expires"] is not None


def test_no_secret_reaches_the_database_logs_or_listing(gw: GatewayProcess) -> None:
    assert SEEN_TOKENS, "runs after the other tests of this module"
    database = Path(gw.config.parent / "gateway.db")
    raw = b"".join(p.read_bytes() for p in database.parent.glob("gateway.db*"))
    server_secret = (gw.config.parent / "secret.key").read_bytes()
    with sqlite3.connect(database) as db:
        rows = dict(db.execute("SELECT id, secret FROM tokens").fetchall())
    listing = gw.cli("token", "list").stdout + gw.cli("token", "list", "--json").stdout
    log = gw.log_text()
    for token in SEEN_TOKENS:
        parsed = tokens.parse(token, prefix="pypi")
        signature = parsed.macaroon.signature_bytes
        root = tokens.root_key(server_secret, rows[parsed.token_id])
        for needle in (token.encode(), _body(token).encode(), signature, root, base64.b16encode(root).lower()):
            assert needle not in raw
        assert signature.decode() not in raw.decode("latin-1")
        assert token not in listing and _body(token) not in listing
        assert _body(token)[20:60] not in log
    assert server_secret not in raw


def test_uv_publish_with_a_token(gw: GatewayProcess, index: Index, tmp_path: Path) -> None:
    """uv sends the file part without a Content-Type: accepted, as PyPI accepts it."""
    token = create_token(gw, "vic", "--description", "uv")
    wheel = make_wheel(tmp_path, "uv-published", "1.0")
    for attempt in ("first", "identical again"):
        result = subprocess.run(
            [PYTHON, "-m", "uv", "publish", "--publish-url", f"{gw.url}/legacy/", "--token", token, str(wheel)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (attempt, result.stderr)
    assert wheel.name in index.files()
