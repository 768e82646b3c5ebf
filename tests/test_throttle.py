"""The throttle's pure rules (gateway/throttle.py): locks, the capped backoff, the buckets, the keys."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.throttle import Bucket, Keys, Rules, Scope, Streak, network_of, refusal, retry_after

KEY = b"k" * 32


def test_the_limit_th_failure_locks_and_each_further_one_doubles_the_lock_up_to_the_cap() -> None:
    rule = Streak(limit=5, lock=60, max_lock=900)
    assert [rule.delay(n) for n in range(1, 12)] == [0, 0, 0, 0, 60, 120, 240, 480, 900, 900, 900]
    assert rule.cap == 9


@pytest.mark.parametrize(
    ("lock", "max_lock", "cap_over_limit"), [(60, 60, 0), (60, 61, 1), (60, 960, 4), (1, 2**20, 20)]
)
def test_the_cap_is_the_first_count_at_the_longest_lock(lock: int, max_lock: int, cap_over_limit: int) -> None:
    rule = Streak(limit=3, lock=lock, max_lock=max_lock)
    assert rule.cap == 3 + cap_over_limit
    assert rule.delay(rule.cap) == max_lock
    assert rule.cap == 3 or rule.delay(rule.cap - 1) < max_lock


def test_a_counter_never_overflows_and_keeps_locking() -> None:
    """The old throttle computed base * 2 ** (count - limit): past ~1,030 failures, OverflowError and a 500."""
    rule = Streak(limit=5, lock=60, max_lock=900)
    for failures in (1_030, 1_200, 10**9, 2**63):
        assert rule.delay(failures) == 900
    assert rule.wait(10**9, last=1000.0, now=1000.0) == 900


def test_wait_counts_from_the_last_failure() -> None:
    rule = Streak(limit=5, lock=60, max_lock=900)
    assert rule.wait(5, last=1000.0, now=1030.0) == 30
    assert rule.wait(5, last=1000.0, now=1060.0) == 0
    assert rule.wait(4, last=1000.0, now=1000.0) == 0


def test_a_bucket_lets_a_burst_through_then_one_per_interval() -> None:
    rule = Bucket(limit=100, window=3600)  # one every 36 s once the burst is spent
    assert rule.rate == pytest.approx(100 / 3600)
    assert rule.wait(99, at=0.0, now=0.0) == 0  # the hundredth fits
    assert rule.full(100) and not rule.full(99)
    assert rule.wait(100, at=0.0, now=0.0) == pytest.approx(36)
    assert rule.wait(100, at=0.0, now=18.0) == pytest.approx(18)
    assert rule.level(100, at=0.0, now=3600.0) == 0
    assert rule.level(10, at=100.0, now=50.0) == 10  # a clock that went back drains nothing


def test_a_steady_rate_below_the_ceiling_never_locks() -> None:
    """Unlike failures 'in a row', a bucket forgets at its own rate: a busy NAT with a typo now and then is fine."""
    rule = Bucket(limit=50, window=300)  # one every 6 s
    level, at = 0.0, 0.0
    for step in range(1, 1000):
        now = step * 6.5
        assert rule.wait(level, at, now) == 0
        level, at = rule.level(level, at, now) + 1, now
    assert level < 2


def test_the_rules_come_from_the_configuration() -> None:
    rules = Rules.of(load_config(None).throttle)
    assert rules.pair == Streak(limit=5, lock=60, max_lock=900)
    assert rules.account == Bucket(limit=100, window=3600)
    assert rules.address == Bucket(limit=50, window=300)
    assert rules.pair.forget == 3600


def test_keys_fold_case_and_hide_what_was_typed() -> None:
    keys = Keys.of("Ann", "10.0.0.1", key=KEY)
    assert keys == Keys.of("ann", "10.0.0.1", key=KEY)
    assert keys.pair.startswith("pair:") and keys.account.startswith("account:") and keys.address.startswith("address:")
    assert "ann" not in repr(keys).lower() and "10.0.0.1" not in repr(keys)
    assert keys != Keys.of("ann", "10.0.0.1", key=b"x" * 32)  # keyed: the database alone cannot test guesses
    other = Keys.of("bob", "10.0.0.1", key=KEY)
    assert other.address == keys.address and other.account != keys.account and other.pair != keys.pair
    elsewhere = Keys.of("ann", "10.0.0.2", key=KEY)
    assert elsewhere.account == keys.account and elsewhere.pair != keys.pair


def test_a_name_cannot_forge_another_pair() -> None:
    assert Keys.of("a", "b:c", key=KEY).pair != Keys.of("a:b", "c", key=KEY).pair
    assert Keys.of("a\0b", "c", key=KEY).pair != Keys.of("a", "b\0c", key=KEY).pair


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        (None, "unknown"),
        ("not an address", "not an address"),
    ],
)
def test_an_ipv6_host_counts_as_its_64(address: str | None, network: str) -> None:
    assert network_of(address) == network


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after(0.0) == 1 and retry_after(0.2) == 1 and retry_after(59.01) == 60


def test_refusals_say_which_counter_and_how_long() -> None:
    assert refusal(Scope.ACCOUNT_ADDRESS, 60).startswith("Too many failed attempts for this account from your address")
    assert "many addresses" in refusal(Scope.ACCOUNT, 5) and "from your address" in refusal(Scope.ADDRESS, 5)
    assert all("wait 7 seconds" in refusal(scope, 7) for scope in Scope)
