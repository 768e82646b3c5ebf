"""Administration in the store (issue #16): removing a user, resetting a password or a second factor ends what
they could do, on a real SQLite store in a temporary directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from aiohttp_session import Session

from gateway.store import Store, StoreError, User, WebAuthnCredential
from gateway.web.sessions import USER_ID, StoreSessionStorage
from gateway.web.views import PENDING


async def signed_in(store: Store, user: User, key: str) -> None:
    """A session row as the account pages store it (aiohttp-session's own serialization)."""
    session = Session(key, data=None, new=True)
    session[USER_ID] = user.id
    storage = StoreSessionStorage(lambda: store, lambda: b"s" * 32, secure=False)
    data = json.dumps(storage._get_session_data(session))  # what save_session writes
    await store.save_web_session(key, data, time.time() + 60)


async def test_a_password_reset_ends_the_users_sessions_only(store: Store) -> None:
    alice, bob = await store.add_user("alice", "h1"), await store.add_user("bob", "h2")
    await signed_in(store, alice, "a")
    await signed_in(store, bob, "b")
    await store.set_password(alice, "h3", by="cli:root")
    assert await store.web_session("a", time.time()) is None
    assert await store.web_session("b", time.time()) is not None
    changed = await store.require_user("alice")
    assert changed.password_hash == "h3"
    (event,) = [e for e in await store.audit_events(user_name="alice") if e.event == "user.password_changed"]
    assert event.detail == {"by": "cli:root"}


async def test_a_password_reset_ends_a_sign_in_waiting_for_its_second_factor(store: Store) -> None:
    """Whoever typed the old password and waits at the second factor must not finish signing in after the reset."""
    alice = await store.add_user("alice", "h1")
    session = Session("p", data=None, new=True)
    session[PENDING] = {"uid": alice.id, "at": time.time(), "next": "/account/", "id": "x"}
    storage = StoreSessionStorage(lambda: store, lambda: b"s" * 32, secure=False)
    await store.save_web_session("p", json.dumps(storage._get_session_data(session)), time.time() + 60)
    await store.set_password(alice, "h2", by="cli:root")
    assert await store.web_session("p", time.time()) is None


async def test_a_2fa_reset_removes_every_factor_and_code(store: Store) -> None:
    alice = await store.add_user("alice", "h")
    await store.set_totp(alice, b"sealed", ["c1", "c2"], by="cli:root")
    key = WebAuthnCredential(id="k", name="key", public_key=b"p", sign_count=0, created=time.time())
    await store.add_webauthn_credential(alice, key)
    await signed_in(store, alice, "a")
    enrolled = await store.require_user("alice")
    assert enrolled.has_totp and enrolled.webauthn_count == 1
    await store.disable_2fa(enrolled, by="cli:root")
    reset = await store.require_user("alice")
    assert not reset.has_2fa
    assert await store.count_recovery_codes(alice.id) == 0 and await store.webauthn_credentials(alice.id) == []
    assert await store.web_session("a", time.time()) is None
    (event,) = [e for e in await store.audit_events(user_name="alice") if e.event == "user.2fa.disabled"]
    assert event.detail == {"by": "cli:root", "totp": True, "security_keys": 1}


async def test_removing_a_user_takes_their_tokens_roles_and_sessions(store: Store) -> None:
    alice, bob = await store.add_user("alice", "h"), await store.add_user("bob", "h")
    token = await store.add_token(alice, description="", secret=b"s", caveats=[], expires=None)
    for project in ("solo", "shared"):
        await store.grant(project, project, alice, "owner", by="cli:root")
    await store.grant("shared", "shared", bob, "maintainer", by="cli:root")
    await signed_in(store, alice, "a")
    removed = await store.remove_user(alice, by="cli:root")
    assert (removed.tokens, removed.orphaned) == (1, ("solo",))
    assert await store.get_user("alice") is None and await store.get_token(token.id) is None
    assert await store.web_session("a", time.time()) is None
    state = await store.upload_state("shared", alice.id, token.id)
    assert not state.user_exists and not state.token_valid
    assert [p.name for p, _ in await store.projects_of(bob)] == ["shared"]
    summaries = await store.user_summaries(time.time())
    assert [s.user.name for s in summaries] == ["bob"]


async def test_revocations_are_the_owners_events_and_name_who_revoked(store: Store) -> None:
    alice = await store.add_user("alice", "h")
    token = await store.add_token(alice, description="", secret=b"s", caveats=[], expires=None)
    await store.revoke_token(token.id, by="cli:root")
    await store.add_token(alice, description="", secret=b"t", caveats=[], expires=time.time() - 1)
    await store.revoke_all_tokens(alice, by="bob")
    events = [(e.event, e.token_id, e.detail.get("by")) for e in await store.audit_events(user_name="alice")]
    assert ("token.revoked", token.id, "cli:root") in events
    assert ("token.revoked_all", None, "bob") in events
    (summary,) = await store.user_summaries(time.time())
    assert (summary.tokens, summary.active_tokens) == (2, 0)


async def test_an_unopenable_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError, match=r"store\.url: cannot open the database .*not-a-db: file is not a database"):
        await Store.open(f"sqlite:///{tmp_path / 'not-a-db'}")
