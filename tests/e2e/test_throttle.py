"""Throttles and limits on sign-in and password uploads, attacked over real sockets (issue #13).

The account pages are driven with plain HTTP, as a browser would: GET the sign-in form for its cookie and CSRF
token, POST it. Client addresses are real where a few do: connections bound to distinct loopback sources
(127.0.0.2, 127.0.0.3, ...), which the gateway sees as the peer, with no proxy configured. Where hundreds are
needed they come the way they do behind a reverse proxy: `server.trusted_proxies` lists 127.0.0.1 and each
request names its client in X-Forwarded-For (and an X-Forwarded-For from an untrusted peer is shown to be
ignored). What was checked is counted from the audit trail (`web.attempt_failed`, `upload.rejected`), never
guessed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import random
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import aiohttp
import pyotp
import pytest

from tests.conftest import GatewayFactory, GatewayProcess
from tests.dists import make_wheel
from tests.harness.forms import multipart, twine_fields

PASSWORD = "a long enough password"
# Addresses from X-Forwarded-For; a queue of password checks long enough that every attempt the throttle lets
# through is checked (the bounded pool has its own test).
PROXY: dict[str, dict[str, object]] = {
    "server": {"trusted_proxies": ["127.0.0.1"]},
    "throttle": {"password_check_queue": "2000"},
}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client with no connection limit and no cookie jar of its own: each Visitor keeps its cookies."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=300),
    ) as session:
        yield session


@contextlib.asynccontextmanager
async def client_from(source: str) -> AsyncIterator[aiohttp.ClientSession]:
    """Like `client`, with every connection bound to the loopback address `source`: a distinct real peer."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True, local_addr=(source, 0)),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=300),
    ) as session:
        yield session


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


@dataclass
class Visitor:
    """One browser on the account pages: its cookies and the CSRF token of the last form it was shown."""

    http: aiohttp.ClientSession
    url: str
    address: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    async def request(self, method: str, path: str, fields: dict[str, str] | None = None, **kw: str) -> Answer:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        if address := kw.get("address", self.address):
            headers["X-Forwarded-For"] = address
        data = None
        if fields is not None:
            data = urlencode({**fields, "csrf_token": self.csrf})
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with self.http.request(
            method, self.url + path, data=data, headers=headers, allow_redirects=False
        ) as resp:
            text = await resp.text()
            for header in resp.headers.getall("Set-Cookie", []):
                jar = SimpleCookie()
                jar.load(header)
                self.cookies.update({name: morsel.value for name, morsel in jar.items() if morsel.value})
            if found := re.search(r'name="csrf_token" value="([^"]+)"', text):
                self.csrf = found.group(1)
            return Answer(resp.status, dict(resp.headers), text)

    async def open_form(self) -> None:
        assert (await self.request("GET", "/account/login")).status == 200 and self.csrf

    async def sign_in(self, user: str, password: str = PASSWORD, **kw: str) -> Answer:
        return await self.request("POST", "/account/login", {"username": user, "password": password}, **kw)


def audit(gw: GatewayProcess, event: str, user: str | None = None) -> list[dict[str, object]]:
    with sqlite3.connect(gw.config.parent / "gateway.db", timeout=30) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM audit WHERE event = ? ORDER BY id", (event,)).fetchall()
    return [dict(row) for row in rows if user is None or row["user_name"] == user]


