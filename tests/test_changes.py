"""The change log's follower: what it applies, from where, and what it drops when the log cannot be read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from gateway.accounts import create_token
from gateway.authentication import Authenticator, TokenSettings
from gateway.changes import BATCH, KEEP, Follower, Invalidations
from gateway.credentials import TokenCredentials
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.password_checks import PasswordChecks
from gateway.store import Change, Store, StoreFailure, User
from gateway.store.changelog import PROJECT, TOKEN, USER

SETTINGS = TokenSettings(prefix="pypi", location="gateway.test", server_secret=b"k" * 32)


class Log:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.failing = False
        self.reads = 0

    def add(self, kind: str, key: str) -> None:
        self.changes.append(Change(len(self.changes) + 1, kind, key))

    async def last_change(self) -> int:
        self._check()
        return len(self.changes)

    async def changes_after(self, serial: int, limit: int) -> Sequence[Change]:
        self._check()
        self.reads += 1
        return [change for change in self.changes if change.serial > serial][:limit]

    def _check(self) -> None:
        if self.failing:
            raise StoreFailure("connection refused")


class Caches:
    def __init__(self) -> None:
        self.applied: list[Change] = []
        self.forgotten = 0

    def apply(self, change: Change) -> None:
        self.applied.append(change)

    def forget_all(self) -> None:
        self.forgotten += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def follower(log: Log, caches: Caches, clock: Clock | None = None) -> Follower:
    return Follower(log, caches, interval=0.01, trust=5.0, clock=clock or Clock())


async def test_changes_from_before_the_start_are_not_applied_and_later_ones_are_in_order() -> None:
    log, caches = Log(), Caches()
    log.add(TOKEN, "old")
    following = follower(log, caches)
    assert await following.catch_up() == 0
    log.add(TOKEN, "t1")
    log.add(USER, "u1")
    log.add(PROJECT, "demo")
    assert await following.catch_up() == 3
    assert [(c.kind, c.key) for c in caches.applied] == [(TOKEN, "t1"), (USER, "u1"), (PROJECT, "demo")]
    assert await following.catch_up() == 0
    assert following.serial == 4


async def test_a_backlog_longer_than_a_batch_is_read_to_its_end_in_one_turn() -> None:
    log, caches = Log(), Caches()
    following = follower(log, caches)
    await following.catch_up()
    for number in range(BATCH * 2 + 5):
        log.add(TOKEN, str(number))
    assert await following.catch_up() == BATCH * 2 + 5
    assert log.reads == 3
    assert caches.applied[-1].key == str(BATCH * 2 + 4)


async def test_a_failing_log_is_retried_and_past_the_trust_window_cached_credentials_go_each_turn() -> None:
    log, caches, clock = Log(), Caches(), Clock()
    following = follower(log, caches, clock)
    await following.catch_up()
    assert caches.forgotten == 1  # the first read: what was cached before it
    log.add(TOKEN, "revoked-meanwhile")
    log.failing = True
    clock.now += 4.0
    assert await following.catch_up() == 0
    assert caches.forgotten == 1  # within the window: a blip keeps the caches
    clock.now += 2.0
    await following.catch_up()
    await following.catch_up()
    assert caches.forgotten == 3
    log.failing = False
    assert await following.catch_up() == 1  # nothing written meanwhile is skipped
    assert caches.applied[-1].key == "revoked-meanwhile"
    clock.now += 4.0
    log.failing = True
    await following.catch_up()
    assert caches.forgotten == 3  # the window restarts at the last good read


async def test_a_log_whose_serial_went_back_is_followed_from_its_new_end_with_the_caches_dropped() -> None:
    """A database restored from a backup, or replaced: its serials may be below this follower's, and what it
    changes would never be read past the old serial."""
    log, caches = Log(), Caches()
    following = follower(log, caches)
    for key in ("a", "b", "c"):
        log.add(TOKEN, key)
    await following.catch_up()
    log.changes = log.changes[:1]  # restored: serial 1 is the newest
    await following.catch_up()
    assert caches.forgotten == 2 and following.serial == 1
    log.add(TOKEN, "revoked-after-the-restore")
    assert await following.catch_up() == 1
    assert caches.applied[-1].key == "revoked-after-the-restore"


async def test_a_follower_that_slept_past_the_log_s_keep_drops_its_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Suspended (the host slept, the process was stopped) for longer than entries are kept: what was pruned
    meanwhile was never applied. The wall clock says so; the monotonic one stops while the host sleeps."""
    log, caches = Log(), Caches()
    following = follower(log, caches)
    await following.catch_up()
    woke_at = time.time() + KEEP + 60
    monkeypatch.setattr(time, "time", lambda: woke_at)
    await following.catch_up()
    assert caches.forgotten == 2


async def test_a_follower_survives_an_unexpected_error_and_drops_its_caches() -> None:
    """Not a store failure (a bug, a malformed row): logged, the caches dropped, and the next turn reads again;
    a follower that ended would leave this process on its row cache alone."""
    log, caches = Log(), Caches()
    following = follower(log, caches)
    await following.catch_up()
    real = log.changes_after
    calls = 0

    async def broken_once(serial: int, limit: int) -> Sequence[Change]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a row this version cannot read")
        return await real(serial, limit)

    log.changes_after = broken_once  # type: ignore[method-assign]
    assert await applied_by_run(following, log, caches, wake=False) == ["t1"]
    assert caches.forgotten >= 2


