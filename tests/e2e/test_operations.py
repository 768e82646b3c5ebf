"""Operations, end to end: JSON request logs, the audit trail and its mirror file, and that no secret reaches
logs, metrics, the audit trail or an error body over a whole scenario."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from gateway import tokens
from tests.conftest import GatewayFactory, twine
from tests.dists import make_wheel
from tests.e2e.test_upload import basic, raw_post
from tests.harness.forms import upload_body

PASSWORD = "operations password 1"


def test_no_secret_leaks_and_logs_and_audit_say_what_happened(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    gw = gateway_factory(
        logging={"level": "debug", "format": "json", "audit_file": str(audit_file)},
        server={"trusted_proxies": ["127.0.0.1"]},
    )
    gw.add_user("opal", PASSWORD)
    gw.add_user("jade", PASSWORD)
    enrolled = gw.cli("user", "2fa", "enable", "opal").stdout.splitlines()
    totp_secret = parse_qs(urlsplit(enrolled[0]).query)["secret"][0]
    recovery = [line.strip() for line in enrolled[2:] if line.strip()]
    assert len(recovery) == 8
    token = gw.cli("token", "create", "opal", "--description", "ops").stdout.strip()
    revoked = gw.cli("token", "create", "opal", "--description", "soon revoked").stdout.strip()
    gw.cli("token", "revoke", tokens.parse(revoked, prefix="pypi").token_id)

    wheel = make_wheel(tmp_path, "ops-pkg", "1.0")
    assert twine(gw.url, "__token__", token, wheel).returncode == 0
    bodies: list[str] = []
    content_type, body = upload_body(make_wheel(tmp_path, "ops-pkg", "2.0"))
    for authorization in (
        basic("opal", PASSWORD),
        basic("__token__", token[:-3] + "AAA"),
        basic("__token__", revoked),
        f"Bearer {token}x",
        basic("opal", "wrong " + PASSWORD),  # 2FA is decided on the name: the same refusal as the right one
        basic("jade", "wrong " + PASSWORD),
    ):
        headers = {"Content-Type": content_type, "Authorization": authorization, "X-Forwarded-For": "203.0.113.9"}
        resp = raw_post(gw.url, "/legacy/", headers, body)
        assert resp.status == 403
        bodies.append(f"{resp.reason}\n{resp.read().decode()}")

    with urllib.request.urlopen(gw.url + "/metrics") as resp:
        metrics = resp.read().decode()
    audit = gw.cli("audit", "--json").stdout + gw.cli("audit").stdout + gw.cli("audit", "--user", "opal").stdout
    log = gw.log_text()
    places = {
        "log": log,
        "metrics": metrics,
        "audit": audit,
        "audit file": audit_file.read_text(),
        "bodies": "".join(bodies),
    }
    secrets = [PASSWORD, totp_secret, *recovery, *(code.replace("-", "") for code in recovery)]
    for whole in (token, revoked):
        secrets += [whole, whole.partition("-")[2], whole.partition("-")[2][30:70]]
    for place, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret reached the {place}"

    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    uploads = [line for line in lines if line["logger"] == "gateway.access" and line["path"] == "/legacy/"]
    accepted = [line for line in uploads if line["outcome"] == "accepted"]
    assert len(accepted) == 1
    assert accepted[0]["user"] == "opal" and accepted[0]["project"] == "ops-pkg" and accepted[0]["token_id"]
    assert accepted[0]["file"] == wheel.name and accepted[0]["status"] == 200 and accepted[0]["duration"] > 0
    refused = {line["reason"] for line in uploads if line["outcome"] == "rejected"}
    assert refused == {"password_with_2fa", "invalid_token", "revoked_token", "invalid_credentials"}
    assert {line["client"] for line in uploads if line["outcome"] == "rejected"} == {"203.0.113.9"}

    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    kinds = [event["event"] for event in events]
    for expected in ("user.added", "user.2fa.totp_enabled", "token.created", "token.revoked"):
        assert expected in kinds
    used = [event for event in events if event["event"] == "upload.accepted"]
    assert used[0]["token_id"] == tokens.parse(token, prefix="pypi").token_id
    assert kinds.count("upload.accepted") == 1 and kinds.count("upload.rejected") == 6
    assert re.search(r"upload\.accepted\s+user=opal token=\S+ project=ops-pkg", gw.cli("audit").stdout)
    assert gw.cli("audit", "--since", "1h", "--user", "nobody").stdout == ""
    assert gw.cli("audit", "--since", "yesterday-ish", check=False).returncode == 1
