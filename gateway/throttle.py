"""Pure throttle rules for password and code checks: which counters an attempt is charged to, when each one
locks, for how long, and what the refusal says. No I/O and no clock: times are passed in.

Three counters take every attempt, on the account pages, on password uploads and on
password reads of a private index alike:

- the account from this address (`Streak`): a few failures in a row lock it, with a capped backoff. Only the
  one guessing waits: the owner, from their own address, is not locked by someone else's failures;
- the account from every address (`Bucket`), a higher ceiling against guessing from many addresses;
- the address for every account (`Bucket`), against trying one password on many accounts.

The store keeps the counters and applies these rules in single statements (`Store.reserve_streak`,
`Store.reserve_bucket`), so that an attempt is counted before it is checked, in every process at once.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass
from enum import StrEnum

from gateway.config import ThrottleConfig
from gateway.crypto import keyed_hash

FORGET_AFTER = 3600  # a quiet streak is forgotten this long after its lock ends (or max_lock, if longer)


class Scope(StrEnum):
    """A bounded label: which counter refused or locked."""

    ACCOUNT_ADDRESS = "account_address"
    ACCOUNT = "account"
    ADDRESS = "address"


@dataclass(frozen=True)
class Streak:
    """Failures in a row: the `limit`-th locks for `lock` seconds, each further one doubles that up to `max_lock`.

    While locked nothing is checked or counted. A completed sign-in clears the streak, and one that stays quiet
    for `forget` after its lock ended is forgotten: an hour (or `max_lock`, if longer), so that starting afresh
    (five more guesses) is not much cheaper than sitting out the backoff. The count stops at `cap`, where the
    lock has reached `max_lock`: it never overflows and keeps locking.
    """

    limit: int
    lock: int
    max_lock: int

    @property
    def forget(self) -> int:
        return max(FORGET_AFTER, self.max_lock)

    @property
    def cap(self) -> int:
        """The first count whose lock is `max_lock`."""
        return self.limit + ((self.max_lock - 1) // self.lock).bit_length()

    def delay(self, failures: int) -> int:
        """Seconds locked after the last of `failures` (the store's statement computes the same)."""
        if failures < self.limit:
            return 0
        if failures >= self.cap:
            return self.max_lock
        return self.lock << (failures - self.limit)

    def wait(self, failures: int, last: float, now: float) -> float:
        return max(0.0, last + self.delay(failures) - now)


@dataclass(frozen=True)
class Bucket:
    """At most `limit` failures in any `window` seconds: a leaky bucket that holds `limit` and drains one every
    `window / limit` seconds. A burst of `limit` passes, then one per interval; below that rate nothing locks."""

    limit: int
    window: int

    @property
    def rate(self) -> float:
        return self.limit / self.window

    def level(self, level: float, at: float, now: float) -> float:
        """What is left at `now` of `level` stored at `at`."""
        return max(0.0, level - max(0.0, now - at) * self.rate)

    def wait(self, level: float, at: float, now: float) -> float:
        """Seconds until one more attempt fits."""
        return max(0.0, (self.level(level, at, now) + 1 - self.limit) / self.rate)

    def full(self, level: float) -> bool:
        """After this reservation, the next attempt would be refused."""
        return level + 1 > self.limit


@dataclass(frozen=True)
class Rules:
    pair: Streak
    account: Bucket
    address: Bucket

    @classmethod
    def of(cls, config: ThrottleConfig) -> Rules:
        return cls(
            pair=Streak(config.failures, config.lock, config.max_lock),
            account=Bucket(config.account_failures, config.account_window),
            address=Bucket(config.address_failures, config.address_window),
        )


@dataclass(frozen=True)
class Counted:
    """A counter after a reservation: whether this attempt was counted (so it may be checked), and its state."""

    granted: bool
    value: float  # failures in a row (a streak), or the level (a bucket)
    at: float  # the last counted attempt (a streak), or when the level was stored (a bucket)


@dataclass(frozen=True)
class Keys:
    """The counters of one attempt. Accounts go by case-folded name, unknown names too, so the answer never tells
    whether an account exists. The store sees keyed hashes only: a password typed as a user name stays unreadable."""

    pair: str
    account: str
    address: str

    @classmethod
    def of(cls, account: str, address: str | None, *, key: bytes) -> Keys:
        """`key`: a subkey of the server secret for this purpose only."""
        name, where = account.casefold(), network_of(address)

        def hashed(kind: str, *parts: str) -> str:
            return f"{kind}:{keyed_hash(key, json.dumps([kind, *parts]))[:32]}"

        return cls(pair=hashed("pair", name, where), account=hashed("account", name), address=hashed("address", where))


def network_of(address: str | None) -> str:
    """What one client controls: an IPv4 address, or the /64 of an IPv6 one (a single host is routinely given a
    whole /64, so counting its addresses apart would give it 2**64 counters)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def retry_after(seconds: float) -> int:
    """Whole seconds for the Retry-After header: never 0, so a client that honours it does not spin."""
    return max(1, math.ceil(seconds))


def refusal(scope: Scope, seconds: int) -> str:
    """The one-line message of a 429: which counter, how long, and what still works."""
    if scope is Scope.ACCOUNT_ADDRESS:
        where = "for this account from your address"
    elif scope is Scope.ACCOUNT:
        where = "for this account from many addresses"
    else:
        where = "from your address"
    return f"Too many failed attempts {where}: wait {seconds} seconds, then try again (API tokens are not affected)"
