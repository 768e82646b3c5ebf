"""What the account pages leave on disk: no TOTP seed in any encoding, private files, no rows for visitors.

The gateway runs as a real subprocess; the tests drive it over HTTP and read its database files as an attacker
with a copy of them (or a backup, or the disk) would.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import shutil
import sqlite3
import stat
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pymacaroons
import pyotp

from tests.conftest import GatewayFactory, GatewayProcess, stop
from tests.e2e.test_web import PASSWORD, Client

SETUP_PATH = "/account/two-factor/totp"


def database_files(gw: GatewayProcess) -> list[Path]:
    db = gw.config.parent / "gateway.db"
    return [db, db.with_name("gateway.db-wal"), db.with_name("gateway.db-shm")]


def snapshot(files: list[Path], into: Path) -> list[Path]:
    """Byte copies of the files as they are this instant, the running gateway's WAL included."""
    into.mkdir(parents=True)
    copies = []
    for file in files:
        if file.exists():
            copies.append(into / file.name)
            shutil.copyfile(file, copies[-1])
    return copies


def encodings(seed: str) -> dict[str, bytes]:
    """Every form a TOTP seed could take in a file: as shown, as typed, the raw key and its usual encodings."""
    raw = base64.b32decode(seed)
    forms = {
        "base32 as shown": " ".join(seed[i : i + 4] for i in range(0, len(seed), 4)).encode(),
        "base32": seed.encode(),
        "base32 lowercase": seed.lower().encode(),
        "base32 utf-16": seed.encode("utf-16-le"),
        "raw": raw,
        "hex": raw.hex().encode(),
        "hex uppercase": raw.hex().upper().encode(),
        "base64": base64.b64encode(raw),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "base64 of the base32 text": base64.b64encode(seed.encode()).rstrip(b"="),
    }
    # Half of it is enough to give it away, in any of the encodings that keep the bytes' order.
    forms["first half, base32"] = seed[:16].encode()
    forms["first half, raw"] = raw[:10]
    forms["first half, hex"] = raw[:10].hex().encode()
    return forms


def leaks(files: list[Path], seed: str) -> list[str]:
    found = []
    for file in files:
        data = file.read_bytes()
        found += [f"{file.name}: {name}" for name, form in encodings(seed).items() if form in data]
    return found


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def enrol_up_to_the_seed(client: Client, user: str) -> str:
    """Signed in, password confirmed, the setup page open: the seed it shows."""
    assert client.sign_in(user)[0] == 303
    status, headers, _ = client.get(SETUP_PATH)
    assert status == 303 and headers["Location"].startswith("/account/confirm")
    client.get(headers["Location"])
    status, headers, _ = client.post("/account/confirm", {"password": PASSWORD, "next": SETUP_PATH})
    assert status == 303 and headers["Location"] == SETUP_PATH
    status, _, body = client.get(SETUP_PATH)
    shown = re.search(r'<code id="totp-secret" class="secret">([A-Z2-7 ]+)</code>', body)
    assert status == 200 and shown, body
    return shown.group(1).replace(" ", "")


