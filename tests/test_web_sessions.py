"""Secrets at rest and session housekeeping, on a real SQLite store in a temporary directory.

The pending TOTP seed's sealing, file modes whatever the umask, and the purge of expired sessions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp_session import Session

from gateway import private, twofactor
from gateway.store import Store, StoreFailure
from gateway.web.security import new_csrf_token, well_formed_token
from gateway.web.sessions import (
    COOKIE_NAME,
    CSRF,
    CSRF_COOKIE,
    FLASH,
    NOTICE_COOKIE,
    SIGNED_IN_AT,
    USER_ID,
    StoreSessionStorage,
    purge_expired,
)
from tests.harness import database

SECRET = b"s" * 32
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_a_pending_seed_opens_only_for_its_user_and_session() -> None:
    sealed = twofactor.seal_pending_totp(SECRET, "user-1", "session-1", SEED)
    assert SEED not in sealed and base64.b32decode(SEED) not in base64.b64decode(sealed)
    assert twofactor.unseal_pending_totp(SECRET, "user-1", "session-1", sealed) == SEED
    assert sealed != twofactor.seal_pending_totp(SECRET, "user-1", "session-1", SEED)  # a fresh nonce each time
    for user, session in [("user-2", "session-1"), ("user-1", "session-2"), ("user-1\0session-1", "")]:
        with pytest.raises(ValueError):
            twofactor.unseal_pending_totp(SECRET, user, session, sealed)
    with pytest.raises(ValueError):
        twofactor.unseal_pending_totp(b"t" * 32, "user-1", "session-1", sealed)
    tampered = bytearray(base64.b64decode(sealed))
    tampered[-1] ^= 1
    for bad in (base64.b64encode(bytes(tampered)).decode(), "not base64!", ""):
        with pytest.raises(ValueError):
            twofactor.unseal_pending_totp(SECRET, "user-1", "session-1", bad)


def test_an_enrolled_seal_is_no_pending_one() -> None:
    """Separate keys: a seed sealed for the users table does not open as a pending one, nor the other way."""
    enrolled = twofactor.seal_totp(SECRET, "user-1", SEED)
    with pytest.raises(ValueError):
        twofactor.unseal_pending_totp(SECRET, "user-1", "", base64.b64encode(enrolled).decode())
    pending = base64.b64decode(twofactor.seal_pending_totp(SECRET, "user-1", "", SEED))
    with pytest.raises(ValueError):
        twofactor.unseal_totp(SECRET, "user-1", pending)


@pytest.mark.parametrize("value", ["", "x", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "\n", None, ["A" * 43]])
def test_a_visitor_token_must_be_token_shaped(value: object) -> None:
    assert not well_formed_token(value)


def test_made_tokens_are_token_shaped() -> None:
    assert all(well_formed_token(new_csrf_token()) for _ in range(100))


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The worst case: a umask that takes nothing away."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
async def test_the_database_its_wal_and_shm_and_the_audit_file_are_private(tmp_path: Path) -> None:
    """SQLite's files (PostgreSQL's are the server's)."""
    db, audit = tmp_path / "gateway.db", tmp_path / "audit.jsonl"
    store = await Store.open(f"sqlite:///{db}", audit_file=audit)
    try:
        await store.save_web_session("k", "{}", time.time() + 60)
        await store.audit("test.event")
        for path in (db, tmp_path / "gateway.db-wal", tmp_path / "gateway.db-shm", audit):
            assert mode(path) == 0o600, path
    finally:
        await store.close()


@pytest.mark.usefixtures("open_umask")
def test_files_an_earlier_version_made_lose_access_for_others_only(tmp_path: Path) -> None:
    loose, grouped = tmp_path / "loose", tmp_path / "grouped"
    for path, wanted in ((loose, 0o666), (grouped, 0o640)):
        path.write_text("x")
        path.chmod(wanted)
    private.create(loose)
    private.tighten(grouped)
    private.tighten(tmp_path / "missing")
    assert (mode(loose), mode(grouped)) == (0o660, 0o640)
    assert not (tmp_path / "missing").exists() and loose.read_text() == "x"


