"""The account rules the CLI and the account pages share (`gateway.accounts`): token expiry, scope and grant as
pure functions; the operations on a real SQLite store in a temporary directory."""

from __future__ import annotations

import time

import pyotp
import pytest

from gateway import accounts, tokens
from gateway.accounts import NoRole, TooLong
from gateway.authentication import TokenSettings
from gateway.config import OIDCConfig, OIDCIssuer
from gateway.passwords import verify_password
from gateway.store import Publisher, Store, WebAuthnCredential

SETTINGS = TokenSettings(prefix="pypi", location="gateway.test", server_secret=b"k" * 32)
NOW = 1_800_000_000.0
DAY = 86400


@pytest.mark.parametrize(
    ("given", "cap", "expires"),
    [
        (None, None, None),  # nothing asked, no cap: never
        ("", None, None),
        (None, 30 * DAY, NOW + 30 * DAY),  # nothing asked: the longest allowed
        ("12h", None, NOW + 12 * 3600),
        ("30d", 30 * DAY, NOW + 30 * DAY),  # the cap itself is allowed
        (f"{30 * DAY}s", 30 * DAY, NOW + 30 * DAY),
    ],
)
def test_token_expiry(given: str | None, cap: int | None, expires: float | None) -> None:
    assert accounts.token_expiry(given, cap, NOW) == expires


def test_an_expiry_past_the_cap_is_too_long() -> None:
    with pytest.raises(TooLong) as refused:
        accounts.token_expiry("31d", 30 * DAY, NOW)
    assert refused.value.max_lifetime == 30 * DAY


@pytest.mark.parametrize("given", ["30", "0d", "1w", "soon", "-1d"])
def test_an_expiry_that_is_no_duration_is_a_value_error(given: str) -> None:
    with pytest.raises(ValueError, match="must be a positive duration"):
        accounts.token_expiry(given, None, NOW)


def test_without_a_cap_every_expiry_is_offered() -> None:
    assert accounts.expiry_choices(None) == list(accounts.EXPIRY_CHOICES)


def test_with_a_cap_nothing_longer_and_never_are_offered_but_the_cap_is() -> None:
    offered = accounts.expiry_choices(30 * DAY)
    assert offered == [("1d", "1 day"), ("7d", "7 days"), (f"{30 * DAY}s", "The longest allowed (30 days)")]
    for value, _ in offered:  # whatever is offered passes the rule
        assert accounts.token_expiry(value, 30 * DAY, NOW) is not None


@pytest.mark.parametrize(
    ("read", "upload", "granted"),
    [(False, True, ("upload",)), (True, True, ("read", "upload")), (True, False, ("read",))],
)
def test_token_permissions(read: bool, upload: bool, granted: tuple[str, ...]) -> None:
    assert accounts.token_permissions(read=read, upload=upload) == granted


async def test_a_token_is_scoped_only_to_projects_of_the_users(store: Store) -> None:
    alice, bob = await store.add_user("alice", "h"), await store.add_user("bob", "h")
    await store.grant("alpha", "Alpha", alice, "owner", by="test")
    await store.grant("beta", "beta", bob, "owner", by="test")
    (alpha,) = await accounts.token_projects(store, alice, ["Alpha"])  # names are canonicalized
    assert alpha.name == "alpha"
    assert await accounts.token_projects(store, alice, []) == []
    for name in ("beta", "nonexistent"):
        with pytest.raises(NoRole) as refused:
            await accounts.token_projects(store, alice, ["alpha", name])
        assert refused.value.project == name


async def test_a_created_token_carries_its_scope_expiry_and_grant(store: Store) -> None:
    alice = await store.add_user("alice", "h")
    await store.grant("alpha", "alpha", alice, "owner", by="test")
    projects = await accounts.token_projects(store, alice, ["alpha"])
    expires_at = int(time.time()) + DAY
    token, row = await accounts.create_token(
        store,
        SETTINGS,
        alice,
        description="ci",
        projects=projects,
        expires_at=expires_at,
        permissions=accounts.token_permissions(read=True),
    )
    parsed = tokens.parse(token, prefix="pypi")
    assert parsed.token_id == row.id and row.expires == expires_at
    assert accounts.scope_of(row, alice.id) == "projects: alpha; read and upload"
    (event,) = [e for e in await store.audit_events(user_name="alice") if e.event == "token.created"]
    assert event.token_id == row.id and event.detail["permissions"] == ["read", "upload"]
    _, wide = await accounts.create_token(store, SETTINGS, alice, description="", projects=[], expires_at=None)
    assert accounts.scope_of(wide, alice.id) == "all projects" and wide.expires is None


