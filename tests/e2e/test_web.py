"""The account pages in a real browser (Playwright driving Debian's Chromium) and over raw HTTP.

Tokens made in the browser upload with the real twine; security keys use Chromium's virtual authenticator.
Screenshots of every page, at 1280 and 375 px wide, land in test-artifacts/web/.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pyotp
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ROOT, GatewayFactory, GatewayProcess, twine
from tests.dists import make_wheel

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "test-artifacts" / "web"
WIDE, NARROW = 1280, 375
PASSWORD = "a long enough password"
README_SECTION = re.compile(r"^index-servers = (\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile; the test fails if the page broke its Content-Security-Policy."""
    context = browser.new_context(viewport={"width": WIDE, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    violations: list[str] = []
    opened.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield opened
    context.close()
    assert violations == []


def shoot(page: Page, name: str) -> None:
    """Screenshots at both widths; at neither may anything need sideways scrolling."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    overflow = {}
    for width, height in ((WIDE, 900), (NARROW, 800)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)
        overflow[width] = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    page.set_viewport_size({"width": WIDE, "height": 900})
    assert overflow == {WIDE: 0, NARROW: 0}, f"{name} scrolls sideways: {overflow}"


# How many lines the text of each matching element takes: a Range gives a rectangle per line box and per inline
# box; rectangles whose tops are closer than most of a line (a button's label, a badge) are on the same line.
LINES = """selector => [...document.querySelectorAll(selector)].map(element => {
  const range = document.createRange();
  range.selectNodeContents(element);
  const line = 0.75 * parseFloat(getComputedStyle(element).fontSize);
  const tops = [...range.getClientRects()].map(rect => rect.top).sort((a, b) => a - b);
  return [element.textContent.trim(), tops.filter((top, i) => i === 0 || top - tops[i - 1] > line).length];
})"""


def wrapped(page: Page, selector: str) -> list[str]:
    """The texts of `selector` that take more than one line."""
    return [text for text, lines in page.evaluate(LINES, selector) if lines > 1]


def sign_in(page: Page, gw: GatewayProcess | str, user: str, password: str = PASSWORD) -> None:
    page.goto(f"{gw if isinstance(gw, str) else gw.url}/account/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("form[action='/account/login'] button")


def confirm_password(page: Page) -> None:
    page.wait_for_url("**/account/confirm?next=**")
    page.fill("#password", PASSWORD)
    page.click("form[action='/account/confirm'] button")


def sign_out(page: Page) -> None:
    page.click("#sign-out")
    page.wait_for_url("**/account/login")
    assert "You have signed out" in page.inner_text("main")


def audit_events(gw: GatewayProcess, user: str) -> list[str]:
    with sqlite3.connect(gw.config.parent / "gateway.db") as db:
        return [row[0] for row in db.execute("SELECT event FROM audit WHERE user_name = ? ORDER BY id", (user,))]


def upload(gw: GatewayProcess, tmp_path: Path, project: str, user: str, password: str) -> tuple[int, str]:
    wheel = make_wheel(tmp_path, project, f"1.{uuid.uuid4().int % 10**6}")
    result = twine(gw.url, user, password, wheel)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_totp_and_a_project_token_from_sign_in_to_revocation(
    gateway_factory: GatewayFactory, page: Page, tmp_path: Path
) -> None:
    gw = gateway_factory()
    gw.add_user("wendy", PASSWORD)
    gw.cli("project", "grant", "wendy-lib", "wendy")
    gw.cli("project", "grant", "wendy-other", "wendy", "--role", "maintainer")

    page.goto(f"{gw.url}/account/login")
    shoot(page, "login")
    sign_in(page, gw, "wendy")
    page.wait_for_url("**/account/tokens")
    shoot(page, "tokens-empty")

    page.goto(f"{gw.url}/account/two-factor")
    shoot(page, "two-factor-none")
    page.click("#add-totp")
    shoot(page, "confirm")
    confirm_password(page)
    page.wait_for_url("**/account/two-factor/totp")
    assert page.locator(".qr svg path").count() >= 1
    shoot(page, "totp-setup")
    totp = pyotp.TOTP(page.inner_text("#totp-secret").replace(" ", ""))
    page.fill("#code", "000000" if totp.now() != "000000" else "111111")
    page.click("form[action='/account/two-factor/totp'] button")
    assert "not right" in page.inner_text(".error")
    page.fill("#code", totp.now())
    page.click("form[action='/account/two-factor/totp'] button")
    codes = page.inner_text("#recovery-codes").split()
    assert len(codes) == 8
    shoot(page, "recovery-codes")
    page.click("text=I have saved them")
    assert "On" in page.inner_text("#totp-status")
    shoot(page, "two-factor")

    sign_out(page)
    sign_in(page, gw, "wendy")
    page.wait_for_url("**/account/login/two-factor")
    shoot(page, "login-two-factor")
    page.fill("#code", totp.at(time.time() + 30))  # the next step: the enrolment's code is spent
    page.click("form[action='/account/login/two-factor'] >> text=Verify")
    page.wait_for_url("**/account/tokens")

    page.click("#add-token")
    confirm_password(page)
    page.wait_for_url("**/account/tokens/new")
    shoot(page, "token-new")
    page.fill("#description", "release wendy-lib")
    page.select_option("#scope", "wendy-lib")
    page.select_option("#expires", "30d")
    page.click("#create-token")
    page.wait_for_url("**/account/tokens/created")  # POST-redirect-GET; the token is never in a URL
    token = page.inner_text("#token").strip()
    token_id = page.inner_text("#token-id").strip()
    assert token.startswith("pypi-") and token in page.inner_text("#pypirc")
    assert token not in page.url
    section = README_SECTION.search((ROOT / "README.md").read_text())
    assert section, "the README's .pypirc example"
    pypirc = page.inner_text("#pypirc")
    assert f"index-servers = {section[1]}" in pypirc and f"[{section[1]}]" in pypirc
    assert f"twine upload -r {section[1]} dist/*" in page.inner_text("main")
    shoot(page, "token-created")
    page.reload()  # shown once: a reload makes no other token and shows this one no more
    page.wait_for_url("**/account/tokens")
    assert "shown once" in page.inner_text(".flash") and token not in page.content()
    assert page.locator("#tokens tbody tr").count() == 1
    page.go_back()
    assert token not in page.content()

    code, out = upload(gw, tmp_path, "wendy-lib", "__token__", token)
    assert code == 0, out
    code, out = upload(gw, tmp_path, "wendy-other", "__token__", token)
    assert code != 0 and "403" in out and "project-scoped token is not valid" in out

    gw.cli("token", "create", "wendy", "--read", "--description", "laptop: installs and uploads everywhere")
    page.goto(f"{gw.url}/account/tokens")
    row = page.locator("tr", has_text="release wendy-lib")
    assert "projects: wendy-lib" in row.inner_text()
    assert row.locator(".token-id").inner_text() == f"ID {token_id}" and row.get_attribute("data-token-id") == token_id
    shoot(page, "tokens")
    row.locator("text=Revoke").click()
    page.wait_for_url("**/revoke")
    shoot(page, "revoke-confirm")
    page.click("#confirm-action")
    page.wait_for_url("**/account/tokens")
    status = page.locator("tr", has_text="release wendy-lib").locator("td.status").inner_text()
    assert re.fullmatch(r"revoked\s+\d{4}-\d\d-\d\d \d\d:\d\d", status), status
    assert wrapped(page, "#tokens th, #tokens .when, #tokens .token-id, #tokens td[data-label=Scope]") == []
    shoot(page, "tokens-revoked")

    page.goto(f"{gw.url}/account/tokens/{uuid.uuid4()}/revoke")  # an error page keeps the navigation
    assert page.title().startswith("No such token on your account")
    assert page.locator("#sign-out").count() == 1 and page.locator("h1").inner_text() == "404 Not Found"
    shoot(page, "error-404")
    page.goto(f"{gw.url}/account/nowhere")
    assert page.locator("h1").inner_text() == "404 Not Found" and page.locator("#sign-out").count() == 1

    code, out = upload(gw, tmp_path, "wendy-lib", "__token__", token)
    assert code != 0 and "403" in out and "revoked" in out
    code, out = upload(gw, tmp_path, "wendy-lib", "wendy", PASSWORD)
    assert code != 0 and "403" in out and "two-factor" in out

    page.goto(f"{gw.url}/account/projects")
    assert "wendy-lib" in page.inner_text("table") and "maintainer" in page.inner_text("table")
    shoot(page, "projects")
    events = audit_events(gw, "wendy")
    for event in ("web.signed_in", "web.confirmed", "user.2fa.totp_enabled", "token.created", "token.revoked"):
        assert event in events
    assert "web.signed_out" in events and "user.2fa.recovery_codes_replaced" in events


def loopback_urls(gw: GatewayProcess) -> tuple[str, str]:
    """The gateway's public URL under the default configuration, and the other loopback spelling of it."""
    return gw.url.replace("127.0.0.1", "localhost"), gw.url


def test_a_security_key_works_out_of_the_box_from_either_loopback_name(
    gateway_factory: GatewayFactory, page: Page
) -> None:
    """The default public URL is http://localhost:PORT (WebAuthn refuses IP addresses); 127.0.0.1 is sent there."""
    gw = gateway_factory(server={"public_url": ""})  # as shipped: derived from server.listen
    public, other = loopback_urls(gw)
    gw.add_user("kim", PASSWORD)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {"protocol": "ctap2", "transport": "usb", "hasResidentKey": False, "hasUserVerification": False}
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {**options, "automaticPresenceSimulation": True}})

    page.goto(f"{other}/account/login")
    assert page.url == f"{public}/account/login"
    sign_in(page, public, "kim")
    page.wait_for_url(f"{public}/account/tokens")
    page.goto(f"{other}/account/two-factor/webauthn")
    confirm_password(page)
    page.wait_for_url(f"{public}/account/two-factor/webauthn")
    page.fill("#key-name", "blue key")
    shoot(page, "webauthn-setup")
    page.click("#register-key")
    page.wait_for_url("**/account/two-factor/recovery-codes")  # the first factor: recovery codes next
    shoot(page, "recovery-codes-offer")
    page.click("#confirm-action")
    assert len(page.inner_text("#recovery-codes").split()) == 8
    page.goto(f"{public}/account/two-factor")
    assert "blue key" in page.inner_text(".keys")

    for url in (public, other):
        sign_out(page)
        sign_in(page, url, "kim")
        page.wait_for_url(f"{public}/account/login/two-factor")
        assert page.locator("#code").count() == 0  # no app: the key or a recovery code
        shoot(page, "login-security-key")
        page.click("#use-key")
        page.wait_for_url(f"{public}/account/tokens")
    page.goto(f"{public}/account/two-factor")
    assert "last used never" not in page.inner_text(".keys")
    assert "web.signed_in" in audit_events(gw, "kim") and "user.2fa.webauthn_added" in audit_events(gw, "kim")

    page.click(".keys >> text=Remove")
    confirm_password(page)  # a new sign-in: confirm again
    page.wait_for_url("**/remove")
    shoot(page, "webauthn-remove-confirm")
    page.click("#confirm-action")
    page.wait_for_url(f"{public}/account/two-factor")
    assert "No security key yet" in page.inner_text("main")
    sign_out(page)
    sign_in(page, public, "kim")
    page.wait_for_url(f"{public}/account/tokens")  # no factor left: the password alone signs in