@pytest.mark.usefixtures("open_umask")
def test_an_audit_file_rotated_away_comes_back_private(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    private.append_line(audit, "one")
    audit.rename(tmp_path / "audit.jsonl.1")
    private.append_line(audit, "two")
    assert audit.read_text() == "two\n" and mode(audit) == 0o600


async def test_expired_sessions_are_purged_in_batches_and_live_ones_stay(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        now = time.time()
        for number in range(1203):
            await store.save_web_session(f"old{number}", "{}", now - 1 - number)
        await store.save_web_session("live", "{}", now + 600)
        assert await store.purge_web_sessions(now, limit=500) == 500
        assert sessions(store_url) == 1203 - 500 + 1
        assert await store.purge_web_sessions(now, limit=500) == 500
        assert await store.purge_web_sessions(now, limit=500) == 203
        assert await store.purge_web_sessions(now, limit=500) == 0
        assert await store.web_session("live", now) == "{}"
    finally:
        await store.close()


def sessions(url: str) -> int:
    [(count,)] = database.rows(url, "SELECT COUNT(*) FROM web_sessions")
    return int(count)


async def test_the_purge_runs_at_start_and_again_and_outlives_a_busy_store(store_url: str) -> None:
    store = await Store.open(store_url)
    ready = False
    purge = store.purge_web_sessions

    async def busy_until_ready(now: float, *, limit: int) -> int:
        if not ready:
            raise StoreFailure("the database is locked")
        return await purge(now, limit=limit)

    store.purge_web_sessions = busy_until_ready  # type: ignore[method-assign]
    now = time.time()
    for number in range(1200):  # more than a batch
        await store.save_web_session(f"old{number}", "{}", now - 1)
    await store.save_web_session("live", "{}", now + 600)
    purger = asyncio.create_task(purge_expired(store, interval=0.01))
    try:
        await asyncio.sleep(0.05)
        assert sessions(store_url) == 1201  # busy: nothing done, and the task is still there
        assert not purger.done()
        ready = True
        async with asyncio.timeout(30):
            while sessions(store_url) != 1:
                await asyncio.sleep(0.01)
        await store.save_web_session("later", "{}", time.time() - 1)  # expired after the first round
        async with asyncio.timeout(30):
            while sessions(store_url) != 1:
                await asyncio.sleep(0.01)
        assert await store.web_session("live", time.time()) == "{}"
        owner = await store.add_user("alice", "x")
        fields = {"subject": "repo:o/r"}
        await store.add_pending_publisher(
            "old", "old", "ci", "generic", fields, issuer_url="https://ci.example", user=owner, expires=time.time() - 1
        )
        async with asyncio.timeout(30):  # pending publishers past their expiry go too
            while database.rows(store_url, "SELECT COUNT(*) FROM pending_publishers") != [(0,)]:
                await asyncio.sleep(0.01)
    finally:
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        await store.close()


@pytest.mark.parametrize("secure", [True, False])
def test_a_visitor_cookie_has_the_session_cookies_attributes(secure: bool) -> None:
    storage = StoreSessionStorage(lambda: None, lambda: SECRET, secure=secure)
    response = web.Response()
    storage.set_visitor_cookie(response, CSRF_COOKIE, "t" * 43)
    morsel = response.cookies[CSRF_COOKIE]
    assert (morsel.value, morsel["path"], morsel["samesite"]) == ("t" * 43, "/account/", "Lax")
    assert morsel["httponly"] is True
    assert bool(morsel["secure"]) is secure and not morsel.get("max-age") and not morsel.get("expires")
    storage.forget_visitor_cookie(response, NOTICE_COOKIE)
    gone = response.cookies[NOTICE_COOKIE]
    assert gone.value == "" and gone["path"] == "/account/" and str(gone.get("max-age")) == "0"


async def test_a_session_ended_meanwhile_stays_ended_when_a_request_that_read_it_saves(store_url: str) -> None:
    """An administrator's password reset ends the user's sessions (on any replica) while a request that read one
    before is still running, and changes it (a notice): saving it must not bring the session back, or whoever
    keeps a request in flight with a stolen cookie outlives every sign-out and reset."""
    store = await Store.open(store_url)
    storage = StoreSessionStorage(lambda: store, lambda: SECRET, secure=False)
    try:
        alice = await store.add_user("alice", "$argon2id$not-a-real-hash")
        signing_in = Session(None, data=None, new=True)
        signing_in.update({USER_ID: alice.id, SIGNED_IN_AT: time.time(), CSRF: new_csrf_token()})
        response = web.Response()
        await storage.save_session(make_mocked_request("POST", "/account/login"), response, signing_in)
        cookie = response.cookies[COOKIE_NAME].value

        def request() -> web.Request:
            return make_mocked_request("GET", "/account/tokens", headers={"Cookie": f"{COOKIE_NAME}={cookie}"})

        in_flight = await storage.load_session(request())
        assert in_flight.get(USER_ID) == alice.id
        await store.set_password(alice, "$argon2id$another", by="admin")
        in_flight[FLASH] = ["A notice"]
        await storage.save_session(request(), web.Response(), in_flight)
        assert (await storage.load_session(request())).get(USER_ID) is None
        assert sessions(store_url) == 0
    finally:
        await store.close()