async def test_a_token_is_revoked_only_by_its_owner_or_an_administrator(store: Store) -> None:
    alice, bob = await store.add_user("alice", "h"), await store.add_user("bob", "h")
    _, row = await accounts.create_token(store, SETTINGS, alice, description="", projects=[], expires_at=None)
    assert await accounts.own_token(store, bob, row.id) is None
    assert await accounts.revoke_token(store, row.id, by="bob", owner=bob) is None
    assert (await accounts.own_token(store, alice, row.id)) == row
    revoked = await accounts.revoke_token(store, row.id, by="cli:root")
    assert revoked is not None and revoked.revoked is not None
    assert await accounts.revoke_token(store, "no-such-token", by="cli:root") is None
    events = [(e.event, e.detail.get("by")) for e in await store.audit_events(user_name="alice")]
    assert events.count(("token.revoked", "cli:root")) == 1 and ("token.revoked", "bob") not in events


async def test_the_clis_enrolment_replaces_the_codes_in_one_event(store: Store) -> None:
    alice = await store.add_user("alice", "h")
    seed = pyotp.random_base32(length=32)
    codes = ["aaaa-bbbb-cccc-dddd", "1111-2222-3333-4444"]
    await accounts.enrol_totp(store, SETTINGS, alice, seed, recovery_codes=codes, by="cli:root")
    assert await store.count_recovery_codes(alice.id) == 2
    assert await accounts.totp_matches(store, SETTINGS, alice, pyotp.TOTP(seed).at(time.time()), now=time.time())
    assert await accounts.use_recovery_code(store, SETTINGS, alice, "AAAA BBBB CCCC DDDD")
    assert not await accounts.use_recovery_code(store, SETTINGS, alice, "aaaa-bbbb-cccc-dddd")  # used up
    assert not await accounts.use_recovery_code(store, SETTINGS, alice, "")
    (event,) = [e for e in await store.audit_events(user_name="alice") if e.event.startswith("user.2fa")]
    assert (event.event, event.detail) == (
        "user.2fa.totp_enabled",
        {"by": "cli:root", "recovery_codes": 2, "replaced": False},
    )


async def test_the_pages_enrolment_spends_the_proving_code_and_keeps_the_codes(store: Store) -> None:
    alice = await store.add_user("alice", "h")
    kept = await accounts.new_recovery_codes(store, SETTINGS, alice, address="192.0.2.1")
    seed, now = pyotp.random_base32(length=32), time.time()
    step = pyotp.TOTP(seed).timecode(now)
    await accounts.enrol_totp(store, SETTINGS, alice, seed, last_step=step, address="192.0.2.1")
    assert await store.count_recovery_codes(alice.id) == len(kept) == 8
    assert not await accounts.totp_matches(store, SETTINGS, alice, pyotp.TOTP(seed).at(now), now=now)
    (event,) = [e for e in await store.audit_events(user_name="alice") if e.event == "user.2fa.totp_enabled"]
    assert (event.address, event.detail) == ("192.0.2.1", {})
    assert accounts.totp_uri(SETTINGS, "alice", seed).startswith("otpauth://totp/upload-gateway%20gateway.test:alice?")


async def test_recovery_codes_go_with_the_last_factor_only(store: Store) -> None:
    alice = await store.add_user("alice", "h")
    await accounts.enrol_totp(store, SETTINGS, alice, pyotp.random_base32(length=32), recovery_codes=["c-1"])
    key = WebAuthnCredential(id="k", name="key", public_key=b"p", sign_count=0, created=time.time())
    await accounts.add_security_key(store, alice, key)
    await accounts.remove_totp(store, alice)
    assert await store.count_recovery_codes(alice.id) == 1  # the key still needs them
    assert not await accounts.remove_security_key(store, alice, "another")
    assert await accounts.remove_security_key(store, alice, "k")
    assert await store.count_recovery_codes(alice.id) == 0
    assert not (await store.require_user("alice")).has_2fa


async def test_a_password_change_is_hashed_and_audited(store: Store) -> None:
    alice = await store.add_user("alice", "h")
    await accounts.change_password(store, alice, "a long new password", by="cli:root")
    changed = await store.require_user("alice")
    assert verify_password(changed.password_hash, "a long new password")
    assert not verify_password(changed.password_hash, "h")


GITHUB_URL = "https://token.actions.githubusercontent.com"


@pytest.mark.parametrize(
    ("issuer", "issuer_url", "kind", "refused"),
    [
        ("github", GITHUB_URL, "github", None),
        ("gone", GITHUB_URL, "github", "issuer 'gone' is not configured"),
        ("github", "", "github", f"not bound then: remove it and add it again to trust {GITHUB_URL}"),
        ("github", "https://ghes.example", "github", f"'github' is now {GITHUB_URL}, it was added for https://ghes"),
        ("github", GITHUB_URL, "forgejo", "'github' is now of kind github, it was added as forgejo"),
    ],
)
def test_a_publisher_is_refused_once_its_issuer_s_name_is_gone_or_names_another_url_or_kind(
    issuer: str, issuer_url: str, kind: str, refused: str | None
) -> None:
    oidc = OIDCConfig(issuers=(OIDCIssuer("github", GITHUB_URL, "github"),))
    publisher = Publisher("p", "demo", issuer, issuer_url, kind, {}, "alice", NOW)
    why = accounts.publisher_refused(oidc, publisher)
    assert why == refused if refused is None else (why is not None and refused in why), why