def metric(gw: GatewayProcess, line_start: str) -> float:
    conn = http.client.HTTPConnection(urlsplit(gw.url).hostname, urlsplit(gw.url).port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def statuses(answers: list[Answer]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for answer in answers:
        counts[answer.status] = counts.get(answer.status, 0) + 1
    return counts


async def test_sixty_concurrent_wrong_passwords_are_checked_five_times(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Before: "locked?", then the check, then the count: all 60 were checked (limit 5)."""
    gw = gateway_factory()
    gw.add_user("ann", PASSWORD)
    visitors = [Visitor(client, gw.url) for _ in range(60)]
    await asyncio.gather(*(v.open_form() for v in visitors))
    answers = await asyncio.gather(*(v.sign_in("ann", f"wrong {n}") for n, v in enumerate(visitors)))
    assert statuses(answers) == {401: 5, 429: 55}
    assert len(audit(gw, "web.attempt_failed", "ann")) == 5
    for answer in answers:
        if answer.status == 429:
            assert 0 < int(answer.headers["Retry-After"]) <= 60 and "Too many failed attempts" in answer.text
    assert metric(gw, 'upload_gateway_throttled_total{kind="password",scope="account_address"}') == 55
    locks = audit(gw, "web.throttled", "ann")
    assert len(locks) == 1 and '"scope": "account_address"' in str(locks[0]["detail"])
    lines = [line for line in gw.log_text().splitlines() if "throttle lock began" in line]
    assert len(lines) == 1 and "scope=account_address" in lines[0] and "kind=password" in lines[0], lines


async def test_two_thousand_concurrent_codes_for_one_sign_in_are_checked_at_most_five_times(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Before: 1,928 of 2,000 codes were checked and the right one, sent with them, signed in.

    All 2,000 come at once from one peer, so the cap on connections per address is lifted: what answers them
    here is the throttle, not that cap."""
    gw = gateway_factory(limits={"max_connections_per_address": "0"})
    gw.add_user("dora", PASSWORD)
    totp = pyotp.parse_uri(gw.cli("user", "2fa", "enable", "dora").stdout.splitlines()[0])
    assert isinstance(totp, pyotp.TOTP)
    visitor = Visitor(client, gw.url)
    await visitor.open_form()
    answer = await visitor.sign_in("dora")
    assert answer.status == 303 and answer.headers["Location"] == "/account/login/two-factor"
    now = time.time()
    valid = {totp.at(now + offset) for offset in range(-90, 91, 30)}
    wrong = random.sample(sorted(set(f"{n:06d}" for n in range(1_000_000)) - valid), 2000)
    right = 1000
    codes = [*wrong[:right], totp.now(), *wrong[right:]]
    answers = await asyncio.gather(
        *(visitor.request("POST", "/account/login/two-factor", {"code": code}) for code in codes)
    )
    counts = statuses(answers)
    assert set(counts) <= {401, 429, 303}, counts
    failed, signed_in = audit(gw, "web.attempt_failed", "dora"), audit(gw, "web.signed_in", "dora")
    assert len(failed) + len(signed_in) <= 5 and counts.get(401, 0) == len(failed)
    # The right code got in only if it was among the (at most five) codes checked.
    assert (answers[right].status == 303) == (len(signed_in) == 1)
    assert counts[429] >= 1995
    refusals = {a.text for a in answers if a.status == 429}
    assert all("Too many failed attempts" in text or "being checked right now" in text for text in refusals)


async def test_a_burst_of_1200_failures_never_answers_500_and_the_throttle_still_locks(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Before: past ~1,030 failures the backoff overflowed: 900 answers were 500s, and no lock ever again.

    From 1,200 addresses at once (one attempt each), so the account's own ceiling is what holds."""
    gw = gateway_factory(**PROXY)
    gw.add_user("ann", PASSWORD)
    visitor = Visitor(client, gw.url)
    await visitor.open_form()
    answers = await asyncio.gather(
        *(visitor.sign_in("ann", f"wrong {n}", address=f"10.{n // 250}.{n % 250}.1") for n in range(1200))
    )
    counts = statuses(answers)
    assert set(counts) == {401, 429}, counts
    assert 100 <= counts[401] <= 101  # the account's ceiling: 100 at once, then one every 36 s
    assert len(audit(gw, "web.attempt_failed", "ann")) == counts[401]
    for address in ("192.0.2.1", "192.0.2.2"):
        for password in ("wrong again", PASSWORD):
            answer = await visitor.sign_in("ann", password, address=address)
            assert answer.status == 429 and "from many addresses" in answer.text
    assert any('"scope": "account"' in str(row["detail"]) for row in audit(gw, "web.throttled", "ann"))


async def test_the_owner_signs_in_from_their_address_after_a_burst_from_others_below_the_ceiling(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Before: the counters were per account and per address, so anyone could lock any account out."""
    gw = gateway_factory(**PROXY)
    gw.add_user("olive", PASSWORD)
    attacker = Visitor(client, gw.url)
    await attacker.open_form()
    addresses = [f"203.0.113.{n}" for n in range(1, 11)]
    answers = await asyncio.gather(
        *(attacker.sign_in("olive", f"guess {n}", address=a) for a in addresses for n in range(60))
    )
    assert statuses(answers) == {401: 50, 429: 550}  # five per address, 50 in all: below the ceiling of 100
    assert (await attacker.sign_in("olive", PASSWORD, address=addresses[0])).status == 429
    owner = Visitor(client, gw.url, address="198.51.100.7")
    await owner.open_form()
    answer = await owner.sign_in("olive")
    assert answer.status == 303 and answer.headers["Location"] == "/account/"
    # Other accounts from the attacker's addresses are not locked either.
    gw.add_user("otto", PASSWORD)
    assert (await attacker.sign_in("otto", address=addresses[0])).status == 303


async def test_the_owner_signs_in_from_another_real_address_while_one_address_guesses(
    gateway_factory: GatewayFactory,
) -> None:
    """The same, from real peers (no proxy configured): 60 concurrent guesses from 127.0.0.2 are checked five
    times and lock that address out of the account, even with the right password; the owner, connecting from
    127.0.0.3, signs in."""
    gw = gateway_factory()
    gw.add_user("opal", PASSWORD)
    async with client_from("127.0.0.2") as attacking, client_from("127.0.0.3") as owning:
        attackers = [Visitor(attacking, gw.url) for _ in range(60)]
        await asyncio.gather(*(v.open_form() for v in attackers))
        answers = await asyncio.gather(*(v.sign_in("opal", f"guess {n}") for n, v in enumerate(attackers)))
        assert statuses(answers) == {401: 5, 429: 55}
        assert (await attackers[0].sign_in("opal")).status == 429
        owner = Visitor(owning, gw.url)
        await owner.open_form()
        answer = await owner.sign_in("opal")
        assert answer.status == 303 and answer.headers["Location"] == "/account/"
    locks = audit(gw, "web.throttled", "opal")
    assert [row["address"] for row in locks] == ["127.0.0.2"]


async def test_one_users_typos_do_not_lock_out_another_user_at_the_same_address(
    gateway_factory: GatewayFactory,
) -> None:
    """Issue #16: two colleagues behind one address (real peers, no proxy). The first mistypes until locked out of
    their account; the second signs in from the same address at once, and so does the first from another one.
    (The address as a whole is capped far higher: the spraying tests below.)"""
    gw = gateway_factory()
    gw.add_user("typo", PASSWORD)
    gw.add_user("colleague", PASSWORD)
    async with client_from("127.0.0.4") as office, client_from("127.0.0.5") as home:
        first = Visitor(office, gw.url)
        await first.open_form()
        answers = [await first.sign_in("typo", f"typo {n}") for n in range(7)]
        assert [a.status for a in answers] == [401] * 5 + [429] * 2
        assert "for this account from your address" in answers[-1].text
        assert (await first.sign_in("typo")).status == 429  # locked: even the right password waits
        second = Visitor(office, gw.url)
        await second.open_form()
        answer = await second.sign_in("colleague")
        assert answer.status == 303 and answer.headers["Location"] == "/account/"
        elsewhere = Visitor(home, gw.url)
        await elsewhere.open_form()
        assert (await elsewhere.sign_in("typo")).status == 303
    assert [row["address"] for row in audit(gw, "web.throttled")] == ["127.0.0.4"]


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_give_fresh_counters(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """An attacker who names a new address in every request gets no new counters: with no trusted proxy the
    header is ignored, and 60 concurrent guesses from one peer are still checked five times."""
    gw = gateway_factory()
    gw.add_user("ivy", PASSWORD)
    visitors = [Visitor(client, gw.url, address=f"198.18.{n}.1") for n in range(60)]
    await asyncio.gather(*(v.open_form() for v in visitors))
    answers = await asyncio.gather(*(v.sign_in("ivy", f"guess {n}") for n, v in enumerate(visitors)))
    assert statuses(answers) == {401: 5, 429: 55}
    assert {row["address"] for row in audit(gw, "web.attempt_failed", "ivy")} == {"127.0.0.1"}


async def test_one_password_tried_on_many_accounts_from_one_address_meets_the_address_ceiling(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = gateway_factory(**PROXY)
    gw.add_user("victim", PASSWORD)
    sprayer = Visitor(client, gw.url, address="203.0.113.9")
    await sprayer.open_form()
    answers = await asyncio.gather(*(sprayer.sign_in(f"user{n}", "Summer2026!") for n in range(80)))
    assert statuses(answers) == {401: 50, 429: 30}
    answer = await sprayer.sign_in("victim")
    assert answer.status == 429 and "from your address" in answer.text
    assert (await sprayer.sign_in("victim", address="198.51.100.1")).status == 303


def legacy_post(gw: GatewayProcess, authorization: str, content_type: str, body: bytes) -> Answer:
    parts = urlsplit(gw.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("POST", "/legacy/", body=body, headers={"Authorization": authorization, "Content-Type": content_type})
    resp = conn.getresponse()
    answer = Answer(resp.status, dict(resp.headers), resp.read().decode(errors="replace"))
    conn.close()
    return answer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def wheel_body(directory: Path, name: str, version: str) -> tuple[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    wheel = make_wheel(directory, name, version)
    data = wheel.read_bytes()
    return multipart(twine_fields(wheel.name, data), [("content", wheel.name, data)])


async def test_forty_concurrent_wrong_upload_passwords_are_throttled_and_then_the_right_one_too(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Before: 40 wrong passwords in 2.7 s, all checked, all plain 403s."""
    gw = gateway_factory(throttle={"lock": "3s", "max_lock": "6s"})
    gw.add_user("ulla", PASSWORD)

    async def guess(n: int) -> Answer:
        async with client.post(
            gw.url + "/legacy/",
            data=b"",
            headers={"Authorization": basic("ulla", f"guess {n}"), "Content-Type": "multipart/form-data; boundary=x"},
        ) as resp:
            return Answer(resp.status, dict(resp.headers), await resp.text())

    answers = await asyncio.gather(*(guess(n) for n in range(40)))
    assert statuses(answers) == {403: 5, 429: 35}
    rejected = [row for row in audit(gw, "upload.rejected", "ulla") if '"invalid_credentials"' in str(row["detail"])]
    assert len(rejected) == 5
    assert all(a.headers["Retry-After"].isdigit() for a in answers if a.status == 429)
    assert audit(gw, "upload.throttled", "ulla")
    content_type, body = await asyncio.to_thread(wheel_body, tmp_path, "ulla-pkg", "1.0")
    locked = await asyncio.to_thread(legacy_post, gw, basic("ulla", PASSWORD), content_type, body)
    assert locked.status == 429 and "Too many failed attempts" in locked.text, locked
    await asyncio.sleep(int(locked.headers["Retry-After"]))
    accepted = await asyncio.to_thread(legacy_post, gw, basic("ulla", PASSWORD), content_type, body)
    assert accepted.status == 200, accepted


async def test_one_upload_password_sprayed_over_many_accounts_meets_the_address_ceiling(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """One password tried on 60 accounts at once from one real peer (127.0.0.2): 50 are checked, the rest get 429
    "from your address"; an upload with a right password from another peer (127.0.0.3) goes through."""
    gw = gateway_factory(throttle={"password_check_queue": "100"})
    gw.add_user("uwe", PASSWORD)

    async def guess(http: aiohttp.ClientSession, user: str) -> Answer:
        async with http.post(
            gw.url + "/legacy/",
            data=b"",
            headers={"Authorization": basic(user, "Summer2026!"), "Content-Type": "multipart/form-data; boundary=x"},
        ) as resp:
            return Answer(resp.status, dict(resp.headers), await resp.text())

    async with client_from("127.0.0.2") as spraying:
        answers = await asyncio.gather(*(guess(spraying, f"user{n}") for n in range(60)))
        assert statuses(answers) == {403: 50, 429: 10}
        assert all("from your address" in a.text for a in answers if a.status == 429)
        assert (await guess(spraying, "uwe")).status == 429
    content_type, body = await asyncio.to_thread(wheel_body, tmp_path, "uwe-pkg", "1.0")
    async with client_from("127.0.0.3") as owning:
        async with owning.post(
            gw.url + "/legacy/",
            data=body,
            headers={"Authorization": basic("uwe", PASSWORD), "Content-Type": content_type},
        ) as resp:
            assert resp.status == 200, await resp.text()


async def test_forty_concurrent_wrong_read_passwords_on_a_private_index_are_throttled(
    gateway_factory: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Password reads of a private index (issue #14) are password checks too: the same throttle holds."""
    gw = gateway_factory(reads={"access": "authenticated"})
    gw.add_user("rita", PASSWORD)

    async def read(password: str) -> Answer:
        async with client.get(gw.url + "/simple/", headers={"Authorization": basic("rita", password)}) as resp:
            return Answer(resp.status, dict(resp.headers), await resp.text())

    answers = await asyncio.gather(*(read(f"guess {n}") for n in range(40)))
    assert statuses(answers) == {401: 5, 429: 35}
    assert (await read(PASSWORD)).status == 429  # the right one too, from this address, while locked
    assert metric(gw, 'upload_gateway_throttled_total{kind="read",scope="account_address"}') == 36
    assert audit(gw, "read.throttled", "rita")


def test_a_2fa_accounts_password_gets_one_answer_right_or_wrong_and_is_never_checked(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Before: a right password got "no longer supported for accounts with two-factor authentication", a wrong one
    "Invalid or non-existent authentication information": an oracle for the first factor, beside the throttle."""
    gw = gateway_factory()
    gw.add_user("tess", PASSWORD)
    gw.cli("user", "2fa", "enable", "tess")
    content_type, body = wheel_body(tmp_path, "tess-pkg", "1.0")
    answers = [legacy_post(gw, basic("tess", p), content_type, body) for p in [PASSWORD, *(f"x{n}" for n in range(9))]]
    first_lines = {(a.status, a.text.splitlines()[0]) for a in answers}
    assert len(first_lines) == 1, first_lines
    status, line = first_lines.pop()
    assert status == 403 and "accounts with two-factor authentication" in line
    assert metric(gw, 'upload_gateway_auth_failures_total{kind="password"}') == 0  # nothing was hashed


@dataclass
class Flood:
    """Threads sending header-only password uploads for unknown users, as fast as they are answered."""

    gw: GatewayProcess
    threads: int
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        workers = [threading.Thread(target=self._worker, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(timeout=60)

    def _worker(self, number: int) -> None:
        parts = urlsplit(self.gw.url)
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            conn.request(
                "POST",
                "/legacy/",
                body=b"",
                headers={
                    "Authorization": basic(f"nobody-{number}-{attempt}", "guess"),
                    "Content-Type": "multipart/form-data; boundary=x",
                },
            )
            resp = conn.getresponse()
            resp.read()
            self.answers.append((resp.status, resp.headers.get("Retry-After")))
            conn.close()


def test_password_checks_past_the_queue_get_503_and_token_uploads_stay_fast(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """Before: 40 threads of unauthenticated guesses pushed token uploads from 10 ms to 50-350 ms and filled the
    default thread pool that spooled uploads use too. Now argon2 has 2 threads and 16 queue places of its own."""
    high = "1000000"
    gw = gateway_factory(throttle={"failures": high, "account_failures": high, "address_failures": high})
    gw.add_user("tim", PASSWORD)
    token = gw.cli("token", "create", "tim").stdout.strip()
    bodies = [wheel_body(tmp_path / str(n), "tim-pkg", f"1.{n}") for n in range(8)]
    flood = Flood(gw, threads=40)
    durations: list[float] = []
    with flood.running():
        time.sleep(1)
        for content_type, body in bodies:
            started = time.perf_counter()
            answer = legacy_post(gw, basic("__token__", token), content_type, body)
            durations.append(time.perf_counter() - started)
            assert answer.status == 200, answer
    counts: dict[int, int] = {}
    for status, _ in flood.answers:
        counts[status] = counts.get(status, 0) + 1
    assert set(counts) == {403, 503}, counts
    assert counts[503] > counts[403]  # the backlog is refused, not queued
    assert all(retry == "2" for status, retry in flood.answers if status == 503)
    assert max(durations) < 2.0, durations  # generous: 10-40 ms unloaded, ~150 ms at most under this flood
    assert metric(gw, "upload_gateway_password_checks_refused_total") == counts[503]


def stall(gw: GatewayProcess, token: str, content_type: str, body: bytes) -> http.client.HTTPConnection:
    """An upload that sent its headers and half its body, and then nothing."""
    parts = urlsplit(gw.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.putrequest("POST", "/legacy/")
    for name, value in (
        ("Authorization", basic("__token__", token)),
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
    ):
        conn.putheader(name, value)
    conn.endheaders(body[: len(body) // 2])
    return conn


def test_uploads_in_flight_are_capped_per_user_and_in_all_on_the_headers(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gw = gateway_factory(limits={"max_uploads_per_user": "2", "max_uploads": "3"})
    tokens = {}
    for user in ("amy", "ben", "cat"):
        gw.add_user(user, PASSWORD)
        tokens[user] = gw.cli("token", "create", user).stdout.strip()
    content_type, body = wheel_body(tmp_path / "big", "big-pkg", "1.0")
    held = [stall(gw, tokens["amy"], content_type, body) for _ in range(2)]
    time.sleep(0.5)
    third = legacy_post(gw, basic("__token__", tokens["amy"]), content_type, body)
    assert third.status == 429 and "at most 2 at once" in third.text and third.headers["Retry-After"] == "10"
    held.append(stall(gw, tokens["ben"], *wheel_body(tmp_path / "ben", "ben-pkg", "1.0")))
    time.sleep(0.5)
    busy = legacy_post(gw, basic("__token__", tokens["cat"]), *wheel_body(tmp_path / "cat", "cat-pkg", "1.0"))
    assert busy.status == 429 and "its limit" in busy.text and busy.headers["Retry-After"] == "30"
    for conn in held:
        conn.close()  # the gateway sees them end, and gives their places back
    cat = wheel_body(tmp_path / "cat", "cat-pkg", "1.0")
    deadline = time.monotonic() + 30
    while (answer := legacy_post(gw, basic("__token__", tokens["cat"]), *cat)).status == 429:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    assert answer.status == 200, answer