def test_no_totp_seed_rests_in_the_database_wal_or_audit_file(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    gw = gateway_factory(logging={"level": "debug", "audit_file": str(audit_file)})
    gw.add_user("ivy", PASSWORD)
    client = Client(gw.url)
    seed = enrol_up_to_the_seed(client, "ivy")
    assert client.get(SETUP_PATH)[2].count(" ".join(seed[i : i + 4] for i in range(0, 32, 4))) == 1  # same seed
    during = snapshot(database_files(gw), tmp_path / "during")
    assert {file.name for file in during} >= {"gateway.db", "gateway.db-wal"}
    assert leaks(during, seed) == []

    status, _, body = client.post(SETUP_PATH, {"code": pyotp.TOTP(seed).now()})
    assert status == 200 and "recovery-codes" in body, body
    after = snapshot(database_files(gw), tmp_path / "after")
    assert leaks([*after, audit_file], seed) == []
    with sqlite3.connect(gw.config.parent / "gateway.db") as db:
        sealed = db.execute("SELECT totp_secret FROM users WHERE name = 'ivy'").fetchone()[0]
    assert isinstance(sealed, bytes) and len(sealed) > 32  # enrolled, sealed

    for file in [*database_files(gw), audit_file, gw.config.parent / "secret.key"]:
        assert mode(file) == "0o600", file
    stop(gw.process)
    assert leaks(database_files(gw)[:1] + [audit_file, gw.log], seed) == []


def token_forms(token: str) -> dict[str, bytes]:
    """A token as it could rest in a file: whole, its macaroon, its signature (the part that makes it work)."""
    body = token.partition("-")[2]
    signature = pymacaroons.Macaroon.deserialize(body).signature_bytes
    return {
        "token": token.encode(),
        "macaroon": body.encode(),
        "signature": bytes.fromhex(signature.decode()),
        "signature hex": signature,
        "base64 of the token": base64.b64encode(token.encode()).rstrip(b"="),
    }


def made_token(client: Client, description: str) -> None:
    """A token made on the form (password confirmed first), not yet shown: its page is the redirect's target."""
    client.get("/account/confirm?next=/account/tokens/new")
    assert client.post("/account/confirm", {"password": PASSWORD, "next": "/account/tokens/new"})[0] == 303
    client.get("/account/tokens/new")
    status, headers, _ = client.post("/account/tokens/new", {"description": description, "scope": "", "expires": ""})
    assert status == 303 and headers["Location"] == "/account/tokens/created"


def shown_token(client: Client) -> str | None:
    status, headers, body = client.get("/account/tokens/created")
    if status == 303:
        assert headers["Location"] == "/account/tokens"
        return None
    shown = re.search(r'<code id="token" class="secret">([^<]+)</code>', body)
    assert status == 200 and shown, body
    return shown.group(1)


def test_a_new_token_waits_for_its_page_only_sealed_and_is_shown_once(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = gateway_factory()
    gw.add_user("oda", PASSWORD)
    client = Client(gw.url)
    assert client.sign_in("oda")[0] == 303
    made_token(client, "laptop")
    waiting = snapshot(database_files(gw), tmp_path / "waiting")
    token = shown_token(client)
    assert token and token.startswith("pypi-")
    gw.secrets.append(token)
    assert shown_token(client) is None  # once
    assert "shown once" in client.get("/account/tokens")[2]
    shown = snapshot(database_files(gw), tmp_path / "shown")
    found = [
        f"{file.parent.name}/{file.name}: {name}"
        for file in [*waiting, *shown]
        for name, form in token_forms(token).items()
        if form in file.read_bytes()
    ]
    assert found == []


def test_a_waiting_token_moved_to_another_session_does_not_open(gateway_factory: GatewayFactory) -> None:
    """Bound to its session, not only to its user: the same user's other session cannot show it."""
    gw = gateway_factory()
    gw.add_user("pia", PASSWORD)
    first, second = Client(gw.url), Client(gw.url)
    for client, description in ((first, "first"), (second, "second")):
        assert client.sign_in("pia")[0] == 303
        made_token(client, description)
    with sqlite3.connect(gw.config.parent / "gateway.db") as db:
        rows = {key: json.loads(data) for key, data in db.execute("SELECT key, data FROM web_sessions")}
        (key_a, data_a), (key_b, data_b) = ((key, data) for key, data in rows.items() if "new_token" in data["session"])
        waiting_a, waiting_b = data_a["session"]["new_token"], data_b["session"]["new_token"]
        data_a["session"]["new_token"], data_b["session"]["new_token"] = waiting_b, waiting_a
        for key, data in ((key_a, data_a), (key_b, data_b)):
            db.execute("UPDATE web_sessions SET data = ? WHERE key = ?", (json.dumps(data), key))
    assert shown_token(first) is None and shown_token(second) is None
    assert "second" in first.get("/account/tokens")[2]  # made all the same: revoke it if it was never copied


def test_a_session_that_ended_leaves_no_trace_in_the_database_file(gateway_factory: GatewayFactory) -> None:
    """secure_delete: a deleted row is overwritten with zeros, not left readable in a free part of its page."""
    gw = gateway_factory()
    gw.add_user("ned", PASSWORD)
    client = Client(gw.url)
    assert client.sign_in("ned")[0] == 303
    assert client.get("/account/tokens")[0] == 200
    token = client.last_csrf.encode()  # kept in the session's row, in clear
    assert client.post("/account/logout", {})[0] == 303
    stop(gw.process)
    db = gw.config.parent / "gateway.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # whatever the WAL still held is in the main file now
        assert conn.execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0] == 0
    assert token not in db.read_bytes()


def test_a_moved_pending_seed_does_not_open(gateway_factory: GatewayFactory) -> None:
    """The sealed seed is bound to its user and session: copied into another session's row it is worth nothing,
    and that session gets a seed of its own."""
    gw = gateway_factory()
    gw.add_user("jon", PASSWORD)
    gw.add_user("kit", PASSWORD)
    jon, kit = Client(gw.url), Client(gw.url)
    seed = enrol_up_to_the_seed(jon, "jon")
    other = enrol_up_to_the_seed(kit, "kit")
    with sqlite3.connect(gw.config.parent / "gateway.db") as db:
        rows = [(key, data) for key, data in db.execute("SELECT key, data FROM web_sessions") if "totp_setup" in data]
        assert len(rows) == 2
        sealed = {}
        for key, data in rows:
            found = re.search(r'"totp_setup": "([^"]+)"', data)
            assert found
            sealed[key] = found.group(1)
        (key_a, seal_a), (key_b, seal_b) = sealed.items()
        swapped = {key_a: seal_b, key_b: seal_a}
        for key, data in rows:
            db.execute("UPDATE web_sessions SET data = ? WHERE key = ?", (data.replace(sealed[key], swapped[key]), key))
    assert enrol_shown(kit) not in (seed, other)
    assert enrol_shown(jon) not in (seed, other)


def enrol_shown(client: Client) -> str:
    status, _, body = client.get(SETUP_PATH)
    shown = re.search(r'<code id="totp-secret" class="secret">([A-Z2-7 ]+)</code>', body)
    assert status == 200 and shown, body
    return shown.group(1).replace(" ", "")


def session_rows(gw: GatewayProcess) -> int:
    with sqlite3.connect(gw.config.parent / "gateway.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0])


def test_anonymous_visitors_leave_no_rows_and_forged_tokens_still_fail(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    gw.add_user("lea", PASSWORD)
    gw.add_user("max", PASSWORD)
    gw.cli("user", "2fa", "enable", "max")
    parts = urlsplit(gw.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    sample = Client(gw.url)
    sample.get("/account/login")
    visitor_cookies = ["", "gateway_session=" + "A" * 43, "; ".join(f"{k}={v}" for k, v in sample.jar.items())]
    for number in range(3000):
        cookie = visitor_cookies[number % 3]
        conn.request("GET", "/account/login?next=/account/tokens", headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        assert response.status == 200 and b'name="csrf_token"' in response.read()
    for path in ("/account/login/two-factor", "/account/tokens", "/account/logout", "/account/confirm"):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 303
    conn.close()
    assert session_rows(gw) == 0

    visitor = Client(gw.url)
    visitor.get("/account/login")
    token = visitor.jar["gateway_csrf"]
    assert visitor.last_csrf == token and re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    wrong = {"username": "lea", "password": "not it"}
    assert visitor.post("/account/login", wrong)[0] == 401  # a wrong password: an answer, and still no row
    assert visitor.post("/account/logout", {})[0] == 303  # nobody to sign out: nothing stored either
    assert session_rows(gw) == 0

    right = {"username": "lea", "password": PASSWORD}
    forged = [
        ({"gateway_csrf": token}, {**right}),  # no form field
        ({}, {**right, "csrf_token": token}),  # no cookie (a cross-site POST: SameSite=Lax keeps it home)
        ({"gateway_csrf": token}, {**right, "csrf_token": new_looking(token)}),  # a guess
        ({"gateway_csrf": "x"}, {**right, "csrf_token": "x"}),  # made up, and not even token-shaped
        ({"gateway_csrf": ""}, {**right, "csrf_token": ""}),
        ({"gateway_csrf": token}, {**right, "csrf_token": token + "A"}),
    ]
    for cookies, fields in forged:
        status, _, body = raw_post(gw, "/account/login", fields, cookies)
        assert status == 403 and "reload the page" in body, (cookies, fields)
    # A site that can plant cookies (a sibling subdomain) can make up both halves, but its browser POST carries
    # its own Origin; so does any other site's.
    made_up = new_looking(token)
    for origin in ("http://x.test", "null", gw.url.replace("127.0.0.1", "localhost")):
        status, _, _ = raw_post(
            gw, "/account/login", {**right, "csrf_token": made_up}, {"gateway_csrf": made_up}, origin
        )
        assert status == 403, origin
    assert session_rows(gw) == 0

    status, headers, _ = visitor.post("/account/login", {"username": "max", "password": PASSWORD})
    assert status == 303 and headers["Location"] == "/account/login/two-factor"
    assert session_rows(gw) == 1  # a right password: the pending second factor is stored
    assert visitor.post("/account/login/two-factor", {"code": "000000"}, csrf=False)[0] == 403
    lea = Client(gw.url)
    status, _, _ = lea.sign_in("lea")
    assert status == 303 and session_rows(gw) == 2
    assert lea.post("/account/logout", {})[0] == 403  # the sign-in form's token is no good once signed in
    signed_in = Client(gw.url)
    signed_in.sign_in("lea")
    signed_in.get("/account/tokens")
    assert session_rows(gw) == 3
    assert signed_in.post("/account/logout", {})[0] == 303
    assert session_rows(gw) == 2  # its row went, and signing out left none behind


def new_looking(token: str) -> str:
    return token[::-1] if token[::-1] != token else "B" * 43


def raw_post(
    gw: GatewayProcess, path: str, fields: dict[str, str], cookies: dict[str, str], origin: str | None = None
) -> tuple[int, dict[str, str], str]:
    headers = {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())} if cookies else {}
    if origin:
        headers["Origin"] = origin
    parts = urlsplit(gw.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request("POST", path, body=urlencode(fields), headers=headers)
    response = conn.getresponse()
    return response.status, dict(response.headers), response.read().decode()


def test_an_expired_sign_in_is_told_so_without_storing_anything(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    client = Client(gw.url)
    status, headers, _ = client.get("/account/login/two-factor")
    assert status == 303 and headers["Location"] == "/account/login"
    status, _, body = client.get("/account/login")
    assert status == 200 and "Your sign-in took too long" in body
    assert "took too long" not in client.get("/account/login")[2]  # shown once
    assert session_rows(gw) == 0
