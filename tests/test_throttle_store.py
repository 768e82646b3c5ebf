"""The throttle's counters in a real SQLite store: the statements agree with gateway/throttle.py's rules, count
each attempt before its check, and hold across two connections (two gateway processes) at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.guard import Guard
from gateway.metrics import Metrics
from gateway.store import Store
from gateway.throttle import Bucket, Rules, Streak
from tests.harness import database

STREAK = Streak(limit=5, lock=60, max_lock=900)
BUCKET = Bucket(limit=10, window=300)


def holder() -> str:
    return uuid.uuid4().hex


async def test_a_streak_locks_as_the_rule_says_and_refuses_without_counting(store: Store) -> None:
    now = 1000.0
    for failures in range(1, 6):
        counted = await store.reserve_streak("k", STREAK, now, holder())
        assert counted.granted and counted.value == failures
    for _ in range(3):
        refused = await store.reserve_streak("k", STREAK, now + 59, holder())
        assert not refused.granted and refused.value == 5 and STREAK.wait(5, refused.at, now + 59) == 1
    # Each further failure after a lock doubles it: 120, 240, 480, then 900 for ever.
    last, previous = now, 5
    for failures, delay in ((6, 120), (7, 240), (8, 480), (9, 900), (9, 900)):
        now = last + STREAK.delay(previous)
        assert not (await store.reserve_streak("k", STREAK, now - 0.5, holder())).granted
        counted = await store.reserve_streak("k", STREAK, now, holder())
        assert counted.granted and counted.value == failures and STREAK.delay(int(counted.value)) == delay
        last, previous = counted.at, failures


async def test_a_huge_count_neither_overflows_nor_stops_locking(store: Store, store_url: str) -> None:
    """What 1,200 or a billion failures would leave: the statement still answers, and still locks."""
    await store.reserve_streak("k", STREAK, 0.0, holder())
    database.execute(store_url, "UPDATE throttle_streaks SET failures = :huge", huge=2**62)
    assert not (await store.reserve_streak("k", STREAK, 899.0, holder())).granted
    counted = await store.reserve_streak("k", STREAK, 900.0, holder())
    assert counted.granted and counted.value == STREAK.cap
    assert not (await store.reserve_streak("k", STREAK, 901.0, holder())).granted


async def test_a_quiet_streak_is_forgotten_and_a_cleared_one_starts_afresh(store: Store) -> None:
    for _ in range(5):
        await store.reserve_streak("k", STREAK, 0.0, holder())
    # Locked until 60, forgotten an hour later.
    assert (await store.reserve_streak("k", STREAK, 60.0 + 3599.0, holder())).value == 6
    await store.clear_streak("k")
    for _ in range(5):
        await store.reserve_streak("k", STREAK, 0.0, holder())
    assert (await store.reserve_streak("k", STREAK, 60.0 + 3600.0, holder())).value == 1
    await store.reserve_streak("j", STREAK, 0.0, holder())
    await store.clear_streak("j")
    assert (await store.reserve_streak("j", STREAK, 0.0, holder())).value == 1


async def test_a_refund_takes_the_attempt_back_and_ends_the_lock_it_set(store: Store) -> None:
    """A right password whose reservation was the fifth: it is no failure, and the second factor may follow."""
    for _ in range(5):
        await store.reserve_streak("k", STREAK, 0.0, holder())
    await store.refund_streak("k", STREAK, 1.0)
    counted = await store.reserve_streak("k", STREAK, 1.0, holder())
    assert counted.granted and counted.value == 5


async def test_a_bucket_takes_a_burst_then_drains(store: Store) -> None:
    grants = [(await store.reserve_bucket("b", BUCKET, 0.0, holder())).granted for _ in range(15)]
    assert grants == [True] * 10 + [False] * 5
    refused = await store.reserve_bucket("b", BUCKET, 0.0, holder())
    assert BUCKET.wait(refused.value, refused.at, 0.0) == pytest.approx(30)
    assert not (await store.reserve_bucket("b", BUCKET, 29.0, holder())).granted
    assert (await store.reserve_bucket("b", BUCKET, 30.0, holder())).granted
    await store.refund_bucket("b")
    assert (await store.reserve_bucket("b", BUCKET, 30.0, holder())).granted


async def test_concurrent_reservations_in_two_processes_grant_the_limit_only(store: Store, store_url: str) -> None:
    """Two connections to one file, as two gateway processes: 2 x 100 attempts at once, 5 counted."""
    other = await Store.open(store_url)
    try:
        results = await asyncio.gather(
            *(s.reserve_streak("k", STREAK, 0.0, holder()) for _ in range(100) for s in (store, other))
        )
    finally:
        await other.close()
    assert sorted(int(r.value) for r in results if r.granted) == [1, 2, 3, 4, 5]


async def test_a_hold_is_held_once_until_released_or_lapsed(store: Store) -> None:
    first, second = holder(), holder()
    assert await store.take_hold("h", first, 0.0, 30.0)
    assert not await store.take_hold("h", second, 1.0, 30.0)
    await store.release_hold("h", second)  # not the holder's: nothing happens
    assert not await store.take_hold("h", second, 2.0, 30.0)
    await store.release_hold("h", first)
    assert await store.take_hold("h", second, 3.0, 30.0)
    assert await store.take_hold("h", first, 33.0, 30.0)  # lapsed: a process died holding it


async def test_purging_drops_only_what_holds_nothing_back(store: Store, store_url: str) -> None:
    await store.reserve_streak("old", STREAK, 0.0, holder())
    await store.reserve_streak("new", STREAK, 5000.0, holder())
    await store.reserve_bucket("old", BUCKET, 0.0, holder())
    await store.take_hold("h", holder(), 0.0, 30.0)
    await store.purge_throttle(5000.0, streaks_before=5000.0 - 1800, buckets_before=5000.0 - 300)
    assert database.rows(store_url, "SELECT key FROM throttle_streaks") == [("new",)]
    assert database.rows(store_url, "SELECT COUNT(*) FROM throttle_buckets") == [(0,)]
    assert database.rows(store_url, "SELECT COUNT(*) FROM throttle_holds") == [(0,)]


async def test_sixty_concurrent_wrong_passwords_run_five_checks(store: Store) -> None:
    """The race of the old throttle (check "locked?", await the check, then count): all 60 were checked."""
    guard = Guard(store, Rules.of(load_config(None).throttle), Metrics(), server_secret=b"s" * 32)
    checked = 0

    async def wrong() -> bool:
        nonlocal checked
        checked += 1
        await asyncio.sleep(0.01)
        return False

    async def one() -> int:
        try:
            await guard.attempt("ann", "192.0.2.1", wrong, kind="password", surface="web", final=True)
        except GatewayError as exc:
            assert exc.headers["Retry-After"].isdigit()
            return exc.status
        return 401

    statuses = await asyncio.gather(*(one() for _ in range(60)))
    assert checked == 5 and statuses.count(401) == 5 and statuses.count(429) == 55


async def test_one_second_factor_check_at_a_time_per_hold(store: Store) -> None:
    guard = Guard(store, Rules.of(load_config(None).throttle), Metrics(), server_secret=b"s" * 32)
    running = most = 0

    async def code() -> bool:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return False

    async def one() -> str:
        try:
            await guard.attempt("ann", "192.0.2.1", code, kind="totp", surface="web", final=True, hold="sign-in:x")
        except GatewayError as exc:
            return exc.reason
        return "checked"

    reasons = await asyncio.gather(*(one() for _ in range(200)))
    assert most == 1 and 1 <= reasons.count("checked") <= 5
    assert set(reasons) <= {"checked", "second_factor_busy", "throttled"}


async def test_a_reservation_made_during_another_coroutines_transaction_survives_its_rollback(store: Store) -> None:
    """The connection is shared: a statement issued while another coroutine's transaction is open would join it,
    and an error that rolls that transaction back would take the reservation with it (an uncounted guess)."""
    opened, release = asyncio.Event(), asyncio.Event()

    async def failing_change() -> None:
        async with store._transaction():
            opened.set()
            await release.wait()
            raise RuntimeError("a change that fails half-way")

    change = asyncio.create_task(failing_change())
    await opened.wait()
    reservation = asyncio.create_task(store.reserve_streak("k", STREAK, 1000.0, holder()))
    await asyncio.sleep(0.05)  # the reservation's statement is issued, or waits its turn
    release.set()
    with pytest.raises(RuntimeError):
        await change
    assert (await reservation).granted
    assert (await store.reserve_streak("k", STREAK, 1000.0, holder())).value == 2


@pytest.mark.parametrize("typed", ["ALICE", "Alice", "al\u0130ce", "AL\u0130CE", "al\u0131ce", "\u212aevin", "KEVIN"])
async def test_a_name_that_signs_in_as_a_user_is_counted_as_that_user(store: Store, typed: str) -> None:
    """Whatever spelling the store resolves to an account, the throttle counts under that account's name: else
    each spelling (PostgreSQL's lower() folds the dotted capital I, U+0130, to an ASCII i under any UTF-8 locale;
    Python's casefold does not) would get counters of its own, and so more guesses before the lock."""
    guard = Guard(store, Rules.of(load_config(None).throttle), Metrics(), server_secret=b"s" * 32)
    for name in ("alice", "kevin"):
        await store.add_user(name, "$argon2id$not-a-real-hash")
    found = await store.get_user(typed)
    if found is not None:
        assert guard.keys(typed, "192.0.2.1") == guard.keys(found.name, "192.0.2.1")