async def applied_by_run(following: Follower, log: Log, caches: Caches, *, wake: bool) -> list[str]:
    task = asyncio.create_task(following.run())
    try:
        while following.serial is None:
            await asyncio.sleep(0)
        log.add(TOKEN, "t1")
        if wake:
            following.wake()
        async with asyncio.timeout(5):
            while not caches.applied:
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return [c.key for c in caches.applied]


async def test_run_reads_at_once_when_woken() -> None:
    log, caches = Log(), Caches()
    following = Follower(log, caches, interval=3600.0, trust=5.0)
    assert await applied_by_run(following, log, caches, wake=True) == ["t1"]


async def test_run_reads_on_its_timer_without_a_wake_up() -> None:
    log, caches = Log(), Caches()
    following = Follower(log, caches, interval=0.01, trust=5.0)
    assert await applied_by_run(following, log, caches, wake=False) == ["t1"]


async def test_run_stops_when_cancelled_in_the_turn_it_is_woken() -> None:
    """A wake-up (a notification, another request's upload) in the same turn as the cancel of shutdown: Python
    3.11's `asyncio.wait_for` returned the wake-up and dropped the cancel, so the follower ran on and `serve`'s
    drain (and the tests' teardown) waited for it for ever."""
    log, caches = Log(), Caches()
    following = Follower(log, caches, interval=3600.0, trust=5.0)
    task = asyncio.create_task(following.run())
    async with asyncio.timeout(5):
        while following.serial is None:
            await asyncio.sleep(0)
    following.wake()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done and task.cancelled(), "the follower ran on after its cancel"


def test_each_kind_drops_its_own_cache_and_an_unknown_kind_drops_every_credential() -> None:
    dropped: list[tuple[str, str]] = []
    invalidations = Invalidations(
        token=lambda key: dropped.append(("token", key)),
        user=lambda key: dropped.append(("user", key)),
        project=lambda key: dropped.append(("project", key)),
        credentials=lambda: dropped.append(("credentials", "")),
    )
    for kind, key in ((TOKEN, "t1"), (USER, "u1"), (PROJECT, "demo"), ("publisher", "p1")):
        invalidations.apply(Change(1, kind, key))
    invalidations.forget_all()
    assert dropped == [("token", "t1"), ("user", "u1"), ("project", "demo"), ("credentials", ""), ("credentials", "")]


async def test_what_is_applied_and_what_fails_is_counted_by_bounded_kind() -> None:
    log, caches = Log(), Caches()
    counted: list[str] = []
    following = Follower(
        log, caches, interval=1.0, trust=5.0, applied=counted.append, failed=lambda: counted.append("failed")
    )
    await following.catch_up()
    log.add(TOKEN, "t1")
    log.add("publisher", "p1")
    await following.catch_up()
    log.failing = True
    await following.catch_up()
    assert counted == [TOKEN, "other", "failed"]


def following_over(store: Store, checks: PasswordChecks) -> tuple[Authenticator, Follower]:
    """An authenticator over `store`, and a follower of its change log that drops the authenticator's rows."""
    authenticator = Authenticator(store, SETTINGS, Metrics(), checks)
    invalidations = Invalidations(
        token=authenticator.forget,
        user=authenticator.forget_user,
        project=lambda name: None,
        credentials=authenticator.forget_all,
    )
    return authenticator, Follower(store, invalidations, interval=1.0, trust=5.0)


async def test_a_token_row_read_before_its_revocation_is_not_cached_after_the_follower_dropped_it(
    store: Store,
) -> None:
    """A request reads the token's row, the token is revoked on another replica and this one's follower applies
    that, and only then the request (still reading the owner) caches what it read: the revoked token must not be
    accepted from that cache for the rows' lifetime."""
    alice = await store.add_user("alice", "$argon2id$not-a-real-hash")
    token, row = await create_token(store, SETTINGS, alice, description="ci", projects=[], expires_at=None)
    checks = PasswordChecks(workers=1, queue=1, metrics=Metrics())
    authenticator, following = following_over(store, checks)
    await following.catch_up()
    reading_owner, owner_read = asyncio.Event(), asyncio.Event()
    get_user_by_id = store.get_user_by_id

    async def slow_owner(user_id: str) -> User | None:
        if not reading_owner.is_set():  # the request's read only, not the revocation's own
            reading_owner.set()
            await owner_read.wait()
        return await get_user_by_id(user_id)

    store.get_user_by_id = slow_owner  # type: ignore[method-assign]
    try:
        first = asyncio.create_task(authenticator.authenticate(TokenCredentials(token)))
        await reading_owner.wait()
        await store.revoke_token(row.id, by="replica-b")
        assert await following.catch_up() == 1
        owner_read.set()
        await first  # it read the row before the revocation: accepted, as any request in flight then
        with pytest.raises(GatewayError, match="revoked"):
            await authenticator.authenticate(TokenCredentials(token))
    finally:
        checks.close()


async def test_a_row_cached_before_the_follower_first_read_the_log_is_dropped_by_that_read(store: Store) -> None:
    """The follower starts from the serial its first read finds: a request served before that read (the first
    moments of a replica, or while that read kept failing) may hold a row a change before that serial made
    stale, which no later entry will drop."""
    alice = await store.add_user("alice", "$argon2id$not-a-real-hash")
    token, row = await create_token(store, SETTINGS, alice, description="ci", projects=[], expires_at=None)
    checks = PasswordChecks(workers=1, queue=1, metrics=Metrics())
    authenticator, following = following_over(store, checks)
    try:
        await authenticator.authenticate(TokenCredentials(token))
        await store.revoke_token(row.id, by="replica-b")
        await following.catch_up()
        with pytest.raises(GatewayError, match="revoked"):
            await authenticator.authenticate(TokenCredentials(token))
    finally:
        checks.close()