def test_the_other_loopback_name_is_sent_to_the_public_url_and_never_let_in(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(server={"public_url": ""})
    public, other = loopback_urls(gw)
    gw.add_user("lou", PASSWORD)
    status, headers, _ = Client(other).get("/account/login?next=/account/projects")
    assert status == 307 and headers["Location"] == f"{public}/account/login?next=/account/projects"
    status, headers, _ = Client(other).get("/account/")
    assert status == 307 and headers["Location"] == f"{public}/account/"
    assert Client(other).get("/-/ready")[0] == 200  # the account pages only

    told = f"Open the account pages at {public}/account/ (not {other})"
    client = Client(public)
    client.get("/account/login")
    fields = {"username": "lou", "password": PASSWORD, "csrf_token": client.last_csrf}
    # Posted at the other name (its cookies are that name's): told where to go, nothing read.
    status, _, body = Client(other, jar=dict(client.jar)).request("POST", "/account/login", fields)
    assert status == 403 and told in body, body
    # Posted from a page of the other name: the same, not the bare "another site".
    status, _, body = client.request("POST", "/account/login", fields, headers={"Origin": other})
    assert status == 403 and told in body, body
    # Any other origin, loopback on another port included, is another site, with or without the token.
    for origin in (other.rsplit(":", 1)[0] + ":1", "http://localhost", "http://evil.example", "null"):
        status, _, body = client.request("POST", "/account/login", fields, headers={"Origin": origin})
        assert status == 403 and "another site" in body and told not in body, (origin, body)
    status, headers, _ = client.request("POST", "/account/login", fields, headers={"Origin": public})
    assert status == 303 and headers["Location"] == "/account/"
    assert "web.signed_in" in audit_events(gw, "lou")


@dataclass
class Client:
    """A bare HTTP client with a cookie jar for /account/: sees redirects, statuses and cookies as they are.

    `cookie` is the session cookie; `jar` holds the others (the sign-in form's CSRF cookie, a notice).
    """

    url: str
    cookie: str | None = None
    last_csrf: str = ""
    jar: dict[str, str] = field(default_factory=dict)
    seen: list[int] = field(default_factory=list)

    def request(
        self, method: str, path: str, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        sent = dict(headers or {})
        cookies = {**self.jar, **({"gateway_session": self.cookie} if self.cookie else {})}
        if cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        body = urlencode(fields).encode() if fields is not None else None
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        text = resp.read().decode()
        received = SimpleCookie()
        for header in resp.headers.get_all("Set-Cookie") or []:
            received.load(header)
        for name, morsel in received.items():
            if name == "gateway_session":
                self.cookie = morsel.value or None
            elif morsel.value:
                self.jar[name] = morsel.value
            else:
                self.jar.pop(name, None)
        if found := re.search(r'name="csrf-token" content="([^"]+)"', text):
            self.last_csrf = found.group(1)
        self.seen.append(resp.status)
        return resp.status, dict(resp.headers), text

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, fields: dict[str, str], *, csrf: bool = True) -> tuple[int, dict[str, str], str]:
        return self.request("POST", path, {**fields, **({"csrf_token": self.last_csrf} if csrf else {})})

    def sign_in(self, user: str, password: str = PASSWORD) -> tuple[int, dict[str, str], str]:
        self.get("/account/login")
        return self.post("/account/login", {"username": user, "password": password})


def test_posts_need_the_csrf_token(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    gw.add_user("carl", PASSWORD)
    client = Client(gw.url)
    _, headers, _ = client.get("/account/login")
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Lax" in headers["Set-Cookie"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, _, body = client.post("/account/login", {"username": "carl", "password": PASSWORD}, csrf=False)
    assert status == 403 and "reload the page" in body
    status, _, _ = client.request(
        "POST", "/account/login", {"username": "carl", "password": PASSWORD, "csrf_token": "x"}
    )
    assert status == 403
    status, _, _ = Client(gw.url).request("POST", "/account/login", {"username": "carl", "password": PASSWORD})
    assert status == 403
    foreign = client.request(
        "POST",
        "/account/login",
        {"username": "carl", "password": PASSWORD, "csrf_token": client.last_csrf},
        headers={"Origin": "http://evil.example"},
    )
    assert foreign[0] == 403
    status, headers, _ = client.post("/account/login", {"username": "carl", "password": PASSWORD})
    assert status == 303 and headers["Location"] == "/account/"
    assert client.post("/account/logout", {}, csrf=False)[0] == 403


def test_the_sixth_wrong_code_in_a_row_gets_429(gateway_factory: GatewayFactory, page: Page) -> None:
    gw = gateway_factory()
    gw.add_user("dora", PASSWORD)
    gw.add_user("eve", PASSWORD)
    totp = pyotp.parse_uri(gw.cli("user", "2fa", "enable", "dora").stdout.splitlines()[0])
    assert isinstance(totp, pyotp.TOTP)
    client = Client(gw.url)
    status, headers, _ = client.sign_in("dora")
    assert status == 303 and headers["Location"] == "/account/login/two-factor"
    wrong = "000000" if totp.now() != "000000" else "111111"
    for _ in range(5):
        status, _, body = client.post("/account/login/two-factor", {"code": wrong})
        assert status == 401 and "wrong" in body, body
    status, headers, body = client.post("/account/login/two-factor", {"code": wrong})
    assert status == 429 and 0 < int(headers["Retry-After"]) <= 60 and "Too many failed attempts" in body, body
    assert client.post("/account/login/two-factor", {"code": totp.now()})[0] == 429  # locked, even when right
    assert Client(gw.url).sign_in("dora")[0] == 429  # this account from this address, in any session
    # Another account from the same address is not: the address's own ceiling is far higher (docs/operations.md).
    assert Client(gw.url).sign_in("eve")[0] == 303
    assert "web.throttled" in audit_events(gw, "dora")

    page.goto(f"{gw.url}/account/login")
    page.fill("#username", "dora")
    page.fill("#password", PASSWORD)
    page.click("form[action='/account/login'] button")
    assert "Too many failed attempts" in page.inner_text("main")
    shoot(page, "error-429")


def test_a_cookie_from_before_sign_out_is_refused_and_tokens_never_sign_in(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    gw.add_user("fay", PASSWORD)
    client = Client(gw.url)
    assert client.sign_in("fay")[0] == 303
    assert client.get("/account/tokens")[0] == 200
    before, csrf, jar = client.cookie, client.last_csrf, dict(client.jar)
    status, headers, _ = client.post("/account/logout", {})
    assert status == 303 and headers["Location"] == "/account/login"
    replay = Client(gw.url, cookie=before, last_csrf=csrf, jar=jar)  # every cookie the browser had
    status, headers, _ = replay.get("/account/tokens")
    assert status == 303 and headers["Location"].startswith("/account/login")
    assert replay.post("/account/logout", {})[0] == 403

    token = gw.cli("token", "create", "fay").stdout.strip()
    for credentials in (
        f"Bearer {token}",
        f"token {token}",
        "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode(),
    ):
        status, headers, _ = Client(gw.url).get("/account/tokens", headers={"Authorization": credentials})
        assert status == 303 and headers["Location"].startswith("/account/login")


def test_a_recovery_code_signs_in_once(gateway_factory: GatewayFactory, page: Page) -> None:
    gw = gateway_factory()
    gw.add_user("gus", PASSWORD)
    enrolled = gw.cli("user", "2fa", "enable", "gus").stdout.split()
    codes = [word for word in enrolled if re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}", word)]
    assert len(codes) == 8
    sign_in(page, gw, "gus")
    page.wait_for_url("**/account/login/two-factor")
    page.click("text=Use a recovery code")
    page.fill("#recovery_code", codes[0].upper())
    page.click("text=Sign in with the recovery code")
    page.wait_for_url("**/account/tokens")
    assert "a recovery code, which is now used up: 7 recovery codes are left" in page.inner_text(".flash")
    shoot(page, "signed-in-with-a-recovery-code")
    page.reload()
    assert page.locator(".flash").count() == 0
    page.goto(f"{gw.url}/account/two-factor")
    assert "7 unused recovery codes" in page.inner_text("#recovery-status")
    sign_out(page)

    sign_in(page, gw, "gus")
    page.wait_for_url("**/account/login/two-factor")
    page.click("text=Use a recovery code")
    page.fill("#recovery_code", codes[0])
    page.click("text=Sign in with the recovery code")
    assert "used already" in page.inner_text(".error")
    assert "/account/login/two-factor" in page.url
    page.click("text=Use a recovery code")
    page.fill("#recovery_code", codes[1])
    page.click("text=Sign in with the recovery code")
    page.wait_for_url("**/account/tokens")


def test_an_owner_adds_and_removes_a_trusted_publisher_and_adds_a_pending_one(
    gateway_factory: GatewayFactory, page: Page
) -> None:
    issuers = [
        {"name": "github", "url": "https://token.actions.githubusercontent.com", "kind": "github"},
        {"name": "gitlab", "url": "https://gitlab.example", "kind": "gitlab"},
    ]
    gw = gateway_factory(oidc={"issuers": issuers})
    gw.add_user("pia", PASSWORD)
    gw.cli("project", "grant", "pia-lib", "pia")
    sign_in(page, gw, "pia")
    page.wait_for_url("**/account/tokens")
    page.click("nav >> text=Projects")
    page.click(".publishers-link")
    page.wait_for_url("**/account/projects/pia-lib/publishers")
    assert "No trusted publishers yet." in page.inner_text("main")

    def fill_github() -> None:
        page.fill("#repository", "octo-org/pia-lib")
        page.fill("#owner_id", "123456")
        page.fill("#workflow", "release.yml")
        page.fill("#environment", "pypi")
        page.click("#add-publisher-button")

    fill_github()
    confirm_password(page)  # a publisher mints tokens: the password again, as for a new token
    page.wait_for_url("**/account/projects/pia-lib/publishers")
    fill_github()
    page.wait_for_url("**/account/projects/pia-lib/publishers")
    described = "GitHub octo-org/pia-lib, workflow release.yml, environment pypi"
    assert f"pia-lib may now be published by {described}." in page.inner_text(".flash")
    [listed] = page.locator("#publishers tbody tr").all()
    assert described in listed.inner_text() and "github" in listed.inner_text()
    shoot(page, "publishers")

    page.select_option("#choose-issuer", "gitlab")
    page.click("#choose")
    page.wait_for_url("**/account/projects/pia-lib/publishers?issuer=gitlab")
    assert page.locator("#namespace").is_visible() and page.locator("#owner_id").count() == 0

    listed.locator("text=Remove").click()
    page.wait_for_url("**/remove")
    assert "every token it was given is revoked at once" in page.inner_text("main")
    assert page.inner_text("#confirm-action") == "Remove the publisher and revoke its tokens"
    shoot(page, "publisher-remove")
    page.click("#confirm-action")
    page.wait_for_url("**/account/projects/pia-lib/publishers")
    assert "no longer publishes pia-lib; its tokens are revoked" in page.inner_text(".flash")
    assert page.locator("#publishers").count() == 0

    page.click("nav >> text=Projects")
    page.click("#pending-publishers")
    page.wait_for_url("**/account/publishers/pending")
    page.fill("#name", "pia-next")
    fill_github()
    page.wait_for_url("**/account/publishers/pending")
    assert "The first publish of pia-next by" in page.inner_text(".flash")
    [waiting] = page.locator("#pending tbody tr").all()
    assert "pia-next" in waiting.inner_text() and described in waiting.inner_text()
    shoot(page, "publishers-pending")
    events = audit_events(gw, "pia")
    assert {"publisher.added", "publisher.pending_added", "web.confirmed"} <= set(events)
